"""The multimodal GDE module: per-modality element encoders and generator heads around one set vector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi.module.base import LossOutput, auto_move_data
from torch import Tensor

from scgde.nn import ModalityLayout, MultimodalCVAE, MultimodalSetEncoder
from scgde.nn._layers import log_normalise

from ._base import WEIGHTS_KEY, X_KEY, SetModule


class MultimodalGDEModule(SetModule):
    """Set encoder over multimodal cells + a multimodal CVAE; the loss is the generator's on the encoded set.

    Parameters
    ----------
    modalities
        One dict per modality: ``name``, ``kind`` (``"nb"``, ``"gaussian"``, ``"bernoulli"``),
        ``n_features`` and ``log1p`` (Gaussian features modelled as ``log1p(x)``, e.g. protein
        counts; generated values are mapped back with ``expm1``).
    n_latent
        Dimension of the set vector.
    n_hidden
        Hidden width of the element encoders, the set encoder and the generator.
    encoder
        Inner set encoder over the joined elements (``"resnet"``, ``"attention"``, ``"deepsets"``, ...).
    encoder_kwargs, generator_kwargs
        Extra arguments of :class:`~scgde.nn.MultimodalSetEncoder` and :class:`~scgde.nn.MultimodalCVAE`.
    """

    #: what the model code asks of a module's likelihood (no count checks, no support projection)
    likelihood = "multimodal"
    n_batch = 0
    label_head = None

    def __init__(
        self,
        modalities: Sequence[dict],
        n_latent: int = 16,
        n_hidden: int = 64,
        encoder: str = "resnet",
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
    ):
        super().__init__()
        self.layout = ModalityLayout.from_dicts(modalities)
        self.log1p = tuple(bool(m.get("log1p", False)) for m in modalities)
        self.n_latent = n_latent
        self.encoder = MultimodalSetEncoder(self.layout, n_latent, n_hidden, encoder, **(encoder_kwargs or {}))
        self.generator = MultimodalCVAE(self.layout, n_latent, n_hidden=n_hidden, **(generator_kwargs or {}))
        self.register_buffer("feature_mean", torch.zeros(self.layout.n_features))
        self.register_buffer("feature_scale", torch.ones(self.layout.n_features))

    def set_feature_moments(self, mean, std) -> None:
        """Standardise the Gaussian modalities' (log1p-)features with these moments (no spread: left as is)."""
        std = torch.as_tensor(std, dtype=torch.float32)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def _standardise(self, v: Tensor, i: int, cols: slice) -> Tensor:
        v = torch.log1p(v.clamp_min(0)) if self.log1p[i] else v
        return (v - self.feature_mean[cols]) / self.feature_scale[cols]

    def _inputs(self, x: Tensor, for_encoder: bool) -> Tensor:
        parts = []
        for i, ((v, mask), kind, cols) in enumerate(
            zip(self.layout.split(x), self.layout.kinds, self.layout.slices(), strict=True)
        ):
            if kind == "nb":
                v = log_normalise(v) if for_encoder else v
            elif kind == "gaussian":
                v = self._standardise(v, i, cols)
            else:
                v = (v > 0).to(x.dtype)
            parts.append(v * mask[..., None])  # a missing modality contributes nothing
        return torch.cat([*parts, x[..., self.layout.n_features :]], dim=-1)

    def encoder_input(self, x: Tensor) -> Tensor:
        """Log-normalised counts, standardised continuous features, binary accessibility; masks kept."""
        return self._inputs(x, for_encoder=True)

    def generator_input(self, x: Tensor) -> Tensor:
        """Raw counts, standardised continuous features, binary accessibility; masks kept."""
        return self._inputs(x, for_encoder=False)

    def generator_output(self, y: Tensor) -> Tensor:
        """Generated flat cells back on the data scale (features only, no masks)."""
        parts = []
        for i, ((v, _), kind, cols) in enumerate(
            zip(self.layout.split(y), self.layout.kinds, self.layout.slices(), strict=True)
        ):
            if kind == "gaussian":
                v = v * self.feature_scale[cols] + self.feature_mean[cols]
                v = torch.expm1(v).clamp_min(0) if self.log1p[i] else v
            parts.append(v)
        return torch.cat(parts, dim=-1)

    @property
    def projects_support(self) -> bool:
        """Generated values are already on each modality's support."""
        return False

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """The multimodal CVAE's negative ELBO on the encoded sets, averaged over sets."""
        x = tensors[X_KEY]
        per_set = self.generator.loss(self.generator_input(x), inference_outputs["z"], tensors.get(WEIGHTS_KEY))
        return LossOutput(loss=per_set.mean(), reconstruction_loss=per_set, n_obs_minibatch=x.shape[0])

    @torch.no_grad()
    @auto_move_data
    def sample(self, z: Tensor, n: int, batch: Tensor | None = None, project: bool = True, **kwargs) -> Tensor:
        """``n`` cells per set vector, ``(B, n, n_features)`` on the data scale, every modality measured."""
        return self.generator_output(self.generator.sample(z, n, **kwargs))
