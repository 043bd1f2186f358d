"""Scanpy-style tools working on set embeddings."""

from ._sets import embed_sets, set_adata

__all__ = ["embed_sets", "set_adata"]
