"""Spatial niches: does a niche's embedding carry more than the cell itself or its neighbourhood's mean?

Every cell's niche is its 30 nearest spatial neighbours, Gaussian-weighted
(``scgde.tl.niche_sets``); a GDE set up with ``niche_key`` is trained with ``train()``'s defaults and
embeds every niche (``scgde.tl.embed_niches``). Each representation predicts a held-out cell's label
or position (5-fold cross-validation; logistic regression for labels, 10-nearest-neighbour regression
for positions, on standardised features), and k-means with as many clusters as labels gives domains
compared to the labels by ARI. Where cells have positions the folds hold out whole spatial blocks (25
k-means tiles of the coordinates), so that a held-out cell's niche barely overlaps training niches;
the intestine's expression neighbourhoods use random folds. Representations, all from the same niches:

- **GDE niche embedding** (``n_latent`` dimensions);
- **own expression**: the cell's own row;
- **neighbourhood mean**: the niche-weighted mean expression (the obvious baseline);
- **neighbourhood mean + variance**: the niche-weighted mean and per-gene variance (second moments).

Data:

- **planted niches** (``scgde.datasets.niche_tissue``, 3,000 cells, 20 genes): three stripes whose
  cell-type *mixtures* differ (A+B, C+D, A+B+C+D) while their mean expression is the same, so the
  neighbourhood mean must fail and a cell's own type is shared by two domains;
- **BDTNP embryo** (``../shared/data/spatial_bdtnp_novosparc``: 3,039 cells, 84 genes, 3-D positions):
  predict the held-out cell's (x, y, z) (mean R^2 over the axes);
- **intestine zonation** (``../shared/data/intestine_zonation_novosparc``: 1,383 cells, 7 crypt-villus
  zones; no measured positions, so the "niches" are expression neighbourhoods: 30 nearest cells in
  30 principal components of 500 log-normalised HVGs): predict the zone.

Scale (``--only-scale``): niches of a 1,000,000-cell simulated tissue (20 genes, 30 neighbours) are built and all
embedded with an untrained default GDE (the cost does not depend on the weights); time, the process's peak
resident memory (data included) beside the size of X, and the largest difference between streamed rows and the
encoder run on 50 niches' weighted cells directly.

Usage: python -m benchmarks.niches [--quick] [--seed 0] [--tasks planted bdtnp intestine] [--only-scale [--scale-cells N]]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GroupKFold, KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import scgde
from benchmarks import _common

TITLE = "Spatial niches: niche embeddings against the cell and its neighbourhood mean"
N_NEIGHBORS = 30
TASKS = ("planted", "bdtnp", "intestine")
#: the folder holding spatial_bdtnp_novosparc/ and intestine_zonation_novosparc/ (beside the repository)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def representations(adata, model) -> dict[str, np.ndarray]:
    """The four representations of every cell, from the same niche weights."""
    x = _dense(adata.X)
    w = adata.obsp["gde_niches"]
    w = sp.diags(1.0 / np.asarray(w.sum(1)).ravel()) @ w  # each niche's weights as a distribution
    mean = np.asarray(w @ x)
    var = np.asarray(w @ x**2) - mean**2
    scgde.tl.embed_niches(model, progress_bar=False)
    return {
        "GDE niche embedding": adata.obsm["X_gde_niche"],
        "own expression": x,
        "neighbourhood mean": mean,
        "neighbourhood mean + variance": np.hstack([mean, var]),
    }


def tiles(coords: np.ndarray, seed: int, n_tiles: int = 25) -> np.ndarray:
    """Spatial blocks (k-means of the coordinates): held-out cells' niches then barely overlap training niches."""
    return KMeans(n_tiles, n_init=3, random_state=seed).fit_predict(np.asarray(coords))


def _folds(groups: np.ndarray | None, seed: int):
    return KFold(5, shuffle=True, random_state=seed) if groups is None else GroupKFold(5)


def label_scores(features: np.ndarray, labels: np.ndarray, seed: int, groups=None) -> tuple[float, float]:
    """Held-out accuracy (5-fold logistic regression, blocked by ``groups``) and k-means ARI against the labels."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pred = cross_val_predict(clf, features, labels, cv=_folds(groups, seed), groups=groups)
    accuracy = float((pred == labels).mean())
    scaled = StandardScaler().fit_transform(features)
    k = len(np.unique(labels))
    ari = adjusted_rand_score(labels, KMeans(k, n_init=10, random_state=seed).fit_predict(scaled))
    return accuracy, float(ari)


def position_r2(features: np.ndarray, positions: np.ndarray, seed: int, groups=None) -> float:
    """Held-out R^2 of the positions (5-fold blocked by ``groups``, 10-NN regression), mean over axes."""
    reg = make_pipeline(StandardScaler(), KNeighborsRegressor(10))
    pred = cross_val_predict(reg, features, positions, cv=_folds(groups, seed), groups=groups)
    ss_res = ((positions - pred) ** 2).sum(0)
    ss_tot = ((positions - positions.mean(0)) ** 2).sum(0)
    return float(np.mean(1 - ss_res / ss_tot))


def fit_niches(adata, args, spatial_key: str = "spatial"):
    """Niches, a default GDE on them, trained with train()'s defaults (a short budget in quick mode)."""
    scgde.tl.niche_sets(adata, spatial_key=spatial_key, n_neighbors=N_NEIGHBORS)
    scgde.model.GDE.setup_anndata(adata, niche_key="gde_niches")
    import scvi

    scvi.settings.seed = args.seed
    model = scgde.model.GDE(adata)
    budget = {"max_epochs": 3, "batches_per_epoch": 10} if args.quick else {}
    start = time.perf_counter()
    model.train(enable_progress_bar=False, **budget)
    return model, time.perf_counter() - start


def planted(args) -> tuple[pd.DataFrame, float]:
    adata = scgde.datasets.niche_tissue(n_cells=600 if args.quick else 3000, seed=args.seed)
    model, seconds = fit_niches(adata, args)
    labels = adata.obs["domain"].to_numpy().astype(str)
    groups = tiles(adata.obsm["spatial"], args.seed)
    rows = {name: label_scores(f, labels, args.seed, groups) for name, f in representations(adata, model).items()}
    return pd.DataFrame(rows, index=["domain accuracy", "domain ARI (k-means)"]).T, seconds


def bdtnp(args) -> tuple[pd.DataFrame, float]:
    adata = scgde.datasets.bdtnp_embryo(Path(args.data) / "spatial_bdtnp_novosparc")
    if args.quick:
        adata = adata[:600].copy()
    model, seconds = fit_niches(adata, args)
    xyz = np.asarray(adata.obsm["spatial"])
    groups = tiles(xyz, args.seed)
    rows = {name: [position_r2(f, xyz, args.seed, groups)] for name, f in representations(adata, model).items()}
    return pd.DataFrame(rows, index=["position R^2 (x, y, z)"]).T, seconds


def intestine(args) -> tuple[pd.DataFrame, float]:
    adata = scgde.datasets.intestine_zonation(Path(args.data) / "intestine_zonation_novosparc")
    if args.quick:
        adata = adata[:400].copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=300 if args.quick else 500)
    adata = adata[:, adata.var["highly_variable"]].copy()
    adata.X = _dense(adata.X).astype(np.float32)
    sc.pp.pca(adata, n_comps=30, random_state=args.seed)
    model, seconds = fit_niches(adata, args, spatial_key="X_pca")
    zones = adata.obs["zone"].to_numpy().astype(str)
    rows = {name: label_scores(f, zones, args.seed) for name, f in representations(adata, model).items()}
    return pd.DataFrame(rows, index=["zone accuracy", "zone ARI (k-means)"]).T, seconds


def scale(args) -> pd.DataFrame:
    """Niches of a large tissue: building them (squidpy graph + kernel), embedding all of them, memory, exactness."""
    import resource

    import torch

    n_cells = 20_000 if args.quick else args.scale_cells
    adata = scgde.datasets.niche_tissue(n_cells=n_cells, n_genes=20, seed=args.seed)
    start = time.perf_counter()
    scgde.tl.niche_sets(adata, n_neighbors=N_NEIGHBORS)
    build_s = time.perf_counter() - start
    scgde.model.GDE.setup_anndata(adata, niche_key="gde_niches")
    model = scgde.model.GDE(adata)  # untrained: the cost of embedding does not depend on the weights
    start = time.perf_counter()
    emb = model.get_set_representation(progress_bar=False).to_numpy()
    embed_s = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the whole process, data included
    # exactness: random niches against the encoder on their weighted cells directly
    w = adata.obsp["gde_niches"]
    picks = np.random.default_rng(args.seed).choice(n_cells, size=50, replace=False)
    worst = 0.0
    with torch.no_grad():
        for i in picks:
            row = w[i]
            x = torch.as_tensor(np.asarray(adata.X[row.indices]))[None]
            z = model.module.embed(x, torch.as_tensor(row.data, dtype=torch.float32)[None])[0].numpy()
            worst = max(worst, float(np.abs(z - emb[i]).max()))
    return pd.DataFrame(
        {
            "cells": [n_cells],
            "niche members": [int(w.nnz)],
            "niche_sets s": [round(build_s, 1)],
            "embed all niches s": [round(embed_s, 1)],
            "niches / s": [round(n_cells / embed_s)],
            "process peak RSS (GB)": [round(peak_gb, 2)],
            "X (GB)": [round(adata.X.nbytes / 2**30, 2)],
            "max |streamed - direct| (50 niches)": [f"{worst:.1e}"],
        },
        index=pd.Index(["default GDE, 20 genes, 30 neighbours"], name="job"),
    )


def run(args) -> dict:
    parts, tables = [f"## {TITLE}", ""], {}
    if args.only_scale:
        tables["scale"] = scale(args)
        parts += ["### Scale", "", _common.markdown_table(tables["scale"]), ""]
    tasks = {"planted": ("planted niches", planted), "bdtnp": ("BDTNP embryo", bdtnp)}
    tasks["intestine"] = ("intestine zonation", intestine)
    for key in [] if args.only_scale else args.tasks:
        name, task = tasks[key]
        table, seconds = task(args)
        table.index.name = "representation"
        tables[name] = table
        parts += [f"### {name} (GDE training {seconds:.0f} s)", "", _common.markdown_table(table), ""]
    flags = (" --quick" if args.quick else "") + (
        f" --only-scale --scale-cells {args.scale_cells}" if args.only_scale else ""
    )
    if not args.only_scale and tuple(args.tasks) != TASKS:
        flags += " --tasks " + " ".join(args.tasks)
    parts += [f"Machine: {_common.machine()}.", f"Command: `python -m benchmarks.niches{flags} --seed {args.seed}`"]
    return {"tables": tables, "markdown": "\n".join(parts)}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the three tasks and print the tables; returns them (with ``markdown``, ``wall_s``)."""

    def extra(parser):
        parser.add_argument("--only-scale", action="store_true", help="only the scale job: embed every niche")
        parser.add_argument("--scale-cells", type=int, default=1_000_000, help="cells of the scale job")
        parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to run")
        parser.add_argument("--data", default=str(DATA), help="the shared data folder (both real datasets' folders)")

    return _common.run_cli(__doc__, run, argv, "small data and a short training (a smoke test)", extra)


if __name__ == "__main__":
    main()
