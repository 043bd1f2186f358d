"""Plots of set embeddings, clone-level results and image sets."""

from ._images import image_grid
from ._lineage import clone_information, fate_composition

__all__ = ["clone_information", "fate_composition", "image_grid"]
