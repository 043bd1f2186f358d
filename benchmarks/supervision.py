"""Set-level supervision (the paper's donor task, Table 3): predict a set's label with 10% of sets labelled.

Each dataset's sets are split into held-out sets (a third, never seen in training) and a training
pool, of which 10% (stratified, at least 2 per class) keep their label. Methods, all fitted on the
same labelled sets:

- semi-supervised GDE: encoder + flow generator on every training-pool set, a classification head
  on the labelled ones (``label_weight``); predictions from the head, and from a logistic
  regression on its set embeddings;
- supervised-only encoder: the same encoder and head trained on the labelled sets alone, with the
  generator loss off (``plan_kwargs={"generator_weight": 0}``);
- unsupervised GDE + logistic regression on the set embeddings;
- pseudobulk (each set's mean) + logistic regression.

Held-out balanced accuracy and ROC-AUC, mean (sd) over seeds.

Datasets: ``synthetic_donors`` (300 donors of 200 cells; the label shifts a rare 5% sub-population
by 4 noise sds on 3 marker genes, so pseudobulk means move by 0.2, less than the donor-to-donor
spread) and Kang 2018 IFN-beta PBMCs
(../shared/data/kang2018_ifnb; sets: disjoint chunks of ~25 cells within each cell type x
condition; label: the condition; 30 PCs fitted on the training-pool cells).

Usage: python -m benchmarks.supervision [--seeds 0 1 2] [--steps 400] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import scgde
from benchmarks import _common

KANG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kang2018_ifnb" / "kang2018_valid.h5ad"
LABELLED, HELD_OUT, POSITIVE = 0.10, 1 / 3, "case"
KANG_CHUNK = 25
ARCH = {"n_latent": 16, "n_hidden": 64, "generator": "flow", "encoder": "resnet"}


def simulation(seed: int, quick: bool) -> ad.AnnData:
    adata = scgde.datasets.synthetic_donors(n_sets=60 if quick else 300, set_size=200, seed=seed)
    adata.obs["set"] = adata.obs["donor"]
    return adata


def kang(seed: int, quick: bool, chunk: int = 25) -> ad.AnnData:
    """Kang cells in disjoint random chunks within each cell type x condition; label: stimulated = case."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # old .uns["neighbors"] layout of the file
        adata = ad.read_h5ad(KANG)
    rng = np.random.default_rng(seed)
    names = np.empty(adata.n_obs, dtype=object)
    for (ct, cond), rows in adata.obs.groupby(["cell_type", "condition"], observed=True).indices.items():
        rows = rng.permutation(rows)
        n_chunks = max(1, len(rows) // chunk)
        for i, part in enumerate(np.array_split(rows, n_chunks)):
            names[part] = f"{ct}|{cond}|{i}"
    adata.obs["set"] = pd.Categorical(names)
    adata.obs["label"] = pd.Categorical(np.where(adata.obs["condition"] == "stimulated", "case", "control"))
    adata.X = np.asarray(adata.X.toarray(), dtype=np.float32)
    return adata


def split(adata: ad.AnnData, seed: int) -> tuple[list, list, list]:
    """Held-out sets, training-pool sets and the labelled ones among them (stratified by label)."""
    rng = np.random.default_rng(seed)
    labels = adata.obs.groupby("set", observed=True)["label"].first().astype(str)
    held, pool, labelled = [], [], []
    for _, names in labels.groupby(labels):
        names = list(rng.permutation(names.index))
        n_held = int(round(HELD_OUT * len(names)))
        held += names[:n_held]
        pool += names[n_held:]
        labelled += names[n_held : n_held + max(2, int(round(LABELLED * (len(names) - n_held))))]
    return held, pool, labelled


def features(adata: ad.AnnData, pool: list, n_pcs: int | None) -> ad.AnnData:
    """Data as the models see them: for Kang, 30 PCs fitted on training-pool cells only."""
    if n_pcs is None:
        return adata
    pca = PCA(n_components=n_pcs, random_state=0).fit(adata.X[adata.obs["set"].isin(pool).to_numpy()])
    out = ad.AnnData(pca.transform(adata.X).astype(np.float32), obs=adata.obs[["set", "label"]].copy())
    return out


def subset(adata: ad.AnnData, names: list, labelled: list | None = None) -> ad.AnnData:
    """The cells of the sets ``names``; with ``labelled``, the other sets' labels are removed."""
    out = adata[adata.obs["set"].isin(names).to_numpy()].copy()
    out.obs["set"] = out.obs["set"].cat.remove_unused_categories()
    if labelled is not None:
        out.obs["label"] = out.obs["label"].astype(object).where(out.obs["set"].isin(labelled), np.nan)
        out.obs["label"] = pd.Categorical(out.obs["label"], categories=["case", "control"])
    return out


def set_labels(adata: ad.AnnData, names) -> np.ndarray:
    truth = adata.obs.groupby("set", observed=True)["label"].first().astype(str)
    return (truth.loc[list(names)] == POSITIVE).to_numpy().astype(int)


def scores(y: np.ndarray, p_case: np.ndarray) -> dict:
    return {"balanced accuracy": balanced_accuracy_score(y, p_case > 0.5), "ROC-AUC": roc_auc_score(y, p_case)}


def logistic(train_x, train_y, test_x) -> np.ndarray:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return clf.fit(train_x, train_y).predict_proba(test_x)[:, 1]


def fit_gde(data: ad.AnnData, args, seed: int, cells_per_set: int, labels: bool, **train_kwargs):
    import scvi

    scgde.model.GDE.setup_anndata(data, set_key="set", set_labels_key="label" if labels else None)
    scvi.settings.seed = seed
    model = scgde.model.GDE(data, output_support="real", **ARCH)
    epochs, per_epoch = _common.budget(args.steps, batches_per_epoch=50)
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        batches_per_epoch=per_epoch,
        sets_per_batch=32,
        cells_per_set=cells_per_set,
        train_size=1.0,
        kernel=None,
        lr=1e-3,
        lr_schedule="constant",
        enable_progress_bar=False,
        **train_kwargs,
    )
    return model, time.perf_counter() - start


def embedding(model, adata: ad.AnnData, names: list) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        return model.get_set_representation(adata, set_key="set", sets=names, progress_bar=False).to_numpy()


def run(dataset: str, adata: ad.AnnData, args, seed: int) -> list[dict]:
    held, pool, labelled = split(adata, seed)
    data = features(adata, pool, 30 if dataset == "Kang 2018" else None)
    test, y_test, y_lab = subset(data, held), set_labels(data, held), set_labels(data, labelled)
    rows, kang_set = [], dataset == "Kang 2018"
    cps = KANG_CHUNK if kang_set else args.cells_per_set  # Kang sets have ~25 cells

    def row(method, p_case, train_s=np.nan):
        rows.append(
            {"dataset": dataset, "method": method, "seed": seed, **scores(y_test, p_case), "train (s)": train_s}
        )

    means = data.to_df().groupby(data.obs["set"].to_numpy()).mean()
    row("pseudobulk + LR", logistic(means.loc[labelled], y_lab, means.loc[held]))

    semi, semi_s = fit_gde(subset(data, pool, labelled), args, seed, cps, labels=True, label_weight=args.label_weight)
    row(
        "semi-supervised GDE (head)",
        semi.predict_set_labels(test, sets=held, progress_bar=False)[POSITIVE].to_numpy(),
        semi_s,
    )
    row("semi-supervised GDE + LR", logistic(embedding(semi, data, labelled), y_lab, embedding(semi, data, held)))

    sup, sup_s = fit_gde(
        subset(data, labelled, labelled), args, seed, cps, labels=True, plan_kwargs={"generator_weight": 0.0}
    )
    row(
        "supervised-only encoder (head)",
        sup.predict_set_labels(test, sets=held, progress_bar=False)[POSITIVE].to_numpy(),
        sup_s,
    )

    unsup, unsup_s = fit_gde(subset(data, pool), args, seed, cps, labels=False)
    row(
        "unsupervised GDE + LR",
        logistic(embedding(unsup, data, labelled), y_lab, embedding(unsup, data, held)),
        unsup_s,
    )
    n_sets = f"{len(pool)} training-pool sets ({len(labelled)} labelled), {len(held)} held out"
    print(f"{dataset}, seed {seed}: {n_sets}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--cells-per-set", type=int, default=100)
    parser.add_argument("--label-weight", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = args.seeds[:1], 20
    rows = []
    start = time.perf_counter()
    # tiny networks: one thread is as fast and does not fight other jobs for cores
    with _common.quiet(), _common.pinned_threads(1):
        for seed in args.seeds:
            rows += run("simulation", simulation(seed, args.quick), args, seed)
            if KANG.exists():
                rows += run("Kang 2018", kang(seed, args.quick, KANG_CHUNK), args, seed)
    table = pd.DataFrame(rows)
    summary = table.drop(columns="seed").groupby(["dataset", "method"], sort=False).agg(["mean", "std"])
    shown = pd.DataFrame(
        {
            col: [f"{m:.3f} ({s:.3f})" for m, s in zip(summary[(col, "mean")], summary[(col, "std")], strict=True)]
            for col in ("balanced accuracy", "ROC-AUC")
        },
        index=[f"{d}: {m}" for d, m in summary.index],
    )
    shown["train (s)"] = [_common.fmt_sig(v) for v in summary[("train (s)", "mean")]]
    shown.index.name = "dataset: method"
    print(f"machine: {_common.machine()}; seeds {args.seeds}; {args.steps} steps; label_weight {args.label_weight}")
    print(_common.markdown_table(shown))
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.quick:
        _common.check(table[["balanced accuracy", "ROC-AUC"]].notna().all().all(), "a metric is missing")
    return {"rows": table, "summary": summary}


if __name__ == "__main__":
    main()
