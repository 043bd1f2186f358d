"""scvi-tools modules (torch) wrapping the :mod:`scgde.nn` building blocks."""

from ._base import SetModule
from ._gde import LIKELIHOODS, N_CURVE, GDEModule
from ._heads import SetLabelHead

__all__ = ["LIKELIHOODS", "N_CURVE", "GDEModule", "SetLabelHead", "SetModule"]
