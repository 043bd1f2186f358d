"""GDE beside patpy's sample-representation methods, scored by patpy's own evaluation functions.

Every method is a ``patpy.tl.SampleRepresentationMethod`` (GDE through ``scgde.tl._patpy.GDESampleRepresentation``)
giving a sample x sample distance matrix; patpy's ``evaluate_representation`` scores it per sample-level target:
``knn`` (leave-one-out 3-nearest-neighbour prediction, macro-F1 calibrated so that 0 is chance and 1 perfect) and
``silhouette`` of the target's classes. ``random`` is patpy's ``RandomVector`` (the trivial baseline), averaged over
20 draws. Features for every method but MrVI (counts) and composition (cell groups) are the same 30 (synthetic: 10)
principal components, ``obsm["X_pca"]``.

Datasets:

- ``synthetic``: 32 donors (16 case, 16 control) of 200 cells, 20 genes, three cell types in Dirichlet(5)
  proportions and a donor offset (sd 0.3 on every gene), all independent of the label. In case donors the cells
  of type A split into two states at +-2 noise sds on 3 marker genes: the distribution's shape changes, its mean
  does not, so pseudobulk and composition carry no signal by construction.
- ``kang``: Kang 2018 IFN-beta PBMCs (../shared/data/kang2018_ifnb). The file has NO donor column (its obs: condition,
  n_counts, n_genes, mt_frac, cell_type), so the issue's "8 donors x 2 conditions" cannot be rebuilt. Samples here
  are 16 pseudo-samples, NOT donors: each condition's cells are split into 8 disjoint groups with random
  cell-type proportions (Dirichlet(1) weights per group and type); target: the condition. 1,000 HVGs, 30 PCs.
- ``wu``: Wu 2020 T cells (../shared/data/tcr_wu2020_scirpy; 200 cells): samples are patient x tissue
  (``obs["sample"]``, e.g. LT2 = lung tumour of patient 2) with at least 5 cells (19 samples, 5-18 cells); targets:
  the tissue (Tumor 8 / NAT 7 / Blood 2) and the cancer type (Lung 9, Endometrial 5, Renal 5). Cell groups:
  ``cluster_orig``. Counts log-normalised, 1,000 HVGs, 30 PCs.

Held-out samples (synthetic and kang): 3 stratified folds of samples; GDE is trained on the training samples'
cells only and embeds the test samples by a forward pass (``new_sample_distances``); the parameter-free methods
(pseudobulk, composition, GloScope_py, WassersteinTSNE) compute their distances with the test samples included
(they have nothing to train); PCA is fitted on the training cells in each fold. A test sample's target is
predicted by a 3-nearest-neighbour vote over training samples and scored with patpy's ``evaluate_prediction``
(pooled over folds). MrVI is not in this table: its samples are fixed at training, and a new sample needs
scArches query surgery (not run here).

Usage: python -m benchmarks.patpy_samples [--quick] [--datasets synthetic kang wu] [--held-out synthetic kang]
[--gde-steps N] (``--gde-steps 0``, the default, trains GDE with ``train()`` and no arguments). ``--quick`` (16
synthetic donors, 4 Kang pseudo-samples per condition, no held-out experiment unless ``--held-out`` names one) is a
smoke run: ``--quick --datasets synthetic`` took about 2 minutes on 1 thread of a shared 2-core machine.
WassersteinTSNE and PILOT need their own packages (``WassersteinTSNE``, ``pilotpy``), which patpy does not install;
without them their rows read ``failed (ModuleNotFoundError ...)``.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from benchmarks import _common

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KANG = DATA / "kang2018_ifnb" / "kang2018_valid.h5ad"
WU = DATA / "tcr_wu2020_scirpy" / "wu2020_200_v0_6.h5ad"
N_RANDOM = 20


# ---------------------------------------------------------------------------------------------------- datasets
def synthetic(seed: int, quick: bool) -> tuple[ad.AnnData, dict]:
    """Donors whose label changes the shape (not the mean) of one cell type's distribution."""
    rng = np.random.default_rng(seed)
    n_donors, n_cells, n_genes, n_types, markers, delta = (16 if quick else 32), 200, 20, 3, 3, 2.0
    centres = rng.normal(0.0, 2.0, (n_types, n_genes))
    xs, obs = [], []
    for d in range(n_donors):
        label = "case" if d % 2 else "control"
        props = rng.dirichlet(np.full(n_types, 5.0))
        types = rng.choice(n_types, size=n_cells, p=props)
        x = centres[types] + rng.normal(0.0, 0.3, n_genes) + rng.normal(0.0, 1.0, (n_cells, n_genes))
        if label == "case":
            a = np.flatnonzero(types == 0)
            sign = np.where(rng.permutation(len(a)) % 2 == 0, 1.0, -1.0)  # half up, half down: mean unchanged
            x[np.ix_(a, np.arange(markers))] += delta * sign[:, None]
        xs.append(x)
        obs.append(pd.DataFrame({"donor": f"d{d:02d}", "label": label, "cell_type": np.array(list("ABC"))[types]}))
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"c{i}" for i in range(len(obs))]
    adata = ad.AnnData(np.concatenate(xs).astype(np.float32), obs=obs)
    spec = {"sample_key": "donor", "cell_group_key": "cell_type", "targets": ["label"], "n_pcs": 10, "counts": None}
    return adata, spec


def kang(seed: int, quick: bool) -> tuple[ad.AnnData, dict]:
    """Kang 2018 cells in 8 pseudo-samples per condition with random cell-type proportions (no donors in the file)."""
    import scgde

    if not KANG.exists():
        raise FileNotFoundError(f"needs {KANG} (../shared/data beside the repository)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        adata = scgde.datasets.kang2018(KANG)
    if "donor" in adata.obs or "ind" in adata.obs:
        raise RuntimeError("the Kang file now has a donor column: use it instead of pseudo-samples")
    rng = np.random.default_rng(seed)
    per_condition = 4 if quick else 8
    types = sorted(adata.obs["cell_type"].astype(str).unique())
    sample = np.empty(adata.n_obs, dtype=object)
    for cond in ("control", "stimulated"):
        weights = rng.dirichlet(np.ones(per_condition), size=len(types))  # (types, groups): P(group | type)
        for t, ct in enumerate(types):
            idx = np.flatnonzero(
                (adata.obs["condition"] == cond).to_numpy() & (adata.obs["cell_type"] == ct).to_numpy()
            )
            groups = rng.choice(per_condition, size=len(idx), p=weights[t])
            sample[idx] = [f"{cond[:4]}_{g}" for g in groups]
    out = ad.AnnData(
        adata.X.copy(),
        obs=pd.DataFrame(
            {"sample": sample, "condition": adata.obs["condition"].astype(str), "cell_type": adata.obs["cell_type"]},
            index=adata.obs_names,
        ),
        var=pd.DataFrame(index=adata.var_names),
    )
    out.layers["counts"] = adata.layers["counts"]
    sc.pp.highly_variable_genes(out, n_top_genes=1000)
    out = out[:, out.var["highly_variable"].to_numpy()].copy()
    spec = {"sample_key": "sample", "cell_group_key": "cell_type", "targets": ["condition"], "n_pcs": 30}
    spec["counts"] = "counts"
    return out, spec


def wu(seed: int, quick: bool, min_cells: int = 5) -> tuple[ad.AnnData, dict]:
    """Wu 2020 T cells; samples: patient x tissue with at least ``min_cells`` cells."""
    if not WU.exists():
        raise FileNotFoundError(f"needs {WU} (../shared/data beside the repository)")
    raw = ad.read_h5ad(WU)
    keep = raw.obs["sample"].map(raw.obs["sample"].value_counts()) >= min_cells
    raw = raw[keep.to_numpy()].copy()
    obs = pd.DataFrame(
        {
            "sample": raw.obs["sample"].astype(str),
            "tissue": raw.obs["source"].astype(str),
            "cancer": raw.obs["patient"].astype(str).str.replace(r"\d+$", "", regex=True),
            "cluster": raw.obs["cluster_orig"].astype(str),
        },
        index=raw.obs_names,
    )
    counts = raw.X.astype(np.float32)
    adata = ad.AnnData(counts.copy(), obs=obs, var=pd.DataFrame(index=raw.var_names))
    adata.layers["counts"] = counts
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=1000)
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    spec = {"sample_key": "sample", "cell_group_key": "cluster", "targets": ["tissue", "cancer"], "n_pcs": 30}
    spec["counts"] = "counts"
    return adata, spec


DATASETS: dict[str, Callable] = {"synthetic": synthetic, "kang": kang, "wu": wu}


def add_pca(adata: ad.AnnData, n_pcs: int, fit_mask: np.ndarray | None = None, seed: int = 0) -> None:
    """``obsm["X_pca"]`` from a PCA fitted on the cells of ``fit_mask`` (all cells by default)."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    fit = x if fit_mask is None else x[fit_mask]
    pca = PCA(n_components=min(n_pcs, fit.shape[1], fit.shape[0] - 1), random_state=seed).fit(fit)
    adata.obsm["X_pca"] = pca.transform(x).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- methods
def gde_train_kwargs(steps: int) -> dict:
    """``train()`` with no arguments (steps 0) or about ``steps`` optimiser steps."""
    if steps <= 0:
        return {"enable_progress_bar": False}
    epochs, per_epoch = _common.budget(steps, batches_per_epoch=50)
    return {"max_epochs": epochs, "batches_per_epoch": per_epoch, "enable_progress_bar": False}


def methods(spec: dict, args, *, held_out: bool = False) -> dict[str, Callable]:
    """Factories of patpy sample-representation methods (name -> callable returning an unfitted method)."""
    import patpy

    from scgde.tl._patpy import GDESampleRepresentation

    s, g = spec["sample_key"], spec["cell_group_key"]
    tl = patpy.tl
    out = {
        "GDE": lambda: GDESampleRepresentation(
            s, g, layer="X_pca", seed=args.seed, train_kwargs=gde_train_kwargs(args.gde_steps)
        ),
        "pseudobulk": lambda: tl.Pseudobulk(s, g, layer="X_pca"),
        "composition": lambda: tl.CellGroupComposition(s, g),
        "GloScope_py": lambda: tl.GloScope_py(s, g, layer="X_pca", k=25),
        "WassersteinTSNE": lambda: tl.WassersteinTSNE(s, g, replicate_key=g, layer="X_pca"),
    }
    if not held_out:
        out["PILOT"] = lambda: tl.PILOT(s, g, sample_state_col="_pilot_status", layer="X_pca")
        if spec.get("counts") is not None:
            out["MrVI"] = lambda: tl.MrVI(s, g, layer=spec["counts"], max_epochs=args.mrvi_epochs)
    return out


def fit_distances(factory: Callable, adata: ad.AnnData) -> tuple[object, np.ndarray, list]:
    """Fit one patpy method on a copy of ``adata``; its distances and sample order."""
    method = factory()
    data = adata.copy()
    if type(method).__name__ == "PILOT":
        data.obs["_pilot_status"] = "all"  # PILOT wants a status column; a constant one leaks nothing
        pcs = data.obsm["X_pca"]  # and the embedding as a DataFrame (it reads its column names)
        data.obsm["X_pca"] = pd.DataFrame(pcs, index=data.obs_names, columns=[f"PC{i}" for i in range(pcs.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method.prepare_anndata(data)
        if type(method).__name__ == "MrVI":
            distances = method.calculate_distance_matrix(batch_size=256, mc_samples=5)
        else:
            distances = method.calculate_distance_matrix()
    return method, np.asarray(distances, dtype=np.float64), list(method.samples)


def sample_targets(adata: ad.AnnData, sample_key: str, targets: list[str], samples: list) -> pd.DataFrame:
    per_sample = adata.obs.groupby(sample_key, observed=True)[targets].first()
    return per_sample.loc[[str(x) for x in samples]]


def score(distances: np.ndarray, y: pd.Series) -> tuple[float, float]:
    """patpy's evaluate_representation: knn (calibrated macro-F1) and silhouette."""
    from patpy.tl import evaluate_representation

    y = y.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        knn = evaluate_representation(distances.copy(), y, "knn", task="classification", n_neighbors=3)["score"]
        zero_diagonal = distances.copy()
        np.fill_diagonal(zero_diagonal, 0.0)  # sklearn's silhouette refuses a non-zero diagonal (WassersteinTSNE's)
        sil = evaluate_representation(zero_diagonal, y, "silhouette")["score"]
    return float(knn), float(sil)


# ---------------------------------------------------------------------------------------------------- experiments
def in_sample(name: str, args) -> pd.DataFrame:
    """All samples: each method's distances scored by patpy on every target of the dataset."""
    adata, spec = DATASETS[name](args.seed, args.quick)
    add_pca(adata, spec["n_pcs"], seed=args.seed)
    rows = []
    for method_name, factory in methods(spec, args).items():
        start = time.perf_counter()
        try:
            method, distances, samples = fit_distances(factory, adata)
        except Exception as err:  # noqa: BLE001 - a method that cannot run here is recorded, not fatal
            msg = f"{type(err).__name__}: {str(err).splitlines()[0][:90] if str(err) else ''}"
            rows.append({"method": method_name, "status": f"failed ({msg})"})
            if args.verbose:
                traceback.print_exc()
            continue
        seconds = time.perf_counter() - start
        print(f"  {name}: {method_name} {seconds:.1f} s", flush=True)
        bad = int((~np.isfinite(distances)).sum())
        if bad:  # e.g. GloScope's density estimates on samples of a few cells: recorded, not scored
            rows.append({"method": method_name, "status": f"failed ({bad} of {distances.size} distances not finite)"})
            continue
        row = {"method": method_name, "status": "ok", "seconds": round(seconds, 1)}
        meta = sample_targets(adata, spec["sample_key"], spec["targets"], samples)
        for target in spec["targets"]:
            row[f"{target} knn F1"], row[f"{target} silhouette"] = score(distances, meta[target])
        rows.append(row)
    # the trivial baseline: patpy's RandomVector, mean over draws
    import patpy

    samples = list(pd.unique(adata.obs[spec["sample_key"]]))
    meta = sample_targets(adata, spec["sample_key"], spec["targets"], samples)
    row = {"method": f"random (mean of {N_RANDOM})", "status": "ok", "seconds": 0.0}
    for target in spec["targets"]:
        scores = []
        for draw in range(N_RANDOM):
            np.random.seed(args.seed * 1000 + draw)  # RandomVector draws from numpy's global stream
            rv = patpy.tl.RandomVector(spec["sample_key"], spec["cell_group_key"])
            rv.prepare_anndata(adata.copy())
            scores.append(score(np.asarray(rv.calculate_distance_matrix(), dtype=float), meta[target]))
        row[f"{target} knn F1"], row[f"{target} silhouette"] = np.mean(scores, axis=0)
    rows.append(row)
    n_samples = adata.obs[spec["sample_key"]].nunique()
    frame = pd.DataFrame(rows).set_index("method")
    frame.attrs["title"] = f"{name}: {n_samples} samples, {adata.n_obs} cells"
    return frame


def held_out(name: str, args, n_folds: int = 3) -> pd.DataFrame:
    """Samples held out of training: GDE embeds them by a forward pass; kNN over training samples."""
    from patpy.tl import evaluate_prediction

    adata, spec = DATASETS[name](args.seed, args.quick)
    s, target = spec["sample_key"], spec["targets"][0]
    per_sample = adata.obs.groupby(s, observed=True)[target].first()
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=args.seed).split(per_sample.index, per_sample)
    truth: dict[str, list] = {}
    preds: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for train_idx, test_idx in folds:
        train_s, test_s = per_sample.index[train_idx], per_sample.index[test_idx]
        is_train = adata.obs[s].isin(train_s).to_numpy()
        data = adata.copy()
        add_pca(data, spec["n_pcs"], fit_mask=is_train, seed=args.seed)  # PCA of the training cells only
        for method_name, factory in methods(spec, args, held_out=True).items():
            start = time.perf_counter()
            try:
                if method_name == "GDE":
                    method, d_train, samples = fit_distances(factory, data[is_train].copy())
                    d_test = method.new_sample_distances(data[~is_train].copy())
                    d_test = d_test.loc[list(test_s), samples].to_numpy()
                else:  # parameter-free: distances among all samples, then the test x train block
                    _, d_all, samples = fit_distances(factory, data)
                    order = pd.Index([str(x) for x in samples])
                    d_all = pd.DataFrame(d_all, index=order, columns=order)
                    samples = list(train_s)
                    d_train = d_all.loc[samples, samples].to_numpy()
                    d_test = d_all.loc[list(test_s), samples].to_numpy()
            except Exception as err:  # noqa: BLE001
                preds.setdefault(method_name, []).append(f"failed ({type(err).__name__}: {str(err)[:80]})")
                continue
            y_train = per_sample.loc[[str(x) for x in samples]].to_numpy()
            knn = KNeighborsClassifier(n_neighbors=3, metric="precomputed", weights="distance").fit(d_train, y_train)
            preds.setdefault(method_name, []).extend(knn.predict(d_test))
            truth.setdefault(method_name, []).extend(per_sample.loc[list(test_s)].to_numpy())
            seconds[method_name] = seconds.get(method_name, 0.0) + time.perf_counter() - start
    rows = []
    for method_name, p in preds.items():
        failed = [x for x in p if isinstance(x, str) and x.startswith("failed")]
        if failed:
            rows.append({"method": method_name, "status": failed[0]})
            continue
        result = evaluate_prediction(np.asarray(truth[method_name]), np.asarray(p), task="classification")
        accuracy = float(np.mean(np.asarray(truth[method_name]) == np.asarray(p)))
        rows.append(
            {
                "method": method_name,
                "status": "ok",
                "seconds": round(seconds[method_name], 1),
                f"held-out {target} F1 (patpy)": float(result["score"]),
                "accuracy": accuracy,
            }
        )
    rng = np.random.default_rng(args.seed)
    y = per_sample.to_numpy()
    chance = [
        float(evaluate_prediction(y, rng.permutation(y), task="classification")["score"]) for _ in range(N_RANDOM)
    ]
    rows.append(
        {"method": f"shuffled labels (mean of {N_RANDOM})", "status": "ok", "seconds": 0.0,
         f"held-out {target} F1 (patpy)": float(np.mean(chance)), "accuracy": float(np.mean(y == rng.permutation(y)))}
    )  # fmt: skip
    frame = pd.DataFrame(rows).set_index("method")
    frame.attrs["title"] = f"{name}, held-out samples ({n_folds} folds of {len(per_sample)} samples)"
    return frame


def run(args) -> dict:
    held = args.held_out if args.held_out is not None else ([] if args.quick else ["synthetic", "kang"])
    tables = []
    for name in args.datasets:
        start = time.perf_counter()
        try:
            table = in_sample(name, args)
        except FileNotFoundError as err:
            print(f"{name}: skipped ({err})")
            continue
        tables.append(table)
        print(f"\n### {table.attrs['title']} ({time.perf_counter() - start:.0f} s)\n")
        print(_common.markdown_table(table.fillna(""), digits=3), flush=True)
        if name in held:
            start = time.perf_counter()
            table = held_out(name, args)
            tables.append(table)
            print(f"\n### {table.attrs['title']} ({time.perf_counter() - start:.0f} s)\n")
            print(_common.markdown_table(table.fillna(""), digits=3), flush=True)
    head = f"Machine: {_common.machine()}; GDE: " + (
        "train() with no arguments" if args.gde_steps <= 0 else f"about {args.gde_steps} steps"
    )
    body = "\n\n".join(f"### {t.attrs['title']}\n\n{_common.markdown_table(t.fillna(''), digits=3)}" for t in tables)
    return {"tables": tables, "markdown": f"\n## Summary\n\n{head}\n\n{body}"}


def main(argv: list[str] | None = None) -> dict:
    def add(parser):
        parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
        parser.add_argument(
            "--held-out",
            nargs="*",
            default=None,
            choices=list(DATASETS),
            help="datasets also scored on held-out samples (default: synthetic kang; none with --quick)",
        )
        parser.add_argument("--gde-steps", type=int, default=0, help="0: GDE train() with no arguments")
        parser.add_argument("--mrvi-epochs", type=int, default=50)
        parser.add_argument("--verbose", action="store_true", help="print tracebacks of failing methods")

    quick = "16 synthetic donors, 4 Kang pseudo-samples per condition, no held-out experiment by default"
    return _common.run_cli(__doc__, run, argv, quick, add)


if __name__ == "__main__":
    main()
