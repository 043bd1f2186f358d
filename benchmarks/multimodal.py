"""Multimodal sets: what each modality alone, and all together, tell about a set (a modality-ablation table).

A GDE is set up on a MuData with ``GDE.setup_mudata`` (per-modality element encoders joined before
the pooling, one generator head and likelihood per modality) on one modality, or on all, and trained
with ``train()``'s defaults. Baselines from the same cells: each set's mean profile (pseudobulk:
log1p of the mean counts, mean accessibility), and mean plus per-feature variance.

- **Simulated** (``scgde.datasets.multimodal_sets``; 120 sets of 150 cells, 100 genes, 20 proteins,
  100 regions, 20% of cells without protein): each set has one parameter per modality (RNA: the
  spread of two cell states, which leaves the mean nearly unchanged; protein: a mean shift;
  accessibility: which half of the regions is open). Models train on 80 sets; ridge regressions
  from the 80 training sets' vectors predict the 40 held-out sets' parameters (R^2 per parameter).
- **Wu et al. 2020 T cells** (``../shared/data/tcr_wu2020_scirpy``: 200 cells with paired TCR): RNA
  counts of the 500 most variable of its 3,000 genes (the file's own HVG ranks), and the TCR as binary features (V-gene family of each chain, registered in the
  Bernoulli slot, ``modalities={"rna_layer": "rna", "atac_layer": "tcr"}``; cells without a TCR are
  masked there). Sets: patient x tissue source (27 sets of >= 2 cells); a logistic regression
  predicts a set's source (tumour, normal adjacent tissue, blood) leaving one patient out
  (balanced accuracy; chance 0.33). Transductive: models train on every set, unlabelled.

Usage: python -m benchmarks.multimodal [--quick] [--seed 0]
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import scgde
from benchmarks import _common

TITLE = "Multimodal sets: modality ablation"
WU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcr_wu2020_scirpy" / "wu2020_200_v0_6.h5ad"
SLOTS = {"rna": "rna_layer", "prot": "protein_layer", "atac": "atac_layer", "tcr": "atac_layer"}


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def pseudobulk(mdata, mods: list[str], set_key: str, sets: pd.Index, variance: bool = False) -> np.ndarray:
    """Per set: log1p of mean counts (binary modalities: mean), optionally with per-feature variances."""
    blocks = []
    for mod in mods:
        adata = mdata.mod[mod]
        x = _dense(adata.X)
        binary = SLOTS[mod] == "atac_layer"
        x = x if binary else np.log1p(x)
        pos = np.asarray(mdata.obsmap[mod]).ravel().astype(np.int64) - 1  # row in the modality (-1: absent)
        labels = np.empty(adata.n_obs, dtype=object)
        labels[pos[pos >= 0]] = mdata.obs[set_key].astype(str).to_numpy()[pos >= 0]
        frame = pd.DataFrame(x).groupby(labels)
        mean = frame.mean().reindex(sets).fillna(0.0).to_numpy()
        blocks.append(mean)
        if variance:
            blocks.append(frame.var(ddof=0).reindex(sets).fillna(0.0).to_numpy())
    return np.hstack(blocks)


def fit(mdata, mods: list[str], set_key: str, seed: int, quick: bool):
    """A GDE on modalities ``mods`` of ``mdata`` with train()'s defaults (short in quick mode)."""
    import scvi

    scvi.settings.seed = seed
    measured = np.column_stack([np.asarray(mdata.obsm[m]).ravel() for m in mods]).any(axis=1)
    if not measured.all():  # a model reads only the cells measured in its modalities
        mdata = mdata[measured].copy()
    scgde.model.GDE.setup_mudata(mdata, set_key=set_key, modalities={SLOTS[m]: m for m in mods})
    model = scgde.model.GDE(mdata)
    start = time.perf_counter()
    model.train(enable_progress_bar=False, **({"max_epochs": 2, "batches_per_epoch": 5} if quick else {}))
    return model, time.perf_counter() - start


def r2(pred, truth) -> np.ndarray:
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    return 1 - ((truth - pred) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)


def ridge_r2(train_x, train_y, test_x, test_y) -> np.ndarray:
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    return r2(reg.fit(train_x, train_y).predict(test_x), test_y)


def simulated(args) -> tuple[pd.DataFrame, float]:
    mdata = scgde.datasets.multimodal_sets(
        n_sets=30 if args.quick else 120, set_size=60 if args.quick else 150, missing_protein=0.2, seed=args.seed
    )
    truth = mdata.uns["multimodal_sets"]["truth"]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(truth.index)
    n_train = int(round(len(order) * 2 / 3))
    train_sets, test_sets = pd.Index(order[:n_train]), pd.Index(order[n_train:])
    train_md = mdata[mdata.obs["clone"].isin(train_sets).to_numpy()].copy()
    rows, seconds = {}, 0.0
    for mods in (["rna"], ["prot"], ["atac"], ["rna", "prot", "atac"]):
        model, s = fit(train_md, mods, "clone", args.seed, args.quick)
        seconds += s
        emb = model.get_set_representation(mdata, progress_bar=False)
        name = "GDE, " + " + ".join(mods)
        rows[name] = ridge_r2(emb.loc[train_sets], truth.loc[train_sets], emb.loc[test_sets], truth.loc[test_sets])
    every = ["rna", "prot", "atac"]
    for label, variance in (("set means", False), ("set means + variances", True)):
        feats = pd.DataFrame(pseudobulk(mdata, every, "clone", truth.index, variance), index=truth.index)
        rows[f"{label}, rna + prot + atac"] = ridge_r2(
            feats.loc[train_sets], truth.loc[train_sets], feats.loc[test_sets], truth.loc[test_sets]
        )
    table = pd.DataFrame(rows, index=[f"R^2 {c}" for c in truth.columns]).T
    return table, seconds


def wu_mudata(path: Path = WU, n_genes: int = 500):
    """RNA counts of the ``n_genes`` most variable genes + TCR V-gene families; sets patient x source.

    The TCR features are binary (cells without a TCR are absent from ``"tcr"``, so masked there).
    """
    from mudata import MuData

    rna = ad.read_h5ad(path)
    rna = rna[:, rna.var["highly_variable_rank"].rank(method="first").to_numpy() <= n_genes].copy()
    obs = rna.obs
    families = {}
    for chain in ("IR_VJ_1_v_gene", "IR_VDJ_1_v_gene"):
        genes = obs[chain].astype(str)
        fam = genes.str.extract(r"^(TR[AB]V\d+)")[0]
        families[chain] = fam.where(genes != "nan")
    onehot = pd.get_dummies(pd.concat(families, axis=1).stack()).groupby(level=0).max()
    onehot = onehot.reindex(obs.index).fillna(False).astype(np.float32)
    has_tcr = onehot.sum(1) > 0
    tcr = ad.AnnData(onehot[has_tcr].to_numpy(), obs=obs.loc[has_tcr, []], var=pd.DataFrame(index=onehot.columns))
    rna = ad.AnnData(rna.X, obs=obs[[]].copy(), var=pd.DataFrame(index=rna.var_names))
    mdata = MuData({"rna": rna, "tcr": tcr})
    mdata.obs["sample_set"] = (obs["patient"].astype(str) + "|" + obs["source"].astype(str)).to_numpy()
    mdata.obs["patient"] = obs["patient"].astype(str).to_numpy()
    mdata.obs["source"] = obs["source"].astype(str).to_numpy()
    sizes = mdata.obs["sample_set"].value_counts()
    return mdata[mdata.obs["sample_set"].isin(sizes.index[sizes >= 2]).to_numpy()].copy()


def leave_one_patient_out(features: pd.DataFrame, labels: pd.Series, patients: pd.Series) -> float:
    pred = pd.Series(index=features.index, dtype=object)
    for patient in patients.unique():
        test = patients == patient
        if labels[~test].nunique() < 2:
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        clf.fit(features[~test], labels[~test])
        pred[test] = clf.predict(features[test])
    ok = pred.notna()
    return float(balanced_accuracy_score(labels[ok], pred[ok].astype(str)))


def wu(args) -> tuple[pd.DataFrame, float]:
    mdata = wu_mudata(n_genes=100 if args.quick else 500)
    sets = mdata.obs.groupby("sample_set", observed=True)[["patient", "source"]].first()
    rows, seconds = {}, 0.0
    for mods in (["rna"], ["tcr"], ["rna", "tcr"]):
        model, s = fit(mdata, mods, "sample_set", args.seed, args.quick)
        seconds += s
        emb = model.get_set_representation(progress_bar=False).loc[sets.index]
        rows["GDE, " + " + ".join(mods)] = [leave_one_patient_out(emb, sets["source"], sets["patient"])]
    for mods in (["rna"], ["tcr"], ["rna", "tcr"]):
        feats = pd.DataFrame(pseudobulk(mdata, mods, "sample_set", sets.index), index=sets.index)
        if "rna" in mods:  # 3,000 genes for ~27 sets: the 30 leading principal components
            from sklearn.decomposition import PCA

            feats = pd.DataFrame(PCA(min(30, len(feats) - 1)).fit_transform(feats), index=sets.index)
        rows["set means, " + " + ".join(mods)] = [leave_one_patient_out(feats, sets["source"], sets["patient"])]
    table = pd.DataFrame(rows, index=["source balanced accuracy (leave one patient out)"]).T
    return table, seconds


def run(args) -> dict:
    parts, tables = [f"## {TITLE}", ""], {}
    for name, task in (("simulated RNA + protein + accessibility", simulated), ("Wu 2020 T cells: RNA + TCR", wu)):
        table, seconds = task(args)
        table.index.name = "representation"
        tables[name] = table
        parts += [f"### {name} (GDE training {seconds:.0f} s in all)", "", _common.markdown_table(table), ""]
    parts += [
        f"Machine: {_common.machine()}.",
        f"Command: `python -m benchmarks.multimodal{' --quick' if args.quick else ''} --seed {args.seed}`",
    ]
    return {"tables": tables, "markdown": "\n".join(parts)}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run both tables and print them; returns them (with ``markdown``, ``wall_s``)."""
    return _common.run_cli(__doc__, run, argv, "small data and a short training (a smoke test)")


if __name__ == "__main__":
    main()
