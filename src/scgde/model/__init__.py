"""AnnData-facing models in the scvi-tools style."""

from ._gde import GDE
from ._perturbation import PerturbationPredictor
from ._train import is_global_zero

__all__ = ["GDE", "PerturbationPredictor", "is_global_zero"]
