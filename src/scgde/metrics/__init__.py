"""Distances between distributions and dependence measures.

Pure numerics (numpy, POT and the torch distances of :mod:`scgde.nn`); numpy in, floats or numpy
arrays out.

Gaussians and mixtures (closed forms):
:func:`gaussian_w2`, :func:`paper_gaussian_error` (the GDE paper's Table 5/6 metric, *not* a
distance), :func:`multinomial_w2`, :func:`gmm_w2`, :func:`mccann_interpolation`.

Empirical samples:
:func:`exact_w2`, :func:`sliced_w2`, :func:`mmd`, :func:`energy_distance`,
:func:`sinkhorn_divergence`.

Dependence:
:func:`mutual_information` (KSG, bits), :func:`mutual_information_permutation_test`.

Perturbation prediction (AnnData in, DataFrame out):
:func:`perturbation_report` (Pearson delta from the control and from the perturbed centroid, MSE, R^2
of mean changes, PerturBench rank; E-distance, MMD, sliced W2 in PCA space; one row per method and
perturbation). It reads AnnData, so it lives in :mod:`scgde.tl` (:func:`scgde.tl.perturbation_report`,
the same function) and is resolved here on first access: importing :mod:`scgde.metrics` does not import
:mod:`scgde.data`. Its scores are the array functions of ``scgde.metrics._perturbation``.
"""

from ._empirical import energy_distance, exact_w2, mmd, sinkhorn_divergence, sliced_w2
from ._gaussian import gaussian_w2, mccann_interpolation, multinomial_w2, paper_gaussian_error
from ._gmm import gmm_w2
from ._mi import mutual_information, mutual_information_permutation_test

__all__ = [
    "energy_distance",
    "exact_w2",
    "gaussian_w2",
    "gmm_w2",
    "mccann_interpolation",
    "mmd",
    "multinomial_w2",
    "mutual_information",
    "mutual_information_permutation_test",
    "paper_gaussian_error",
    "perturbation_report",
    "sinkhorn_divergence",
    "sliced_w2",
]


def __getattr__(name: str):
    # perturbation_report reads AnnData (scgde.tl); import it on first use only (PEP 562)
    if name == "perturbation_report":
        from scgde.tl import perturbation_report

        globals()[name] = perturbation_report
        return perturbation_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
