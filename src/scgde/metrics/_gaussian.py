"""Closed-form optimal-transport quantities between Gaussians."""

from __future__ import annotations

import numpy as np
import ot


def gaussian_w2(mean1, cov1, mean2, cov2, paired: bool = True) -> np.ndarray | float:
    """True 2-Wasserstein distance between Gaussians (not squared).

    ``W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``.

    Parameters
    ----------
    mean1, mean2
        Means ``(d,)`` or ``(n, d)``.
    cov1, cov2
        Covariances ``(d, d)`` or ``(n, d, d)``.
    paired
        With ``n`` Gaussians on each side: ``True`` gives the ``n`` distances of matching pairs,
        ``False`` the ``n x n`` matrix of all pairs.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian_w2(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
    1.414...
    """
    m1, m2 = np.asarray(mean1, float), np.asarray(mean2, float)
    c1, c2 = np.asarray(cov1, float), np.asarray(cov2, float)
    out = ot.gaussian.bures_wasserstein_distance(m1, m2, c1, c2, paired=paired and m1.ndim == 2)
    return float(out) if np.ndim(out) == 0 else np.asarray(out)
