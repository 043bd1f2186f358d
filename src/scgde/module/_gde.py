"""The GDE module: a set encoder and a conditional generator trained jointly."""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import Tensor

from scgde.nn import ENCODERS, GENERATORS, build_encoder, build_generator

from ._heads import HeadKind, SetLabelHead

LIKELIHOODS = ("gaussian", "nb")
#: quantile levels of the per-gene output calibration on non-negative data
N_QUANTILES = 201


def _accepted(cls: type, options: dict) -> dict:
    """The subset of ``options`` that ``cls.__init__`` accepts (shared defaults such as ``n_hidden``)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in params}


class GDEModule(BaseModuleClass):
    """Set encoder + conditional generator; the loss is the generator's own loss on the encoded set.

    Parameters
    ----------
    n_input
        Number of features (genes).
    n_latent
        Dimension of the set vector.
    encoder
        One of ``"resnet"``, ``"attention"``, ``"deepsets"``, ``"mean"``, ``"kme"``.
    generator
        One of ``"cvae"``, ``"ddpm"``, ``"flow"``, ``"direct"``.
    likelihood
        ``"gaussian"`` (continuous data, standardised per feature) or ``"nb"`` (raw counts; CVAE only).
    n_batch
        Number of experimental batches passed to the generator as a one-hot covariate (0: none).
    n_hidden
        Hidden width shared by encoder and generator unless overridden in their kwargs.
    encoder_kwargs, generator_kwargs
        Extra arguments of the encoder and generator classes.
    n_set_labels, set_label_kind
        Set-level label head on ``z`` (``scgde.module._heads.SetLabelHead``): number of classes
        (1 for regression) and ``"classification"`` or ``"regression"``; ``None``: no head.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 64,
        encoder: str = "resnet",
        generator: str = "cvae",
        likelihood: str = "gaussian",
        n_batch: int = 0,
        n_hidden: int = 128,
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
        n_set_labels: int = 0,
        set_label_kind: HeadKind | None = None,
    ):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder={encoder!r}; choose one of {sorted(ENCODERS)}.")
        if generator not in GENERATORS:
            raise ValueError(f"Unknown generator={generator!r}; choose one of {sorted(GENERATORS)}.")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood={likelihood!r}; choose one of {list(LIKELIHOODS)}.")
        if likelihood == "nb" and not GENERATORS[generator].supports_counts:
            raise ValueError(
                f"likelihood='nb' (raw counts) needs generator='cvae', not generator={generator!r}; "
                "or model log-normalised data with likelihood='gaussian'."
            )
        self.likelihood = likelihood
        self.n_batch = n_batch
        self.n_latent = n_latent
        enc_kwargs = {**_accepted(ENCODERS[encoder], {"n_hidden": n_hidden}), **(encoder_kwargs or {})}
        self.encoder = build_encoder(encoder, n_input, n_latent, **enc_kwargs)
        shared = {"n_hidden": n_hidden, "likelihood": likelihood}
        gen_kwargs = {**_accepted(GENERATORS[generator], shared), **(generator_kwargs or {})}
        self.generator = build_generator(generator, n_input, n_latent + n_batch, **gen_kwargs)
        self.register_buffer("feature_mean", torch.zeros(n_input))
        self.register_buffer("feature_scale", torch.ones(n_input))
        # generated values below this floor are set to 0 (-inf: real-valued data, no projection)
        self.register_buffer("zero_floor", torch.full((n_input,), -math.inf))
        # per-gene quantiles of generated and real values of the training sets (NaN: not calibrated)
        self.register_buffer("generated_quantiles", torch.full((n_input, N_QUANTILES), math.nan))
        self.register_buffer("data_quantiles", torch.full((n_input, N_QUANTILES), math.nan))
        # range of the training data's log library sizes (nb), for warnings about generated depths
        self.register_buffer("log_library_range", torch.tensor([-math.inf, math.inf]))
        self.label_head = None
        if set_label_kind is not None:
            self.label_head = SetLabelHead(n_latent, n_set_labels, set_label_kind, n_hidden)

    def set_feature_moments(self, mean, std) -> None:
        """Standardise Gaussian data with these per-feature moments (features with no spread are left as is)."""
        std = torch.as_tensor(std, dtype=torch.float32)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def set_support(self, min_positive) -> None:
        """Keep generated values on the support of non-negative data such as log-normalised expression.

        Such data are 0 or at least the gene's smallest positive value; a generated value below half
        of that is set to 0 (genes never positive are always 0), so that generated cells have no
        negative entries and realistic zero fractions.
        """
        floor = 0.5 * torch.as_tensor(min_positive, dtype=torch.float32)
        self.zero_floor.copy_(torch.nan_to_num(floor, posinf=math.inf))

    def calibrate_marginals(self, generated: Tensor, real: Tensor) -> None:
        """Learn a monotone per-gene map from generated to real values of the same training sets.

        A continuous generator smears each gene's point mass at 0 over a bump around it, which no
        threshold can undo (the remaining values are too small). The map sends each generated value
        to the real value at the same quantile of the pooled training sets (quantile mapping); it
        keeps the order of generated values, so set-specific differences survive, and gives zeros and
        the spread of non-zero values as in the data. ``generated`` and ``real`` are ``(n, G)``.
        """
        levels = torch.linspace(0, 1, N_QUANTILES)
        self.generated_quantiles.copy_(torch.quantile(generated.float(), levels, dim=0).T)
        self.data_quantiles.copy_(torch.quantile(real.float(), levels, dim=0).T)

    def _map_marginals(self, y: Tensor) -> Tensor:
        """Apply the map of :meth:`calibrate_marginals` (identity before calibration)."""
        if torch.isnan(self.generated_quantiles).any():
            return y
        shape = y.shape
        flat = y.reshape(-1, shape[-1]).T.contiguous()  # (G, N)
        src, dst = self.generated_quantiles, self.data_quantiles
        idx = torch.searchsorted(src, flat).clamp(1, src.shape[1] - 1)
        lo, hi = src.gather(1, idx - 1), src.gather(1, idx)
        w = ((flat - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
        out = dst.gather(1, idx - 1) + w * (dst.gather(1, idx) - dst.gather(1, idx - 1))
        out = torch.where(flat > src[:, -1:], dst[:, -1:] + flat - src[:, -1:], out)  # beyond the top: shift
        return out.T.reshape(shape)

    def set_library_prior(self, log_library: Tensor, batch: Tensor | None = None) -> None:
        """Start the count generator's library-size model at the data's log library sizes (per batch)."""
        log_library = torch.as_tensor(log_library, dtype=torch.float32)
        self.log_library_range.copy_(torch.stack([log_library.min(), log_library.max()]))
        offsets = None
        if self.n_batch and batch is not None:
            batch = torch.as_tensor(batch, dtype=torch.long)
            means = torch.stack(
                [
                    log_library[batch == b].mean() if (batch == b).any() else log_library.mean()
                    for b in range(self.n_batch)
                ]
            )
            offsets = means - log_library.mean()
        self.generator.init_library(log_library.mean(), log_library.std().clamp_min(1e-2), offsets)

    def encoder_input(self, x: Tensor) -> Tensor:
        """What the encoder sees: standardised features, or log-normalised counts."""
        if self.likelihood == "nb":
            return torch.log1p(1e4 * x / x.sum(-1, keepdim=True).clamp_min(1.0))
        return (x - self.feature_mean) / self.feature_scale

    def generator_input(self, x: Tensor) -> Tensor:
        """What the generator models: standardised features, or raw counts."""
        return x if self.likelihood == "nb" else (x - self.feature_mean) / self.feature_scale

    def generator_output(self, y: Tensor, project: bool = True) -> Tensor:
        """Map generated values back to the data scale (and, with ``project``, onto the data's support)."""
        if self.likelihood == "nb":
            return y
        y = y * self.feature_scale + self.feature_mean
        if not project or not torch.isfinite(self.zero_floor).any():
            return y
        y = self._map_marginals(y)
        return torch.where(y < self.zero_floor, torch.zeros_like(y), y)

    def covariates(self, batch: Tensor | None) -> Tensor | None:
        """One-hot batch covariates ``(B, m, n_batch)`` or ``None``."""
        if self.n_batch == 0:
            return None
        if batch is None:
            raise ValueError("This model was set up with a batch_key: pass the batch of the cells to generate.")
        return F.one_hot(batch.long(), self.n_batch).float()

    @auto_move_data
    def embed(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """Set vectors ``(B, L)`` of data-scale sets ``x (B, m, G)``."""
        return self.encoder(self.encoder_input(x), weights)

    def _get_inference_input(self, tensors: dict[str, Tensor]) -> dict:
        return {"x": tensors["X"], "weights": tensors.get("weights")}

    def inference(self, x: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
        """Encode the sets of the batch."""
        return {"z": self.encoder(self.encoder_input(x), weights)}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """Nothing to do: the generator's loss is computed directly in :meth:`loss`."""
        return {}

    def loss(
        self, tensors, inference_outputs, generative_outputs, label_weight: float = 1.0, generator_weight: float = 1.0
    ) -> LossOutput:
        """Generator loss on the same sets that were encoded, averaged over sets.

        With a label head: ``generator_weight * generator loss + label_weight * label loss``, the
        label loss (cross-entropy or squared error) over the labelled sets of the batch only
        (``tensors["set_label"]`` NaN: unlabelled), logged as ``label_loss``.
        ``generator_weight=0`` skips the generator: an encoder trained on the labels alone.
        """
        x = tensors["X"]
        z = inference_outputs["z"]
        if generator_weight == 0 and self.label_head is not None:
            per_set = torch.zeros(x.shape[0], device=x.device)
        else:
            per_set = self.generator.loss(
                self.generator_input(x), z, tensors.get("weights"), self.covariates(tensors.get("batch"))
            )
        if self.label_head is None:
            return LossOutput(loss=per_set.mean(), reconstruction_loss=per_set, n_obs_minibatch=x.shape[0])
        label_loss, _ = self.label_head.loss(z, tensors["set_label"])
        total = generator_weight * per_set.mean() + label_weight * label_loss
        extra = {"generator_loss": per_set.mean().detach(), "label_loss": label_loss.detach()}
        return LossOutput(loss=total, reconstruction_loss=per_set, n_obs_minibatch=x.shape[0], extra_metrics=extra)

    @torch.no_grad()
    @auto_move_data
    def sample(self, z: Tensor, n: int, batch: Tensor | None = None, project: bool = True, **kwargs) -> Tensor:
        """Generate ``n`` cells per set vector, ``(B, n, G)`` on the data scale (``project``: on its support)."""
        return self.generator_output(self.generator.sample(z, n, self.covariates(batch), **kwargs), project)
