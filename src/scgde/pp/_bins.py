"""Sets from a continuous observation: quantile bins along an ordered axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def quantile_bins(adata: AnnData, key: str, n_bins: int = 20, key_added: str | None = None) -> pd.Series:
    """Bin a numeric ``obs`` column into ``n_bins`` quantiles: one ordered set per bin.

    With ``train(window=w)`` a model then trains on windows of a bin and its ``w`` neighbours (the
    quantile-window prior of the paper's promoter task), and set embeddings can be compared along
    the axis.

    Parameters
    ----------
    adata
        AnnData with a numeric column ``adata.obs[key]`` (missing values belong to no bin).
    key
        The column to bin (e.g. measured expression).
    n_bins
        Number of quantile bins (ties can merge bins; the labels say which quantile each holds).
    key_added
        Column written to ``adata.obs`` (default ``f"{key}_bin"``): an ordered categorical with
        labels ``"q0"``, ``"q1"``, ... from low to high (zero-padded: ``"q00"`` for 11 to 100 bins).

    Returns
    -------
    The bins (also written to ``adata.obs[key_added]``).

    Examples
    --------
    >>> adata = ad.AnnData(obs=pd.DataFrame({"expr": np.arange(10.0)}, index=[str(i) for i in range(10)]))
    >>> scgde.pp.quantile_bins(adata, "expr", n_bins=5).tolist()[:4]
    ['q0', 'q0', 'q1', 'q1']
    """
    if key not in adata.obs.columns:
        raise KeyError(f"key={key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}.")
    values = pd.to_numeric(adata.obs[key], errors="coerce")
    if values.notna().sum() == 0:
        raise ValueError(f"adata.obs[{key!r}] has no numeric values to bin.")
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}.")
    codes = pd.qcut(values.rank(method="first"), n_bins, labels=False)
    width = len(str(n_bins - 1))
    labels = [f"q{i:0{width}d}" for i in range(n_bins)]
    bins = pd.Series(
        pd.Categorical.from_codes(np.where(codes.isna(), -1, codes).astype(int), categories=labels, ordered=True),
        index=adata.obs_names,
        name=key_added or f"{key}_bin",
    )
    adata.obs[bins.name] = bins
    return bins
