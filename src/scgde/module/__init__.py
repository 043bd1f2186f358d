"""scvi-tools modules (torch) wrapping the :mod:`scgde.nn` building blocks."""

from ._base import BATCH_KEY, SET_LABEL_KEY, WEIGHTS_KEY, X_KEY, SetModule
from ._gde import LIKELIHOODS, N_CURVE, GDEModule
from ._heads import SetLabelHead
from ._multimodal import MultimodalGDEModule

__all__ = [
    "BATCH_KEY",
    "LIKELIHOODS",
    "N_CURVE",
    "SET_LABEL_KEY",
    "WEIGHTS_KEY",
    "X_KEY",
    "GDEModule",
    "MultimodalGDEModule",
    "SetLabelHead",
    "SetModule",
]
