"""Small shared building blocks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class MLP(nn.Sequential):
    """``n_layers`` hidden layers of width ``n_hidden`` with SiLU, then a linear output.

    Parameters
    ----------
    n_in, n_out
        Input and output widths.
    n_hidden
        Hidden width.
    n_layers
        Number of hidden layers (``0`` gives a single linear map).
    layer_norm
        Apply LayerNorm (per element, never across elements or sets) after each hidden layer.
    """

    def __init__(self, n_in: int, n_out: int, n_hidden: int = 128, n_layers: int = 2, layer_norm: bool = False):
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(n_layers):
            layers.append(nn.Linear(width, n_hidden))
            if layer_norm:
                layers.append(nn.LayerNorm(n_hidden))
            layers.append(nn.SiLU())
            width = n_hidden
        layers.append(nn.Linear(width, n_out))
        super().__init__(*layers)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of a scalar time ``t`` in ``[0, 1]``."""

    def __init__(self, dim: int = 32):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", freqs * 1000.0, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Embed ``t`` of shape ``(...,)`` into ``(..., dim)``."""
        angles = t[..., None] * self.freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def log_normalise(counts: Tensor) -> Tensor:
    """``log1p`` of counts scaled to 10,000 per element (what encoders see of raw counts)."""
    return torch.log1p(1e4 * counts / counts.sum(-1, keepdim=True).clamp_min(1.0))


def set_mean(per_element: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted mean over the element axis of a ``(B, m)`` tensor of per-element values."""
    if weights is None:
        return per_element.mean(dim=1)
    return (per_element * weights).sum(dim=1) / weights.sum(dim=1)


def broadcast_condition(z: Tensor, n: int, covariates: Tensor | None = None) -> Tensor:
    """Repeat the set vector ``z`` ``(B, L)`` for ``n`` elements and append per-element covariates."""
    cond = z[:, None, :].expand(-1, n, -1)
    if covariates is not None:
        cond = torch.cat([cond, covariates.to(z.dtype)], dim=-1)
    return cond
