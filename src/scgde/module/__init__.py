"""scvi-tools modules (torch) wrapping the :mod:`scgde.nn` building blocks."""

from ._gde import LIKELIHOODS, GDEModule

__all__ = ["LIKELIHOODS", "GDEModule"]
