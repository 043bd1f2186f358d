"""Clone-level analysis: how much a clone's early state tells about its late state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsRegressor

from scgde.metrics import mutual_information, mutual_information_permutation_test

REPRESENTATIONS = ("gde", "pseudobulk", "composition")


def _adata_of(data) -> AnnData:
    return data if isinstance(data, AnnData) else data.adata


def _time_mask(adata: AnnData, time_key: str, times: Sequence) -> np.ndarray:
    if time_key not in adata.obs:
        raise KeyError(
            f"time_key={time_key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
        )
    values = adata.obs[time_key].astype(str)
    wanted = [str(t) for t in times]
    unknown = sorted(set(wanted) - set(values))
    if unknown:
        raise ValueError(f"Time point(s) {unknown} are not in adata.obs[{time_key!r}] (values: {sorted(set(values))}).")
    return values.isin(wanted).to_numpy()


def clone_representations(
    data,
    clone_key: str,
    time_key: str,
    times: Sequence,
    representation: str | None = None,
    state_key: str | None = None,
    use_rep: str = "X_pca",
) -> pd.DataFrame:
    """One vector per clone from all of its cells at the given time points.

    Parameters
    ----------
    data
        A trained :class:`~scgde.model.GDE` (its AnnData is used) or an AnnData.
    clone_key, time_key
        ``obs`` columns with the clone of each cell and its time point.
    times
        Time points whose cells form the clone's set.
    representation
        ``"gde"`` (the set embedding of those cells; needs a model), ``"pseudobulk"`` (mean of
        ``obsm[use_rep]``) or ``"composition"`` (fractions of ``state_key`` categories).
        Default: ``"gde"`` for a model, ``"pseudobulk"`` for an AnnData.
    state_key
        Cell-state column, for ``"composition"``.
    use_rep
        ``obsm`` key for ``"pseudobulk"``.

    Returns
    -------
    DataFrame indexed by clone.
    """
    adata = _adata_of(data)
    representation = representation or ("pseudobulk" if isinstance(data, AnnData) else "gde")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"Unknown representation={representation!r}; choose one of {list(REPRESENTATIONS)}.")
    if clone_key not in adata.obs:
        raise KeyError(
            f"clone_key={clone_key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
        )
    mask = _time_mask(adata, time_key, times) & adata.obs[clone_key].notna().to_numpy()
    sub = adata[mask]
    clones = sub.obs[clone_key].astype(str)
    if representation == "gde":
        if isinstance(data, AnnData):
            raise ValueError("representation='gde' needs a trained GDE model, not an AnnData.")
        return data.get_set_representation(sub, set_key=clone_key)
    if representation == "pseudobulk":
        if use_rep not in sub.obsm:
            raise KeyError(f"use_rep={use_rep!r} is not in adata.obsm (available: {list(adata.obsm)}).")
        return pd.DataFrame(np.asarray(sub.obsm[use_rep]), index=clones.to_numpy()).groupby(level=0).mean()
    if state_key is None or state_key not in sub.obs:
        raise KeyError(f"representation='composition' needs state_key= an obs column; got {state_key!r}.")
    states = adata.obs[state_key].astype("category").cat.categories
    table = pd.crosstab(clones.to_numpy(), sub.obs[state_key].astype(str).to_numpy(), normalize="index")
    return table.reindex(columns=states.astype(str), fill_value=0.0)


def _reduce(frame: pd.DataFrame, n_components: int | None, seed: int) -> np.ndarray:
    x = frame.to_numpy(dtype=float)
    if n_components is None or x.shape[1] <= n_components:
        return x
    return PCA(n_components=min(n_components, len(x) - 1), random_state=seed).fit_transform(x)


def clone_information(
    data,
    clone_key: str,
    time_key: str,
    early: Sequence,
    late: Sequence,
    representation: str | None = None,
    state_key: str | None = None,
    use_rep: str = "X_pca",
    n_components: int | None = 8,
    k: int = 3,
    n_permutations: int = 100,
    key_added: str | None = "clone_information",
    seed: int = 0,
) -> dict:
    """Mutual information between a clone's early and late representations (KSG, bits).

    Each clone present at both early and late time points gets an early vector (from all its
    cells at the ``early`` times) and a late vector (``late`` times); the KSG estimator (k
    neighbours, Chebyshev metric) gives the mutual information and a pointwise value per clone;
    a permutation of the late vectors across clones gives the null distribution.

    To compare representations of different widths fairly, each side is reduced to
    ``n_components`` principal components first (``None`` keeps all dimensions; KSG degrades in
    high dimension).

    Parameters
    ----------
    data
        A trained :class:`~scgde.model.GDE` or an AnnData (for the baselines).
    clone_key, time_key
        ``obs`` columns with each cell's clone and time point.
    early, late
        Time points of the early and the late sets.
    representation
        ``"gde"``, ``"pseudobulk"`` or ``"composition"`` (see :func:`clone_representations`).
    state_key, use_rep
        For the ``"composition"`` and ``"pseudobulk"`` representations.
    n_components
        Principal components per side before estimation.
    k
        KSG neighbours.
    n_permutations
        Size of the permutation null (0 to skip).
    key_added
        Store the result in ``adata.uns[key_added]`` and each cell's clone value in
        ``adata.obs[f"{key_added}_pointwise"]`` (NaN for cells of clones not in both periods);
        ``None`` stores nothing.
    seed
        Random seed (jitter, permutations, PCA).

    Returns
    -------
    dict with ``mi`` (bits), ``pointwise`` (Series per clone), ``null`` (permutation values),
    ``p_value``, ``n_clones`` and the parameters.
    """
    early_rep = clone_representations(data, clone_key, time_key, early, representation, state_key, use_rep)
    late_rep = clone_representations(data, clone_key, time_key, late, representation, state_key, use_rep)
    clones = early_rep.index.intersection(late_rep.index).sort_values()  # one order for every representation
    if len(clones) <= k + 1:
        raise ValueError(f"Only {len(clones)} clones have cells at both early={list(early)} and late={list(late)}.")
    x = _reduce(early_rep.loc[clones], n_components, seed)
    y = _reduce(late_rep.loc[clones], n_components, seed)
    mi, pointwise = mutual_information(x, y, k=k, pointwise=True, seed=seed)
    null, p_value = np.array([]), np.nan
    if n_permutations:
        _, null, p_value = mutual_information_permutation_test(x, y, n_permutations=n_permutations, k=k, seed=seed)
    rep = representation or ("pseudobulk" if isinstance(data, AnnData) else "gde")
    result = {
        "mi": float(mi),
        "pointwise": pd.Series(pointwise, index=clones, name="pointwise_mi"),
        "null": np.asarray(null),
        "p_value": float(p_value),
        "n_clones": len(clones),
        "params": {
            "representation": rep,
            "early": [str(t) for t in early],
            "late": [str(t) for t in late],
            "n_components": -1 if n_components is None else n_components,
            "k": k,
        },
    }
    if key_added is not None:
        adata = _adata_of(data)
        adata.uns[key_added] = {**result, "pointwise": result["pointwise"].to_frame()}
        per_cell = adata.obs[clone_key].astype(str).map(result["pointwise"])
        adata.obs[f"{key_added}_pointwise"] = per_cell.astype(float).to_numpy()
    return result


def predict_fate(
    data,
    clone_key: str,
    time_key: str,
    state_key: str,
    early: Sequence,
    late: Sequence,
    representation: str | None = None,
    use_rep: str = "X_pca",
    method: str = "ridge",
    n_splits: int = 5,
    n_neighbors: int = 10,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict a clone's late cell-state composition from its early representation.

    Clones present at both periods are split into ``n_splits`` folds; a ridge regression (or a
    kNN regressor) is fitted on the other folds' clones and predicts the held-out clones' late
    composition (fractions of ``state_key`` categories among the clone's late cells).

    Returns
    -------
    ``(scores, predictions)``: per-fold scores (``tv``: mean total-variation distance between
    predicted and true compositions, ``mse``, ``r2``), and the out-of-fold predicted compositions
    (clones x states). Compare with the same call for baseline representations and with the
    trivial "training mean composition" (column ``tv_mean_baseline``).
    """
    if method not in ("ridge", "knn"):
        raise ValueError(f"Unknown method={method!r}; choose 'ridge' or 'knn'.")
    early_rep = clone_representations(data, clone_key, time_key, early, representation, state_key, use_rep)
    late_comp = clone_representations(_adata_of(data), clone_key, time_key, late, "composition", state_key)
    # one clone order for every representation, so a seed gives the same folds to GDE and to the baselines
    clones = early_rep.index.intersection(late_comp.index).sort_values()
    if len(clones) < n_splits:
        raise ValueError(f"Only {len(clones)} clones have cells at both periods; need at least n_splits={n_splits}.")
    x = early_rep.loc[clones].to_numpy(dtype=float)
    y = late_comp.loc[clones].to_numpy(dtype=float)
    pred = np.zeros_like(y)
    rows = []
    for fold, (tr, te) in enumerate(KFold(n_splits, shuffle=True, random_state=seed).split(x)):
        if method == "ridge":
            mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
            model = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit((x[tr] - mu) / sd, y[tr])
            p = model.predict((x[te] - mu) / sd)
        else:
            p = KNeighborsRegressor(n_neighbors=min(n_neighbors, len(tr))).fit(x[tr], y[tr]).predict(x[te])
        p = np.clip(p, 0, None)
        p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
        pred[te] = p
        mean_comp = y[tr].mean(0)
        rows.append(
            {
                "fold": fold,
                "tv": 0.5 * np.abs(p - y[te]).sum(1).mean(),
                "mse": ((p - y[te]) ** 2).mean(),
                "r2": 1 - ((p - y[te]) ** 2).sum() / ((y[te] - y[tr].mean(0)) ** 2).sum(),
                "tv_mean_baseline": 0.5 * np.abs(mean_comp - y[te]).sum(1).mean(),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(pred, index=clones, columns=late_comp.columns)
