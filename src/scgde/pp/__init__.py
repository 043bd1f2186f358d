"""Preprocessing: building set labels from raw annotations."""

from ._bins import quantile_bins
from ._clones import clones_from_matrix

__all__ = ["clones_from_matrix", "quantile_bins"]
