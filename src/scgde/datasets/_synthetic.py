"""Synthetic families of sets with exact ground truth."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import ArrayLike
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


# ---------------------------------------------------------------------------------------------------------------------
# argument checks (shared with ``_digits``)
# ---------------------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``, or a ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _check_positive(name: str, value: object) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    return float(value)


def _check_range(name: str, value: object, lower: float | None = None) -> tuple[float, float]:
    """``(a, b)`` with finite ``a <= b`` (and ``a >= lower`` when given)."""
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair (low, high) of numbers; got {value!r}.") from None
    if not (np.isfinite(a) and np.isfinite(b)) or a > b:
        raise ValueError(f"`{name}` must be finite with low <= high; got {value!r}.")
    if lower is not None and a < lower:
        raise ValueError(f"`{name}` must have low >= {lower}; got {value!r}.")
    return a, b


def _check_alpha(alpha: float | ArrayLike, k: int, name: str = "alpha") -> np.ndarray:
    """Dirichlet concentration: a positive scalar (``alpha * 1_k``) or a positive vector of length ``k``."""
    arr = np.asarray(alpha, dtype=float)
    if arr.ndim == 0:
        arr = np.full(k, float(arr))
    if arr.ndim != 1 or len(arr) != k:
        raise ValueError(f"`{name}` must be a number or an array of length {k}; got shape {np.shape(alpha)}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"`{name}` must be finite and > 0; got {alpha!r}.")
    return arr


def _check_simplex_rows(name: str, value: ArrayLike, k: int | None = None) -> np.ndarray:
    """A 2-D array of non-negative rows, renormalised to sum to 1 (rows must sum to 1 within 1e-6)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"`{name}` must be a 2-D array (n_sets, n_categories); got shape {arr.shape}.")
    if k is not None and arr.shape[1] != k:
        raise ValueError(f"`{name}` must have {k} columns; got {arr.shape[1]}.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"`{name}` must be finite and non-negative.")
    sums = arr.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if len(bad):
        raise ValueError(f"`{name}` rows must sum to 1; row {bad[0]} sums to {sums[bad[0]]:.6g}.")
    return arr / sums[:, None]


# ---------------------------------------------------------------------------------------------------------------------
# Gaussian families
# ---------------------------------------------------------------------------------------------------------------------


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
    _check_int("n_sets", n_sets)
    _check_int("set_size", set_size)
    _check_int("dim", dim)
    _check_range("mean_range", mean_range)
    _check_positive("scale", scale)
    rng = np.random.default_rng(seed)
    df = df0 * max(dim - 1, 1) if df is None else df
    means = rng.uniform(*mean_range, size=(n_sets, dim))
    covs = inverse_wishart_covariances(n_sets, dim, df, scale, rng)
    chol = np.linalg.cholesky(covs)
    samples = [m + rng.standard_normal((set_size, dim)) @ c.T for m, c in zip(means, chol, strict=True)]
    params = {"dim": dim, "df": float(df), "scale": float(scale), "mean_range": list(mean_range), "seed": seed}
    return _as_adata(samples, {"means": means, "covs": covs, "params": params}, "mvn")


def synthetic_gmm(
    n_sets: int = 1000,
    set_size: int = 500,
    dim: int = 2,
    n_components: int = 3,
    alpha: float = 1.0,
    mean_range: tuple[float, float] = (0.0, 5.0),
    df: float | None = None,
    df0: float = 10.0,
    scale: float = 1.0,
    seed: int = 0,
) -> AnnData:
    """Sets of samples from random Gaussian mixtures.

    Set ``i`` is ``sum_k w_ik N(mu_ik, Sigma_ik)`` with ``w_i ~ Dirichlet(alpha 1_K)``, ``mu_ik ~ U[a, b]^dim`` and
    ``Sigma_ik = W^{-1}``, ``W ~ Wishart(df, scale * I)``, the component prior of :func:`synthetic_mvn` (by default
    ``df = df0 * (dim - 1)``; pass ``df=10`` for the paper's GMM *evaluation* prior, which does not scale with
    ``dim``). Each sample picks its component from ``Categorical(w_i)``.

    Overlap between components is controlled by ``mean_range`` relative to the covariance size
    ``E[Sigma] = I / (scale (df - dim - 1))``: a narrower range (or a smaller ``scale``, i.e. wider components) gives
    more overlap; ``a == b`` puts every component at the same mean.

    Parameters
    ----------
    n_sets, set_size
        Number of sets and samples per set.
    dim
        Dimension.
    n_components
        Components per mixture (``K``; 3 in the paper).
    alpha
        Symmetric Dirichlet concentration of the mixture weights (> 0).
    mean_range
        ``(a, b)`` of the uniform prior on component means.
    df, df0, scale
        Inverse-Wishart parameters, as in :func:`synthetic_mvn` (``df`` overrides ``df0``).
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per sample, ``obs["set"]``, the generating component in ``obs["component"]`` (int), and in
    ``uns["synthetic"]`` the truth ``weights (n_sets, K)``, ``means (n_sets, K, dim)``, ``covs (n_sets, K, dim, dim)``
    plus ``params``.

    Examples
    --------
    >>> adata = synthetic_gmm(n_sets=10, set_size=200, dim=2, n_components=3, seed=0)
    >>> truth = adata.uns["synthetic"]
    >>> truth["weights"].shape, truth["means"].shape, truth["covs"].shape
    ((10, 3), (10, 3, 2), (10, 3, 2, 2))
    """
    n_sets = _check_int("n_sets", n_sets)
    set_size = _check_int("set_size", set_size)
    dim = _check_int("dim", dim)
    k = _check_int("n_components", n_components)
    alpha = _check_positive("alpha", alpha)
    mean_range = _check_range("mean_range", mean_range)
    scale = _check_positive("scale", scale)
    rng = np.random.default_rng(seed)
    df = df0 * max(dim - 1, 1) if df is None else df

    weights = rng.dirichlet(np.full(k, alpha), size=n_sets)
    means = rng.uniform(*mean_range, size=(n_sets, k, dim))
    covs = inverse_wishart_covariances(n_sets * k, dim, df, scale, rng).reshape(n_sets, k, dim, dim)
    chol = np.linalg.cholesky(covs)

    # component of every sample by inverting the cumulative weights (zero-weight components are never chosen)
    u = rng.random((n_sets, set_size))
    cum = np.cumsum(weights, axis=1)[:, :-1]
    comp = (u[:, :, None] >= cum[:, None, :]).sum(axis=2)
    eps = rng.standard_normal((n_sets, set_size, dim))
    x = np.empty_like(eps)
    for c in range(k):
        y = means[:, c, None, :] + eps @ np.swapaxes(chol[:, c], 1, 2)
        mask = comp == c
        x[mask] = y[mask]

    params = {
        "dim": dim,
        "n_components": k,
        "alpha": alpha,
        "df": float(df),
        "scale": scale,
        "mean_range": list(mean_range),
        "seed": seed,
    }
    adata = _as_adata(list(x), {"weights": weights, "means": means, "covs": covs, "params": params}, "gmm")
    adata.obs["component"] = comp.ravel()
    return adata


# ---------------------------------------------------------------------------------------------------------------------
# count families
# ---------------------------------------------------------------------------------------------------------------------


def simplex_grid(n_categories: int = 3, resolution: int = 9) -> np.ndarray:
    """All probability vectors whose coordinates are multiples of ``1 / resolution``.

    These are the ``C(resolution + K - 1, K - 1)`` points ``(i_1, ..., i_K) / resolution`` with non-negative integers
    ``i_1 + ... + i_K = resolution`` (55 points for ``K = 3``, ``resolution = 9``: the paper's evaluation grid).

    Parameters
    ----------
    n_categories
        Number of categories ``K`` (>= 1).
    resolution
        Number of steps along each edge (>= 1).

    Returns
    -------
    Array ``(n_points, n_categories)`` of float64, rows summing to 1, in lexicographic order of ``(i_1, ..., i_K)``
    (so the first row is ``(0, ..., 0, 1)`` and the last ``(1, 0, ..., 0)``).

    Examples
    --------
    >>> grid = simplex_grid(3, 9)
    >>> grid.shape
    (55, 3)
    >>> grid[0].tolist(), grid[-1].tolist()
    ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    """
    k = _check_int("n_categories", n_categories)
    r = _check_int("resolution", resolution)

    def compositions(total: int, parts: int) -> list[tuple[int, ...]]:
        if parts == 1:
            return [(total,)]
        return [(i, *rest) for i in range(total + 1) for rest in compositions(total - i, parts - 1)]

    return np.asarray(compositions(r, k), dtype=float).reshape(-1, k) / r


def synthetic_multinomial(
    n_sets: int = 10000,
    set_size: int = 100,
    n_categories: int = 3,
    n_trials: int = 20,
    alpha: float | ArrayLike = 1.0,
    probabilities: ArrayLike | None = None,
    seed: int = 0,
) -> AnnData:
    """Sets of multinomial count vectors with random (or given) category probabilities.

    Set ``i`` has ``p_i ~ Dirichlet(alpha)``; each of its samples is a ``Multinomial(n_trials, p_i)`` count vector.
    An asymmetric ``alpha = (2**-5, 1, 1)`` reproduces the paper's prior-stretching runs; passing
    ``probabilities=simplex_grid(3, 9)`` gives its 55-set evaluation grid.

    Parameters
    ----------
    n_sets, set_size
        Number of sets and samples per set. ``n_sets`` is ignored when ``probabilities`` is given.
    n_categories
        Number of categories ``K``; ignored (taken from ``probabilities``) when ``probabilities`` is given.
    n_trials
        Trials per sample (20 in the paper's training data, 10 in its evaluation sets).
    alpha
        Dirichlet concentration: a number (``alpha * 1_K``) or an array of length ``K``, all > 0.
    probabilities
        Optional fixed probabilities ``(n_sets, K)``, rows summing to 1 (e.g. :func:`simplex_grid`); replaces the
        Dirichlet draw.
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per sample (``X`` float32 counts, ``K`` columns ``cat0 ...``), ``obs["set"]``, and in
    ``uns["synthetic"]`` the truth ``probabilities (n_sets, K)`` plus ``params``.

    Examples
    --------
    >>> adata = synthetic_multinomial(n_sets=20, set_size=50, alpha=(2**-5, 1, 1), seed=0)
    >>> adata.shape, adata.uns["synthetic"]["probabilities"].shape
    ((1000, 3), (20, 3))
    >>> grid = synthetic_multinomial(set_size=10, n_trials=10, probabilities=simplex_grid(3, 9))
    >>> grid.uns["synthetic"]["probabilities"].shape
    (55, 3)
    """
    set_size = _check_int("set_size", set_size)
    n_trials = _check_int("n_trials", n_trials)
    rng = np.random.default_rng(seed)
    params: dict = {"n_trials": n_trials, "seed": seed}
    if probabilities is None:
        n_sets = _check_int("n_sets", n_sets)
        k = _check_int("n_categories", n_categories)
        alpha_vec = _check_alpha(alpha, k)
        probs = rng.dirichlet(alpha_vec, size=n_sets)
        params.update(alpha=alpha_vec, probabilities_given=False)
    else:
        probs = _check_simplex_rows("probabilities", probabilities)
        n_sets, k = probs.shape
        params["probabilities_given"] = True
    params["n_categories"] = k
    # size (set_size, n_sets) broadcasts against pvals' leading axis (n_sets,)
    counts = rng.multinomial(n_trials, probs, size=(set_size, n_sets)).transpose(1, 0, 2)
    return _as_adata(list(counts), {"probabilities": probs, "params": params}, "multinomial", var_prefix="cat")


def synthetic_poisson(
    n_sets: int = 1000,
    set_size: int = 100,
    dim: int = 1,
    rate_range: tuple[float, float] = (0.0, 10.0),
    rates: ArrayLike | None = None,
    seed: int = 0,
) -> AnnData:
    """Sets of independent Poisson counts with random (or given) rates.

    Set ``i`` has rates ``lambda_i ~ U[a, b]^dim``; each sample is a vector of independent ``Poisson(lambda_ij)``
    counts. Used for the Rao-Blackwell experiment, where the estimand is ``P(X = 0) = exp(-lambda)``.

    Parameters
    ----------
    n_sets, set_size
        Number of sets and samples per set. ``n_sets`` is ignored when ``rates`` is given.
    dim
        Number of independent count coordinates; ignored (taken from ``rates``) when ``rates`` is given.
    rate_range
        ``(a, b)``, ``0 <= a <= b``, of the uniform prior on rates (the paper's config uses ``(0, 10)``).
    rates
        Optional fixed non-negative rates ``(n_sets, dim)``; a 1-D array means one rate per set (``dim = 1``).
        Replaces the uniform draw.
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per sample (``X`` float32 counts), ``obs["set"]``, and in ``uns["synthetic"]`` the truth
    ``rates (n_sets, dim)`` plus ``params``.

    Examples
    --------
    >>> adata = synthetic_poisson(n_sets=5, set_size=100, dim=1, seed=0)
    >>> p_zero = np.exp(-adata.uns["synthetic"]["rates"][:, 0])  # the Rao-Blackwell estimand per set
    >>> p_zero.shape
    (5,)
    """
    set_size = _check_int("set_size", set_size)
    rng = np.random.default_rng(seed)
    params: dict = {"seed": seed}
    if rates is None:
        n_sets = _check_int("n_sets", n_sets)
        dim = _check_int("dim", dim)
        lo_hi = _check_range("rate_range", rate_range, lower=0.0)
        lam = rng.uniform(*lo_hi, size=(n_sets, dim))
        params.update(rate_range=list(lo_hi), rates_given=False)
    else:
        lam = np.asarray(rates, dtype=float)
        if lam.ndim == 1:
            lam = lam[:, None]
        if lam.ndim != 2 or lam.size == 0:
            raise ValueError(f"`rates` must be a 1-D or 2-D non-empty array; got shape {np.shape(rates)}.")
        if not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError("`rates` must be finite and non-negative.")
        n_sets, dim = lam.shape
        params["rates_given"] = True
    params["dim"] = dim
    counts = rng.poisson(lam[:, None, :], size=(n_sets, set_size, dim))
    return _as_adata(list(counts), {"rates": lam, "params": params}, "poisson")
