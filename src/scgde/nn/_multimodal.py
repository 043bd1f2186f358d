"""Multimodal elements: cells measured in several modalities, each with its own element encoder and likelihood.

A multimodal cell is stored flat as ``[x_1 | x_2 | ... | x_M | mask_1 ... mask_M]``: each modality's
features, then one 0/1 column per modality saying whether the cell was measured in it (a missing
modality's features are 0 and ignored). :class:`ModalityLayout` names the slices.

Likelihoods per modality: ``"nb"`` (raw counts: negative binomial with library size, as in scVI),
``"gaussian"`` (continuous features, standardised by the module) and ``"bernoulli"`` (accessibility:
a feature is open when positive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._encoders import SetEncoder, build_encoder
from ._generators import ConditionalGenerator, gaussian_nll, nb_library_nll, nb_library_sample
from ._layers import MLP, broadcast_condition, log_normalise, set_mean

ModalityKind = Literal["nb", "gaussian", "bernoulli"]
KINDS = ("nb", "gaussian", "bernoulli")


@dataclass(frozen=True)
class ModalityLayout:
    """Names, likelihoods and widths of the modalities of a flat multimodal element.

    Parameters
    ----------
    names
        Modality names (e.g. ``("rna", "prot")``).
    kinds
        Likelihood of each modality: ``"nb"``, ``"gaussian"`` or ``"bernoulli"``.
    sizes
        Number of features of each modality.
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    sizes: tuple[int, ...]

    def __post_init__(self):
        if not (len(self.names) == len(self.kinds) == len(self.sizes)) or not self.names:
            raise ValueError("names, kinds and sizes must be non-empty and of the same length.")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"Unknown modality kind {bad[0]!r}; choose one of {list(KINDS)}.")

    @classmethod
    def from_dicts(cls, modalities: Sequence[dict]) -> ModalityLayout:
        """From ``[{"name": ..., "kind": ..., "n_features": ...}, ...]`` (how modules store it)."""
        return cls(
            tuple(m["name"] for m in modalities),
            tuple(m["kind"] for m in modalities),
            tuple(int(m["n_features"]) for m in modalities),
        )

    @property
    def n_features(self) -> int:
        """Features of all modalities together (without the masks)."""
        return sum(self.sizes)

    @property
    def width(self) -> int:
        """Width of a flat element: features plus one mask column per modality."""
        return self.n_features + len(self.names)

    def slices(self) -> list[slice]:
        """Column slice of each modality's features."""
        out, start = [], 0
        for size in self.sizes:
            out.append(slice(start, start + size))
            start += size
        return out

    def split(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``[(features, mask), ...]`` per modality of flat elements ``x (..., width)``; masks are ``(...,)``."""
        masks = x[..., self.n_features :]
        return [(x[..., s], masks[..., i]) for i, s in enumerate(self.slices())]


class ModalityJoin(nn.Module):
    """One element encoder per modality, joined: ``[mask_1 h_1(x_1), ..., mask_M h_M(x_M), masks]``.

    Inputs are the module's encoder inputs (log-normalised counts, standardised or binary features).
    """

    def __init__(self, layout: ModalityLayout, n_hidden: int):
        super().__init__()
        self.layout = layout
        self.encoders = nn.ModuleList(MLP(size, n_hidden, n_hidden, 1) for size in layout.sizes)
        self.width = n_hidden * len(layout.sizes) + len(layout.sizes)

    def forward(self, x: Tensor) -> Tensor:
        parts = [mask[..., None] * enc(v) for (v, mask), enc in zip(self.layout.split(x), self.encoders, strict=True)]
        return torch.cat([*parts, x[..., self.layout.n_features :]], dim=-1)


class MultimodalSetEncoder(SetEncoder):
    """Per-modality element encoders joined before an invariant set encoder (default ``"resnet"``).

    Each element's modalities are embedded separately (:class:`ModalityJoin`) and the joined vector
    is the element of the inner set encoder, so invariance, weights and exact streaming are the
    inner encoder's.
    """

    def __init__(
        self, layout: ModalityLayout, n_latent: int, n_hidden: int = 128, encoder: str = "resnet", **encoder_kwargs
    ):
        super().__init__(layout.width, n_latent)
        self.join = ModalityJoin(layout, n_hidden)
        if encoder in ("resnet", "attention", "deepsets"):
            encoder_kwargs.setdefault("n_hidden", n_hidden)
        self.inner = build_encoder(encoder, self.join.width, n_latent, **encoder_kwargs)
        self.n_stages = self.inner.n_stages
        self.state_carries_input = self.inner.state_carries_input

    def step(self, stage, x, state, pooled, seg):
        return self.inner.step(stage, None if x is None else self.join(x), state, pooled, seg)

    def encode_segments(self, x, seg, n_segments, weights=None):
        # whole sets: join the modalities once, not once per pooling stage (streaming uses ``step``)
        return self.inner.encode_segments(self.join(x), seg, n_segments, weights)

    def head(self, pooled):
        return self.inner.head(pooled)


class MultimodalCVAE(ConditionalGenerator):
    """Conditional VAE over multimodal cells: a shared per-cell latent ``u``, one decoder head per modality.

    ``q(u | x, z)`` reads the joined per-modality embeddings of the cell; a shared decoder trunk on
    ``[u, z]`` feeds one head per modality with its likelihood: negative binomial (scVI-style: library
    x softmax proportions, per-gene inverse dispersion, log-normal library given ``z``), Gaussian
    (mean, per-feature variance given ``z``) or Bernoulli (logits). The loss is the negative ELBO per
    cell, summing only the modalities the cell was measured in, averaged over the set. Inputs are the
    module's generator inputs (raw counts, standardised or binary features, masks).
    """

    def __init__(
        self,
        layout: ModalityLayout,
        n_cond: int,
        n_hidden: int = 128,
        n_layers: int = 2,
        n_latent_element: int = 10,
        beta: float = 1.0,
    ):
        super().__init__(layout.width, n_cond)
        self.layout, self.beta, self.n_latent_element = layout, beta, n_latent_element
        self.join = ModalityJoin(layout, n_hidden)
        self.q = MLP(self.join.width + n_cond, 2 * n_latent_element, n_hidden, n_layers, layer_norm=True)
        self.trunk = MLP(n_latent_element + n_cond, n_hidden, n_hidden, n_layers - 1, layer_norm=True)
        self.heads = nn.ModuleList(nn.Linear(n_hidden, size) for size in layout.sizes)
        self.log_theta = nn.ParameterDict()
        self.library = nn.ModuleDict()
        self.log_var = nn.ModuleDict()
        for name, kind, size in zip(layout.names, layout.kinds, layout.sizes, strict=True):
            if kind == "nb":
                self.log_theta[name] = nn.Parameter(torch.zeros(size))
                self.library[name] = nn.Linear(n_cond, 2)  # mean and log-sd of the log library size
            elif kind == "gaussian":
                self.log_var[name] = nn.Linear(n_cond, size)
                nn.init.zeros_(self.log_var[name].weight)
                nn.init.constant_(self.log_var[name].bias, math.log(0.1))

    @torch.no_grad()
    def init_library(self, name: str, log_mean: float, log_sd: float) -> None:
        """Start modality ``name``'s library-size model at the data's log library sizes."""
        nn.init.zeros_(self.library[name].weight)
        self.library[name].bias.copy_(torch.tensor([log_mean, math.log(max(log_sd, 1e-2))]))

    def _q_input(self, x: Tensor) -> Tensor:
        parts = [
            log_normalise(v) if kind == "nb" else v
            for (v, _), kind in zip(self.layout.split(x), self.layout.kinds, strict=True)
        ]
        return self.join(torch.cat([*parts, x[..., self.layout.n_features :]], dim=-1))

    def loss(self, x, z, weights=None, covariates=None):
        cond = broadcast_condition(z, x.shape[1], covariates)
        mu_u, log_var_u = self.q(torch.cat([self._q_input(x), cond], -1)).chunk(2, dim=-1)
        log_var_u = log_var_u.clamp(-10, 10)
        u = mu_u + torch.randn_like(mu_u) * torch.exp(0.5 * log_var_u)
        kl = 0.5 * (mu_u.pow(2) + log_var_u.exp() - 1 - log_var_u).sum(-1)
        hidden = F.silu(self.trunk(torch.cat([u, cond], -1)))
        nll = torch.zeros_like(kl)
        for (v, mask), head, name, kind in zip(
            self.layout.split(x), self.heads, self.layout.names, self.layout.kinds, strict=True
        ):
            out = head(hidden)
            if kind == "nb":
                term = nb_library_nll(v, out, self.log_theta[name], self.library[name](cond))
            elif kind == "gaussian":
                term = gaussian_nll(v, out, self.log_var[name](cond))
            else:
                term = F.binary_cross_entropy_with_logits(out, v, reduction="none").sum(-1)
            nll = nll + mask * term
        return set_mean(nll + self.beta * kl, weights)

    @torch.no_grad()
    def sample(self, z, n, covariates=None, noise: bool = True):
        """``n`` cells per set vector in every modality, flat ``(B, n, width)`` with all masks 1.

        ``noise=False`` returns the likelihood means (expected counts, Gaussian means, open probabilities).
        """
        cond = broadcast_condition(z, n, covariates)
        u = torch.randn(*cond.shape[:2], self.n_latent_element, device=z.device, dtype=z.dtype)
        hidden = F.silu(self.trunk(torch.cat([u, cond], -1)))
        parts = []
        for head, name, kind in zip(self.heads, self.layout.names, self.layout.kinds, strict=True):
            out = head(hidden)
            if kind == "nb":
                parts.append(nb_library_sample(out, self.log_theta[name], self.library[name](cond), noise))
            elif kind == "gaussian":
                sd = torch.exp(0.5 * self.log_var[name](cond).clamp(-10, 10))
                parts.append(out + sd * torch.randn_like(out) if noise else out)
            else:
                prob = torch.sigmoid(out)
                parts.append(torch.bernoulli(prob) if noise else prob)
        masks = torch.ones(*cond.shape[:2], len(parts), device=z.device, dtype=z.dtype)
        return torch.cat([*parts, masks], dim=-1)
