"""Distances between empirical (weighted) samples, numpy in and out.

:func:`exact_w2` solves the exact optimal-transport problem with POT. The other functions are thin
wrappers around the torch distances of :mod:`scgde.nn` (the same functions that train the direct
generator), so training losses and evaluation metrics cannot drift apart.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import ot
import torch

from scgde.nn import _distances as _nn

#: above this many pairs ``n * m`` :func:`exact_w2` warns that it will be slow
_EXACT_W2_WARN_PAIRS = 5000 * 5000


def _samples(x, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in ndims:
        shapes = " or ".join({1: "(n,)", 2: "(n, d)", 3: "(B, n, d)"}[k] for k in ndims)
        raise ValueError(f"{name} must have shape {shapes}, got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite.")
    return arr


def _weights(w, x: np.ndarray, name: str, xname: str) -> np.ndarray | None:
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    if w.shape != x.shape[:-1]:
        raise ValueError(f"{name} must have shape {x.shape[:-1]} to match {xname} {x.shape}, got {w.shape}.")
    if np.any(w < 0) or not np.all(w.sum(-1) > 0):
        raise ValueError(f"{name} must be non-negative with a positive sum per set.")
    return w


def exact_w2(x, y, x_weights=None, y_weights=None) -> float:
    """Exact 2-Wasserstein distance between two (weighted) empirical distributions.

    Solves the discrete optimal-transport linear program with squared Euclidean cost (POT
    ``ot.emd2``, network simplex) and returns ``W2 = sqrt(min_pi sum pi_ij |x_i - y_j|^2)``.

    .. note::
        The solver needs ``O(n m)`` memory and roughly ``O(n^3)`` time: use it for sets of up to a
        few thousand points (it warns beyond 5000 x 5000 pairs); prefer :func:`sliced_w2` or
        :func:`sinkhorn_divergence` for large sets.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)`` (or 1-D samples ``(n,)``, ``(m,)``).
    x_weights, y_weights
        Optional non-negative weights ``(n,)`` and ``(m,)``; normalised to sum to 1 (uniform if
        ``None``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 2))
    >>> round(exact_w2(x, x + [3.0, 4.0]), 6)  # a pure shift moves every point by |shift|
    5.0
    """
    x = _samples(x, "x", (1, 2))
    y = _samples(y, "y", (1, 2))
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape} and {y.shape}.")
    a = _weights(x_weights, x, "x_weights", "x")
    b = _weights(y_weights, y, "y_weights", "y")
    n, m = len(x), len(y)
    a = np.full(n, 1.0 / n) if a is None else a / a.sum()
    b = np.full(m, 1.0 / m) if b is None else b / b.sum()
    if n * m > _EXACT_W2_WARN_PAIRS:
        warnings.warn(
            f"exact_w2 on {n} x {m} points is slow (O(n^3) network simplex); consider sliced_w2.",
            stacklevel=2,
        )
    cost = ot.dist(x, y, metric="sqeuclidean")
    sq = ot.emd2(a, b, cost, numItermax=max(100_000, 50 * n * m))
    return float(np.sqrt(max(float(sq), 0.0)))


def _torch_distance(fn: Callable, x, y, x_weights, y_weights, **kwargs) -> np.ndarray | float:
    """Call a batched :mod:`scgde.nn` distance on numpy data in float64; float or ``(B,)`` array out."""
    x = _samples(x, "x", (2, 3))
    y = _samples(y, "y", (2, 3))
    if x.ndim != y.ndim:
        raise ValueError(
            f"x and y must both be single sets (n, d) or both batches (B, n, d), got {x.shape}, {y.shape}."
        )
    if x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(f"x and y must have the same dimension (and batch size), got {x.shape} and {y.shape}.")
    a = _weights(x_weights, x, "x_weights", "x")
    b = _weights(y_weights, y, "y_weights", "y")

    def t(arr):
        if arr is None:
            return None
        arr = np.ascontiguousarray(arr)
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch cannot wrap read-only memory

    with torch.no_grad():
        out = fn(t(x), t(y), t(a), t(b), **kwargs)
    out = out.detach().cpu().numpy()
    return float(out) if out.ndim == 0 else out


def sliced_w2(
    x, y, x_weights=None, y_weights=None, n_projections: int = 256, squared: bool = False, seed: int | None = 0
) -> np.ndarray | float:
    """Sliced 2-Wasserstein distance (Monte Carlo over random directions), numpy wrapper.

    Wraps :func:`scgde.nn.sliced_wasserstein`:
    ``SW2 = (E_theta W2^2(theta # P, theta # Q))^1/2`` over ``n_projections`` uniform directions.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)``, or batches of sets ``(B, n, d)`` and ``(B, m, d)``.
    x_weights, y_weights
        Optional non-negative weights ``(n,)``/``(m,)`` or ``(B, n)``/``(B, m)``.
    n_projections
        Number of random directions.
    squared
        Return ``SW2^2``.
    seed
        Seed of the random directions (``None``: torch's global generator).

    Returns
    -------
    A float for one pair of sets, an array ``(B,)`` for batches.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 2))
    >>> sliced_w2(x, x) < 1e-5
    True
    """
    if n_projections < 1:
        raise ValueError(f"n_projections must be positive, got {n_projections}.")
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    return _torch_distance(
        _nn.sliced_wasserstein,
        x,
        y,
        x_weights,
        y_weights,
        n_projections=int(n_projections),
        squared=squared,
        generator=generator,
    )


def mmd(x, y, x_weights=None, y_weights=None, bandwidth: float | str = "median", squared: bool = True):
    """Maximum mean discrepancy with a Gaussian kernel, numpy wrapper of :func:`scgde.nn.mmd`.

    Kernel ``exp(-|x - y|^2 / (2 sigma^2))``; ``bandwidth="median"`` takes ``sigma`` as the median
    pairwise distance of the pooled sample of each pair of sets. The (biased, V-statistic)
    squared MMD is returned unless ``squared=False``.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)``, or batches of sets ``(B, n, d)`` and ``(B, m, d)``.
    x_weights, y_weights
        Optional non-negative weights ``(n,)``/``(m,)`` or ``(B, n)``/``(B, m)``.
    bandwidth
        Kernel width ``sigma`` (a positive number) or ``"median"``.
    squared
        Return ``MMD^2`` (default) or ``MMD``.

    Returns
    -------
    A float for one pair of sets, an array ``(B,)`` for batches.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 2))
    >>> mmd(x, x + 1.0) > mmd(x, x + 0.1)
    True
    """
    if not isinstance(bandwidth, str) and not bandwidth > 0:
        raise ValueError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}.")
    return _torch_distance(_nn.mmd, x, y, x_weights, y_weights, bandwidth=bandwidth, squared=squared)


def energy_distance(x, y, x_weights=None, y_weights=None) -> np.ndarray | float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``, numpy wrapper of :func:`scgde.nn.energy_distance`.

    The squared form (as in scPerturb and pertpy's ``edistance``), weighted V-statistic.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)``, or batches of sets ``(B, n, d)`` and ``(B, m, d)``.
    x_weights, y_weights
        Optional non-negative weights ``(n,)``/``(m,)`` or ``(B, n)``/``(B, m)``.

    Returns
    -------
    A float for one pair of sets, an array ``(B,)`` for batches.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 2))
    >>> abs(energy_distance(x, x)) < 1e-5
    True
    """
    return _torch_distance(_nn.energy_distance, x, y, x_weights, y_weights)


def sinkhorn_divergence(
    x, y, x_weights=None, y_weights=None, blur: float = 0.05, scaling: float = 0.9
) -> np.ndarray | float:
    """Debiased Sinkhorn divergence, numpy wrapper of :func:`scgde.nn.sinkhorn_divergence` (GeomLoss).

    Ground cost ``|x - y|^2 / 2`` and entropic length scale ``blur`` (``epsilon = blur^2``): as
    ``blur -> 0`` the value tends to ``W2^2 / 2``. With the defaults (``p=2``, ``blur=0.05``) this
    is the metric of the GDE paper's image benchmarks.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)``, or batches of sets ``(B, n, d)`` and ``(B, m, d)``.
    x_weights, y_weights
        Optional non-negative weights ``(n,)``/``(m,)`` or ``(B, n)``/``(B, m)``.
    blur
        Entropic blur (in the units of the data).
    scaling
        epsilon-scaling ratio of GeomLoss (closer to 1: more accurate, slower).

    Returns
    -------
    A float for one pair of sets, an array ``(B,)`` for batches.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 2))
    >>> round(sinkhorn_divergence(x, x + [1.0, 0.0], blur=0.01), 2)  # ~ |shift|^2 / 2
    0.5
    """
    if not blur > 0:
        raise ValueError(f"blur must be positive, got {blur!r}.")
    if not 0 < scaling < 1:
        raise ValueError(f"scaling must lie in (0, 1), got {scaling!r}.")
    return _torch_distance(_nn.sinkhorn_divergence, x, y, x_weights, y_weights, blur=blur, scaling=scaling)
