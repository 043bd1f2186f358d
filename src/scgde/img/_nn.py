"""Pure-torch parts of :mod:`scgde.img`: a set encoder of images and a conditional UNet denoiser.

Images travel flat, ``(..., C * H * W)``, as every other element type of the engine does (the
set samplers, data modules and streamed encoding stay unchanged); both networks reshape them to
``(N, C, H, W)`` internally. No layer normalises across images (GroupNorm acts within one image),
so a set's vector never depends on the other images of a batch beyond its own pooled statistics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scgde.nn import MLP, SetEncoder
from scgde.nn._layers import TimeEmbedding

#: pooled feature maps are at most this many pixels on a side (memory of the pooled statistic)
POOLED_SIDE = 8


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 when they divide the channels, else the largest divisor up to 8."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def n_halvings(height: int, width: int, target: int, limit: int) -> int:
    """How often the shorter side can be halved while staying at least ``target`` (at most ``limit`` times)."""
    n, side = 0, min(height, width)
    while n < limit and side // 2 >= target:
        side, n = side // 2, n + 1
    return n


class ConvImageEncoder(SetEncoder):
    """2-D convolutions over each image, the set's mean feature map fed back after each block.

    Stage 0 embeds each image with a convolution and strided convolutions down to a map of at most
    ``8 x 8`` pixels. Each later stage convolves the image's own map, concatenates the weighted
    mean map of its set (the pooled statistic of the stage before), mixes both with a 1x1
    convolution (residual, GroupNorm within the image) and pools again: the paper's pooled
    feedback between convolutional stages. The last stage reads each map out into a vector (a
    linear map of the whole map, so where in the crop a feature lies matters) that is pooled into
    the set vector.

    Parameters
    ----------
    image_shape
        ``(C, H, W)``.
    n_latent
        Set-vector dimension.
    n_channels
        Convolution channels.
    n_blocks
        Pooled feedback blocks after the first stage.
    n_hidden
        Width of the image vector and of the set head.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_latent: int,
        n_channels: int = 32,
        n_blocks: int = 2,
        n_hidden: int = 128,
    ):
        c, h, w = (int(s) for s in image_shape)
        super().__init__(c * h * w, n_latent)
        self.image_shape = (c, h, w)
        self.n_stages = n_blocks + 1
        self.state_carries_input = True  # later stages read the feature maps only
        # strided convolutions (padded, so odd sides work) down to at most POOLED_SIDE pixels a side
        n_down = max(0, math.ceil(math.log2(max(h, w) / POOLED_SIDE)))
        stem: list[nn.Module] = [nn.Conv2d(c, n_channels, 3, padding=1), nn.GroupNorm(_groups(n_channels), n_channels)]
        for _ in range(n_down):
            stem += [nn.GELU(), nn.Conv2d(n_channels, n_channels, 3, stride=2, padding=1)]
            stem.append(nn.GroupNorm(_groups(n_channels), n_channels))
        self.stem = nn.Sequential(*stem)
        side_h, side_w = h, w
        for _ in range(n_down):  # a stride-2, padding-1, 3x3 convolution maps a side s to ceil(s / 2)
            side_h, side_w = (side_h + 1) // 2, (side_w + 1) // 2
        self.map_shape = (n_channels, side_h, side_w)
        self.convs = nn.ModuleList(nn.Conv2d(n_channels, n_channels, 3, padding=1) for _ in range(n_blocks))
        self.mixers = nn.ModuleList(nn.Conv2d(2 * n_channels, n_channels, 1) for _ in range(n_blocks))
        self.norms = nn.ModuleList(nn.GroupNorm(_groups(n_channels), n_channels) for _ in range(n_blocks))
        self.readout = nn.Linear(n_channels * side_h * side_w, n_hidden)
        self.out = MLP(n_hidden, n_latent, n_hidden, 1)

    def step(self, stage, x, state, pooled, seg):
        if stage == 0:
            h = F.gelu(self.stem(x.view(-1, *self.image_shape)))
        else:
            b = stage - 1
            own = F.gelu(self.convs[b](state))
            mixed = self.mixers[b](torch.cat([own, pooled[seg].view_as(own)], dim=1))
            h = self.norms[b](state + F.gelu(mixed))
        if stage < self.n_stages - 1:
            return h, h.flatten(1), None
        return h, F.gelu(self.readout(h.flatten(1))), None

    def head(self, pooled):
        return self.out(pooled)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the conditioning embedding scales and shifts the second norm (FiLM)."""

    def __init__(self, c_in: int, c_out: int, n_emb: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(n_emb, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class ConditionalUNet(nn.Module):
    """A small UNet denoiser of flat images, conditioned on time and on the set vector.

    Called as ``net(x_t, cond, t)`` with ``x_t (..., C * H * W)``, ``cond (..., n_cond)`` and
    ``t (...)`` in ``[0, 1]``; returns ``(..., C * H * W)`` (the noise for DDPM, the velocity for
    flow matching). Time features and the condition are embedded, summed and applied to every
    residual block by scale-and-shift (FiLM). Resolutions halve down to 4 pixels a side at most
    ``len(channel_mults) - 1`` times (images are zero-padded to a multiple of the total factor
    and cropped back); skip connections join equal resolutions.

    Parameters
    ----------
    image_shape
        ``(C, H, W)``.
    n_cond
        Condition width (the set vector).
    n_channels
        Channels at full resolution.
    channel_mults
        Channel multiplier per resolution level.
    dropout
        Dropout inside residual blocks.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        n_cond: int,
        n_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        dropout: float = 0.0,
    ):
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        self.image_shape = (c, h, w)
        n_levels = 1 + n_halvings(h, w, 4, len(channel_mults) - 1)
        factor = 2 ** (n_levels - 1)
        self.pad = (0, -w % factor, 0, -h % factor)  # right and bottom zero padding to a multiple of the factor
        widths = [n_channels * m for m in channel_mults[:n_levels]]
        n_emb = 4 * n_channels
        self.time = TimeEmbedding(n_channels)
        self.embed = nn.Sequential(nn.Linear(n_channels + n_cond, n_emb), nn.SiLU(), nn.Linear(n_emb, n_emb))
        self.stem = nn.Conv2d(c, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        width = widths[0]
        for level, out in enumerate(widths):
            self.down.append(_ResBlock(width, out, n_emb, dropout))
            width = out
            if level < n_levels - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = _ResBlock(width, width, n_emb, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(n_levels)):
            self.up.append(_ResBlock(width + widths[level], widths[level], n_emb, dropout))
            width = widths[level]
            if level > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))
        self.out = nn.Sequential(nn.GroupNorm(_groups(width), width), nn.SiLU(), nn.Conv2d(width, c, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x_t: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        lead = x_t.shape[:-1]
        c, height, width = self.image_shape
        x = F.pad(x_t.reshape(-1, c, height, width), self.pad)
        emb = F.silu(self.embed(torch.cat([self.time(t.reshape(-1)), cond.reshape(len(x), -1)], dim=-1)))
        h = self.stem(x)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)[:, :, :height, :width].reshape(*lead, -1)
