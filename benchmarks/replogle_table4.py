"""The GDE paper's Table 4 protocol: predict held-out Perturb-seq knockdowns from gene features.

Data: Replogle et al. 2022 K562 essential-gene CRISPRi screen (``scgde.datasets.
replogle2022_k562_essential``, about 1.5 GB, downloaded and cached on first use; never run in CI).
Cells are log-normalised (10^4 counts per cell); single-gene perturbations with at least
``--min-cells`` cells are kept. The 20 held-out genes are those of the paper's configuration
(SUPT5H, ATF5, ... SF3A2); their cells are removed before anything is fitted (genes, PCA, features,
GDE, regressions).

Every method predicts a perturbation's change of mean expression ``delta = mean(perturbed cells) -
mean(control cells)`` from its features, fitted on the training perturbations only:

- ``Mean`` (the paper's baseline): ridge ``f -> delta`` (the ``"ridge"`` of
  :func:`scgde.tl.perturbation_baselines`: standardised features, leave-one-out strength);
- ``training mean``, ``non-control mean`` (Systema): the library's feature-blind baselines;
- ``GDE`` (the paper's row): ridge ``f -> dz = z(perturbation) - z(control)`` in the set-embedding
  space (:class:`scgde.model.PerturbationPredictor`), then a linear (ridge) head ``dz -> delta``
  fitted on the training perturbations;
- ``GDE (generated cells)``: the mean of cells generated from the predicted embedding minus the
  mean of cells generated from the control embedding (the distribution itself, no head).

Features: ``--features`` (a CSV indexed by gene symbol, e.g. GenePT embeddings as in the paper),
else each target gene's co-expression loadings on the top 50 principal components of the control
cells (all genes). Scores from :func:`scgde.metrics.perturbation_report` (mean changes only) per
held-out perturbation, then averaged: ``R2`` = squared ``pearson_delta`` (the definition in the
paper's notebooks; the notebook behind Table 4 is lost), ``r2_delta`` = ``1 - SSE/SST`` across
genes, ``mse_delta``, Systema's ``pearson_delta_pert`` (change from the centroid of the held-out
perturbations) and PerturBench's ``rank`` (0: each prediction is closest to its own perturbation;
about 0.5: mode collapse). Paper (GenePT features, 10^4 genes): GDE R2 0.458 / MSE 1.501, scVI
0.421 / 1.551, Mean 0.378 / 1.855. Group means never densify the matrix (sparse products), so the
full screen fits in memory as a sparse matrix.

``--quick`` runs the same pipeline on a small synthetic Perturb-seq screen (no download) with the
simulator's true gene features: a smoke test, not a result.

Usage: python -m benchmarks.replogle_table4 [--cache DIR] [--features genept.csv] [--quick]
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV

import scgde
from benchmarks import _common

HELD_OUT = [
    "SUPT5H", "ATF5", "SRSF1", "PSMA3", "SNRPD3", "RPL30", "EXOSC2", "CDC73", "NUP54", "PRIM2",
    "TSR2", "RPS11", "KPNB1", "NACA", "CSE1L", "SF3B2", "PHAX", "POLR2G", "RPS15A", "SF3A2",
]  # fmt: skip
PAPER = {"GDE": (0.457941, 1.50073), "scVI (not run here)": (0.421491, 1.55141), "Mean": (0.37829, 1.855)}
ALPHAS = np.logspace(-2, 5, 15)
DESIGN = scgde.data.PerturbationDesign("perturbation", control="control")
#: report columns -> table columns (averages over the held-out perturbations)
SCORES = {
    "R2 (squared Pearson)": "pearson_delta",
    "R2 (1 - SSE/SST)": "r2_delta",
    "MSE": "mse_delta",
    "Pearson delta (perturbed centroid)": "pearson_delta_pert",
    "rank": "rank",
}


def load(args) -> tuple[sc.AnnData, list[str]]:
    """Log-normalised cells with ``obs["perturbation"]`` (``"control"`` first) and the held-out genes."""
    if args.quick:
        adata = scgde.datasets.synthetic_perturbseq(
            n_genes=60, n_perturbations=40, n_cell_types=1, cells_per_group=60, seed=args.seed
        )
        perts = [p for p in adata.obs["perturbation"].cat.categories if p != "control"]
        return adata, perts[:8]
    adata = scgde.datasets.replogle2022_k562_essential(path=args.cache)
    if "nperts" in adata.obs:  # single-gene knockdowns only
        adata = adata[adata.obs["nperts"].to_numpy() <= 1].copy()
    counts = adata.obs["perturbation"].value_counts()
    keep = counts.index[(counts >= args.min_cells) | (counts.index == "control")]
    adata = adata[adata.obs["perturbation"].isin(keep).to_numpy()].copy()
    adata.obs["perturbation"] = adata.obs["perturbation"].cat.remove_unused_categories()
    held_out = [g for g in HELD_OUT if g in set(adata.obs["perturbation"])]
    print(f"held-out genes present: {len(held_out)}/{len(HELD_OUT)}", flush=True)
    return adata, held_out


def group_means(adata, labels: list[str]) -> pd.DataFrame:
    """Mean expression of every perturbation group (``scanpy.get.aggregate``: a sparse product, no densifying)."""
    agg = sc.get.aggregate(adata[adata.obs["perturbation"].isin(labels).to_numpy()], "perturbation", "mean")
    return pd.DataFrame(agg.layers["mean"], index=agg.obs_names, columns=adata.var_names).loc[labels]


def coexpression_features(adata, n_pcs: int) -> pd.DataFrame:
    """Each gene's loadings on the top principal components of the control cells (all genes)."""
    ctrl = np.flatnonzero(DESIGN.is_control(adata.obs["perturbation"].astype(str)))
    x = scgde.data.RowFetcher(adata.X).rows(ctrl)
    pca = PCA(n_components=min(n_pcs, *x.shape), random_state=0).fit(x)
    loadings = pca.components_.T * np.sqrt(pca.explained_variance_)
    return pd.DataFrame(loadings, index=adata.var_names, columns=[f"pc{i}" for i in range(loadings.shape[1])])


def mean_cells(delta: np.ndarray, ctrl_mean: np.ndarray, perts: list[str], genes) -> ad.AnnData:
    """One cell per perturbation at the predicted mean: enough for the report's mean-change metrics."""
    obs = pd.DataFrame({"perturbation": pd.Categorical(perts)}, index=[f"mean_{p}" for p in perts])
    return ad.AnnData((ctrl_mean + delta).astype(np.float32), obs=obs, var=pd.DataFrame(index=genes))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=None, help="download/cache folder (default: scgde's pooch cache)")
    parser.add_argument("--features", default=None, help="CSV of gene features indexed by gene symbol (GenePT)")
    parser.add_argument("--n-genes", type=int, default=2000, help="highly variable genes modelled (0: all)")
    parser.add_argument("--min-cells", type=int, default=25, help="cells a perturbation needs to be kept")
    parser.add_argument("--n-latent", type=int, default=64)
    parser.add_argument("--n-hidden", type=int, default=256)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument(
        "--batches-per-epoch",
        type=int,
        default=None,
        help="default: about one pass over the cells (the former default)",
    )
    parser.add_argument("--n-generated", type=int, default=1000, help="cells generated per perturbation")
    parser.add_argument("--n-pcs", type=int, default=50, help="co-expression feature dimensions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="synthetic screen, tiny training (smoke test)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.max_epochs, args.n_genes, args.n_latent, args.n_hidden = 2, 0, 8, 32
        args.batches_per_epoch = args.batches_per_epoch or 5
        args.threads = args.threads or 1
    start = time.perf_counter()
    adata, held_out = load(args)
    if not held_out:
        raise ValueError("None of the held-out genes is among the perturbations of this file.")
    test_cells = adata.obs["perturbation"].isin(held_out).to_numpy()
    train_all = adata[~test_cells].copy()  # every gene: features and the truth of the mean change
    if args.features is not None:
        features = pd.read_csv(args.features, index_col=0)
    elif args.quick:  # the simulator's true gene features: its mean shifts are linear in them
        features = pd.DataFrame(adata.uns["gene_features"])
    else:
        features = coexpression_features(train_all, args.n_pcs)
    perts = [p for p in train_all.obs["perturbation"].cat.categories if p != "control" and p in features.index]
    held_out = [p for p in held_out if p in features.index]
    print(f"training perturbations with features: {len(perts)}; held out: {len(held_out)}", flush=True)

    if args.n_genes and args.n_genes < adata.n_vars:
        sc.pp.highly_variable_genes(train_all, n_top_genes=args.n_genes)
        genes = train_all.var_names[train_all.var["highly_variable"].to_numpy()]
    else:
        genes = adata.var_names
    train = train_all[train_all.obs["perturbation"].isin(["control", *perts]).to_numpy(), genes].copy()
    test = adata[test_cells, genes]
    control = train[DESIGN.is_control(train.obs["perturbation"].astype(str))]
    means = group_means(train, ["control", *perts])
    ctrl_mean = means.loc["control"].to_numpy()
    delta_train = (means.loc[perts] - ctrl_mean).to_numpy()

    # the whole budget explicit (library defaults may change); flow generator
    model = _common.make_model(
        train, generator="flow", n_latent=args.n_latent, n_hidden=args.n_hidden, seed=args.seed, set_key="perturbation"
    )
    train_s = _common.train(
        model,
        epochs=args.max_epochs,
        batches_per_epoch=args.batches_per_epoch or _common.one_pass(train.n_obs, 32, 100),
        sets_per_batch=32,
        cells_per_set=100,
        train_size=1.0,
    )

    # the library's baselines (only their mean matters here: a few control cells each)
    baselines = scgde.tl.perturbation_baselines(train, held_out, DESIGN, features=features, max_cells=10)
    predictions = {"Mean": baselines["ridge"], "training mean": baselines["training mean"]}
    predictions["non-control mean"] = baselines["non-control mean"]
    pred = scgde.model.PerturbationPredictor(model, DESIGN, features=features).fit()
    z = model.get_set_representation(train, set_key="perturbation")
    z_ctrl = z.loc["control"].to_numpy()
    z_pred = pred.predict_embedding(held_out)
    head = RidgeCV(alphas=ALPHAS).fit(z.loc[perts].to_numpy() - z_ctrl, delta_train)
    predictions["GDE"] = mean_cells(head.predict(z_pred.to_numpy() - z_ctrl), ctrl_mean, held_out, genes)
    cells = model.generate(pd.concat([z.loc[["control"]], z_pred]), n_cells=args.n_generated)
    gen = pd.DataFrame(np.asarray(cells.X), index=cells.obs["set"].astype(str)).groupby(level=0).mean()
    delta_gen = gen.loc[held_out].to_numpy() - gen.loc["control"].to_numpy()
    predictions["GDE (generated cells)"] = mean_cells(delta_gen, ctrl_mean, held_out, genes)

    report = scgde.metrics.perturbation_report(test, predictions, control, design=DESIGN, distributional=False)
    report["pearson_delta"] = report["pearson_delta"] ** 2  # the paper's R2
    table = report.groupby("method", sort=False)[list(SCORES.values())].mean()
    table.columns = list(SCORES)
    table["paper R2"] = [PAPER.get(n, (np.nan, np.nan))[0] for n in table.index]
    table["paper MSE"] = [PAPER.get(n, (np.nan, np.nan))[1] for n in table.index]
    print(
        f"\nmachine: {_common.machine()}; cells {adata.n_obs}, genes {len(genes)}, training perturbations {len(perts)}"
    )
    source = "simulator's gene features" if args.quick else f"co-expression ({features.shape[1]} PCs of control cells)"
    print(f"features: {args.features or source}")
    print(_common.markdown_table(table))
    print(f"GDE training {train_s:.0f} s; wall time {time.perf_counter() - start:.0f} s")
    return {"table": table, "report": report, "train_s": train_s}


if __name__ == "__main__":
    main()
