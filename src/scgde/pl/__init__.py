"""Plots of set embeddings."""

__all__: list[str] = []
