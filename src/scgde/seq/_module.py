"""The sequence GDE module: a convolutional set encoder and an autoregressive generator trained jointly."""

from __future__ import annotations

import torch
from scvi.module.base import LossOutput, auto_move_data
from torch import Tensor, nn

from scgde.module import WEIGHTS_KEY, X_KEY, SetModule

from ._alphabet import N_SPECIAL
from ._nn import AutoregressiveGenerator, ConvSequenceEncoder, ElementFeatureEncoder

#: condition dropout of the generator in training, so that sampling can use classifier-free guidance
P_UNCOND = 0.1


class SeqGDEModule(SetModule):
    """Set encoder of token sequences + autoregressive generator; the loss is the generator's NLL.

    Parameters
    ----------
    n_tokens
        Vocabulary size (specials and letters, :attr:`scgde.seq.Alphabet.n_tokens`).
    max_length
        Padded sequence length.
    n_latent
        Set-vector dimension.
    encoder_kwargs, generator_kwargs
        Arguments of :class:`~scgde.seq.ConvSequenceEncoder` (of the
        :class:`~scgde.nn.ResNetEncoder` set head with an ``element_encoder``) and of
        :class:`~scgde.seq.AutoregressiveGenerator`.
    element_encoder
        Optional per-element network, tokens ``(N, max_length)`` -> features ``(N, D)``, used
        instead of the convolutions (:class:`~scgde.seq.ElementFeatureEncoder`).
    """

    def __init__(
        self,
        n_tokens: int,
        max_length: int,
        n_latent: int = 32,
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
        element_encoder: nn.Module | None = None,
    ):
        super().__init__()
        self.n_latent, self.max_length = n_latent, max_length
        if element_encoder is None:
            self.encoder = ConvSequenceEncoder(n_tokens - N_SPECIAL, max_length, n_latent, **(encoder_kwargs or {}))
        else:
            self.encoder = ElementFeatureEncoder(element_encoder, max_length, n_latent, **(encoder_kwargs or {}))
        generator_kwargs = {"p_uncond": P_UNCOND, **(generator_kwargs or {})}
        self.generator = AutoregressiveGenerator(n_tokens, max_length, n_latent, **generator_kwargs)
        self.label_head = None  # the training plan's hook for set-label heads

    @staticmethod
    def encoder_input(x: Tensor) -> Tensor:
        """Tokens as integers (readers return ``uint8``)."""
        return x.long()

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Per-token negative log-likelihood of the sets' sequences under their own set vectors."""
        x = tensors[X_KEY]
        per_set = self.generator.loss(self.encoder_input(x), inference_outputs["z"], tensors.get(WEIGHTS_KEY))
        return LossOutput(loss=per_set.mean(), reconstruction_loss=per_set, n_obs_minibatch=x.shape[0])

    @torch.no_grad()
    @auto_move_data
    def sample(self, z: Tensor, n: int, **kwargs) -> Tensor:
        """``n`` token sequences per set vector, ``(B, n, max_length)``."""
        return self.generator.sample(z, n, **kwargs)

    @torch.no_grad()
    @auto_move_data
    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x_i | z_i)`` of token rows ``x (N, max_length)`` under set vectors ``z (N, L)``."""
        return self.generator.log_likelihood(self.encoder_input(x), z)
