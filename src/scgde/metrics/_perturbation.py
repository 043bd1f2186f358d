"""Perturbation-response scores on arrays: mean changes, DE genes, PerturBench rank, distribution distances.

Pure numerics: per-gene mean vectors and cell matrices in, floats (or index arrays) out. Reading AnnData
(groups, layers, subsamples, the shared PCA) and assembling the per-perturbation table is the job of
:func:`scgde.tl.perturbation_report`, which calls these functions once per (method, group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from ._empirical import energy_distance, mmd, sliced_w2

#: relative round-off of values stored as float32: a delta whose spread is below it counts as constant
FLOAT32_ROUNDOFF = 64 * np.finfo(np.float32).eps


def pearson_or_nan(a: np.ndarray, b: np.ndarray, tol_a: float = 0.0, tol_b: float = 0.0) -> float:
    """Pearson correlation of two vectors; NaN when either is constant up to its tolerance.

    Parameters
    ----------
    a, b
        Vectors of the same length.
    tol_a, tol_b
        A vector whose range (``max - min``) is at most its tolerance counts as constant.

    Returns
    -------
    The correlation clipped to ``[-1, 1]``, or NaN (a constant vector, or fewer than 2 entries).
    """
    if len(a) < 2 or np.ptp(a) <= tol_a or np.ptp(b) <= tol_b:
        return np.nan
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip(np.sum(a * b) / np.sqrt(np.sum(a**2) * np.sum(b**2)), -1.0, 1.0))


def top_de_genes(
    true_mean: np.ndarray,
    control_mean: np.ndarray,
    k: int,
    rank: Literal["mean_diff", "t"] = "mean_diff",
    true_var: np.ndarray | None = None,
    n_true: int | None = None,
    control_var: np.ndarray | None = None,
    n_control: int | None = None,
) -> np.ndarray:
    """Positions of the ``k`` genes that change most between perturbed and control cells.

    Parameters
    ----------
    true_mean, control_mean
        Per-gene means of the measured perturbed and control cells.
    k
        Number of genes returned (at most the number of genes).
    rank
        ``"mean_diff"``: largest ``|true_mean - control_mean|``; ``"t"``: largest absolute Welch t statistic
        ``(mean_t - mean_c) / sqrt(var_t / n_t + var_c / n_c)`` (a change with zero variance ranks first).
    true_var, n_true, control_var, n_control
        Unbiased per-gene variances and cell counts, for ``rank="t"``.

    Returns
    -------
    Gene positions, largest score first (ties in gene order).
    """
    score = np.abs(true_mean - control_mean)
    if rank == "t":
        if true_var is None or control_var is None or n_true is None or n_control is None:
            raise ValueError("rank='t' needs true_var, n_true, control_var and n_control.")
        se = np.sqrt(true_var / n_true + control_var / n_control)
        score = np.divide(score, se, out=np.where(score > 0, np.inf, 0.0), where=se > 0)
    elif rank != "mean_diff":
        raise ValueError(f"rank must be 'mean_diff' or 't', got {rank!r}.")
    return np.argsort(-score, kind="stable")[:k]


def delta_metrics(
    predicted_mean: np.ndarray,
    true_mean: np.ndarray,
    control_mean: np.ndarray,
    top: np.ndarray | None = None,
    centroid: np.ndarray | None = None,
    rtol: float = FLOAT32_ROUNDOFF,
) -> dict[str, float]:
    """Scores of a predicted mean change from the control against the measured one.

    With ``d_pred = predicted_mean - control_mean`` and ``d_true = true_mean - control_mean``:
    ``pearson_delta`` (Pearson of the deltas over all genes), ``mse_delta`` (their mean squared error),
    ``r2_delta`` (``1 - SS_res / SS_tot``, NaN when ``d_true`` is constant), and with ``top`` the
    Pearson and MSE on those genes (``pearson_delta_top``, ``mse_top``), and ``pearson_delta_pert``: the
    Pearson of the changes from the perturbed ``centroid`` (NaN without one).

    Parameters
    ----------
    predicted_mean, true_mean, control_mean
        Per-gene means of the predicted, measured perturbed and control cells.
    top
        Gene positions of the top DE genes (see :func:`top_de_genes`); ``None`` omits the top-gene scores.
    centroid
        Per-gene perturbed centroid (the average of the perturbation means of the context).
    rtol
        Relative round-off of the stored values: a delta whose range is within ``rtol`` times the largest
        absolute mean it comes from counts as constant (its Pearson is NaN).

    Returns
    -------
    ``{name: value}`` with the keys above.
    """
    d_pred, d_true = predicted_mean - control_mean, true_mean - control_mean
    # a delta whose spread is at the round-off level of the values read (e.g. control cells
    # relabelled by a "no change" baseline) counts as constant: Pearson is NaN
    tol_p = rtol * max(np.abs(predicted_mean).max(), np.abs(control_mean).max())
    tol_t = rtol * max(np.abs(true_mean).max(), np.abs(control_mean).max())
    out = {"pearson_delta": pearson_or_nan(d_pred, d_true, tol_p, tol_t)}
    if top is not None:
        out["pearson_delta_top"] = pearson_or_nan(d_pred[top], d_true[top], tol_p, tol_t)
    if centroid is None:
        out["pearson_delta_pert"] = np.nan
    else:
        out["pearson_delta_pert"] = pearson_or_nan(predicted_mean - centroid, true_mean - centroid, tol_p, tol_t)
    out["mse_delta"] = float(np.mean((d_pred - d_true) ** 2))
    if top is not None:
        out["mse_top"] = float(np.mean((d_pred[top] - d_true[top]) ** 2))
    ss_tot = float(np.sum((d_true - d_true.mean()) ** 2))
    ss_res = float(np.sum((d_pred - d_true) ** 2))
    out["r2_delta"] = 1.0 - ss_res / ss_tot if ss_tot > 0 else np.nan
    return out


def perturbed_centroids(means: Mapping[tuple[str, str], np.ndarray]) -> dict[str, np.ndarray]:
    """Perturbed centroid per context: the average of its perturbation means, each weighing alike (Systema).

    Parameters
    ----------
    means
        ``{(context, perturbation): per-gene mean}``.

    Returns
    -------
    ``{context: centroid}`` for the contexts with at least two perturbations (a single perturbation is its
    own centroid: its change from it is zero, the Pearson undefined).
    """
    by_context: dict[str, list[np.ndarray]] = {}
    for (c, _), mean in means.items():
        by_context.setdefault(c, []).append(mean)
    return {c: np.mean(group_means, axis=0) for c, group_means in by_context.items() if len(group_means) > 1}


def perturbench_rank(true_mean: np.ndarray, predicted_means: Sequence[np.ndarray], own: int) -> float:
    """PerturBench's rank of a prediction among a method's predictions of other groups (Wu et al., 2024).

    The predicted means are sorted by their Euclidean distance to the measured mean of the group;
    ``rank = (#{q != own closer} + #{q != own as close} / 2) / (n - 1)`` (ties up to a relative ``1e-6``).

    Parameters
    ----------
    true_mean
        Per-gene mean of the measured group.
    predicted_means
        Per-gene means of the method's predicted groups (of one context), the group's own included.
    own
        Position of the group's own prediction in ``predicted_means``.

    Returns
    -------
    0 when the own prediction is the closest, about 0.5 for predictions that ignore the perturbation; NaN
    with a single prediction.
    """
    if len(predicted_means) < 2:
        return np.nan
    dist = [float(np.linalg.norm(m - true_mean)) for m in predicted_means]
    own_dist = dist.pop(own)
    others = np.asarray(dist, dtype=float)
    tie = np.isclose(others, own_dist, rtol=1e-6, atol=1e-12)
    return float(((others < own_dist) & ~tie).sum() + 0.5 * tie.sum()) / len(others)


def distribution_metrics(x: np.ndarray, y: np.ndarray, n_projections: int = 256, seed: int = 0) -> dict[str, float]:
    """Distances between two samples of cells: energy distance, squared MMD and sliced W2.

    Parameters
    ----------
    x, y
        Samples ``(n, d)`` and ``(m, d)`` (e.g. predicted and measured cells in a shared PCA space).
    n_projections
        Random directions of the sliced 2-Wasserstein distance.
    seed
        Seed of the directions.

    Returns
    -------
    ``{"e_distance", "mmd", "sliced_w2"}`` as in :func:`energy_distance`, :func:`mmd` and :func:`sliced_w2`.
    """
    return {
        "e_distance": float(energy_distance(x, y)),
        "mmd": float(mmd(x, y)),
        "sliced_w2": float(sliced_w2(x, y, n_projections=n_projections, seed=seed)),
    }
