"""scvi-tools modules (torch) wrapping the :mod:`scgde.nn` building blocks."""

from ._base import SetModule
from ._gde import LIKELIHOODS, N_CURVE, GDEModule
from ._heads import SetLabelHead
from ._multimodal import MultimodalGDEModule

__all__ = ["LIKELIHOODS", "N_CURVE", "GDEModule", "MultimodalGDEModule", "SetLabelHead", "SetModule"]
