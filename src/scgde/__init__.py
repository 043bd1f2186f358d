"""scgde: Generative Distribution Embeddings for sets of cells, an scverse package."""

from importlib.metadata import PackageNotFoundError, version

import rich.pretty

from . import data, datasets, metrics, model, module, nn, pl, pp, tl

try:
    __version__ = version("scgde")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["data", "datasets", "metrics", "model", "module", "nn", "pl", "pp", "tl"]
