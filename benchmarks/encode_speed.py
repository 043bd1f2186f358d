"""Encoding speed and streaming memory of the default encoder.

1. Throughput (cells/s) of the default ``resnet`` encoder at 2,000 genes, for the raw encoder on
   dense tensors and end to end through ``GDE.get_set_representation`` (in-memory AnnData).
2. Peak memory while streaming ONE set of ``--n-cells`` cells (default 2M) from a backed ``.h5ad``
   (CSR), measured in a fresh process (``ru_maxrss``), beside the same process's memory before the
   encoding starts (imports + model) and the size of the matrix itself.

Usage: python -m benchmarks.encode_speed [--n-cells 2000000] [--workdir /tmp/scgde_bench] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common

N_GENES = 2000
REPO = Path(__file__).resolve().parents[1]
#: the encoder measured (the library's defaults when the numbers were recorded); the generator is never called
ARCH = {"encoder": "resnet", "n_latent": 64, "n_hidden": 128, "generator": "cvae"}


def rss_mib() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, it does not carry the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_model(adata):
    return _common.make_model(adata, seed=0, **ARCH)


def throughput(n_cells: int) -> dict:
    import anndata as ad
    import pandas as pd
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_cells, N_GENES)).astype(np.float32)
    obs = pd.DataFrame({"set": np.repeat([f"s{i}" for i in range(n_cells // 1000)], 1000)})
    adata = ad.AnnData(x, obs=obs)
    model = make_model(adata)
    enc = model.module.encoder.eval()
    n_sets = min(100, n_cells // 1000)  # 100 sets of 1,000 cells (fewer in --quick)
    xt = torch.from_numpy(x[: n_sets * 1000]).reshape(n_sets, 1000, N_GENES)
    with torch.inference_mode():
        enc(xt[:2])
        start = time.perf_counter()
        enc(xt)
        raw = xt.shape[0] * xt.shape[1] / (time.perf_counter() - start)
    start = time.perf_counter()
    model.get_set_representation()
    end_to_end = n_cells / (time.perf_counter() - start)
    return {"encoder cells/s (dense tensors)": raw, "get_set_representation cells/s": end_to_end}


def write_backed(
    path: Path, n_cells: int, density: float, chunk: int = 100_000, n_sets: int = 1, log_values: bool = False
) -> float:
    """Write a CSR .h5ad chunk by chunk (never holding the matrix); returns its size in GiB.

    ``n_sets`` equal consecutive sets in ``obs["set"]`` (one: ``"one_big_set"``); ``log_values``: stored entries
    ``log1p(10 u)`` (log-expression-like) instead of uniform ``u``.
    """
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import write_elem

    rng = np.random.default_rng(0)
    names = np.array(["one_big_set"] if n_sets == 1 else [f"s{i}" for i in range(n_sets)])
    sets = pd.Categorical(names[np.arange(n_cells) * n_sets // n_cells], categories=names)
    obs = pd.DataFrame({"set": sets}, index=[f"c{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)])
    ad.AnnData(obs=obs, var=var).write_h5ad(path)

    def block(rows: int):
        out = sp.random(rows, N_GENES, density=density, format="csr", dtype=np.float32, random_state=rng)
        if log_values:
            out.data = np.log1p(10 * out.data).astype(np.float32)
        return out

    with h5py.File(path, "a") as f:
        write_elem(f, "X", block(min(chunk, n_cells)))
        X = ad.io.sparse_dataset(f["X"])
        for start in range(chunk, n_cells, chunk):
            X.append(block(min(chunk, n_cells - start)))
    return path.stat().st_size / 2**30


def stream_child(path: str) -> None:
    """Run in a fresh process: embed the single big set from the backed file, report memory."""
    import anndata as ad
    import pandas as pd

    adata = ad.read_h5ad(path, backed="r")
    # the model is set up on a small two-set AnnData with the same genes; any AnnData can be embedded afterwards
    reference = ad.AnnData(
        np.zeros((4, adata.n_vars), dtype=np.float32),
        obs=pd.DataFrame({"set": ["a", "a", "b", "b"]}, index=[f"r{i}" for i in range(4)]),
        var=pd.DataFrame(index=adata.var_names),
    )
    model = make_model(reference)
    before = rss_mib()
    start = time.perf_counter()
    emb = model.get_set_representation(adata)  # default chunk size
    seconds = time.perf_counter() - start
    assert np.isfinite(emb.to_numpy()).all()
    print(json.dumps({"rss_before_mib": before, "peak_rss_mib": rss_mib(), "seconds": seconds, "n_cells": adata.n_obs}))


def _measure(args: argparse.Namespace) -> dict:
    """Throughput here, streaming memory in a fresh process; prints and returns the measures."""
    n_stream = 20_000 if args.quick else args.n_cells
    tp = throughput(20_000 if args.quick else 200_000)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"one_set_{n_stream}.h5ad"
    if path.exists() and not args.rewrite:
        size_gib = path.stat().st_size / 2**30
        print(f"reusing {path} ({size_gib:.2f} GiB); --rewrite makes a new one")
    else:
        start = time.perf_counter()
        size_gib = write_backed(path, n_stream, args.density)
        print(f"wrote {path} ({size_gib:.2f} GiB) in {time.perf_counter() - start:.0f} s")
    child = [sys.executable, "-m", "benchmarks.encode_speed", "--child", str(path), "--threads", str(args.threads)]
    out = subprocess.run(child, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"the streaming child process failed:\n{out.stderr}")
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    print("\n| measure | value |\n|---|---|")
    for k, v in tp.items():
        print(f"| {k} | {v:,.0f} |")
    print(
        f"| streamed set | {mem['n_cells']:,} cells x {N_GENES} genes, backed CSR, density {args.density} ({size_gib:.2f} GiB on disk) |"
    )
    print(f"| streaming time | {mem['seconds']:.0f} s ({mem['n_cells'] / mem['seconds']:,.0f} cells/s, 3 passes) |")
    print(f"| RSS before encoding (imports + model) | {mem['rss_before_mib']:.0f} MiB |")
    print(f"| peak RSS while streaming | {mem['peak_rss_mib']:.0f} MiB |")
    print(f"| increase due to streaming | {mem['peak_rss_mib'] - mem['rss_before_mib']:.0f} MiB |")
    print(f"\n{_common.machine()}; {args.threads} torch/BLAS thread(s)")
    return {**tp, **mem, "size_gib": size_gib}


def main(argv: list[str] | None = None) -> dict | None:
    """Command line: measure, print the table; returns the measures (``None`` in the child process)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-cells", type=int, default=2_000_000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--workdir", default="/tmp/scgde_bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rewrite", action="store_true", help="write the backed file even if it exists")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (here and in the child)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with _common.quiet(), _common.pinned_threads(args.threads):
        if args.child:
            stream_child(args.child)
            return None
        return _measure(args)


if __name__ == "__main__":
    main()
