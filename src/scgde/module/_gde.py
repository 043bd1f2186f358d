"""The GDE module: a set encoder and a conditional generator trained jointly."""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from scvi.module.base import LossOutput, auto_move_data
from torch import Tensor

from scgde.nn import ENCODERS, GENERATORS, SparseRows, build_encoder, build_generator
from scgde.nn._distances import gaussian_w2_pairs
from scgde.nn._layers import log_normalise
from scgde.nn._sparse import sparse_log_normalise

from ._base import BATCH_KEY, SET_LABEL_KEY, WEIGHTS_KEY, X_KEY, SetModule
from ._heads import HeadKind, SetLabelHead

LIKELIHOODS = ("gaussian", "nb")
#: points of each gene's curve "zero fraction of a set given its mean" (non-negative data)
N_CURVE = 129
#: generated sets are projected onto the data's support using at least this many cells per set vector
MIN_PROJECTION_CELLS = 200
#: the latent W2 term compares sets in at most this many (fixed random) directions of the encoder's input
W2_MAX_DIM = 64


def _accepted(cls: type, options: dict) -> dict:
    """The subset of ``options`` that ``cls.__init__`` accepts (shared defaults such as ``n_hidden``)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in params}


class GDEModule(SetModule):
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
    w2_weight
        Weight of a term that makes latent distances match W2: for random pairs of the batch's sets,
        ``(|z_i - z_j| - W2_ij)^2``, with ``W2_ij`` the Gaussian (Frechet) W2 between the two subsets'
        sample moments in the encoder's input space (projected on ``W2_MAX_DIM`` fixed random
        directions when there are more features). ``0``: none (the paper's GDE).
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
        w2_weight: float = 0.0,
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
        # each gene's zero fraction of real sets as a function of their mean, on a grid of means (NaN: none)
        self.register_buffer("curve_means", torch.full((N_CURVE,), math.nan))
        self.register_buffer("zero_curves", torch.full((n_input, N_CURVE), math.nan))
        # generated values are kept within these per-feature bounds (data scale; +-inf: unbounded)
        self.register_buffer("value_bounds", torch.tensor([-math.inf, math.inf]).repeat(n_input, 1).T.contiguous())
        # range of the training data's log library sizes (nb), for warnings about generated depths
        self.register_buffer("log_library_range", torch.tensor([-math.inf, math.inf]))
        if w2_weight < 0:
            raise ValueError(f"w2_weight must be >= 0, got {w2_weight}.")
        self.w2_weight = float(w2_weight)
        if n_input > W2_MAX_DIM:  # fixed random directions (a buffer: saved with the model)
            basis = torch.linalg.qr(torch.randn(n_input, W2_MAX_DIM, generator=torch.Generator().manual_seed(0)))[0]
            self.register_buffer("w2_basis", basis)
        else:
            self.w2_basis = None
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

    def set_value_bounds(self, low, high) -> None:
        """Keep generated values within ``[low, high]`` per feature (data scale).

        A continuous generator can put a few cells far outside the data (one generated log-expression value of
        19.9 where real cells end at 6.7); :meth:`GDE.__init__ <scgde.model.GDE>` sets the bounds to each gene's
        training range widened by its standard deviation, so no value leaves the data's range by more than its
        spread.
        """
        self.value_bounds.copy_(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in (low, high)]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before the value bounds existed load unbounded
        state_dict.setdefault(prefix + "value_bounds", self.value_bounds.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_zero_curves(self, means: Tensor, zero_fractions: Tensor) -> None:
        """Store each gene's zero fraction of real sets as a function of their mean.

        ``means`` ``(N_CURVE,)`` is an increasing grid of set means and ``zero_fractions``
        ``(G, N_CURVE)`` the fraction of zeros of a set with that mean (e.g. isotonic fits over
        neighbourhoods of real cells). :meth:`project_support` uses them.
        """
        self.curve_means.copy_(torch.as_tensor(means, dtype=torch.float32))
        self.zero_curves.copy_(torch.as_tensor(zero_fractions, dtype=torch.float32))

    def _zero_fraction(self, mean: Tensor) -> Tensor:
        """Interpolated zero fraction ``(B, G)`` of sets with per-gene means ``mean (B, G)``."""
        grid, curves = self.curve_means, self.zero_curves
        idx = torch.searchsorted(grid, mean.contiguous()).clamp(1, len(grid) - 1)
        lo, hi = grid[idx - 1], grid[idx]
        w = ((mean - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
        rows = torch.arange(curves.shape[0], device=mean.device).expand_as(idx)
        return curves[rows, idx - 1] + w * (curves[rows, idx] - curves[rows, idx - 1])

    def project_support(self, y: Tensor) -> Tensor:
        """Put generated sets ``y (B, n, G)`` (data scale) on the support of non-negative data.

        A continuous generator learns each gene's mean and spread within a set but smears the
        point mass at 0. Per set and gene, the lowest-ranked cells are set to 0 so that the zero
        fraction is the real data's at the generated mean (:meth:`set_zero_curves`; without
        curves, values below the support floor are zeroed), and the other cells get the mean and
        spread that keep the set's generated mean and variance, floored at the gene's smallest
        positive value. Cell ranks are kept, so differences between sets and the ordering of
        cells survive; no entry is negative.
        """
        positive = 2 * self.zero_floor  # the gene's smallest positive value (inf: never positive)
        if torch.isnan(self.zero_curves).any():
            return torch.where(y < self.zero_floor, torch.zeros_like(y), y)
        n = y.shape[1]
        mean, var = y.mean(1).clamp_min(0), y.var(1, unbiased=False)
        n_zero = torch.floor(self._zero_fraction(mean) * n + 0.5)
        n_zero = torch.where((mean <= 0) | ~torch.isfinite(positive), torch.full_like(n_zero, n), n_zero)
        ranks = y.argsort(1).argsort(1)
        keep = ranks >= n_zero[:, None, :]
        kept = (n - n_zero).clamp_min(1)
        q = kept / n
        # moments of the kept cells that give the set its generated mean and variance
        m1 = mean / q
        v1 = ((var + mean**2) / q - m1**2).clamp_min(0)
        r_mean = (y * keep).sum(1) / kept
        r_std = (((y - r_mean[:, None]) ** 2 * keep).sum(1) / kept).sqrt()
        out = m1[:, None] + v1.sqrt()[:, None] * (y - r_mean[:, None]) / r_std[:, None].clamp_min(1e-8)
        out = torch.maximum(out, torch.where(torch.isfinite(positive), positive, torch.zeros_like(positive)))
        return torch.where(keep, out, torch.zeros_like(out))

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
            return log_normalise(x)
        return (x - self.feature_mean) / self.feature_scale

    def sparse_encoder_input(self, x: Tensor) -> SparseRows | None:
        """:meth:`encoder_input` of a sparse CSR batch ``x``, kept sparse (for encoders that read it)."""
        if not self.encoder.accepts_sparse:
            return None
        if self.likelihood == "nb":
            return SparseRows(sparse_log_normalise(x))
        return SparseRows(x, self.feature_mean, self.feature_scale)

    def generator_input(self, x: Tensor) -> Tensor:
        """What the generator models: standardised features, or raw counts."""
        return x if self.likelihood == "nb" else (x - self.feature_mean) / self.feature_scale

    def generator_output(self, y: Tensor) -> Tensor:
        """Map generated values back to the data scale."""
        if self.likelihood == "nb":
            return y
        return y * self.feature_scale + self.feature_mean

    @property
    def projects_support(self) -> bool:
        """Whether generated sets are put on the support of non-negative data."""
        return self.likelihood != "nb" and bool(torch.isfinite(self.zero_floor).any())

    def covariates(self, batch: Tensor | None) -> Tensor | None:
        """One-hot batch covariates ``(B, m, n_batch)`` or ``None``."""
        if self.n_batch == 0:
            return None
        if batch is None:
            raise ValueError("This model was set up with a batch_key: pass the batch of the cells to generate.")
        return F.one_hot(batch.long(), self.n_batch).float()

    def loss(
        self, tensors, inference_outputs, generative_outputs, label_weight: float = 1.0, generator_weight: float = 1.0
    ) -> LossOutput:
        """Generator loss on the same sets that were encoded, averaged over sets.

        With a label head: ``generator_weight * generator loss + label_weight * label loss``, the
        label loss (cross-entropy or squared error) over the labelled sets of the batch only
        (``tensors["set_label"]`` NaN: unlabelled), logged as ``label_loss``.
        ``generator_weight=0`` skips the generator: an encoder trained on the labels alone.
        """
        x = tensors[X_KEY]
        z = inference_outputs["z"]
        if generator_weight == 0 and self.label_head is not None:
            per_set = torch.zeros(x.shape[0], device=x.device)
        else:
            per_set = self.generator.loss(
                self.generator_input(x), z, tensors.get(WEIGHTS_KEY), self.covariates(tensors.get(BATCH_KEY))
            )
        total, extra = generator_weight * per_set.mean(), {}
        if self.w2_weight > 0 and x.shape[0] > 1:
            w2_loss = self.latent_w2_loss(x, z, tensors.get(WEIGHTS_KEY))
            total = total + self.w2_weight * w2_loss
            extra["w2_loss"] = w2_loss.detach()
        if self.label_head is None:
            return LossOutput(loss=total, reconstruction_loss=per_set, n_obs_minibatch=x.shape[0], extra_metrics=extra)
        label_loss, _ = self.label_head.loss(z, tensors[SET_LABEL_KEY])
        total = total + label_weight * label_loss
        extra.update({"generator_loss": per_set.mean().detach(), "label_loss": label_loss.detach()})
        return LossOutput(loss=total, reconstruction_loss=per_set, n_obs_minibatch=x.shape[0], extra_metrics=extra)

    def latent_w2_loss(self, x: Tensor, z: Tensor, weights: Tensor | None = None) -> Tensor:
        """Mean of ``(|z_i - z_j| - W2_ij)^2`` over the pairs (set ``i``, set ``i + 1``) of a batch (see ``w2_weight``)."""
        with torch.no_grad():
            h = self.encoder_input(x)
            if self.w2_basis is not None:
                h = h @ self.w2_basis
            partner = torch.roll(torch.arange(x.shape[0], device=x.device), 1)
            w_partner = None if weights is None else weights[partner]
            target = gaussian_w2_pairs(h.float(), h[partner].float(), weights, w_partner)
        return ((z - z[partner]).norm(dim=-1) - target.to(z.dtype)).pow(2).mean()

    @torch.no_grad()
    @auto_move_data
    def sample(self, z: Tensor, n: int, batch: Tensor | None = None, project: bool = True, **kwargs) -> Tensor:
        """Generate ``n`` cells per set vector, ``(B, n, G)`` on the data scale.

        With ``project`` (and non-negative data), each set is put on the data's support by
        :meth:`project_support`, from at least ``MIN_PROJECTION_CELLS`` generated cells per set
        vector (so that a set's mean and spread are estimated well also when ``n`` is small).
        """
        project = project and self.projects_support
        n_draw = max(n, MIN_PROJECTION_CELLS) if project else n
        if batch is not None and n_draw > batch.shape[1]:
            batch = batch[:, :1].expand(-1, n_draw)
        y = self.generator_output(self.generator.sample(z, n_draw, self.covariates(batch), **kwargs))
        y = self.project_support(y)[:, :n] if project else y
        return self.bound_values(y)

    def bound_values(self, y: Tensor) -> Tensor:
        """Clamp generated values ``(..., G)`` (data scale) to :meth:`set_value_bounds` (counts are left as drawn)."""
        if self.likelihood == "nb":
            return y
        return torch.minimum(torch.maximum(y, self.value_bounds[0]), self.value_bounds[1])
