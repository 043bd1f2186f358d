"""Write the Kang 2018 held-out cell-type folds as plain .h5ad files for the peers (State, CellFlow).

Runs in scgde's own environment. The peers run in their own virtual environments and only read these files;
their predictions come back as ``<peers dir>/<peer>/<fold>.h5ad`` (see benchmarks/peers/README.md).

For each fold (``benchmarks/_kang.py``: genes = 1,000 HVGs of the training cells only) it writes to
``OUT/<fold>/``:

- ``train.h5ad``: every cell except the held-out type's stimulated cells;
- ``control.h5ad``: the held-out type's control cells (also in ``train.h5ad``), the peers' input at prediction;
- ``true.h5ad``: the held-out type's real stimulated cells (for sanity checks only; never given to a peer's
  training).

Each file has dense float32 log-normalised ``X`` (the fold's genes, in the fold's order), ``layers["counts"]``
(integer UMI counts as float32), ``obs["cell_type"]`` and ``obs["condition"]`` (``"control"`` /
``"stimulated"``) and nothing else, so any anndata version reads it.

Usage: python -m benchmarks.peers.export_folds [--data PATH] [--out DIR] [--folds NK B ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from benchmarks import _kang

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "kang2018_ifnb"


def _plain(adata: AnnData) -> AnnData:
    """A minimal copy: X, counts, two categorical obs columns, var names."""
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(adata.obs["cell_type"].astype(str).to_numpy()),
            "condition": pd.Categorical(adata.obs["condition"].astype(str).to_numpy()),
        },
        index=pd.Index(adata.obs_names.astype(str), name=None),
    )
    var = pd.DataFrame(index=pd.Index(adata.var_names.astype(str), name=None))
    out = AnnData(X=np.asarray(adata.X, dtype=np.float32), obs=obs, var=var)
    out.layers["counts"] = np.asarray(adata.layers["counts"], dtype=np.float32)
    return out


def export(adata: AnnData, held_out: str, out: Path, n_genes: int = 1000) -> dict:
    """Write one fold's three files under ``out / held_out`` and return a summary."""
    f = _kang.fold(adata, held_out, n_genes=n_genes)
    folder = out / held_out
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": f.train, "control": f.control, "true": f.true}
    for name, part in parts.items():
        _plain(part).write_h5ad(folder / f"{name}.h5ad")
    summary = {
        "held_out": held_out,
        "n_genes": int(f.train.n_vars),
        "n_train": int(f.train.n_obs),
        "n_control": int(f.control.n_obs),
        "n_true": int(f.true.n_obs),
        "x_max_train": float(f.train.X.max()),
    }
    (folder / "fold.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=str(SHARED) if SHARED.exists() else None,
        help="Kang 2018 .h5ad (or its folder); default: ../shared/data/kang2018_ifnb if present, else download",
    )
    parser.add_argument("--out", default="/tmp/peers_folds", help="output folder (one subfolder per fold)")
    parser.add_argument("--folds", nargs="+", default=_kang.CELL_TYPES, help="held-out cell types")
    parser.add_argument("--n-genes", type=int, default=1000, help="HVGs of the training cells")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.folds) - set(_kang.CELL_TYPES))
    if unknown:
        parser.error(f"--folds: unknown cell type(s) {unknown}; choose from {_kang.CELL_TYPES}")
    adata = _kang.load(args.data)
    out = Path(args.out)
    for held_out in args.folds:
        s = export(adata, held_out, out, n_genes=args.n_genes)
        print(
            f"{held_out}: {s['n_train']} training cells, {s['n_control']} control -> {s['n_true']} stimulated, "
            f"{s['n_genes']} genes -> {out / held_out}"
        )


if __name__ == "__main__":
    main()
