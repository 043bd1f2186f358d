"""The four tasks of ``benchmarks/defaults.py``; each trains ``GDE(adata)`` with ``train()`` and no arguments."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV

import scgde
from benchmarks import _common

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KANG = SHARED / "kang2018_ifnb" / "kang2018_valid.h5ad"


# GDE(adata, **MODEL_KWARGS): empty for the default model (``defaults.py --model-kwargs`` compares others)
MODEL_KWARGS: dict = {}


def default_fit(adata, set_key, quick: bool):
    """The default model, trained with no arguments (``quick``: a two-epoch smoke run instead)."""
    scgde.model.GDE.setup_anndata(adata, set_key=set_key)
    model = scgde.model.GDE(adata, **MODEL_KWARGS)
    start = time.perf_counter()
    if quick:
        model.train(max_epochs=2, batches_per_epoch=3)
    else:
        model.train()
    return model, time.perf_counter() - start


def realism(real: np.ndarray, generated: np.ndarray) -> dict:
    """Do generated cells look like cells? Negative entries, per-gene zero fractions and variance ratios."""
    keep = real.var(0) > 1e-8
    zero_diff = np.abs((generated == 0).mean(0) - (real == 0).mean(0))
    ratio = generated.var(0)[keep] / real.var(0)[keep]
    return {
        "negative entries": float(np.mean(generated < 0)),
        "max |zero-fraction diff|": float(zero_diff.max()),
        "median |zero-fraction diff|": float(np.median(zero_diff)),
        "median variance ratio": float(np.median(ratio)),
        "genes with variance ratio in [0.67, 1.5]": float(np.mean((ratio >= 0.67) & (ratio <= 1.5))),
    }


def covariance_sets(quick: bool, seed: int) -> dict:
    """(a) 2-D Gaussians whose covariances matter: Spearman of latent L2 with the true W2 on held-out sets."""
    cfg = {"dim": 2, "mean_range": (0.0, 1.0), "df": 5.0}
    n_train, n_test, size = (200, 40, 100) if quick else (2000, 300, 500)
    train = scgde.datasets.synthetic_mvn(n_sets=n_train, set_size=size, seed=seed, **cfg)
    test = scgde.datasets.synthetic_mvn(n_sets=n_test, set_size=size, seed=seed + 1000, **cfg)
    model, train_s = default_fit(train, "set", quick)
    truth = test.uns["synthetic"]
    w2 = scgde.metrics.gaussian_w2(truth["means"], truth["covs"], truth["means"], truth["covs"], paired=False)
    w2 = w2[np.triu_indices(n_test, 1)]
    z = model.get_set_representation(test, progress_bar=False).loc[truth["sets"]].to_numpy()
    codes = test.obs["set"].cat.codes.to_numpy()
    means = np.stack([test.X[codes == i].mean(0) for i in range(n_test)])
    covs = np.stack([np.cov(test.X[codes == i].T) for i in range(n_test)])
    plug_in = scgde.metrics.gaussian_w2(means, covs, means, covs, paired=False)[np.triu_indices(n_test, 1)]
    rows = {
        "GDE latent L2 (default model)": spearmanr(pdist(z), w2).statistic,
        "set means L2": spearmanr(pdist(means), w2).statistic,
        "plug-in Gaussian W2 (oracle for Gaussian sets)": spearmanr(plug_in, w2).statistic,
    }
    table = pd.DataFrame({"Spearman with true W2": rows})
    table.index.name = "representation"
    title = f"covariance-heavy 2-D Gaussian sets ({n_train} x {size} training, {n_test} held-out)"
    return {"title": title, "table": table, "train_s": train_s}


def _kang_fold(adata, held_out: str, quick: bool, seed: int) -> tuple[list[dict], dict, float]:
    target = (adata.obs["cell_type"] == held_out).to_numpy() & (adata.obs["condition"] == "stimulated").to_numpy()
    train = adata[~target].copy()
    sc.pp.highly_variable_genes(train, n_top_genes=300 if quick else 1000)  # from the training cells only
    genes = train.var_names[train.var["highly_variable"].to_numpy()]
    train = train[:, genes].copy()
    true = adata[target][:, genes].copy()
    control = train[(train.obs["cell_type"] == held_out).to_numpy() & (train.obs["condition"] == "control").to_numpy()]
    model, train_s = default_fit(train, ["cell_type", "condition"], quick)
    predictor = scgde.model.PerturbationPredictor(model, "condition", "control", context_key="cell_type")
    predictions = {"GDE (ridge)": predictor.fit().predict("stimulated", context=held_out, n_cells=true.n_obs)}
    predictions.update(
        scgde.tl.perturbation_baselines(
            train, [(held_out, "stimulated")], perturbation_key="condition", control="control", context_key="cell_type"
        )
    )
    report = scgde.metrics.perturbation_report(true, predictions, control, perturbation_key="condition", seed=seed)
    dense = lambda a: np.asarray(a.X.toarray() if hasattr(a.X, "toarray") else a.X)
    stats = realism(dense(true), dense(predictions["GDE (ridge)"]))
    report["held_out"] = held_out
    return report, stats, train_s


def kang_held_out(quick: bool, seed: int, types: list[str] | None = None) -> dict:
    """(b) Kang 2018: predict each held-out cell type's IFN-beta response as a distribution."""
    adata = scgde.datasets.kang2018(KANG)
    for key in ("cell_type", "condition"):
        adata.obs[key] = adata.obs[key].astype(str)
    types = types or sorted(adata.obs["cell_type"].unique())[: 1 if quick else None]
    reports, stats, train_s = [], {}, 0.0
    for held_out in types:
        report, stats[held_out], seconds = _kang_fold(adata, held_out, quick, seed)
        reports.append(report)
        train_s += seconds
    reports = pd.concat(reports, ignore_index=True)
    e = reports.pivot_table(index="held_out", columns="method", values="e_distance")
    top20 = reports.pivot_table(index="held_out", columns="method", values="pearson_delta_top20")
    others = [m for m in e.columns if not m.startswith("GDE")]
    wins_e = (e[["GDE (ridge)"]].to_numpy() < e[others].to_numpy()).all(1)
    wins_p = (
        top20[["GDE (ridge)"]].to_numpy() > top20[[m for m in others if m in top20]].fillna(-np.inf).to_numpy()
    ).all(1)
    table = e.copy()
    table.columns = [f"E-distance: {c}" for c in table.columns]
    table["GDE wins E-distance"] = wins_e
    table["GDE wins top-20 Pearson delta"] = wins_p
    cells = pd.DataFrame(stats).T
    cells.index.name = "held_out"
    notes = [
        f"GDE (ridge) beats every baseline on E-distance for {wins_e.sum()}/{len(types)} held-out types, "
        f"on top-20 Pearson delta for {wins_p.sum()}/{len(types)}.",
        "Generated vs real stimulated cells of each held-out type:",
        _common.markdown_table(cells),
    ]
    return {
        "title": "Kang 2018 held-out cell types",
        "table": table,
        "cells": cells,
        "notes": notes,
        "train_s": train_s,
    }


def larry_clones(quick: bool, seed: int) -> dict:
    """(c) LARRY subset: early -> late information of clone representations."""
    from benchmarks import lineage

    args = type("Args", (), {"n_components": 8, "n_permutations": 10 if quick else 200})()
    adata = lineage.load(None)
    scgde.model.GDE.setup_anndata(adata, set_key=["clone", "time"])
    untrained = scgde.model.GDE(adata, **MODEL_KWARGS)  # the same architecture, never trained
    model, train_s = default_fit(adata, ["clone", "time"], quick)
    rows = [
        lineage.evaluate("GDE (default model)", model, args, seed),
        lineage.evaluate("untrained encoder", untrained, args, seed),
        lineage.evaluate("pseudobulk (PCA mean)", adata, args, seed, "pseudobulk"),
        lineage.evaluate("cell-state composition", adata, args, seed, "composition"),
    ]
    table = pd.DataFrame(rows).set_index("representation")[
        ["MI (bits)", "p-value", "fate TV", "fate TV, training mean"]
    ]
    return {"title": "LARRY clone subset: early -> late", "table": table, "train_s": train_s}


def demo_sets(quick: bool, seed: int) -> dict:
    """(d) the demo's sets of real PBMCs of known composition: distances on new sets."""
    n_sets = 60 if quick else 300
    train = scgde.datasets.pbmc_composition_sets(n_sets=n_sets, cells_per_set=150, seed=seed)
    new = scgde.datasets.pbmc_composition_sets(n_sets=max(20, n_sets // 4), cells_per_set=150, seed=seed + 1)
    model, train_s = default_fit(train, "set", quick)
    z_new = model.get_set_representation(new, progress_bar=False)
    z_train = model.get_set_representation(progress_bar=False)
    truth = new.uns["composition"].loc[z_new.index].to_numpy()
    truth_train = train.uns["composition"].loc[z_train.index].to_numpy()

    def set_means(a, index):
        return pd.DataFrame(a.X, index=a.obs["set"].astype(str)).groupby(level=0).mean().loc[index].to_numpy()

    def r2(x_train, x_new):
        pred = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x_train, truth_train).predict(x_new)
        return 1 - ((pred - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum()

    means_new, means_train = set_means(new, z_new.index), set_means(train, z_train.index)
    rows = {
        "GDE set embedding (default model)": {
            "Spearman(distance, composition L1)": spearmanr(pdist(z_new), pdist(truth, "cityblock")).statistic,
            "ridge R^2 of composition": r2(z_train.to_numpy(), z_new.to_numpy()),
        },
        "set means": {
            "Spearman(distance, composition L1)": spearmanr(pdist(means_new), pdist(truth, "cityblock")).statistic,
            "ridge R^2 of composition": r2(means_train, means_new),
        },
    }
    table = pd.DataFrame(rows).T
    table.index.name = "representation"
    return {"title": f"demo composition sets ({n_sets} training, {len(z_new)} new)", "table": table, "train_s": train_s}
