"""Speed and scale on one machine: every figure beside its limit, measured in the same process.

1. **Encoder** (the default model's ResNet encoder at 2,000 genes, all threads): cells/s on dense
   and on CSR input (5% non-zero, read sparse by the first layer), beside the fp32 matmul roofline
   (a plain ``torch.mm`` of the first layer's shape, and ``torch.sparse.mm`` for CSR) and the
   encoder's matmul FLOPs per cell, so the ratio to the limit is printed; plus end to end through
   ``get_set_representation`` on an in-memory AnnData.
2. **Streaming** one set of ``--n-stream`` cells (default 2M) from a backed CSR ``.h5ad``, in a
   fresh process: cells/s and the peak resident memory above the imports, beside the time of
   only reading the file once per pooling stage (the floor of a design with one pass per stage);
   without a cache of element states, with the default one, and with one that holds every chunk
   (then the file is read once).
   **Larger than memory**: a default model trained for 50 steps on, and then embedding every
   set of, a backed CSR file of ``--n-backed`` cells (default 5M x 2,000 genes: 37 GiB densified,
   more than this machine's 24 GiB), in a fresh process: peak resident memory.
3. **Training**: optimiser steps/s of the default model (64 sets x 100 cells per step) at 2,000
   genes and in 2-D, and the default ``train()`` on the covariance-heavy 2-D Gaussian task of
   ``benchmarks/defaults.py`` (target: Spearman >= 0.95 within 10 minutes), timed here.
4. **Distance matrix**: K = 200 sets x 2,000 cells in 50-D, Gaussians whose means and covariances
   both move (W2 known in closed form). scgde (a default model and the covariance configuration
   ``COVARIANCE_MODEL`` trained for ``COVARIANCE_TRAIN``, each on 200 other sets of the family,
   then embed all K sets + ``cdist``) against exact EMD (``ot.emd2``, timed on a random
   sample of pairs and extrapolated to all K(K-1)/2) and debiased Sinkhorn (``geomloss``): time
   for all pairs, speed ratio, Spearman with the true W2. Baselines: set means, and the plug-in
   Gaussian W2 from sample moments (an oracle that knows the family is Gaussian).

Usage: python -m benchmarks.speed [--quick] [--parts encoder stream backed train distances] [--threads N]
       [--n-stream 2000000] [--n-backed 5000000] [--workdir /tmp/scgde_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks import _common
from benchmarks.encode_speed import rss_mib, write_backed

N_GENES = 2000
DENSITY = 0.05
REPO = Path(__file__).resolve().parents[1]
PARTS = ("encoder", "stream", "backed", "train", "distances")


def _best_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up (allocations, thread pool)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _sets_adata(x, n_sets: int):
    import anndata as ad

    obs = pd.DataFrame(
        {"set": pd.Categorical(np.repeat([f"s{i}" for i in range(n_sets)], x.shape[0] // n_sets))},
        index=[f"c{i}" for i in range(x.shape[0])],
    )
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])]))


# the best configuration measured for covariance-heavy sets in many dimensions (docs/benchmarks.md):
# second-moment encoder features, a CVAE whose decoder the set vector scales (FiLM), twice the default steps
COVARIANCE_MODEL = {
    "generator": "cvae",
    "encoder_kwargs": {"quadratic": True},
    "generator_kwargs": {"conditioning": "film"},
}
COVARIANCE_TRAIN = {"max_epochs": 88}  # 5,000 steps of 64 sets on the 200 training sets here (the default: 2,500)


def default_model(adata, **model_kwargs):
    """``GDE(adata, **model_kwargs)``, by default with the library's defaults (a fixed seed)."""
    import scvi

    import scgde

    scvi.settings.seed = 0
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    return scgde.model.GDE(adata, **model_kwargs)


def fit_and_embed(train, queries, model_kwargs: dict, train_kwargs: dict, quick: bool):
    """Train ``default_model(train, **model_kwargs)`` and embed each query AnnData, rows in set order ``s0, s1, ...``.

    Returns the embeddings, the training time and the time to embed the first query (s). ``quick``: 2 epochs of
    5 batches instead of ``train_kwargs``.
    """
    model = default_model(train, **model_kwargs)
    start = time.perf_counter()
    model.train(enable_progress_bar=False, **({"max_epochs": 2, "batches_per_epoch": 5} if quick else train_kwargs))
    train_s = time.perf_counter() - start
    embeddings, embed_s = [], []
    for query in queries:
        start = time.perf_counter()
        order = [f"s{i}" for i in range(query.obs["set"].nunique())]  # the order of the sets' parameters and pairs
        embeddings.append(model.get_set_representation(query, progress_bar=False).loc[order].to_numpy())
        embed_s.append(time.perf_counter() - start)
    return embeddings, train_s, embed_s[0]


def encoder_flops(encoder) -> int:
    """Matrix-multiply FLOPs per element of a ResNet encoder (2 x in x out per linear map; the set head excluded)."""
    import torch

    per_element = [encoder.inp, encoder.skips, encoder.blocks]
    if getattr(encoder, "quadratic", None) is not None:
        per_element.append(encoder.quadratic)
    return sum(
        2 * m.in_features * m.out_features
        for part in per_element
        for m in part.modules()
        if isinstance(m, torch.nn.Linear)
    )


# ---------------------------------------------------------------------------------------------- 1. encoder
def encoder_part(args) -> tuple[pd.DataFrame, list[str]]:
    import torch

    from scgde.nn._sparse import csr_tensor

    rng = np.random.default_rng(args.seed)
    n_sets, size = (4, 1000) if args.quick else (20, 1000)
    n = n_sets * size
    csr = sp.random(n, N_GENES, density=DENSITY, format="csr", dtype=np.float32, random_state=rng)
    csr.data = np.log1p(10 * csr.data).astype(np.float32)  # log-expression-like values
    dense = csr.toarray()
    model = default_model(_sets_adata(dense, n_sets))
    module, enc = model.module.eval(), model.module.encoder
    seg = torch.arange(n_sets).repeat_interleave(size)
    x_dense, x_csr = torch.from_numpy(dense), csr_tensor(csr)
    flops = encoder_flops(enc)
    hidden = enc.n_hidden
    with torch.inference_mode():
        t_dense = _best_time(lambda: enc.encode_segments(module.encoder_input(x_dense), seg, n_sets))
        t_sparse = _best_time(lambda: enc.encode_segments(module.sparse_encoder_input(x_csr), seg, n_sets))
        w = torch.randn(N_GENES, hidden)
        t_mm = _best_time(lambda: x_dense @ w)
        t_spmm = _best_time(lambda: torch.sparse.mm(x_csr, w))
        fused = torch.randn(N_GENES, hidden * (enc.n_stages + 1))
        t_fused = _best_time(lambda: x_dense @ fused)
    roof = 2 * n * N_GENES * hidden / t_mm  # FLOP/s of the first layer's shape
    implied = roof / flops
    model_csr = default_model(_sets_adata(csr, n_sets))
    t_e2e_dense = _best_time(lambda: model.get_set_representation(progress_bar=False), repeats=1)
    t_e2e_uncached = _best_time(lambda: model.get_set_representation(progress_bar=False, cache_mib=0), repeats=1)
    t_e2e_csr = _best_time(lambda: model_csr.get_set_representation(progress_bar=False), repeats=1)
    rows = [
        (
            "encoder, dense input",
            n / t_dense,
            f"{n / t_dense / implied:.2f} of the roofline-implied {implied:,.0f} cells/s",
        ),
        ("encoder, CSR input (5% non-zero)", n / t_sparse, f"{t_dense / t_sparse:.2f}x dense"),
        ("get_set_representation, dense AnnData", n / t_e2e_dense, f"{t_e2e_dense / t_dense:.2f}x the encoder's time"),
        (
            "  the same without the stream cache (cache_mib=0)",
            n / t_e2e_uncached,
            f"{t_e2e_uncached / t_e2e_dense:.2f}x slower",
        ),
        ("get_set_representation, CSR AnnData", n / t_e2e_csr, f"{t_e2e_dense / t_e2e_csr:.2f}x dense"),
        (
            f"roofline: torch.mm ({n} x {N_GENES}) @ ({N_GENES} x {hidden})",
            roof / (2 * N_GENES * hidden),
            f"{roof / 1e9:.1f} GFLOP/s",
        ),
        (
            f"roofline: fused input product ({N_GENES} x {fused.shape[1]})",
            n / t_fused,
            f"{2 * n * N_GENES * fused.shape[1] / t_fused / 1e9:.1f} GFLOP/s",
        ),
        ("roofline: torch.sparse.mm, CSR @ first layer", n / t_spmm, f"{t_mm / t_spmm:.2f}x torch.mm"),
    ]
    table = pd.DataFrame(rows, columns=["measure", "cells/s", "ratio"]).set_index("measure")
    notes = [
        f"Default encoder: ResNet, n_hidden {hidden}, n_latent {enc.n_latent}, {enc.n_stages} pooling stages; "
        f"{flops / 1e6:.2f} MFLOP of matrix products per cell (the {enc.n_stages + 1} linear maps of the 2,000 genes "
        f"are one fused product); {n:,} cells in {n_sets} sets; {torch.get_num_threads()} torch thread(s).",
        "Roofline-implied rate = the first layer's torch.mm FLOP/s divided by the encoder's FLOPs per cell (LayerNorm, "
        "SiLU and pooling are not counted, so a ratio near 1 means the elementwise work is hidden).",
    ]
    return table, notes


# ---------------------------------------------------------------------------------------------- 2. streaming
def stream_child(path: str, cache_mib: float | None) -> None:
    """Fresh process: read the backed file once, then embed its one set with ``cache_mib``; print JSON."""
    import anndata as ad

    from scgde.data import RowFetcher, default_chunk_size

    adata = ad.read_h5ad(path, backed="r")
    reference = _sets_adata(np.zeros((4, adata.n_vars), dtype=np.float32), 2)
    reference.var_names = adata.var_names
    model = default_model(reference)
    before = rss_mib()
    fetcher, chunk = RowFetcher(adata.X), default_chunk_size(adata.n_vars)
    start = time.perf_counter()
    for lo in range(0, adata.n_obs, chunk):
        fetcher.sparse_slice(lo, lo + chunk)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    emb = model.get_set_representation(adata, progress_bar=False, cache_mib=cache_mib)
    seconds = time.perf_counter() - start
    assert np.isfinite(emb.to_numpy()).all()
    out = {"rss_before_mib": before, "peak_rss_mib": rss_mib(), "seconds": seconds, "read_pass_s": read_s}
    print(json.dumps({**out, "n_cells": adata.n_obs, "passes": model.module.encoder.n_stages}))


def stream_part(args) -> tuple[pd.DataFrame, list[str]]:
    n_stream = 20_000 if args.quick else args.n_stream
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"one_set_{n_stream}.h5ad"
    if path.exists():
        size_gib = path.stat().st_size / 2**30
    else:
        size_gib = write_backed(path, n_stream, DENSITY)
    runs = {}
    options = (("no cache", 0), ("default cache (256 MiB: too small here, so unused)", None), ("a 8 GiB cache", 8192))
    for label, cache in options:
        child = [sys.executable, "-m", "benchmarks.speed", "--child", str(path), "--threads", str(args.threads)]
        child += [] if cache is None else ["--cache-mib", str(cache)]
        out = subprocess.run(child, capture_output=True, text=True, cwd=REPO)
        if out.returncode:
            raise RuntimeError(f"the streaming child process failed:\n{out.stderr[-3000:]}")
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
    mem = runs["no cache"]
    floor = mem["passes"] * mem["read_pass_s"]
    rows = [
        (f"floor of one pass per pooling stage: read the file {mem['passes']} times", f"{floor:.1f} s", "", ""),
        ("floor with the data read once", f"{mem['read_pass_s']:.1f} s", "", ""),
    ]
    for label, run in runs.items():
        rate = f"{run['n_cells'] / run['seconds']:,.0f} cells/s, {run['seconds'] / floor:.2f}x the {mem['passes']}-pass floor"
        rows.append(
            (
                f"embed the set, {label}",
                f"{run['seconds']:.1f} s",
                rate,
                f"{run['peak_rss_mib'] - run['rss_before_mib']:+.0f} MiB",
            )
        )
    rows.append(
        ("resident memory before embedding (imports + model + backed obs)", f"{mem['rss_before_mib']:.0f} MiB", "", "")
    )
    table = pd.DataFrame(rows, columns=["measure", "time", "rate / ratio", "peak memory above that"]).set_index(
        "measure"
    )
    notes = [
        f"One set of {mem['n_cells']:,} cells x {N_GENES} genes, backed CSR, density {DENSITY} ({size_gib:.2f} GiB on disk)."
    ]
    return table, notes


# ---------------------------------------------------------------------------------------------- 2b. larger than RAM
def backed_child(path: str, steps: int) -> None:
    """Fresh process: train ``steps`` steps on a backed file, then embed all its sets; memory at each point."""
    import anndata as ad

    adata = ad.read_h5ad(path, backed="r")
    model = default_model(adata)
    before = rss_mib()
    start = time.perf_counter()
    model.train(max_epochs=1, batches_per_epoch=steps, enable_progress_bar=False)
    train_s, after_train = time.perf_counter() - start, rss_mib()
    start = time.perf_counter()
    emb = model.get_set_representation(progress_bar=False)
    embed_s = time.perf_counter() - start
    assert np.isfinite(emb.to_numpy()).all()
    out = {"before_mib": before, "train_peak_mib": after_train, "embed_peak_mib": rss_mib(), "train_s": train_s}
    print(json.dumps({**out, "embed_s": embed_s, "n_cells": adata.n_obs, "n_sets": len(emb), "steps": steps}))


def backed_part(args) -> tuple[pd.DataFrame, list[str]]:
    n_cells, n_sets, steps = (50_000, 50, 5) if args.quick else (args.n_backed, args.n_backed // 1000, 50)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"sets_{n_cells}.h5ad"
    size_gib = (
        path.stat().st_size / 2**30
        if path.exists()
        else write_backed(path, n_cells, DENSITY, n_sets=n_sets, log_values=True)
    )
    child = [sys.executable, "-m", "benchmarks.speed", "--backed-child", str(path), "--steps", str(steps)]
    out = subprocess.run([*child, "--threads", str(args.threads)], capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"the backed child process failed:\n{out.stderr[-3000:]}")
    run = json.loads(out.stdout.strip().splitlines()[-1])
    dense_gib = n_cells * N_GENES * 4 / 2**30
    rows = [
        ("X on disk (CSR)", f"{size_gib:.2f} GiB", ""),
        ("X densified (float32), never built", f"{dense_gib:.1f} GiB", ""),
        ("resident memory before training (imports + model + backed obs)", f"{run['before_mib']:.0f} MiB", ""),
        (f"peak after {run['steps']} training steps", f"{run['train_peak_mib']:.0f} MiB", f"{run['train_s']:.0f} s"),
        (
            f"peak after embedding all {run['n_sets']:,} sets",
            f"{run['embed_peak_mib']:.0f} MiB",
            f"{run['embed_s']:.0f} s",
        ),
    ]
    table = pd.DataFrame(rows, columns=["measure", "value", "time"]).set_index("measure")
    notes = [f"{n_cells:,} cells x {N_GENES} genes ({DENSITY:.0%} non-zero) in {n_sets:,} sets, read with backed='r'."]
    return table, notes


# ---------------------------------------------------------------------------------------------- 3. training
def _steps_per_s(adata, steps: int) -> float:
    model = default_model(adata)
    start = time.perf_counter()
    model.train(max_epochs=1, batches_per_epoch=steps, train_size=1.0, enable_progress_bar=False)
    return steps / (time.perf_counter() - start)


def train_part(args) -> tuple[pd.DataFrame, list[str]]:
    import scgde
    from benchmarks import _defaults_tasks

    rng = np.random.default_rng(args.seed)
    steps = 10 if args.quick else 60
    genes = sp.random(200 * 100, N_GENES, density=DENSITY, format="csr", dtype=np.float32, random_state=rng)
    rows = [
        ("steps/s, 2,000 genes (CSR, 5% non-zero)", _steps_per_s(_sets_adata(genes, 200), steps), ""),
        ("steps/s, 2-D", _steps_per_s(scgde.datasets.synthetic_mvn(n_sets=200, set_size=100, dim=2), steps), ""),
    ]
    task = _defaults_tasks.covariance_sets(args.quick, args.seed)
    spearman = float(task["table"].iloc[0, 0])
    rows.append(
        ("covariance task (a): default train(), Spearman reached", spearman, f"{task['train_s']:.0f} s of training")
    )
    for name, value in task["table"].iloc[1:, 0].items():
        rows.append((f"  baseline: {name}", float(value), ""))
    table = pd.DataFrame(rows, columns=["measure", "value", "time"]).set_index("measure")
    notes = [
        "Steps of the default model: 64 sets x 100 cells, flow-matching generator, Adam. Target of the covariance task: "
        "Spearman >= 0.95 within 10 minutes of training; " + task["title"] + "."
    ]
    return table, notes


# ---------------------------------------------------------------------------------------------- 4. distances
def gaussian_family(n_sets: int, rng: np.random.Generator, dim: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Means on a 2-D plane and covariances with 2 log-spectrum directions, in a fixed random basis of R^dim.

    Fixed across calls (seed 0); only the per-set parameters ``theta ~ U[-1, 1]^4`` come from ``rng``
    (see :func:`family_moments`). About half of the variation of W2^2 comes from the covariances, so
    means alone rank the pairs poorly.
    """
    return family_moments(rng.uniform(-1, 1, size=(n_sets, 4)), dim)


def family_moments(theta: np.ndarray, dim: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances of the family at parameters ``theta (n, 4)``: 0-1 move the mean, 2-3 the spectrum."""
    base = np.random.default_rng(0)
    basis, _ = np.linalg.qr(base.normal(size=(dim, dim)))
    a, b = (v / np.linalg.norm(v) * np.sqrt(dim) for v in base.normal(size=(2, dim)))
    means = theta[:, [0]] * basis[:, 0] + theta[:, [1]] * basis[:, 1]
    spectra = np.exp(0.3 * (theta[:, [2]] * a + theta[:, [3]] * b))
    covs = np.einsum("ij,kj,lj->kil", basis, spectra, basis)
    return means, covs


def _draw(means, covs, size: int, rng) -> np.ndarray:
    return np.stack([rng.multivariate_normal(m, c, size=size, method="cholesky") for m, c in zip(means, covs)])


def distances_part(args) -> tuple[pd.DataFrame, list[str]]:
    import ot
    import torch
    from geomloss import SamplesLoss
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    import scgde

    rng = np.random.default_rng(args.seed)
    k, size, dim = (40, 500, 50) if args.quick else (200, 2000, 50)
    n_pairs_emd, n_pairs_sinkhorn = (3, 10) if args.quick else (40, 80)
    means, covs = gaussian_family(k, rng, dim)
    sets = _draw(means, covs, size, rng).astype(np.float32)
    truth = scgde.metrics.gaussian_w2(means, covs, means, covs, paired=False)[np.triu_indices(k, 1)]
    n_all = k * (k - 1) // 2
    # scgde: a default model trained on other sets of the family (training time reported apart)
    train_means, train_covs = gaussian_family(k, rng, dim)
    train = _sets_adata(_draw(train_means, train_covs, size, rng).reshape(-1, dim).astype(np.float32), k)
    query = _sets_adata(sets.reshape(-1, dim), k)
    train_s, embed_s, latents = [], [], []
    for model_kwargs, train_kwargs in (({}, {}), (COVARIANCE_MODEL, COVARIANCE_TRAIN)):
        [z], fit_s, embedding_s = fit_and_embed(train, [query], model_kwargs, train_kwargs, args.quick)
        start = time.perf_counter()
        latents.append(pdist(z))
        train_s.append(fit_s)
        embed_s.append(embedding_s + time.perf_counter() - start)  # embed all sets + pdist
    (latent, latent_cov), gde_s = latents, embed_s[0]
    # the same random pairs for every estimator that cannot afford all of them
    pairs = rng.choice(n_all, size=n_pairs_sinkhorn, replace=False)
    rows_i, cols_j = np.triu_indices(k, 1)
    uniform = np.full(size, 1.0 / size)

    def emd(p):
        i, j = rows_i[p], cols_j[p]
        return float(np.sqrt(ot.emd2(uniform, uniform, ot.dist(sets[i], sets[j]), numItermax=10**7)))

    start = time.perf_counter()
    emd_values = np.array([emd(p) for p in pairs[:n_pairs_emd]])
    emd_s = (time.perf_counter() - start) / n_pairs_emd * n_all
    sinkhorn_loss = SamplesLoss("sinkhorn", p=2, blur=0.5, scaling=0.8, debias=True, backend="tensorized")
    tensors = torch.from_numpy(sets)
    start = time.perf_counter()
    sink = np.array(
        [float(sinkhorn_loss(tensors[rows_i[p]], tensors[cols_j[p]])) for p in pairs]
    )  # S_eps ~ W2^2 / 2 (geomloss's p=2 cost is |x-y|^2 / 2)
    sinkhorn_s = (time.perf_counter() - start) / len(pairs) * n_all
    sink = np.sqrt(np.clip(2 * sink, 0, None))
    start = time.perf_counter()
    set_means = sets.mean(1)
    mean_dist = pdist(set_means)
    means_s = time.perf_counter() - start
    start = time.perf_counter()
    sample_covs = np.stack([np.cov(s.T) for s in sets.astype(np.float64)])
    plug_in = scgde.metrics.gaussian_w2(set_means, sample_covs, set_means, sample_covs, paired=False)[
        np.triu_indices(k, 1)
    ]
    plug_in_s = time.perf_counter() - start

    def rho(values, where=slice(None)):
        return float(spearmanr(values, truth[where]).statistic)

    emd_pairs = pairs[:n_pairs_emd]
    rows = [
        ("scgde: embed all sets + cdist", gde_s, 1.0, rho(latent), rho(latent[emd_pairs], emd_pairs), "all pairs"),
        (
            "scgde, covariance configuration: embed all sets + cdist",
            embed_s[1],
            embed_s[1] / gde_s,
            rho(latent_cov),
            rho(latent_cov[emd_pairs], emd_pairs),
            "all pairs",
        ),
        ("exact EMD (ot.emd2)", emd_s, emd_s / gde_s, np.nan, rho(emd_values, emd_pairs), f"{n_pairs_emd} pairs timed"),
        (
            "Sinkhorn divergence (geomloss, blur 0.5)",
            sinkhorn_s,
            sinkhorn_s / gde_s,
            rho(sink, pairs),
            rho(sink[:n_pairs_emd], emd_pairs),
            f"{len(pairs)} pairs timed",
        ),
        (
            "baseline: set means + cdist",
            means_s,
            means_s / gde_s,
            rho(mean_dist),
            rho(mean_dist[emd_pairs], emd_pairs),
            "all pairs",
        ),
        (
            "baseline: plug-in Gaussian W2 (oracle of the family)",
            plug_in_s,
            plug_in_s / gde_s,
            rho(plug_in),
            rho(plug_in[emd_pairs], emd_pairs),
            "all pairs",
        ),
    ]
    cols = [
        "method",
        "time for all pairs (s)",
        "time / scgde",
        "Spearman (all pairs or its sample)",
        "Spearman (EMD's pairs)",
        "pairs",
    ]
    table = pd.DataFrame(rows, columns=cols).set_index("method")
    notes = [
        f"K = {k} sets x {size} cells in {dim}-D, {n_all:,} pairs; Spearman with the true W2 (closed form). Times of "
        "EMD and Sinkhorn extrapolated from the pairs timed (the same random pairs for both); the first Spearman "
        "column is over all pairs where they were computed, else over the timed sample.",
        f"scgde's models, trained on {k} other sets of the family (once per family; not in the times above): "
        f"GDE(adata) with train() and no arguments {train_s[0]:.0f} s; the covariance configuration "
        f"GDE(adata, {', '.join(f'{key}={value!r}' for key, value in COVARIANCE_MODEL.items())}) with "
        f"train({', '.join(f'{key}={value!r}' for key, value in COVARIANCE_TRAIN.items())}) {train_s[1]:.0f} s"
        + (" (--quick: both trained for 2 epochs of 5 batches instead)." if args.quick else "."),
    ]
    return table, notes


# ---------------------------------------------------------------------------------------------- driver
def run(args) -> dict:
    import torch

    parts = {
        "encoder": encoder_part,
        "stream": stream_part,
        "backed": backed_part,
        "train": train_part,
        "distances": distances_part,
    }
    titles = {
        "encoder": "Encoder throughput against the matmul roofline",
        "stream": "Streaming one big set from a backed .h5ad",
        "backed": "Training and embedding on a backed .h5ad larger than memory would allow densified",
        "train": "Training",
        "distances": "The distance-matrix job: scgde against pairwise OT",
    }
    out, tables = ["## Speed and scale on one machine", ""], {}
    for name in args.parts:
        start = time.perf_counter()
        table, notes = parts[name](args)
        tables[name] = table
        section = [f"### {titles[name]} ({time.perf_counter() - start:.0f} s)", "", _common.markdown_table(table), ""]
        out += [*section, *notes, ""]
        print("\n".join([*section, *notes, ""]), file=sys.stderr, flush=True)  # each part as soon as it is done
    out += [
        f"Machine: {_common.machine()}; {torch.get_num_threads()} torch thread(s).",
        f"Command: `python -m benchmarks.speed{' --quick' if args.quick else ''} --parts {' '.join(args.parts)}`",
    ]
    return {"tables": tables, "markdown": "\n".join(out)}


def main(argv: list[str] | None = None) -> dict | None:
    """Command line: run the parts, print their tables; returns them (``None`` in the streaming child)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and short trainings (a smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--n-stream", type=int, default=2_000_000, help="cells of the streamed set")
    parser.add_argument("--workdir", default="/tmp/scgde_bench", help="where the backed file is written (reused)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-mib", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n-backed", type=int, default=5_000_000, help="cells of the backed training file")
    parser.add_argument("--backed-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with _common.quiet(), _common.pinned_threads(args.threads):
        if args.child:
            stream_child(args.child, args.cache_mib)
            return None
        if args.backed_child:
            backed_child(args.backed_child, args.steps)
            return None
        result = run(args)
    result["wall_s"] = time.perf_counter() - start
    print(result["markdown"])
    print(f"\nWall time: {result['wall_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
