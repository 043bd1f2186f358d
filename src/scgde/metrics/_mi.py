"""Kraskov-Stoegbauer-Grassberger (KSG) mutual-information estimator."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

_JITTER = 1e-10


def _as_2d(v, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, d), got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite.")
    return arr


def _check_xy(x, y, k: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}.")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if len(x) <= k:
        raise ValueError(f"Need more than k={k} samples, got {len(x)}.")
    return x, y


def _jitter(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add uniform noise of relative size 1e-10 (per column scale) to break ties between equal values."""
    scale = arr.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return arr + _JITTER * scale * rng.random(arr.shape)


def _ksg_pointwise(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Pointwise KSG (algorithm 1) values in bits for jittered ``x (n, dx)``, ``y (n, dy)``."""
    n = len(x)
    joint = np.hstack([x, y])
    # distance (max-norm) to the k-th neighbour in the joint space, the point itself excluded
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf)
    eps = dist[:, k]
    # points strictly closer than eps in each marginal; the counts include the point itself,
    # so they equal n_x(i) + 1 and n_y(i) + 1
    radius = np.nextafter(eps, 0.0)
    cx = cKDTree(x).query_ball_point(x, r=radius, p=np.inf, return_length=True)
    cy = cKDTree(y).query_ball_point(y, r=radius, p=np.inf, return_length=True)
    cx = np.maximum(np.asarray(cx), 1)
    cy = np.maximum(np.asarray(cy), 1)
    return (digamma(k) + digamma(n) - digamma(cx) - digamma(cy)) / np.log(2.0)


def mutual_information(x, y, k: int = 3, pointwise: bool = False, seed: int | None = 0):
    """Mutual information ``I(X; Y)`` in **bits** with the KSG estimator (Kraskov et al., 2004, algorithm 1).

    For each sample ``i``, ``eps_i`` is the max-norm (Chebyshev) distance to its ``k``-th nearest
    neighbour in the joint space ``(x, y)``; ``n_x(i)`` and ``n_y(i)`` count the *other* samples
    strictly within ``eps_i`` in the ``x`` and in the ``y`` space. The pointwise values are

    ``MI_i = [psi(k) + psi(N) - psi(n_x(i) + 1) - psi(n_y(i) + 1)] / ln 2``

    and the estimate is their mean. Before the neighbour search, uniform noise of size ``1e-10``
    (times each column's standard deviation; seeded) is added to break ties, so discrete or
    duplicated values do not produce zero distances. Individual ``MI_i`` can be negative, and so
    can the estimate for (nearly) independent variables.

    Parameters
    ----------
    x
        Samples ``(n,)`` or ``(n, dx)``.
    y
        Samples ``(n,)`` or ``(n, dy)`` paired with ``x`` row by row.
    k
        Number of neighbours (3 in the GDE paper; larger ``k``: lower variance, more bias).
    pointwise
        Also return the ``n`` pointwise values.
    seed
        Seed of the tie-breaking jitter.

    Returns
    -------
    The estimate (float), or ``(estimate, pointwise values (n,))`` if ``pointwise``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=2000)
    >>> y = 0.9 * x + np.sqrt(1 - 0.9**2) * rng.normal(size=2000)
    >>> bool(abs(mutual_information(x, y) - (-0.5 * np.log2(1 - 0.9**2))) < 0.1)
    True
    """
    x, y = _check_xy(x, y, k)
    rng = np.random.default_rng(seed)
    x, y = _jitter(x, rng), _jitter(y, rng)
    values = _ksg_pointwise(x, y, int(k))
    mi = float(values.mean())
    return (mi, values) if pointwise else mi


def mutual_information_permutation_test(
    x, y, n_permutations: int = 100, k: int = 3, seed: int | None = 0
) -> tuple[float, np.ndarray, float]:
    """Permutation test of independence with the KSG mutual information (bits).

    The rows of ``y`` are permuted ``n_permutations`` times (which destroys any dependence on ``x``
    while keeping both marginals) to give a null distribution of the estimate.

    Parameters
    ----------
    x, y
        Paired samples ``(n,)`` or ``(n, d)``, as in :func:`mutual_information`.
    n_permutations
        Number of permutations.
    k
        Number of neighbours of the KSG estimator.
    seed
        Seed of the permutations and of the jitter.

    Returns
    -------
    mi
        The estimate on the observed pairs.
    null_values
        The ``n_permutations`` estimates on permuted pairs.
    p_value
        ``(1 + #{null >= mi}) / (1 + n_permutations)`` (never 0).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=300)
    >>> mi, null, p = mutual_information_permutation_test(x, x + rng.normal(size=300), n_permutations=20)
    >>> p < 0.1
    True
    """
    x, y = _check_xy(x, y, k)
    if int(n_permutations) != n_permutations or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}.")
    rng = np.random.default_rng(seed)
    jitter_seed = int(rng.integers(2**63))
    mi = mutual_information(x, y, k=k, seed=jitter_seed)
    null = np.array(
        [mutual_information(x, y[rng.permutation(len(y))], k=k, seed=jitter_seed) for _ in range(int(n_permutations))]
    )
    p_value = float((1 + np.sum(null >= mi)) / (1 + len(null)))
    return mi, null, p_value
