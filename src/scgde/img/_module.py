"""The image GDE module: a convolutional set encoder and a UNet diffusion or flow generator trained jointly."""

from __future__ import annotations

from typing import Literal

import torch
from scvi.module.base import LossOutput, auto_move_data
from torch import Tensor

from scgde.module import WEIGHTS_KEY, X_KEY, SetModule
from scgde.nn import DDPMGenerator, FlowGenerator

from ._nn import ConditionalUNet, ConvImageEncoder

#: condition dropout of the generator in training, so that sampling can use classifier-free guidance
P_UNCOND = 0.1
#: images per set in the generator's loss (the encoder sees all of them); the UNet dominates the cost
MAX_LOSS_ELEMENTS = 8


class ImageGDEModule(SetModule):
    """Set encoder of images + UNet generator (DDPM or flow matching); the loss is the generator's.

    Parameters
    ----------
    image_shape
        ``(C, H, W)``.
    n_latent
        Set-vector dimension.
    generator
        ``"flow"``: conditional flow matching on straight paths (far fewer network calls to sample);
        ``"ddpm"``: denoising diffusion (noise prediction, the paper's image generator).
    encoder_kwargs
        Arguments of :class:`~scgde.img.ConvImageEncoder`.
    generator_kwargs
        Arguments of :class:`~scgde.img.ConditionalUNet` (``n_channels``, ``channel_mults``,
        ``dropout``), plus the generator's own (``n_steps`` of DDPM, ``n_sample_steps`` of flow
        matching, ``p_uncond``) and ``max_loss_elements`` (images per set in the loss).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_latent: int = 64,
        generator: Literal["ddpm", "flow"] = "flow",
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
    ):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.n_latent = n_latent
        self.encoder = ConvImageEncoder(self.image_shape, n_latent, **(encoder_kwargs or {}))
        options = dict(generator_kwargs or {})
        unused = sorted({"n_hidden", "n_layers", "time_dim", "network", "conditioning"} & set(options))
        if unused:
            raise ValueError(
                f"generator_kwargs {unused} configure the MLP denoiser of cell models; the image generator is a "
                "UNet: pass n_channels, channel_mults or dropout."
            )
        self.max_loss_elements = int(options.pop("max_loss_elements", MAX_LOSS_ELEMENTS))
        unet = {k: options.pop(k) for k in ("n_channels", "channel_mults", "dropout") if k in options}
        network = ConditionalUNet(self.image_shape, n_latent, **unet)
        n_pixels = self.encoder.n_input
        options.setdefault("p_uncond", P_UNCOND)
        kind = {"ddpm": DDPMGenerator, "flow": FlowGenerator}[generator]
        self.generator = kind(n_pixels, n_latent, network=network, **options)
        self.label_head = None  # the training plan's hook for set-label heads

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """The generator's loss on up to ``max_loss_elements`` images per set, under their set vectors."""
        x, weights = tensors[X_KEY], tensors.get(WEIGHTS_KEY)
        m = x.shape[1]
        if m > self.max_loss_elements:  # a random subset: an unbiased estimate of the same per-set loss
            keep = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)[:, : self.max_loss_elements]
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
            weights = None if weights is None else weights.gather(1, keep)
        per_set = self.generator.loss(x, inference_outputs["z"], weights)
        return LossOutput(loss=per_set.mean(), reconstruction_loss=per_set, n_obs_minibatch=x.shape[0])

    @torch.no_grad()
    @auto_move_data
    def sample(self, z: Tensor, n: int, **kwargs) -> Tensor:
        """``n`` flat images in [-1, 1] per set vector, ``(B, n, C * H * W)``."""
        return self.generator.sample(z, n, **kwargs)
