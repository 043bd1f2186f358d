"""Perturbation-prediction report: reads measured, predicted and control AnnData, scores every (method, group).

The scores themselves are pure numerics in :mod:`scgde.metrics` (mean-delta scores, DE genes, PerturBench rank,
distribution distances); this module finds the groups, reads their rows (dense, sparse or backed, from ``X`` or a
layer), subsamples cells, fits the shared PCA and assembles the table.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from anndata import AnnData

from scgde.data import PerturbationDesign, RowFetcher, layer_fetcher, layer_matrix
from scgde.metrics._perturbation import (
    delta_metrics,
    distribution_metrics,
    perturbed_centroids,
    perturbench_rank,
    top_de_genes,
)

#: matrix entries read at a time when accumulating per-gene moments (bounded memory)
_CHUNK_ENTRIES = 2**24
#: metrics reported by :func:`perturbation_report`, in column order (``{n}`` is ``n_top_de``)
_DELTA_METRICS = (
    "pearson_delta",
    "pearson_delta_top{n}",
    "pearson_delta_pert",
    "mse_delta",
    "mse_top{n}",
    "r2_delta",
    "rank",
)
_DIST_METRICS = ("e_distance", "mmd", "sliced_w2")

Group = tuple[str, str]  # (context, perturbation); context "" without context_key
Moments = tuple[np.ndarray, np.ndarray | None, int]  # per-gene mean, variance (or None), cell count


class _Transformer(Protocol):
    def transform(self, x: np.ndarray) -> np.ndarray: ...  # pragma: no cover


@dataclass(frozen=True)
class _Settings:
    """The report's options that every (method, group) row needs."""

    layer: str | None
    n_top_de: int
    max_cells: int | None
    seed: int
    distributional: bool
    n_projections: int


@dataclass
class _Measured:
    """The measured side of the report, computed once and shared by every method."""

    groups: dict[Group, np.ndarray]  # rows of true per group
    moments: dict[Group, Moments]  # of true, from all cells of each group
    control_moments: dict[str, Moments]  # per context
    centroids: dict[str, np.ndarray] = field(default_factory=dict)  # perturbed centroid per context (>= 2 groups)
    top: dict[Group, np.ndarray] = field(default_factory=dict)  # top DE genes per group
    project: Callable[[np.ndarray], np.ndarray] | None = None  # the shared projection (distributional)
    cells: dict[Group, np.ndarray] = field(default_factory=dict)  # projected subsample of true per group


def perturbation_report(
    true: AnnData,
    predicted: AnnData | Mapping[str, AnnData],
    control: AnnData | None = None,
    perturbation_key: str | PerturbationDesign | None = None,
    n_top_de: int = 20,
    n_pcs: int | None = 50,
    pca: _Transformer | Callable[[np.ndarray], np.ndarray] | None = None,
    layer: str | None = None,
    max_cells: int | None = 500,
    seed: int = 0,
    *,
    context_key: str | None = None,
    design: PerturbationDesign | None = None,
    reference: AnnData | None = None,
    de_rank: Literal["mean_diff", "t"] = "mean_diff",
    de_genes: Mapping[str, Sequence[str]] | None = None,
    distributional: bool = True,
    n_projections: int = 256,
    summary: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Score predicted perturbation responses against measured cells, per perturbation and method.

    For every perturbation present in both ``true`` and a prediction, the report compares the
    predicted and measured cells through (i) their mean change from the control cells and (ii)
    their whole distributions in a shared PCA space. Pass several predictions as a dict to score
    methods (a model and its baselines) side by side in one table. The same function is
    :func:`scgde.metrics.perturbation_report`; the scores are computed on arrays by
    ``scgde.metrics._perturbation`` (``delta_metrics``, ``top_de_genes``, ``perturbench_rank``,
    ``distribution_metrics``).

    **Mean-delta metrics** (from *all* cells of each group; ``delta = mean(group) - mean(control)``
    per gene, control cells of the same context when ``context_key`` is given):

    - ``pearson_delta``: Pearson correlation over all genes of the predicted vs the true delta
      (cell-eval's ``pearson_delta``). NaN when a delta is constant across genes (up to the
      round-off of the stored values), e.g. for the "no change" baseline whose predicted delta is
      zero, even when it stores the control cells in float32.
    - ``pearson_delta_top{n}``: the same on the top-``n_top_de`` DE genes of true vs control
      (the GEARS / scGPT convention, with ``n = 20``). The DE genes are chosen from the *measured*
      cells only: by default (``de_rank="mean_diff"``) the ``n`` genes with the largest absolute
      mean difference ``|mean(true) - mean(control)|``; with ``de_rank="t"`` the largest absolute
      Welch t statistic ``(mean_t - mean_c) / sqrt(var_t / n_t + var_c / n_c)``, which favours
      genes whose change is large relative to their cell-to-cell noise. ``de_genes`` overrides both.
    - ``mse_delta``, ``mse_top{n}``: mean squared error of the predicted vs the true delta over all
      genes or the top-``n`` DE genes (the control mean cancels, so this is also the MSE of the
      means).
    - ``r2_delta``: ``1 - SS_res / SS_tot`` over all genes, ``SS_res = sum (d_pred - d_true)^2``,
      ``SS_tot = sum (d_true - mean(d_true))^2`` (scikit-learn's ``r2_score(d_true, d_pred)``).
      Predicting no change gives ``r2_delta <= 0``; it can be arbitrarily negative.
    - ``pearson_delta_pert``: Pearson correlation of the predicted vs the true change from the
      *perturbed centroid* instead of the control mean, ``mean(group) - centroid``, where the
      centroid of a context is the average of the perturbation means of ``reference`` (default
      ``true``), each perturbation weighing alike (Systema: Viñas Torné et al., Nat. Biotechnol.
      2025, "PearsonΔ_pert"). A model that only learns the change shared by all perturbations
      scores about 0 here while its ``pearson_delta`` can be high. NaN when a context has a single
      reference perturbation (its centroid is the group itself).
    - ``rank``: PerturBench's rank metric (Wu et al., 2024): for the measured group ``p``, the
      predicted groups ``q`` of the same method and context are sorted by the distance
      ``|mean(pred_q) - mean(true_p)|`` (Euclidean over all genes, i.e. the RMSE of the means);
      ``rank = (#{q != p closer than pred_p} + #{q != p as close} / 2) / (n - 1)``. 0: the
      prediction of ``p`` is the closest to the measured ``p``; about 0.5 for predictions that
      ignore the perturbation (mode collapse), whatever their other scores. NaN when the method
      predicts a single group of the context.

    **Distributional metrics** (predicted vs true cells, at most ``max_cells`` cells of each group,
    projected on a shared PCA space; computed with :func:`scgde.metrics.energy_distance`,
    :func:`scgde.metrics.mmd` and :func:`scgde.metrics.sliced_w2`):

    - ``e_distance``: energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with *Euclidean*
      cell-to-cell distances, V-statistic (within-set averages include the zero diagonal). This is
      the "squared" energy distance (the square of a metric) of pertpy's ``edistance`` with its
      current default ``cell_wise_metric="euclidean"`` (pertpy PR #733). The scPerturb paper and
      older pertpy averaged *squared* Euclidean distances, which reduces the statistic to
      ``2 |mean(X) - mean(Y)|^2`` (blind to spread): those values are not comparable to these.
    - ``mmd``: squared maximum mean discrepancy (biased V-statistic), Gaussian kernel whose width is
      the median pairwise distance of the pooled pair of samples.
    - ``sliced_w2``: sliced 2-Wasserstein distance (not squared) over ``n_projections`` random
      directions seeded by ``seed``.

    The PCA (``n_pcs`` components, centred, not scaled) is fitted on the control cells and the
    measured cells of every perturbation in ``true`` (the same subsamples of at most ``max_cells``
    cells per group that enter the distances, so every group weighs alike), so the space depends
    neither on the predictions nor on which methods are compared. Subsamples are drawn without
    replacement with seeds derived from ``seed`` and the group's (and method's) name: the same
    measured cells serve every method, and results do not depend on the order of the methods.

    Parameters
    ----------
    true
        Measured perturbed cells, with ``obs[perturbation_key]``.
    predicted
        Predicted cells with ``obs[perturbation_key]`` (any number of perturbations), or a dict
        ``{method name: AnnData}`` to compare several methods; a single AnnData is reported as
        method ``"predicted"``. A method that omits some perturbations is scored on the others
        (``n_perturbations`` of the summary tells).
    control
        Control cells, the reference of the deltas (and of the DE genes). ``None``: the cells of
        ``true`` labelled ``design.control`` (needs a design with a control label).
    perturbation_key
        Column of ``obs`` naming the perturbation (condition, group) of each cell in ``true`` and
        ``predicted`` (default ``"perturbation"``); a :class:`~scgde.data.PerturbationDesign` here
        counts as ``design=``.
    n_top_de
        Number of top DE genes for ``pearson_delta_top{n}`` and ``mse_top{n}`` (``0``: omit these
        columns). Clipped to the number of genes; the column name keeps the requested ``n``.
    n_pcs
        Components of the shared PCA; ``None`` computes the distances on the genes themselves.
    pca
        A fitted projection used instead of fitting one: an object with ``.transform`` (e.g. a
        fitted :class:`sklearn.decomposition.PCA`) or a function ``(n_cells, n_genes) ->
        (n_cells, k)``. ``n_pcs`` is then ignored.
    layer
        Layer of ``true``, ``predicted`` and ``control`` to read (default ``X``); all must hold it.
    max_cells
        Cells per group (control, each measured and each predicted perturbation) in the
        distributional metrics and the PCA fit (``None``: all cells; the distances cost
        ``O(max_cells^2)`` memory and time). Means always use all cells.
    seed
        Seed of the subsampling, of the PCA solver and of the sliced-W2 directions.
    context_key
        Optional ``obs`` column (cell type, cell line) in all three objects: groups are then
        ``(context, perturbation)`` pairs, each compared to the control cells of its context, and
        the report gets a ``context`` column.
    design
        A :class:`~scgde.data.PerturbationDesign` giving ``perturbation_key`` and ``context_key``
        (instead of the keywords). When it names a control label, groups with that label are
        references, not targets: they are never scored.
    reference
        Perturbed cells whose perturbed centroid is the reference of ``pearson_delta_pert`` (e.g.
        all measured perturbations, training ones included); default ``true``.
    de_rank
        How the top DE genes are ranked: ``"mean_diff"`` (absolute mean difference, default) or
        ``"t"`` (absolute Welch t statistic); see above.
    de_genes
        Optional ``{perturbation: gene names}`` used as the DE genes instead (e.g. the precomputed
        DE genes of a benchmark); the first ``n_top_de`` names of each list are used.
    distributional
        Compute ``e_distance``, ``mmd`` and ``sliced_w2`` (the PCA and distances are the slow part).
    n_projections
        Random directions of ``sliced_w2``.
    summary
        Also return the summary table: ``(per_perturbation, summary)``.

    Returns
    -------
    ``per_perturbation``: a tidy DataFrame with one row per (method, [context,] perturbation) and
    columns ``method``, (``context``,) ``perturbation``, ``n_true``, ``n_predicted`` (cell counts),
    ``pearson_delta``, ``pearson_delta_top{n}``, ``pearson_delta_pert``, ``mse_delta``,
    ``mse_top{n}``, ``r2_delta``, ``rank``, ``e_distance``, ``mmd``, ``sliced_w2``. Methods keep their input order; perturbations are sorted.

    With ``summary=True``, the tuple ``(per_perturbation, summary)``: ``summary`` is indexed by
    ``(method, statistic)`` with ``statistic`` in ``{"mean", "median"}`` over the perturbations
    of each method (NaNs skipped), columns ``n_perturbations`` and the metrics.
    ``summary.xs("mean", level="statistic")`` gives one row per method.

    Raises
    ------
    KeyError
        ``perturbation_key`` (or ``context_key``, ``layer``) missing; the message lists what exists.
    ValueError
        Different genes or gene order, empty ``control`` (or a context without control cells), no
        perturbation shared by ``true`` and a prediction, or an invalid argument.

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad
    >>> rng = np.random.default_rng(0)
    >>> shifts = {"ctrl": np.zeros(30), "A": np.r_[np.linspace(1, 3, 5), np.zeros(25)], "B": np.r_[np.zeros(25), -np.linspace(1, 2, 5)]}
    >>> def cells(label, as_label=None, n=100):  # n Gaussian cells of group `label`, named `as_label`
    ...     obs = pd.DataFrame({"perturbation": [as_label or label] * n}, index=[f"{label}{rng.integers(1e9)}_{i}" for i in range(n)])
    ...     return ad.AnnData(rng.normal(size=(n, 30)) + shifts[label], obs=obs)
    >>> ctrl, true, model = cells("ctrl"), ad.concat([cells("A"), cells("B")]), ad.concat([cells("A"), cells("B")])
    >>> no_change = ad.concat([cells("ctrl", "A"), cells("ctrl", "B")])  # baseline: control cells relabelled
    >>> per_pert, summ = perturbation_report(
    ...     true, {"model": model, "no change": no_change}, ctrl, n_top_de=5, n_pcs=10, summary=True
    ... )
    >>> per_pert[["method", "perturbation"]].values.tolist()
    [['model', 'A'], ['model', 'B'], ['no change', 'A'], ['no change', 'B']]
    >>> means = summ.xs("mean", level="statistic")
    >>> bool(means.loc["model", "pearson_delta_top5"] > 0.9)
    True
    >>> bool(means.loc["model", "e_distance"] < means.loc["no change", "e_distance"])
    True
    >>> bool(means.loc["no change", "r2_delta"] <= 0)
    True
    """
    methods = _methods(predicted)
    design = PerturbationDesign.resolve(
        design,
        perturbation_key if (perturbation_key is not None or design is not None) else "perturbation",
        context_key=context_key,
        need_control=False,
    )
    n_top_de = _check_arguments(n_top_de, n_pcs, max_cells, de_rank, pca)
    settings = _Settings(layer, n_top_de, max_cells, seed, distributional, n_projections)
    control = _control_cells(true, control, design)
    _check_inputs(true, control, methods, reference, design, layer)
    true_groups = _true_groups(true, design)
    pred_groups = {m: _groups(a, design) for m, a in methods.items()}
    _check_shared(true_groups, pred_groups, design)
    ctrl_groups = _control_groups(control, true_groups, design.context_key)

    x_true, x_ctrl = _fetcher(true, layer, "true"), _fetcher(control, layer, "control")
    measured = _measure(x_true, x_ctrl, true_groups, ctrl_groups, need_var=de_rank == "t" and n_top_de > 0)
    measured.centroids = _centroids(measured, reference, design, layer)
    if n_top_de > 0:
        measured.top = _top_genes(measured, n_top_de, de_rank, de_genes, true.var_names)
    if distributional:
        _add_projected_cells(measured, x_true, x_ctrl, ctrl_groups, pca, n_pcs, settings)
    rows = []
    for m, groups in pred_groups.items():
        rows += _score_method(m, methods[m], groups, measured, settings)
    report, metric_cols = _table(rows, settings, design.context_key)
    if not summary:
        return report
    return report, _summarise(report, metric_cols, list(methods))


# ---------------------------------------------------------------------------------------------
# arguments and inputs


def _check_arguments(n_top_de, n_pcs, max_cells, de_rank, pca) -> int:
    """Validate the scalar arguments; returns ``n_top_de`` as an int."""
    n_top_de = int(n_top_de)
    if n_top_de < 0:
        raise ValueError(f"n_top_de must be non-negative, got {n_top_de}.")
    if n_pcs is not None and int(n_pcs) < 1:
        raise ValueError(f"n_pcs must be a positive integer or None, got {n_pcs!r}.")
    if max_cells is not None and int(max_cells) < 1:
        raise ValueError(f"max_cells must be a positive integer or None, got {max_cells!r}.")
    if de_rank not in ("mean_diff", "t"):
        raise ValueError(f"de_rank must be 'mean_diff' or 't', got {de_rank!r}.")
    if pca is not None and not (hasattr(pca, "transform") or callable(pca)):
        raise TypeError("pca must have a .transform method (e.g. a fitted sklearn PCA) or be a function.")
    return n_top_de


def _methods(predicted) -> dict[str, AnnData]:
    if isinstance(predicted, AnnData):
        return {"predicted": predicted}
    if not isinstance(predicted, Mapping):
        raise TypeError(f"predicted must be an AnnData or a dict {{method: AnnData}}, got {type(predicted).__name__}.")
    if not predicted:
        raise ValueError("predicted is an empty dict: pass at least one method.")
    out = {}
    for name, adata in predicted.items():
        if not isinstance(adata, AnnData):
            raise TypeError(f"predicted[{name!r}] must be an AnnData, got {type(adata).__name__}.")
        out[str(name)] = adata
    return out


def _control_cells(true: AnnData, control: AnnData | None, design: PerturbationDesign) -> AnnData:
    """``control``, or the cells of ``true`` labelled with the design's control."""
    if control is None:
        if design.control is None:
            raise ValueError("Pass control= (an AnnData of control cells), or a design whose control label is in true.")
        design.check(true.obs, "true")
        control = true[design.is_control(true.obs[design.perturbation_key].astype(str))]
    if control.n_obs == 0:
        raise ValueError("control has no cells: the deltas need control cells as reference.")
    return control


def _check_inputs(true, control, methods, reference, design: PerturbationDesign, layer: str | None) -> None:
    """Same genes in the same order, the layer and the obs keys in every object."""
    objects = {"true": true, "control": control, **{f"predicted[{m!r}]": a for m, a in methods.items()}}
    if reference is not None:
        objects["reference"] = reference
    for name, adata in objects.items():
        if name != "true":
            _check_genes(true, adata, name)
        layer_matrix(adata, layer, name=name)  # raises on a missing layer
    for name, adata in objects.items():
        if name != "control":
            design.check(adata.obs, name, need_control=False)
        elif design.context_key is not None and design.context_key not in adata.obs:
            raise KeyError(f"context_key={design.context_key!r} is not a column of control.obs; add the column.")


def _check_genes(reference: AnnData, other: AnnData, name: str) -> None:
    ref, names = pd.Index(reference.var_names), pd.Index(other.var_names)
    if ref.equals(names):
        return
    if len(ref) == len(names) and set(ref) == set(names):
        raise ValueError(
            f"{name} has the same genes as true but in another order; reorder it with "
            f"`adata[:, true.var_names]` before scoring."
        )
    only_ref, only_other = ref.difference(names), names.difference(ref)
    raise ValueError(
        f"{name} and true must have the same genes in the same order: true has {len(ref)} genes, {name} has "
        f"{len(names)}; only in true: {_preview(list(only_ref))}; only in {name}: {_preview(list(only_other))}. "
        f"Subset both to shared genes, e.g. `adata[:, genes]`."
    )


def _preview(items: Sequence, k: int = 8) -> str:
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:k])
    return f"[{shown}{', ...' if len(items) > k else ''}] ({len(items)})"


# ---------------------------------------------------------------------------------------------
# groups: (context, perturbation) -> row indices


def _groups(adata: AnnData, design: PerturbationDesign) -> dict[Group, np.ndarray]:
    """``{(context, perturbation): row indices}`` of the non-control groups; unlabelled cells are ignored."""
    codes, groups = design.groups(adata.obs)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(groups) + 1))
    out = {g: order[bounds[i] : bounds[i + 1]] for i, g in enumerate(groups)}
    return {g: idx for g, idx in out.items() if not design.is_control(g[1])}


def _labels(groups, design: PerturbationDesign) -> list[str]:
    return [design.label(c, p) for c, p in groups]


def _true_groups(true: AnnData, design: PerturbationDesign) -> dict[Group, np.ndarray]:
    groups = _groups(true, design)
    if not groups:
        raise ValueError(f"true has no labelled perturbed cells in obs[{design.perturbation_key!r}].")
    return groups


def _check_shared(true_groups: dict, pred_groups: dict[str, dict], design: PerturbationDesign) -> None:
    """Every method predicts at least one measured group."""
    for m, groups in pred_groups.items():
        if not set(groups) & set(true_groups):
            raise ValueError(
                f"No perturbation is shared by true and the prediction {m!r}: true has "
                f"{_preview(_labels(true_groups, design))}, {m!r} has {_preview(_labels(groups, design))}."
            )


def _control_groups(control: AnnData, true_groups: dict, context_key: str | None) -> dict[str, np.ndarray]:
    """Rows of ``control`` per context of ``true`` (all rows without ``context_key``)."""
    if context_key is None:
        return {c: np.arange(control.n_obs) for c in {c for c, _ in true_groups}}
    ctx = control.obs[context_key]
    keep = ~ctx.isna().to_numpy()
    ctx_str = ctx.astype(str).to_numpy()
    ctrl_groups = {c: np.flatnonzero(keep & (ctx_str == c)) for c in np.unique(ctx_str[keep])}
    missing = sorted({c for c, _ in true_groups} - set(ctrl_groups))
    if missing:
        raise ValueError(
            f"No control cells for context(s) {_preview(missing)} of obs[{context_key!r}]; control has "
            f"{_preview(sorted(ctrl_groups))}."
        )
    return ctrl_groups


# ---------------------------------------------------------------------------------------------
# reading rows


def _fetcher(adata: AnnData, layer: str | None, name: str) -> RowFetcher:
    return layer_fetcher(adata, layer, name=name)


def _rows(x: RowFetcher, idx: np.ndarray) -> np.ndarray:
    return x.rows(np.sort(idx)).astype(np.float64)


def _moments(x: RowFetcher, idx: np.ndarray, need_var: bool) -> Moments:
    """Per-gene mean (and unbiased variance) of rows ``idx``, read in blocks of bounded size."""
    n = len(idx)
    s = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1]) if need_var else None
    step = max(1, _CHUNK_ENTRIES // max(x.shape[1], 1))
    for start in range(0, n, step):
        block = _rows(x, idx[start : start + step])
        s += block.sum(0)
        if need_var:
            s2 += (block**2).sum(0)
    mean = s / n
    var = None
    if need_var:
        var = np.clip(s2 - n * mean**2, 0.0, None) / (n - 1) if n > 1 else np.zeros_like(mean)
    return mean, var, n


def _subsample(idx: np.ndarray, max_cells: int | None, seed: int, *names: str) -> np.ndarray:
    """At most ``max_cells`` of ``idx``, with a seed derived from ``seed`` and the group's names."""
    if max_cells is None or len(idx) <= max_cells:
        return idx
    key = [int(seed) % 2**32, *(zlib.crc32(str(n).encode()) for n in names)]
    return np.random.default_rng(key).choice(idx, size=int(max_cells), replace=False)


# ---------------------------------------------------------------------------------------------
# the measured side: means, centroids, DE genes, projected cells


def _measure(x_true: RowFetcher, x_ctrl: RowFetcher, true_groups, ctrl_groups, need_var: bool) -> _Measured:
    """Per-gene moments of every measured group and of the control cells of every context (all cells)."""
    ctrl_mom = {c: _moments(x_ctrl, idx, need_var) for c, idx in ctrl_groups.items()}
    true_mom = {g: _moments(x_true, idx, need_var) for g, idx in true_groups.items()}
    return _Measured(true_groups, true_mom, ctrl_mom)


def _centroids(measured: _Measured, reference: AnnData | None, design, layer: str | None) -> dict[str, np.ndarray]:
    """Perturbed centroid per context, from the measured groups or from ``reference``."""
    if reference is None:
        return perturbed_centroids({g: mom[0] for g, mom in measured.moments.items()})
    x_ref = _fetcher(reference, layer, "reference")
    return perturbed_centroids({g: _moments(x_ref, idx, False)[0] for g, idx in _groups(reference, design).items()})


def _top_genes(measured: _Measured, n_top_de: int, de_rank, de_genes, var_names) -> dict[Group, np.ndarray]:
    """Top DE genes of every measured group vs its control: from ``de_genes`` where listed, else ranked."""
    k = min(n_top_de, len(var_names))
    gene_pos = pd.Index(var_names)
    top = {}
    for g, (mt, vt, nt) in measured.moments.items():
        mc, vc, nc = measured.control_moments[g[0]]
        if de_genes is not None and g[1] in de_genes:
            names = list(de_genes[g[1]])[:n_top_de]
            pos = gene_pos.get_indexer(names)
            if np.any(pos < 0):
                bad = [n for n, p in zip(names, pos, strict=True) if p < 0]
                raise ValueError(f"de_genes[{g[1]!r}] names genes not in var_names: {_preview(bad)}.")
            top[g] = pos
        else:
            top[g] = top_de_genes(mt, mc, k, de_rank, vt, nt, vc, nc)
    return top


def _add_projected_cells(measured: _Measured, x_true, x_ctrl, ctrl_groups, pca, n_pcs, settings: _Settings) -> None:
    """Fit the shared projection on subsampled control and measured cells; keep the projected measured ones."""
    max_cells, seed = settings.max_cells, settings.seed
    sub_true = {g: _rows(x_true, _subsample(idx, max_cells, seed, "true", *g)) for g, idx in measured.groups.items()}
    sub_ctrl = [_rows(x_ctrl, _subsample(idx, max_cells, seed, "control", c)) for c, idx in ctrl_groups.items()]
    measured.project = _projection(pca, n_pcs, [*sub_ctrl, *sub_true.values()], seed)
    measured.cells = {g: measured.project(x) for g, x in sub_true.items()}


def _projection(pca, n_pcs: int | None, blocks: list[np.ndarray], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The shared space: the given ``pca``, the genes themselves (``n_pcs=None``) or a PCA fitted on ``blocks``."""
    if pca is not None:
        fn = pca.transform if hasattr(pca, "transform") else pca

        def project(x: np.ndarray) -> np.ndarray:
            out = np.asarray(fn(x), dtype=np.float64)
            if out.ndim != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(f"pca must map (n_cells, n_genes) to (n_cells, k), got shape {out.shape}.")
            return out

        return project
    if n_pcs is None:
        return lambda x: x
    from sklearn.decomposition import PCA

    fit = np.concatenate(blocks)
    k = min(int(n_pcs), fit.shape[0], fit.shape[1])
    model = PCA(n_components=k, random_state=seed).fit(fit)
    return lambda x: model.transform(x).astype(np.float64, copy=False)


# ---------------------------------------------------------------------------------------------
# scoring and the tables


def _score_method(name: str, adata: AnnData, groups: dict, measured: _Measured, settings: _Settings) -> list[dict]:
    """One row per group that the method predicts and ``true`` measures (sorted)."""
    x_pred = _fetcher(adata, settings.layer, f"predicted[{name!r}]")
    shared = sorted(set(groups) & set(measured.groups))
    pred_means = {g: _moments(x_pred, groups[g], False)[0] for g in shared}
    rows = []
    for g in shared:
        idx = groups[g]
        mp = pred_means[g]
        mt, _, nt = measured.moments[g]
        mc = measured.control_moments[g[0]][0]
        row = {"method": name, "context": g[0], "perturbation": g[1], "n_true": int(nt), "n_predicted": len(idx)}
        scores = delta_metrics(mp, mt, mc, measured.top.get(g), measured.centroids.get(g[0]))
        # the top-gene columns carry n_top_de: pearson_delta_top -> pearson_delta_top20
        row.update({f"{k}{settings.n_top_de}" if k.endswith("_top") else k: v for k, v in scores.items()})
        same_context = [h for h in shared if h[0] == g[0]]
        row["rank"] = perturbench_rank(mt, [pred_means[h] for h in same_context], same_context.index(g))
        if settings.distributional:
            sub = _subsample(idx, settings.max_cells, settings.seed, "predicted", name, *g)
            xp = measured.project(_rows(x_pred, sub))
            row.update(distribution_metrics(xp, measured.cells[g], settings.n_projections, settings.seed))
        rows.append(row)
    return rows


def _table(rows: list[dict], settings: _Settings, context_key: str | None) -> tuple[pd.DataFrame, list[str]]:
    """The per-perturbation report in its column order, and its metric columns."""
    n_top_de = settings.n_top_de
    metric_cols = [c.format(n=n_top_de) for c in _DELTA_METRICS if n_top_de > 0 or "{n}" not in c]
    if settings.distributional:
        metric_cols += list(_DIST_METRICS)
    id_cols = ["method", "perturbation"] if context_key is None else ["method", "context", "perturbation"]
    report = pd.DataFrame(rows, columns=["method", "context", "perturbation", "n_true", "n_predicted", *metric_cols])
    return report[[*id_cols, "n_true", "n_predicted", *metric_cols]].reset_index(drop=True), metric_cols


def _summarise(report: pd.DataFrame, metric_cols: list[str], methods: list[str]) -> pd.DataFrame:
    """Mean and median of every metric over each method's perturbations, indexed by (method, statistic)."""
    grouped = report.groupby("method", sort=False)
    n = grouped.size()
    parts = []
    for stat in ("mean", "median"):
        frame = grouped[metric_cols].agg(stat)
        frame.insert(0, "n_perturbations", n)
        frame["statistic"] = stat
        parts.append(frame.reset_index())
    out = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(methods)}
    out = out.sort_values(["method", "statistic"], key=lambda s: s.map(order) if s.name == "method" else s)
    out = out.set_index(["method", "statistic"])
    out["n_perturbations"] = out["n_perturbations"].astype(int)
    return out
