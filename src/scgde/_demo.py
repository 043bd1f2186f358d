"""The ``scgde demo`` job: real cells, sets of known composition, train, embed, plot, report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

#: explicit budgets (never the model's defaults, which may change). Expected seconds on 2 free CPU cores, from runs
#: on a shared 2-core machine at 1 torch thread: quick 38 s wall / 35 CPU-s; full 130 s wall / 75 CPU-s
BUDGETS = {
    "quick": {"n_sets": 60, "max_epochs": 3, "batches_per_epoch": 5, "expected_seconds": 30},
    "full": {"n_sets": 300, "max_epochs": 16, "batches_per_epoch": 16, "expected_seconds": 90},
}
MODEL = {"n_latent": 16, "encoder": "resnet", "generator": "flow"}
SETS_PER_BATCH, CELLS_PER_SET = 32, 64
FRACTION_LABEL = "fraction of the dominant type"


def _distance_correlation(features: np.ndarray, truth: np.ndarray) -> float:
    # many pairs share no cell type (L1 distance exactly 2): round so that float noise cannot break those ties
    return float(spearmanr(pdist(features), np.round(pdist(truth, "cityblock"), 9)).statistic)


def _composition_r2(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """R^2 of a ridge readout of the true composition (fitted on training sets, scored on new sets)."""
    from sklearn.linear_model import RidgeCV

    pred = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(train_x, train_y).predict(test_x)
    return float(1 - ((pred - test_y) ** 2).sum() / ((test_y - test_y.mean(0)) ** 2).sum())


def _compare(what: str, gde: float, means: float, tolerance: float = 0.01) -> str:
    """One sentence saying which representation did better in this run, with its numbers."""
    if abs(gde - means) <= tolerance:
        verdict = "about as well as"
    else:
        verdict = "better than" if gde > means else "worse than"
    return f"On {what}, the GDE set embedding did {verdict} set means ({gde:.3f} vs {means:.3f})."


def _set_obs(composition: pd.DataFrame, sizes: pd.Series) -> pd.DataFrame:
    """Set-level annotations only: size, dominant cell type and its true fraction."""
    return pd.DataFrame(
        {
            "n_cells": sizes.loc[composition.index].to_numpy(),
            "dominant_type": pd.Categorical(composition.idxmax(axis=1)),
            "dominant_fraction": composition.max(axis=1).to_numpy(),
        },
        index=composition.index,
    )


def _set_means(adata) -> pd.DataFrame:
    return pd.DataFrame(adata.X, index=adata.obs["set"].astype(str)).groupby(level=0).mean()


def _limit_threads() -> int:
    """At most one torch thread per core unless the user chose with OMP_NUM_THREADS."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    return torch.get_num_threads()


def _plot_sets(sets):
    """Set-level UMAP coloured by dominant cell type and by its fraction (labelled colour bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    sc.pl.umap(sets, color="dominant_type", ax=axes[0], show=False, title="sets: dominant cell type")
    umap = sets.obsm["X_umap"]
    points = axes[1].scatter(umap[:, 0], umap[:, 1], c=sets.obs["dominant_fraction"], cmap="viridis", s=25)
    fig.colorbar(points, ax=axes[1], label=FRACTION_LABEL)
    axes[1].set(title="sets: fraction of their dominant type", xlabel="UMAP1", ylabel="UMAP2", xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def _report_md(report: dict) -> str:
    quick_note = (
        "This was a quick smoke run: too little training for the numbers to mean much; run without --quick.\n\n"
        if report["quick"]
        else ""
    )
    return (
        "# scgde demo report\n\n"
        f"Training: {report['n_training_sets']} sets of real PBMCs (pbmc68k_reduced), each a Dirichlet mixture "
        "of 3 cell types.\n"
        f"Model: encoder={report['encoder']!r}, generator={report['generator']!r}, n_latent={report['n_latent']}; "
        f"{report['optimiser_steps']} optimiser steps ({report['epochs']} epochs x {report['batches_per_epoch']} "
        f"batches of {report['sets_per_batch']} sets x {report['cells_per_set']} cells), seed {report['seed']}, "
        f"{report['torch_threads']} torch thread(s).\n"
        f"Evaluation: {report['n_new_sets']} new sets, embedded without retraining "
        "(`held_out_sets.h5ad`, true compositions in `held_out_composition.csv`).\n\n"
        f"{quick_note}"
        "| representation | Spearman(distance, true composition L1 distance) | R^2 of a ridge readout of composition |\n"
        "|---|---|---|\n"
        f"| GDE set embedding | {report['spearman_latent_vs_composition']:.3f} | {report['composition_r2_latent']:.3f} |\n"
        f"| set means (baseline) | {report['spearman_set_means_vs_composition']:.3f} "
        f"| {report['composition_r2_set_means']:.3f} |\n\n"
        + _compare("distances", report["spearman_latent_vs_composition"], report["spearman_set_means_vs_composition"])
        + " "
        + _compare("the ridge readout", report["composition_r2_latent"], report["composition_r2_set_means"])
        + "\nSet means are a strong baseline here: the mean of a mixture is linear in its composition.\n\n"
        f"Final losses: train {report['final_train_loss']:.3f}, validation {report['final_validation_loss']:.3f}. "
        f"Wall time {report['seconds']} s.\n"
    )


def run_demo(out: str | Path, quick: bool = False, seed: int = 0) -> dict:
    """Train a GDE on sets of real PBMCs with known composition and write results to ``out``.

    Writes ``sets.h5ad`` (one observation per training set: embedding, UMAP, dominant type and its
    fraction), ``held_out_sets.h5ad`` (the same for the new sets, with their set means in
    ``obsm["X_set_mean"]``), ``held_out_composition.csv`` (their true compositions),
    ``set_umap.png``, ``report.json`` and ``report.md``. Latent distances between sets never seen
    in training are compared with their true composition distances (L1), beside the same number
    for set means alone; the report's verdicts are computed from this run's numbers.

    Parameters
    ----------
    out
        Output folder (created when the results are written).
    quick
        A short smoke run instead of the full one.
    seed
        Seed of the sets and of training.

    Returns
    -------
    The report (also in ``report.json``).
    """
    mode = "quick" if quick else "full"
    budget = BUDGETS[mode]
    print(
        f"[scgde demo] {mode} run: expected to take about {budget['expected_seconds']} s on 2 free CPU cores, "
        "longer on a busy machine (OMP_NUM_THREADS sets torch's thread count)."
    )
    start = time.perf_counter()
    threads = _limit_threads()
    import scanpy as sc
    import scvi

    from scgde.datasets import pbmc_composition_sets
    from scgde.model import GDE
    from scgde.tl import embed_sets, set_adata

    scvi.settings.seed = seed
    n_sets = budget["n_sets"]
    train = pbmc_composition_sets(n_sets=n_sets, cells_per_set=150, seed=seed)
    held_out = pbmc_composition_sets(n_sets=max(20, n_sets // 4), cells_per_set=150, seed=seed + 1)
    print(
        f"[scgde demo] {n_sets} training sets and {held_out.obs['set'].nunique()} new sets of real PBMCs "
        f"({train.n_vars} genes), each a Dirichlet mixture of 3 cell types."
    )

    GDE.setup_anndata(train, set_key="set")
    model = GDE(train, **MODEL)
    model.train(
        max_epochs=budget["max_epochs"],
        batches_per_epoch=budget["batches_per_epoch"],
        sets_per_batch=SETS_PER_BATCH,
        cells_per_set=CELLS_PER_SET,
    )

    embed_sets(model)
    sets = set_adata(train)
    comp = train.uns["composition"].loc[sets.obs_names]
    sets.obs = _set_obs(comp, sets.obs["n_cells"])
    sc.pp.neighbors(sets, use_rep="X_gde", n_neighbors=min(15, sets.n_obs - 1))
    sc.tl.umap(sets, random_state=seed)

    # held-out sets: embedded without retraining, compared with the truth and with set means
    z_new = model.get_set_representation(held_out)
    truth_df = held_out.uns["composition"].loc[z_new.index]
    truth = truth_df.to_numpy()
    means = _set_means(held_out).loc[z_new.index]
    z_train = train.uns["gde"]["embedding"]
    truth_train = train.uns["composition"].loc[z_train.index].to_numpy()
    report = {
        "mode": mode,
        "quick": quick,
        "seed": seed,
        **MODEL,
        "epochs": int(model.trainer.current_epoch),
        "batches_per_epoch": budget["batches_per_epoch"],
        "sets_per_batch": SETS_PER_BATCH,
        "cells_per_set": CELLS_PER_SET,
        "optimiser_steps": int(model.trainer.global_step),
        "torch_threads": threads,
        "n_training_sets": n_sets,
        "n_new_sets": len(z_new),
        "spearman_latent_vs_composition": _distance_correlation(z_new.to_numpy(), truth),
        "spearman_set_means_vs_composition": _distance_correlation(means.to_numpy(), truth),
        "composition_r2_latent": _composition_r2(z_train.to_numpy(), truth_train, z_new.to_numpy(), truth),
        "composition_r2_set_means": _composition_r2(
            _set_means(train).loc[z_train.index].to_numpy(), truth_train, means.to_numpy(), truth
        ),
        "final_train_loss": float(model.history["train_loss"].iloc[-1, 0]),
        "final_validation_loss": float(model.history["validation_loss"].iloc[-1, 0]),
    }

    import anndata as ad

    sizes = held_out.obs["set"].astype(str).value_counts()
    new_sets = ad.AnnData(z_new.to_numpy(), obs=_set_obs(truth_df, sizes))
    new_sets.var_names = z_new.columns
    new_sets.obsm["X_gde"] = z_new.to_numpy()
    new_sets.obsm["X_set_mean"] = means.to_numpy()

    fig = _plot_sets(sets)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # only once there are results
    fig.savefig(out / "set_umap.png", dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    sets.write_h5ad(out / "sets.h5ad")
    new_sets.write_h5ad(out / "held_out_sets.h5ad")
    truth_df.to_csv(out / "held_out_composition.csv")
    report["seconds"] = round(time.perf_counter() - start, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_report_md(report))
    print(
        "[scgde demo] "
        + _compare("distances", report["spearman_latent_vs_composition"], report["spearman_set_means_vs_composition"])
    )
    print(
        f"[scgde demo] wrote {out / 'sets.h5ad'}, {out / 'held_out_sets.h5ad'}, {out / 'set_umap.png'}, "
        f"{out / 'report.md'} in {report['seconds']} s"
    )
    return report
