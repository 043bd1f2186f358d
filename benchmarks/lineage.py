"""LARRY lineage tracing: does a clone's early embedding carry information about its late state?

Sets are (clone, day) groups. For GDE and each baseline (pseudobulk mean of PCA, early cell-state
composition, an untrained encoder of the same architecture) we report, over repeated seeds:
KSG mutual information (bits) between each clone's early (day 2 + 4) and late (day 6)
representation with a permutation p-value, and the error of predicting a clone's late cell-state
composition from its early representation (held-out clones, 5-fold CV), beside the trivial
"training mean composition".

Runs on the subset in ../shared/data/larry_cospar_subset (781 cells); pass --data for the full
LARRY data (scgde.datasets.weinreb2020()).

Usage: python -m benchmarks.lineage [--data PATH] [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

import scgde
from benchmarks import _common

SUBSET = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "larry_cospar_subset"
    / "test_adata_preprocessed.h5ad"
)
EARLY, LATE = ["2", "4"], ["6"]
SETS_PER_BATCH, CELLS_PER_SET, TRAIN_SIZE = 32, 16, 0.9


def load(path: str | None) -> ad.AnnData:
    if path is None:
        adata = ad.read_h5ad(SUBSET)
        scgde.pp.clones_from_matrix(adata, "X_clone", key_added="clone")
        adata.obs["time"] = adata.obs["time_info"].astype(str)
        adata.obs["state"] = adata.obs["state_info"].astype(str)
        if "highly_variable" in adata.var:
            adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
        sc.pp.log1p(adata)
        sc.pp.scale(adata, max_value=10)  # as in the paper's preprocessing
    else:
        adata = ad.read_h5ad(path)
    adata.X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    sc.pp.pca(adata, n_comps=30)
    return adata


def evaluate(name: str, data, args, seed: int, representation=None) -> dict:
    info = scgde.tl.clone_information(
        data,
        "clone",
        "time",
        EARLY,
        LATE,
        representation=representation,
        state_key="state",
        n_components=args.n_components,
        n_permutations=args.n_permutations,
        key_added=None,
        seed=seed,
    )
    scores, _ = scgde.tl.predict_fate(
        data, "clone", "time", "state", EARLY, LATE, representation=representation, method="ridge", seed=seed
    )
    return {
        "representation": name,
        "seed": seed,
        "MI (bits)": info["mi"],
        "p-value": info["p_value"],
        "null mean (bits)": float(np.mean(info["null"])),
        "fate TV": scores["tv"].mean(),
        "fate TV, training mean": scores["tv_mean_baseline"].mean(),
        "clones": info["n_clones"],
    }


def fit(adata: ad.AnnData, args, seed: int) -> tuple:
    """The trained GDE (resnet + cvae), its untrained counterpart (built just before it) and the training time."""
    arch = {"generator": "cvae", "encoder": "resnet", "n_latent": args.n_latent, "n_hidden": 128}
    untrained = _common.make_model(adata, set_key=["clone", "time"], seed=seed, **arch)
    # built right after the untrained one from the same random stream, as when the numbers were recorded
    model = _common.make_model(adata, set_key=None, seed=None, **arch)
    in_sets = int((adata.obs["clone"].notna() & adata.obs["time"].notna()).sum())
    # the subset's clones have ~1 early cell each: without early stopping the validation loss explodes
    train_s = _common.train(
        model,
        epochs=args.max_epochs,
        batches_per_epoch=_common.one_pass(round(TRAIN_SIZE * in_sets), SETS_PER_BATCH, CELLS_PER_SET),
        sets_per_batch=SETS_PER_BATCH,
        cells_per_set=CELLS_PER_SET,
        train_size=TRAIN_SIZE,
        lr_schedule="cosine",
        early_stopping=True,
        early_stopping_patience=10,
    )
    return model, untrained, train_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--n-latent", type=int, default=16)
    parser.add_argument("--n-components", type=int, default=8)
    parser.add_argument("--n-permutations", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.max_epochs, args.n_permutations = args.seeds[:1], 2, 10
    rows = []
    # tiny networks: one thread is as fast and does not fight other jobs for cores
    with _common.quiet(), _common.pinned_threads(1):
        adata = load(args.data)
        for seed in args.seeds:
            model, untrained, train_s = fit(adata, args, seed)
            rows.append({**evaluate("GDE", model, args, seed), "train (s)": train_s})
            rows.append(evaluate("untrained encoder", untrained, args, seed))
            rows.append(evaluate("pseudobulk (PCA mean)", adata, args, seed, "pseudobulk"))
            rows.append(evaluate("cell-state composition", adata, args, seed, "composition"))
    table = pd.DataFrame(rows)
    summary = table.groupby("representation", sort=False).agg(["mean", "std"]).drop(columns=["seed"], level=0)
    summary.columns = [f"{a} ({b})" for a, b in summary.columns]
    print(f"machine: {_common.machine()}; seeds {args.seeds}; early days {EARLY}, late {LATE}")
    shown = [c for c in summary.columns if "(mean)" in c or c.startswith("MI (bits) (std")]
    print(_common.markdown_table(summary[shown]))
    return {"rows": table, "summary": summary}


if __name__ == "__main__":
    main()
