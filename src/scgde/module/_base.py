"""What every set module shares: encode the sets of a batch; the generator's loss needs no generative pass."""

from __future__ import annotations

from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, auto_move_data
from torch import Tensor

from scgde.nn import SparseRows

#: keys of a set batch's tensors (``scgde.data.SetDataModule`` writes them, the modules read them)
X_KEY = REGISTRY_KEYS.X_KEY
BATCH_KEY = REGISTRY_KEYS.BATCH_KEY
WEIGHTS_KEY = "weights"
SET_LABEL_KEY = "set_label"


class SetModule(BaseModuleClass):
    """Base of the set modules: an ``encoder`` (a :class:`~scgde.nn.SetEncoder`) and ``encoder_input``.

    Subclasses define ``encoder``, ``generator``, :meth:`encoder_input` and ``loss``.
    """

    def encoder_input(self, x: Tensor) -> Tensor:
        """What the encoder sees of data-scale elements (identity here)."""
        return x

    def sparse_encoder_input(self, x: Tensor) -> SparseRows | None:
        """:meth:`encoder_input` of a sparse CSR batch, kept sparse; ``None``: this module reads dense elements."""
        return None

    @auto_move_data
    def embed(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """Set vectors ``(B, L)`` of sets ``x (B, m, ...)`` (optional ``weights (B, m)``)."""
        return self.encoder(self.encoder_input(x), weights)

    def _get_inference_input(self, tensors: dict[str, Tensor]) -> dict:
        return {"x": tensors[X_KEY], "weights": tensors.get(WEIGHTS_KEY)}

    def inference(self, x: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
        """Encode the sets of the batch."""
        return {"z": self.encoder(self.encoder_input(x), weights)}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """Nothing to do: the generator's loss is computed directly in ``loss``."""
        return {}
