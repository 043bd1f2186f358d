"""Closed-form optimal-transport quantities between Gaussians."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot


def gaussian_w2(mean1, cov1, mean2, cov2, paired: bool = True) -> np.ndarray | float:
    """True 2-Wasserstein distance between Gaussians (not squared).

    ``W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``. Singular (PSD) covariances are fine.

    Parameters
    ----------
    mean1, mean2
        Means ``(d,)`` or ``(n, d)``, ``(m, d)``.
    cov1, cov2
        Covariances ``(d, d)`` or ``(n, d, d)``, ``(m, d, d)``.
    paired
        With stacks on both sides: ``True`` gives the ``n`` distances of matching pairs (``n == m``),
        ``False`` the ``n x m`` matrix of all pairs.

    Examples
    --------
    >>> import numpy as np
    >>> round(gaussian_w2(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)), 6)
    1.414214
    """
    m1, c1 = _check_gaussians(mean1, cov1, "mean1", "cov1")
    m2, c2 = _check_gaussians(mean2, cov2, "mean2", "cov2")
    m1, c1, m2, c2 = _pairwise_layout(m1, c1, m2, c2, paired=paired)
    return _to_output(np.sqrt(np.sum((m1 - m2) ** 2, axis=-1) + _bures_sq(c1, c2)))


# ---------------------------------------------------------------------------------------------
# helpers


def _sym(c: np.ndarray) -> np.ndarray:
    return 0.5 * (c + np.swapaxes(c, -1, -2))


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    """Square root of symmetric PSD matrices ``(..., d, d)``; round-off negative eigenvalues are set to 0."""
    vals, vecs = np.linalg.eigh(_sym(c))
    return np.einsum("...ij,...j,...kj->...ik", vecs, np.sqrt(np.clip(vals, 0.0, None)), vecs)


def _bures_sq(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Squared Bures distance ``tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``, broadcast over leading axes.

    Unlike POT, singular (PSD but not PD) covariances are fine: eigenvalues are clipped at 0.
    """
    r1 = _sqrtm_psd(c1)
    cross = _sym(r1 @ c2 @ r1)
    root_trace = np.sqrt(np.clip(np.linalg.eigvalsh(cross), 0.0, None)).sum(-1)
    tr = np.trace(c1, axis1=-2, axis2=-1) + np.trace(c2, axis1=-2, axis2=-1)
    return np.clip(tr - 2.0 * root_trace, 0.0, None)


def _check_gaussians(mean, cov, name_mean: str, name_cov: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(d,)``/``(d, d)`` or ``(n, d)``/``(n, d, d)`` Gaussian parameters."""
    m, c = np.asarray(mean, dtype=float), np.asarray(cov, dtype=float)
    if m.ndim not in (1, 2):
        raise ValueError(f"{name_mean} must have shape (d,) or (n, d), got {m.shape}.")
    if c.ndim != m.ndim + 1 or c.shape[-2:] != (m.shape[-1], m.shape[-1]) or c.shape[:-2] != m.shape[:-1]:
        expected = "(d, d)" if m.ndim == 1 else "(n, d, d)"
        raise ValueError(f"{name_cov} must have shape {expected} matching {name_mean} {m.shape}, got {c.shape}.")
    return m, c


def _pairwise_layout(m1, c1, m2, c2, paired: bool):
    """Broadcast two groups of Gaussians for paired (``(n,)``) or all-pairs (``(n, m)``) evaluation."""
    if m1.shape[-1] != m2.shape[-1]:
        raise ValueError(f"mean1 and mean2 must have the same dimension, got {m1.shape[-1]} and {m2.shape[-1]}.")
    if m1.ndim == 2 and m2.ndim == 2 and not paired:
        return m1[:, None], c1[:, None], m2[None], c2[None]
    if m1.ndim == 2 and m2.ndim == 2 and m1.shape[0] != m2.shape[0]:
        raise ValueError(
            f"paired=True needs as many Gaussians on both sides, got {m1.shape[0]} and {m2.shape[0]}; "
            "use paired=False for the matrix of all pairs."
        )
    return m1, c1, m2, c2


def _to_output(out: np.ndarray) -> np.ndarray | float:
    return float(out) if np.ndim(out) == 0 else np.asarray(out)


# ---------------------------------------------------------------------------------------------
# public


def paper_gaussian_error(mean1, cov1, mean2, cov2) -> np.ndarray | float:
    """The GDE paper's Gaussian "W2 reconstruction error": ``|m1 - m2|_2 + B^2(S1, S2)``.

    .. warning::
        This is **not** a 2-Wasserstein distance. It adds the *unsquared* distance between the
        means to the *squared* Bures term ``B^2(S1, S2) = tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``
        (the true ``W2`` is ``sqrt(|m1 - m2|^2 + B^2)``, see :func:`gaussian_w2`). It is provided
        only to compare with the numbers of the paper's Tables 5 and 6, which were computed this
        way; report :func:`gaussian_w2` alongside it.

    Parameters
    ----------
    mean1, mean2
        Means ``(d,)`` or, batched over a leading axis, ``(n, d)``.
    cov1, cov2
        Covariances ``(d, d)`` or ``(n, d, d)`` (positive semi-definite; singular ones are fine).

    Returns
    -------
    A float for one pair of Gaussians, otherwise an array ``(n,)`` of the errors of matching pairs.

    Examples
    --------
    >>> import numpy as np
    >>> paper_gaussian_error(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2))
    7.0
    """
    m1, c1 = _check_gaussians(mean1, cov1, "mean1", "cov1")
    m2, c2 = _check_gaussians(mean2, cov2, "mean2", "cov2")
    m1, c1, m2, c2 = _pairwise_layout(m1, c1, m2, c2, paired=True)
    out = np.linalg.norm(m1 - m2, axis=-1) + _bures_sq(c1, c2)
    return _to_output(out)


def _multinomial_moments(p, name: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float)
    if p.ndim not in (1, 2) or p.shape[-1] < 2:
        raise ValueError(f"{name} must be a probability vector (k,) or a stack (n, k) with k >= 2, got {p.shape}.")
    if np.any(p < 0) or not np.allclose(p.sum(-1), 1.0, atol=1e-6):
        raise ValueError(f"{name} must hold non-negative probabilities that sum to 1 along the last axis.")
    cov = p[..., :, None] * np.eye(p.shape[-1]) - p[..., :, None] * p[..., None, :]
    return p, cov


def multinomial_w2(p, q, paired: bool = True) -> np.ndarray | float:
    """Gaussian-approximate 2-Wasserstein distance between categorical distributions.

    Each probability vector ``p`` is replaced by the Gaussian with the moments of one categorical
    draw (one-hot vector): mean ``p`` and covariance ``diag(p) - p p^T`` (a single trial, *not*
    scaled by a number of trials), and the closed-form Gaussian ``W2`` is returned. This is the
    ground-truth geometry of the GDE paper's simplex experiments.

    The covariances are singular (rank ``k - 1`` at most), so the Bures term is computed with
    eigenvalues clipped at zero; vertices of the simplex (degenerate covariances) are fine.

    Parameters
    ----------
    p, q
        Probability vectors ``(k,)`` or stacks of them ``(n, k)``, ``(m, k)``.
    paired
        With stacks on both sides: ``True`` gives the ``n`` distances of matching rows (``n == m``),
        ``False`` the ``n x m`` matrix of all pairs.

    Returns
    -------
    A float, an array ``(n,)`` or an array ``(n, m)``.

    Examples
    --------
    >>> import numpy as np
    >>> round(multinomial_w2([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]), 6)  # two vertices: sqrt(2)
    1.414214
    >>> grid = np.array([[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2]])
    >>> multinomial_w2(grid, grid, paired=False).shape
    (3, 3)
    """
    m1, c1 = _multinomial_moments(p, "p")
    m2, c2 = _multinomial_moments(q, "q")
    if m1.shape[-1] != m2.shape[-1]:
        raise ValueError(f"p and q must have the same number of categories, got {m1.shape[-1]} and {m2.shape[-1]}.")
    m1, c1, m2, c2 = _pairwise_layout(m1, c1, m2, c2, paired=paired)
    sq = np.sum((m1 - m2) ** 2, axis=-1) + _bures_sq(c1, c2)
    return _to_output(np.sqrt(sq))


def mccann_interpolation(mean1, cov1, mean2, cov2, t: float | Sequence[float] | np.ndarray):
    """Point(s) at time ``t`` on the 2-Wasserstein (McCann) geodesic between two Gaussians.

    With ``T = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2`` the optimal transport map (linear part)
    from ``N(m1, S1)`` to ``N(m2, S2)``, the displacement interpolation is Gaussian with

    ``m_t = (1 - t) m1 + t m2`` and ``S_t = ((1 - t) I + t T) S1 ((1 - t) I + t T)``.

    It is a constant-speed geodesic: ``W2(P_0, P_t) = t W2(P_0, P_1)``.

    Parameters
    ----------
    mean1, cov1
        Start: mean ``(d,)`` and positive-definite covariance ``(d, d)``.
    mean2, cov2
        End: mean ``(d,)`` and positive semi-definite covariance ``(d, d)``.
    t
        A time in ``[0, 1]`` or a 1-D array of ``T`` times.

    Returns
    -------
    means, covs
        ``(d,)`` and ``(d, d)`` for a scalar ``t``, ``(T, d)`` and ``(T, d, d)`` for an array.

    Examples
    --------
    >>> import numpy as np
    >>> means, covs = mccann_interpolation(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2), [0.0, 0.5, 1.0])
    >>> means[1], np.diag(covs[1])
    (array([0.5, 0.5]), array([2.25, 2.25]))
    """
    m1, c1 = _check_gaussians(mean1, cov1, "mean1", "cov1")
    m2, c2 = _check_gaussians(mean2, cov2, "mean2", "cov2")
    if m1.ndim != 1 or m2.ndim != 1:
        raise ValueError(f"mean1 and mean2 must have shape (d,), got {m1.shape} and {m2.shape}.")
    if m1.shape != m2.shape:
        raise ValueError(f"mean1 and mean2 must have the same dimension, got {m1.shape} and {m2.shape}.")
    ts = np.asarray(t, dtype=float)
    if ts.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-D array, got shape {ts.shape}.")
    if np.any(ts < 0) or np.any(ts > 1) or not np.all(np.isfinite(ts)):
        raise ValueError("t must lie in [0, 1].")
    c1 = _sym(c1)
    try:
        np.linalg.cholesky(c1)
    except np.linalg.LinAlgError:
        raise ValueError("cov1 must be positive definite (the OT map from it is undefined otherwise).") from None
    a, _ = ot.gaussian.bures_wasserstein_mapping(m1, m2, c1, _sym(c2))
    a = _sym(np.asarray(a))
    eye = np.eye(m1.shape[0])
    tt = np.atleast_1d(ts)
    lin = (1 - tt)[:, None, None] * eye + tt[:, None, None] * a  # (T, d, d), symmetric
    covs = _sym(lin @ c1 @ lin)
    means = (1 - tt)[:, None] * m1 + tt[:, None] * m2
    if ts.ndim == 0:
        return means[0], covs[0]
    return means, covs
