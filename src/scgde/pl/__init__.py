"""Plots of set embeddings and clone-level results."""

from ._lineage import clone_information, fate_composition

__all__ = ["clone_information", "fate_composition"]
