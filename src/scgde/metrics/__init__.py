"""Distances between distributions and dependence measures."""

from ._gaussian import gaussian_w2

__all__ = ["gaussian_w2"]
