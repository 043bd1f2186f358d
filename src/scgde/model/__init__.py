"""AnnData-facing models in the scvi-tools style."""

from ._gde import GDE
from ._perturbation import PerturbationPredictor

__all__ = ["GDE", "PerturbationPredictor"]
