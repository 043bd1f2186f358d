"""Synthetic families with ground truth, the demo sets, and loaders for real datasets."""

from ._pbmc import pbmc_composition_sets
from ._synthetic import synthetic_mvn

__all__ = ["pbmc_composition_sets", "synthetic_mvn"]
