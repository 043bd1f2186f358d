"""Set-level prediction head: a small MLP from the set vector to a class or a value."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HeadKind = Literal["classification", "regression"]


class SetLabelHead(nn.Module):
    """Predicts a set's label from its set vector ``z``; trained on the labelled sets only.

    Parameters
    ----------
    n_latent
        Dimension of the set vector.
    n_out
        Number of classes (classification) or 1 (regression).
    kind
        ``"classification"`` (cross-entropy on class codes) or ``"regression"`` (squared error on
        the standardised target, see :meth:`set_target_moments`).
    n_hidden
        Width of the hidden layer.
    """

    def __init__(self, n_latent: int, n_out: int, kind: HeadKind, n_hidden: int = 64):
        super().__init__()
        if kind not in ("classification", "regression"):
            raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}.")
        if kind == "classification" and n_out < 2:
            raise ValueError(f"A classification head needs n_out >= 2 classes, got {n_out}.")
        self.kind = kind
        n_final = n_out if kind == "classification" else 1
        self.net = nn.Sequential(nn.Linear(n_latent, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_final))
        # regression targets are learnt standardised, so that label_weight means the same for any unit
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_scale", torch.ones(()))

    def set_target_moments(self, mean: float, std: float) -> None:
        """Standardise regression targets with these moments (of the labelled training sets)."""
        self.target_mean.fill_(float(mean))
        self.target_scale.fill_(float(std) if std > 1e-8 else 1.0)

    def forward(self, z: Tensor) -> Tensor:
        """Class logits ``(B, n_out)`` or standardised predictions ``(B,)``."""
        out = self.net(z)
        return out if self.kind == "classification" else out.squeeze(-1)

    def loss(self, z: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Mean loss over the labelled sets (``target`` NaN: unlabelled) and their number.

        With no labelled set in the batch the loss is an exact 0 that keeps the graph connected.
        """
        labelled = torch.isfinite(target)
        n = labelled.sum()
        if not bool(n):
            return z.sum() * 0.0, n
        out = self(z[labelled])
        y = target[labelled]
        if self.kind == "classification":
            return F.cross_entropy(out, y.long()), n
        return F.mse_loss(out, (y - self.target_mean) / self.target_scale), n

    @torch.no_grad()
    def predict(self, z: Tensor) -> Tensor:
        """Class probabilities ``(B, n_out)`` or predicted values ``(B,)`` on the target's scale."""
        out = self(z)
        if self.kind == "classification":
            return out.softmax(-1)
        return out * self.target_scale + self.target_mean
