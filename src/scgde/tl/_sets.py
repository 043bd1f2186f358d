"""Set embeddings in AnnData: store them, and build an AnnData with one observation per set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from scgde._docs import inject_docs
from scgde.data import as_key_list, set_labels


@inject_docs
def embed_sets(
    model,
    adata: AnnData | None = None,
    key_added: str = "gde",
    set_key: str | Sequence[str] | None = None,
    copy: bool = False,
    progress_bar: bool = True,
) -> AnnData | None:
    """Embed every set of ``adata`` with a trained model and store the result.

    Writes ``adata.uns[key_added]``: a dict with ``set_key``, ``embedding`` (DataFrame, one row per
    set) and ``params``; and ``adata.obsm[f"X_{key_added}"]``: each cell's set vector (NaN for cells in
    no set). Both survive an ``.h5ad`` round trip.

    Parameters
    ----------
    model
        A trained :class:`scgde.model.GDE`.
    adata
        AnnData (or, for a model set up with ``setup_mudata``, MuData) with the model's features
        (default: the training data); may contain new sets.
    key_added
        Key in ``.uns`` (and ``X_{key_added}`` in ``.obsm``).
    set_key
        Column(s) defining the sets (default: the model's ``set_key``).
    %(copy)s
    %(progress_bar)s

    Returns
    -------
    The copy if ``copy=True``, else ``None``.

    Examples
    --------
    >>> scgde.tl.embed_sets(model, progress_bar=False)
    >>> sets = scgde.tl.set_adata(model.adata)
    >>> sc.pp.neighbors(sets, use_rep="X_gde", n_neighbors=5)
    >>> sets.obsm["X_gde"].shape
    (12, 4)
    """
    if getattr(model, "niche_key", None) is not None:
        raise ValueError("This model embeds niches (niche_key=): store them with scgde.tl.embed_niches(model).")
    adata = model.adata if adata is None else adata
    if copy:
        adata = adata.copy()
    keys = as_key_list(set_key) if set_key is not None else model.set_key
    emb = model.get_set_representation(adata, keys, progress_bar=progress_bar)
    codes, _ = set_labels(adata.obs, keys)
    per_cell = np.full((adata.n_obs, emb.shape[1]), np.nan, dtype=np.float32)
    per_cell[codes >= 0] = emb.to_numpy()[codes[codes >= 0]]
    params = model.init_params_["non_kwargs"]
    adata.uns[key_added] = {
        "set_key": keys,
        "embedding": emb,
        "params": {
            "model": type(model).__name__,
            **{k: params[k] for k in ("n_latent", "encoder", "generator") if k in params},
        },
    }
    adata.obsm[f"X_{key_added}"] = per_cell
    return adata if copy else None


def _majority(values: pd.Series, codes: np.ndarray, n_sets: int) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent value per set and its fraction (missing values never win)."""
    cat = pd.Categorical(values)
    counts = np.zeros((n_sets, max(len(cat.categories), 1)))
    ok = cat.codes >= 0
    np.add.at(counts, (codes[ok], cat.codes[ok]), 1)
    top = counts.argmax(1)
    total = np.bincount(codes, minlength=n_sets)
    frac = counts[np.arange(n_sets), top] / np.maximum(total, 1)
    labels = np.asarray(cat.categories, dtype=object)[top] if len(cat.categories) else np.full(n_sets, np.nan)
    labels = np.where(counts.max(1) > 0, labels, np.nan)
    return labels, frac


def set_adata(adata: AnnData, key: str = "gde") -> AnnData:
    """An AnnData with one observation per set, ready for ``sc.pp.neighbors`` / ``sc.tl.umap``.

    Parameters
    ----------
    adata
        Cells with set embeddings stored by :func:`embed_sets` under ``key``: an AnnData, or a MuData
        (its joint ``obs``, e.g. after ``embed_sets`` of a model set up with ``setup_mudata``).
    key
        The ``uns`` key of the embeddings.

    Returns
    -------
    AnnData ``n_sets x n_latent`` whose ``X`` and ``obsm[f"X_{key}"]`` hold the embeddings, and
    whose ``obs`` has ``n_cells`` (set size); every ``adata.obs`` column that is constant within
    each set; for other categorical (or string/bool) columns the majority value per set and its
    fraction (``<col>_fraction``); for other numeric columns the per-set mean (``<col>_mean``).
    """
    if key not in adata.uns or "embedding" not in adata.uns[key]:
        raise KeyError(
            f"adata.uns[{key!r}] has no set embeddings; run scgde.tl.embed_sets(model, adata, key_added={key!r}) first."
        )
    info = adata.uns[key]
    keys = as_key_list(info["set_key"])
    emb = info["embedding"]
    codes, names = set_labels(adata.obs, keys)
    pos = pd.Index(names).get_indexer(emb.index.astype(str))
    if (pos < 0).any():
        raise ValueError(f"Embedded sets are missing from adata.obs[{keys}]; re-run scgde.tl.embed_sets.")
    # restrict the cells to the embedded sets, renumbered in embedding order
    remap = np.full(len(names) + 1, -1, dtype=np.int64)
    remap[pos] = np.arange(len(pos))
    codes = remap[codes]
    in_set = codes >= 0
    codes_in, obs_in = codes[in_set], adata.obs.loc[in_set]
    n_sets = len(emb)

    out = pd.DataFrame(index=emb.index.astype(str).rename(None))
    out["n_cells"] = np.bincount(codes_in, minlength=n_sets)
    for col in adata.obs.columns:
        if col.startswith(("_scvi", "_scgde")) or col == "n_cells":
            continue
        values = obs_in[col]
        n_unique = values.groupby(codes_in).nunique(dropna=False).reindex(range(n_sets), fill_value=0)
        if (n_unique <= 1).all():
            first = values.groupby(codes_in).first().reindex(range(n_sets))
            out[col] = first.to_numpy()
            if isinstance(values.dtype, pd.CategoricalDtype):
                out[col] = pd.Categorical(out[col], categories=values.cat.categories)
        elif is_numeric_dtype(values) and not is_bool_dtype(values):
            out[f"{col}_mean"] = values.groupby(codes_in).mean().reindex(range(n_sets)).to_numpy()
        else:
            labels, frac = _majority(values, codes_in, n_sets)
            out[col] = pd.Categorical(labels)
            out[f"{col}_fraction"] = frac
    z = emb.to_numpy(dtype=np.float32)
    sets = AnnData(z, obs=out, var=pd.DataFrame(index=list(emb.columns)))
    sets.obsm[f"X_{key}"] = z
    sets.uns["set_key"] = keys
    return sets
