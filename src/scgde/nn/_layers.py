"""Small shared building blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
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


class FiLMMLP(nn.Module):
    """An MLP of ``x`` whose hidden layers a condition ``c`` scales and shifts (FiLM).

    ``h_1 = W_1 x + U c + b_1`` and each hidden layer ``l`` applies
    ``SiLU(LN(h_l) * (1 + gamma_l(c)) + beta_l(c))`` before the next linear map; ``gamma`` and
    ``beta`` start at zero. Concatenating ``c`` to ``x`` lets the condition shift the output; the
    scaling lets it change how the output depends on ``x`` (a spread, a correlation), which a
    narrow concatenation MLP learns poorly in many dimensions.

    Parameters
    ----------
    n_in, n_cond, n_out
        Widths of ``x``, of ``c`` and of the output.
    n_hidden
        Hidden width.
    n_layers
        Number of hidden layers (>= 1).
    """

    def __init__(self, n_in: int, n_cond: int, n_out: int, n_hidden: int = 128, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        self.n_hidden, self.n_layers = n_hidden, n_layers
        self.inp = nn.Linear(n_in, n_hidden)
        self.cond = nn.Linear(n_cond, n_hidden, bias=False)
        self.film = nn.Linear(n_cond, 2 * n_layers * n_hidden)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.hidden = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_layers - 1))
        self.out = nn.Linear(n_hidden, n_out)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x (..., n_in)`` and ``c (..., n_cond)`` to ``(..., n_out)``."""
        h = self.inp(x) + self.cond(c)
        scales, shifts = self.film(c).unflatten(-1, (2, self.n_layers, self.n_hidden)).unbind(-3)
        for layer in range(self.n_layers):
            h = F.layer_norm(h, (self.n_hidden,))
            h = F.silu(torch.addcmul(shifts[..., layer, :], h, 1 + scales[..., layer, :]))
            if layer < self.n_layers - 1:
                h = self.hidden[layer](h)
        return self.out(h)


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


#: values (elements x features) of one piece of a feature-wise loss above which it is evaluated in feature
#: chunks under activation checkpointing (64 MB of float32); smaller inputs take one plain, uncheckpointed pass
CHUNK_ELEMENTS = 2**24


def feature_chunked_sum(
    fn,
    wide: tuple[Tensor, ...],
    narrow: tuple[Tensor, ...] = (),
    max_elements: int | None = None,
    recompute: bool = True,
):
    """``fn(*wide, *narrow)`` for a loss that is a sum over the last (feature) axis, with bounded memory.

    Parameters
    ----------
    fn
        Maps chunks of the ``wide`` tensors (split along their last axis) and the ``narrow`` tensors to the
        loss of those features, summed over them, ``(...)``.
    wide
        Tensors whose last axis is the feature axis (the first one's shape sets the chunk size); per-feature
        parameters ``(D,)`` are split alike.
    narrow
        Tensors passed whole to every chunk (e.g. per-element normalisers ``(..., 1)``).
    max_elements
        Values of the first wide tensor per chunk (default :data:`CHUNK_ELEMENTS`).
    recompute
        Checkpoint each chunk (``False``: ``fn`` already keeps only its inputs, e.g. an autograd function with
        its own backward).

    Returns
    -------
    The loss summed over all features. When the first wide tensor has more than ``max_elements`` values, it is
    the sum of the chunks' losses, each computed under :func:`torch.utils.checkpoint.checkpoint` while gradients
    are recorded: only the inputs are kept for the backward pass, which recomputes one chunk at a time, so the
    full-size intermediates of ``fn`` are never alive together. Otherwise ``fn`` runs once on everything.
    """
    max_elements = CHUNK_ELEMENTS if max_elements is None else max_elements
    n_features = wide[0].shape[-1]
    rows = wide[0].numel() // max(n_features, 1)
    size = max(1, max_elements // max(rows, 1))
    if size >= n_features:
        return fn(*wide, *narrow)
    record = recompute and torch.is_grad_enabled() and any(t.requires_grad for t in (*wide, *narrow))
    total = None
    for parts in zip(*(t.split(size, dim=-1) for t in wide), strict=True):
        if record:
            out = torch.utils.checkpoint.checkpoint(fn, *parts, *narrow, use_reentrant=False)
        else:
            out = fn(*parts, *narrow)
        total = out if total is None else total + out
    return total
