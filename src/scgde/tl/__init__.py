"""Scanpy-style tools working on set embeddings."""

from ._celleval import to_celleval
from ._lineage import clone_information, clone_representations, predict_fate
from ._niches import embed_niches, niche_sets
from ._perturbation import perturbation_baselines
from ._perturbation_report import perturbation_report
from ._sets import embed_sets, set_adata

__all__ = [
    "clone_information",
    "clone_representations",
    "embed_niches",
    "embed_sets",
    "niche_sets",
    "perturbation_baselines",
    "perturbation_report",
    "predict_fate",
    "set_adata",
    "to_celleval",
]


def __getattr__(name: str):
    if name == "GDESampleRepresentation":  # patpy is optional: imported only when asked for
        from ._patpy import GDESampleRepresentation

        return GDESampleRepresentation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
