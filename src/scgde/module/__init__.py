"""scvi-tools modules (torch) wrapping the :mod:`scgde.nn` building blocks."""

from ._gde import LIKELIHOODS, GDEModule
from ._heads import SetLabelHead

__all__ = ["LIKELIHOODS", "GDEModule", "SetLabelHead"]
