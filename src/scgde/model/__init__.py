"""AnnData-facing models in the scvi-tools style."""

from ._gde import GDE

__all__ = ["GDE"]
