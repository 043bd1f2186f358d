"""The GDE module: a set encoder and a conditional generator trained jointly."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import Tensor

from scgde.nn import ENCODERS, GENERATORS, build_encoder, build_generator

LIKELIHOODS = ("gaussian", "nb")


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

    def set_feature_moments(self, mean, std) -> None:
        """Standardise Gaussian data with these per-feature moments (features with no spread are left as is)."""
        std = torch.as_tensor(std, dtype=torch.float32)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def encoder_input(self, x: Tensor) -> Tensor:
        """What the encoder sees: standardised features, or log-normalised counts."""
        if self.likelihood == "nb":
            return torch.log1p(1e4 * x / x.sum(-1, keepdim=True).clamp_min(1.0))
        return (x - self.feature_mean) / self.feature_scale

    def generator_input(self, x: Tensor) -> Tensor:
        """What the generator models: standardised features, or raw counts."""
        return x if self.likelihood == "nb" else (x - self.feature_mean) / self.feature_scale

    def generator_output(self, y: Tensor) -> Tensor:
        """Map generated values back to the data scale."""
        return y if self.likelihood == "nb" else y * self.feature_scale + self.feature_mean

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

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Generator loss on the same sets that were encoded, averaged over sets."""
        x = tensors["X"]
        per_set = self.generator.loss(
            self.generator_input(x),
            inference_outputs["z"],
            tensors.get("weights"),
            self.covariates(tensors.get("batch")),
        )
        return LossOutput(loss=per_set.mean(), reconstruction_loss=per_set, n_obs_minibatch=x.shape[0])

    @torch.no_grad()
    @auto_move_data
    def sample(self, z: Tensor, n: int, batch: Tensor | None = None, **kwargs) -> Tensor:
        """Generate ``n`` cells per set vector, ``(B, n, G)`` on the data scale."""
        return self.generator_output(self.generator.sample(z, n, self.covariates(batch), **kwargs))
