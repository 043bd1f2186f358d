"""Synthetic families of sets with exact ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import wishart


def _set_names(n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"set_{i:0{width}d}" for i in range(n)]


def _as_adata(samples: list[np.ndarray], truth: dict, family: str, var_prefix: str = "x") -> AnnData:
    names = _set_names(len(samples))
    sizes = [len(s) for s in samples]
    obs = pd.DataFrame({"set": pd.Categorical(np.repeat(names, sizes), categories=names)})
    obs.index = [f"cell_{i}" for i in range(len(obs))]
    X = np.concatenate(samples).astype(np.float32)
    adata = AnnData(X, obs=obs, var=pd.DataFrame(index=[f"{var_prefix}{j}" for j in range(X.shape[1])]))
    adata.uns["synthetic"] = {"family": family, "sets": np.asarray(names), **truth}
    return adata


def inverse_wishart_covariances(n: int, dim: int, df: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of ``Sigma = W^{-1}``, ``W ~ Wishart(df, scale * I)`` (mean ``I / (scale (df - dim - 1))``)."""
    if df <= dim - 1:
        raise ValueError(f"Wishart needs df > dim - 1; got df={df}, dim={dim}.")
    w = wishart(df=df, scale=scale * np.eye(dim)).rvs(size=n, random_state=rng)
    w = np.asarray(w).reshape(n, dim, dim)
    return np.linalg.inv(w)


def synthetic_mvn(
    n_sets: int = 1000,
    set_size: int = 500,
    dim: int = 2,
    mean_range: tuple[float, float] = (0.0, 5.0),
    df: float | None = None,
    df0: float = 10.0,
    scale: float = 1.0,
    seed: int = 0,
) -> AnnData:
    """Sets of samples from random multivariate normals.

    ``mu ~ U[a, b]^dim`` and ``Sigma = W^{-1}`` with ``W ~ Wishart(df, scale * I)``; by default
    ``df = df0 * (dim - 1)`` (the paper's convention: 10 for 2-D, 40 for 5-D).

    Parameters
    ----------
    n_sets, set_size
        Number of sets and samples per set.
    dim
        Dimension.
    mean_range
        ``(a, b)`` of the uniform prior on means.
    df, df0, scale
        Inverse-Wishart parameters (``df`` overrides ``df0``).
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per sample, ``obs["set"]``, and the true parameters in
    ``uns["synthetic"]`` (``means (n_sets, dim)``, ``covs (n_sets, dim, dim)``).

    Examples
    --------
    >>> adata = synthetic_mvn(n_sets=10, set_size=50, dim=2, seed=0)
    >>> adata.uns["synthetic"]["covs"].shape
    (10, 2, 2)
    """
    rng = np.random.default_rng(seed)
    df = df0 * max(dim - 1, 1) if df is None else df
    means = rng.uniform(*mean_range, size=(n_sets, dim))
    covs = inverse_wishart_covariances(n_sets, dim, df, scale, rng)
    chol = np.linalg.cholesky(covs)
    samples = [m + rng.standard_normal((set_size, dim)) @ c.T for m, c in zip(means, chol, strict=True)]
    params = {"dim": dim, "df": float(df), "scale": float(scale), "mean_range": list(mean_range), "seed": seed}
    return _as_adata(samples, {"means": means, "covs": covs, "params": params}, "mvn")
