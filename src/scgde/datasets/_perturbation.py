"""Perturbation data: a Perturb-seq simulator with known ground truth, and the local Kang 2018 IFN-beta PBMCs."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["synthetic_perturbseq", "synthetic_perturbseq_truth"]

CONTROL = "control"


# ---------------------------------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------------------------------


def _int_arg(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _float_arg(name: str, value: object, minimum: float = 0.0, strict: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, Real) and np.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise ValueError(f"`{name}` must be a finite number {bound} {minimum}; got {value!r}.")
    return float(value)


def _pair_arg(name: str, value: object, lower: float, upper: float, open_lower: bool = False) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair (low, high) of numbers; got {value!r}.") from None
    low_ok = a > lower if open_lower else a >= lower
    if not (np.isfinite(a) and np.isfinite(b)) or a > b or not low_ok or b > upper:
        interval = f"({lower}, {upper}]" if open_lower else f"[{lower}, {upper}]"
        raise ValueError(f"`{name}` must satisfy low <= high within {interval}; got {value!r}.")
    return a, b


# ---------------------------------------------------------------------------------------------------------------------
# synthetic Perturb-seq
# ---------------------------------------------------------------------------------------------------------------------


def synthetic_perturbseq(
    n_genes: int = 50,
    n_perturbations: int = 30,
    n_cell_types: int = 3,
    cells_per_group: int = 100,
    n_programs: int = 5,
    seed: int = 0,
    *,
    n_control_cells: int | None = None,
    effect_scale: float = 1.0,
    cell_type_scale: tuple[float, float] = (0.5, 1.5),
    responder_fraction: tuple[float, float] = (0.3, 1.0),
    noise_sd: float = 0.3,
    program_noise_sd: float = 0.3,
    cell_type_sd: float = 1.0,
    knockdown: float = 0.0,
    counts: bool = False,
    dispersion: float = 10.0,
) -> AnnData:
    """Perturb-seq simulation whose perturbation effects are known and predictable from gene features.

    The model (all draws from ``numpy.random.default_rng(seed)``; ``G`` genes, ``K`` programs):

    - **Gene features.** Every gene ``g`` has a feature vector ``L[g] ~ N(0, I_K)``, its loadings on ``K``
      latent programs (``uns["gene_features"]``, a stand-in for GenePT-like gene embeddings).
    - **Controls.** Cell type ``c`` has mean ``mu_c = b + cell_type_sd * N(0, I_G)`` with a shared baseline
      ``b_g ~ U(1, 3)``, and covariance ``Sigma_c = N_c^T N_c + noise_sd^2 I`` with cell-type-specific
      program noise loadings ``N_c`` (``K x G``, entries ``N(0, program_noise_sd^2 / K)``). A control cell
      is ``x ~ N(mu_c, Sigma_c)``.
    - **Perturbations.** Perturbation ``p`` targets a distinct gene ``t_p`` and is named after it; its
      features are ``f_p = L[t_p]`` (``uns["perturbation_features"]``). Its true **mean shift** in cell type
      ``c`` is linear in the features,
      ``Delta[c, p] = s_c * f_p @ M - knockdown * e_{t_p}``, with a shared effect map ``M`` (``K x G``,
      entries ``N(0, effect_scale^2 / K)``) and a cell-type scale ``s_c ~ U(cell_type_scale)``.
    - **Responders.** Only a fraction ``pi_p = lo + (hi - lo) * sigmoid(f_p . v)`` of the cells respond
      (``responder_fraction = (lo, hi)``, ``v ~ N(0, 4 I_K / K)``): a responder is shifted by
      ``Delta[c, p] / pi_p``, a non-responder not at all. The perturbed distribution is the mixture
      ``(1 - pi_p) N(mu_c, Sigma_c) + pi_p N(mu_c + Delta[c, p] / pi_p, Sigma_c)``: its mean shift is exactly
      ``Delta[c, p]`` and its spread grows with ``(1 - pi_p) / pi_p``. Both the mean shift (linearly) and the
      responder fraction (through a sigmoid) are functions of the perturbation's features, so the response
      to an unseen perturbation is predictable from its features.

    ``X`` holds the log-scale expression (Gaussian mixtures per group, so ``exp(X)`` is log-normal-ish);
    with ``counts=True``, ``layers["counts"]`` holds negative-binomial counts with mean ``exp(X)`` and
    inverse dispersion ``dispersion``. :func:`synthetic_perturbseq_truth` returns the exact distribution of
    any (cell type, perturbation) group.

    Parameters
    ----------
    n_genes, n_perturbations, n_cell_types, n_programs
        Genes ``G``, perturbations (``<= n_genes``; each targets a different gene), cell types and programs
        ``K``.
    cells_per_group
        Cells per (cell type, perturbation) group.
    seed
        Random seed.
    n_control_cells
        Control cells per cell type (default ``cells_per_group``).
    effect_scale
        Standard deviation of the entries of the mean shifts (before the cell-type scale).
    cell_type_scale
        Range ``(low, high)`` of the cell-type effect scales ``s_c`` (``(1, 1)``: no cell-type specificity).
    responder_fraction
        Range ``(lo, hi)``, ``0 < lo <= hi <= 1``, of the responder fractions (``(1, 1)``: every cell responds,
        a pure mean shift).
    noise_sd, program_noise_sd
        Independent per-gene noise and correlated (program) noise of the control distributions.
    cell_type_sd
        Spread of the cell-type means around the shared baseline.
    knockdown
        Mean decrease of a perturbation's own target gene (added to the shift; 0 keeps the shift exactly
        linear in the features).
    counts
        Also simulate negative-binomial counts into ``layers["counts"]``.
    dispersion
        Inverse dispersion ``theta`` of the counts (variance ``m + m^2 / theta``).

    Returns
    -------
    AnnData
        ``n_cell_types * (n_control_cells + n_perturbations * cells_per_group)`` cells x ``n_genes``
        (``X`` float32) with

        - ``obs["perturbation"]`` (categorical, ``"control"`` first, then the target gene names),
          ``obs["cell_type"]`` (``"type_<i>"``) and ``obs["responder"]`` (bool; False for controls and
          non-responders);
        - ``var["perturbed"]`` (the gene is a perturbation target);
        - ``uns["perturbation_features"]`` (DataFrame, perturbations x ``program_<k>``) and
          ``uns["gene_features"]`` (DataFrame, genes x programs);
        - ``uns["true_effects"]``: DataFrame of the true mean shifts ``Delta[c, p]``, one row per
          (cell type, perturbation) indexed ``"<cell_type>|<perturbation>"``, genes as columns;
        - ``uns["perturbseq"]``: the remaining ground truth: ``control_means`` (DataFrame, cell types x genes),
          ``noise_loadings`` (array, cell types x K x G), ``noise_sd``, ``effect_map`` (DataFrame, programs x
          genes), ``cell_types`` (DataFrame with the effect scale ``s_c``), ``perturbations`` (DataFrame with
          ``target`` and ``responder_fraction``), ``responder_direction`` (``v``), ``knockdown`` and
          ``dispersion`` (NaN without counts).

    Examples
    --------
    >>> from scgde.datasets import synthetic_perturbseq
    >>> adata = synthetic_perturbseq(n_genes=20, n_perturbations=6, n_cell_types=2, cells_per_group=50)
    >>> adata.shape
    (700, 20)
    >>> adata.uns["true_effects"].shape
    (12, 20)
    >>> adata.obs["perturbation"].cat.categories[0]
    'control'
    """
    G = _int_arg("n_genes", n_genes)
    P = _int_arg("n_perturbations", n_perturbations)
    C = _int_arg("n_cell_types", n_cell_types)
    n_per = _int_arg("cells_per_group", cells_per_group)
    K = _int_arg("n_programs", n_programs)
    n_ctrl = n_per if n_control_cells is None else _int_arg("n_control_cells", n_control_cells)
    if P > G:
        raise ValueError(f"`n_perturbations` ({P}) must be <= `n_genes` ({G}): every perturbation targets one gene.")
    effect_scale = _float_arg("effect_scale", effect_scale)
    scale_lo, scale_hi = _pair_arg("cell_type_scale", cell_type_scale, 0.0, np.inf)
    resp_lo, resp_hi = _pair_arg("responder_fraction", responder_fraction, 0.0, 1.0, open_lower=True)
    noise_sd = _float_arg("noise_sd", noise_sd)
    program_noise_sd = _float_arg("program_noise_sd", program_noise_sd)
    cell_type_sd = _float_arg("cell_type_sd", cell_type_sd)
    knockdown = _float_arg("knockdown", knockdown, minimum=-np.inf)
    if not isinstance(counts, bool | np.bool_):
        raise ValueError(f"`counts` must be True or False; got {counts!r}.")
    dispersion = _float_arg("dispersion", dispersion, strict=True)
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"`seed` must be an integer; got {seed!r}.")

    rng = np.random.default_rng(int(seed))
    gw, cw = len(str(G - 1)), len(str(C - 1))
    genes = [f"gene_{g:0{gw}d}" for g in range(G)]
    cell_types = [f"type_{c:0{cw}d}" for c in range(C)]
    programs = [f"program_{k}" for k in range(K)]

    gene_features = rng.standard_normal((G, K))
    effect_map = rng.normal(0.0, effect_scale / np.sqrt(K), size=(K, G))
    baseline = rng.uniform(1.0, 3.0, size=G)
    control_means = baseline + cell_type_sd * rng.standard_normal((C, G))
    noise_loadings = rng.normal(0.0, program_noise_sd / np.sqrt(K), size=(C, K, G))
    scales = rng.uniform(scale_lo, scale_hi, size=C)
    targets = np.sort(rng.choice(G, size=P, replace=False))
    names = [genes[t] for t in targets]
    features = gene_features[targets]
    direction = rng.normal(0.0, 2.0 / np.sqrt(K), size=K)
    fractions = resp_lo + (resp_hi - resp_lo) / (1.0 + np.exp(-(features @ direction)))

    base_shift = features @ effect_map  # (P, G)
    shifts = scales[:, None, None] * base_shift[None]  # (C, P, G)
    shifts[:, np.arange(P), targets] -= knockdown

    blocks, pert_labels, type_labels, responders = [], [], [], []
    for c in range(C):
        for p in range(-1, P):
            n = n_ctrl if p < 0 else n_per
            x = (
                control_means[c]
                + rng.standard_normal((n, K)) @ noise_loadings[c]
                + noise_sd * rng.standard_normal((n, G))
            )
            if p < 0:
                r = np.zeros(n, dtype=bool)
            else:
                r = rng.random(n) < fractions[p]
                x[r] += shifts[c, p] / fractions[p]
            blocks.append(x)
            responders.append(r)
            pert_labels.append(np.full(n, CONTROL if p < 0 else names[p], dtype=object))
            type_labels.append(np.full(n, cell_types[c], dtype=object))
    X = np.concatenate(blocks)
    width = len(str(len(X) - 1))
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(np.concatenate(pert_labels), categories=[CONTROL, *names]),
            "cell_type": pd.Categorical(np.concatenate(type_labels), categories=cell_types),
            "responder": np.concatenate(responders),
        },
        index=[f"cell_{i:0{width}d}" for i in range(len(X))],
    )
    var = pd.DataFrame({"perturbed": np.isin(np.arange(G), targets)}, index=genes)
    adata = AnnData(X.astype(np.float32), obs=obs, var=var)
    if counts:
        mean = np.exp(X)
        lam = rng.gamma(shape=dispersion, scale=mean / dispersion)
        adata.layers["counts"] = rng.poisson(lam).astype(np.float32)

    adata.uns["perturbation_features"] = pd.DataFrame(features, index=names, columns=programs)
    adata.uns["gene_features"] = pd.DataFrame(gene_features, index=genes, columns=programs)
    adata.uns["true_effects"] = pd.DataFrame(
        shifts.reshape(C * P, G), index=[f"{ct}|{p}" for ct in cell_types for p in names], columns=genes
    )
    adata.uns["perturbseq"] = {
        "control": CONTROL,
        "control_means": pd.DataFrame(control_means, index=cell_types, columns=genes),
        "noise_loadings": noise_loadings,
        "noise_sd": noise_sd,
        "effect_map": pd.DataFrame(effect_map, index=programs, columns=genes),
        "cell_types": pd.DataFrame({"effect_scale": scales}, index=cell_types),
        "perturbations": pd.DataFrame({"target": names, "responder_fraction": fractions}, index=names),
        "responder_direction": direction,
        "knockdown": knockdown,
        "dispersion": dispersion if counts else float("nan"),
    }
    return adata


def synthetic_perturbseq_truth(adata: AnnData, cell_type: str, perturbation: str) -> dict[str, np.ndarray]:
    """Exact distribution of ``X`` for one (cell type, perturbation) group of :func:`synthetic_perturbseq`.

    Parameters
    ----------
    adata
        Output of :func:`synthetic_perturbseq` (uses ``uns["perturbseq"]`` and ``uns["true_effects"]``).
    cell_type
        A cell type (``obs["cell_type"]``).
    perturbation
        A perturbation or ``"control"``.

    Returns
    -------
    Gaussian mixture as a dict with ``weights`` (``(m,)``), ``means`` (``(m, G)``), ``covs`` (``(m, G, G)``)
    and ``mean_shift`` (``(G,)``, zero for controls): one component for controls,
    ``[non-responders, responders]`` with weights ``[1 - pi, pi]`` for a perturbation (the same layout as the
    truth of :func:`scgde.datasets.synthetic_gmm`).

    Examples
    --------
    >>> from scgde.datasets import synthetic_perturbseq, synthetic_perturbseq_truth
    >>> adata = synthetic_perturbseq(n_genes=10, n_perturbations=4, n_cell_types=2, cells_per_group=20)
    >>> pert = adata.obs["perturbation"].cat.categories[1]
    >>> truth = synthetic_perturbseq_truth(adata, "type_0", pert)
    >>> truth["means"].shape, truth["covs"].shape
    ((2, 10), (2, 10, 10))
    """
    if "perturbseq" not in adata.uns or "true_effects" not in adata.uns:
        raise ValueError("`adata` must come from `synthetic_perturbseq` (uns['perturbseq'] is missing).")
    truth = adata.uns["perturbseq"]
    means: pd.DataFrame = truth["control_means"]
    if cell_type not in means.index:
        raise ValueError(f"`cell_type` must be one of {list(means.index)}; got {cell_type!r}.")
    perts: pd.DataFrame = truth["perturbations"]
    if perturbation != truth["control"] and perturbation not in perts.index:
        raise ValueError(
            f"`perturbation` must be {truth['control']!r} or one of {list(perts.index)}; got {perturbation!r}."
        )
    c = list(means.index).index(cell_type)
    mu = means.loc[cell_type].to_numpy(dtype=np.float64)
    loadings = np.asarray(truth["noise_loadings"])[c]
    cov = loadings.T @ loadings + float(truth["noise_sd"]) ** 2 * np.eye(len(mu))
    if perturbation == truth["control"]:
        return {"weights": np.ones(1), "means": mu[None], "covs": cov[None], "mean_shift": np.zeros_like(mu)}
    shift = adata.uns["true_effects"].loc[f"{cell_type}|{perturbation}"].to_numpy(dtype=np.float64)
    pi = float(perts.loc[perturbation, "responder_fraction"])
    return {
        "weights": np.array([1.0 - pi, pi]),
        "means": np.stack([mu, mu + shift / pi]),
        "covs": np.stack([cov, cov]),
        "mean_shift": shift,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Kang 2018 (local file)
# ---------------------------------------------------------------------------------------------------------------------

_KANG_FILE = "kang2018_valid.h5ad"
_KANG_CONDITIONS = {
    "control": "control",
    "ctrl": "control",
    "unstimulated": "control",
    "stimulated": "stimulated",
    "stim": "stimulated",
}


def read_kang2018(file: str | Path) -> AnnData:
    """Read one Kang 2018 file (scGen's ``valid.h5ad``) and standardise its condition and cell-type columns.

    The public loader is :func:`scgde.datasets.kang2018`, which finds or downloads the file.
    """
    import anndata

    with warnings.catch_warnings():  # scGen's file predates the current h5ad encoding
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        adata = anndata.read_h5ad(file)

    cond_key = next((k for k in ("condition", "label", "stim") if k in adata.obs.columns), None)
    if cond_key is None:
        raise ValueError(f"{file} has no condition column ('condition', 'label' or 'stim'); got {list(adata.obs)}.")
    raw = adata.obs[cond_key].astype(str).str.lower()
    unknown = sorted(set(raw) - set(_KANG_CONDITIONS))
    if unknown:
        raise ValueError(f"{file}: obs[{cond_key!r}] has unknown conditions {unknown}; expected control/stimulated.")
    adata.obs["condition"] = pd.Categorical(raw.map(_KANG_CONDITIONS).to_numpy(), categories=["control", "stimulated"])
    type_key = next((k for k in ("cell_type", "celltype", "cell_types", "cell") if k in adata.obs.columns), None)
    if type_key is None:
        raise ValueError(f"{file} has no cell-type column ('cell_type', 'celltype', 'cell'); got {list(adata.obs)}.")
    types = adata.obs[type_key].astype(str)
    adata.obs["cell_type"] = pd.Categorical(types.to_numpy(), categories=sorted(set(types)))
    adata.uns["kang2018"] = {"file": str(file)}
    counts = _counts_from_lognorm(adata.X)
    if counts is not None:
        adata.layers["counts"] = counts
    return adata


def _counts_from_lognorm(x, tol: float = 1e-2):
    """The integer counts behind ``log1p(counts * s_i)`` (one size factor ``s_i`` per cell), or ``None``.

    A cell's smallest positive ``expm1`` value is one count of it (with thousands of genes every cell has a gene
    seen once); dividing by it and rounding gives the counts. ``None`` when the result is not whole numbers within
    ``tol`` (the data were not normalised this way).
    """
    import scipy.sparse as sp

    m = sp.csr_matrix(x, dtype=np.float64, copy=True)
    m.eliminate_zeros()
    m.data = np.expm1(m.data)
    if m.nnz == 0 or np.any(m.data <= 0):
        return None
    row = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    smallest = np.full(m.shape[0], np.inf)
    np.minimum.at(smallest, row, m.data)
    m.data /= smallest[row]
    whole = np.round(m.data)
    if np.abs(m.data - whole).max() > tol:
        return None
    m.data = whole.astype(np.float32)
    return m
