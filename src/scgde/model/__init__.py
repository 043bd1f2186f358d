"""AnnData-facing models in the scvi-tools style."""

from ._gde import GDE
from ._multimodal import MultimodalGDE
from ._perturbation import PerturbationPredictor
from ._train import is_global_zero

__all__ = ["GDE", "MultimodalGDE", "PerturbationPredictor", "is_global_zero"]
