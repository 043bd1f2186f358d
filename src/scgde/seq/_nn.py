"""Pure-torch parts of :mod:`scgde.seq`: a set encoder of token sequences and a sequence generator.

The encoder convolves one-hot sequences; the generator is autoregressive, conditioned on a set
vector by prefix tokens.

Tokens follow :mod:`scgde.seq._alphabet`: ``PAD = 0``, ``BOS = 1``, ``EOS = 2``, letters from
``N_SPECIAL = 3``; a row of ``(N, L)`` tokens is a sequence right-padded with ``PAD``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scgde.nn import MLP, ConditionalGenerator, ResNetEncoder, SetEncoder

from ._alphabet import BOS, EOS, N_SPECIAL, PAD


def _letters_mask(x: Tensor) -> Tensor:
    """``(N, 1, L)`` float mask of letter positions (padding and specials are 0)."""
    return (x >= N_SPECIAL).to(torch.float32)[:, None, :]


class ConvSequenceEncoder(SetEncoder):
    """1-D convolutions over one-hot sequences, the set's mean feature map fed back after each block.

    Stage 0 embeds each sequence with a convolution. Each later stage convolves the sequence's own
    map, concatenates the weighted mean map of its set (the pooled statistic of the stage before),
    mixes both with a 1x1 convolution (residual, LayerNorm over channels) and pools again. The
    last stage reads each sequence's map out into a vector (a linear map of the whole map, so
    positions matter) that is pooled into the set vector. Only pooled statistics connect the
    sequences of a set and no layer normalises across sequences, so sets of any size encode
    exactly in chunks.

    Parameters
    ----------
    n_letters
        Alphabet size (letters only; ``PAD``/``BOS``/``EOS`` are not one-hot channels).
    max_length
        Sequence length ``L`` (rows are padded to it).
    n_latent
        Set-vector dimension.
    n_channels
        Convolution channels ``C``.
    kernel_size
        Convolution width (odd).
    n_blocks
        Pooled feedback blocks after the first convolution.
    n_hidden
        Width of the element vector and of the set head.
    """

    def __init__(
        self,
        n_letters: int,
        max_length: int,
        n_latent: int,
        n_channels: int = 32,
        kernel_size: int = 7,
        n_blocks: int = 2,
        n_hidden: int = 128,
    ):
        super().__init__(max_length, n_latent)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}.")
        self.n_letters, self.max_length = n_letters, max_length
        self.n_stages = n_blocks + 1
        pad = kernel_size // 2
        self.embed = nn.Conv1d(n_letters, n_channels, kernel_size, padding=pad)
        self.convs = nn.ModuleList(nn.Conv1d(n_channels, n_channels, kernel_size, padding=pad) for _ in range(n_blocks))
        self.mixers = nn.ModuleList(nn.Conv1d(2 * n_channels, n_channels, 1) for _ in range(n_blocks))
        self.norms = nn.ModuleList(nn.LayerNorm(n_channels) for _ in range(n_blocks))
        self.readout = nn.Linear(n_channels * max_length, n_hidden)
        self.out = MLP(n_hidden, n_latent, n_hidden, 1)

    def _one_hot(self, x: Tensor) -> Tensor:
        letters = (x.long() - N_SPECIAL).clamp(min=0)
        return F.one_hot(letters, self.n_letters).to(torch.float32).transpose(1, 2) * _letters_mask(x)

    def step(self, stage, x, state, pooled, seg):
        mask = _letters_mask(x)
        if stage == 0:
            h = F.gelu(self.embed(self._one_hot(x))) * mask
        else:
            b = stage - 1
            own = F.gelu(self.convs[b](state))
            mixed = self.mixers[b](torch.cat([own, pooled[seg].view_as(own)], dim=1))
            h = self.norms[b]((state + F.gelu(mixed)).transpose(1, 2)).transpose(1, 2) * mask
        if stage < self.n_stages - 1:
            return h, h.flatten(1), None
        return h, F.gelu(self.readout(h.flatten(1))), None

    def head(self, pooled):
        return self.out(pooled)


def element_feature_size(element_encoder: nn.Module, max_length: int) -> int:
    """Width of ``element_encoder``'s output: its ``n_features`` attribute, else one dry run."""
    size = getattr(element_encoder, "n_features", None)
    if size is None:
        weight = next(iter(element_encoder.parameters()), None)
        probe = torch.full((1, max_length), PAD, dtype=torch.long, device=None if weight is None else weight.device)
        probe[0, 0] = N_SPECIAL  # one letter: the shortest valid sequence
        mode = element_encoder.training
        element_encoder.eval()  # no running statistics or dropout touched by the probe
        try:
            with torch.no_grad():
                out = element_encoder(probe)
        finally:
            element_encoder.train(mode)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 1:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"element_encoder must map tokens (N, max_length) to features (N, n_features); "
                f"it returned {shape} for one sequence."
            )
        size = out.shape[1]
    return int(size)


class ElementFeatureEncoder(SetEncoder):
    """A user's per-element network (e.g. a local pretrained protein language model) + a set encoder.

    ``element_encoder`` maps token rows ``(N, max_length)`` (the :mod:`scgde.seq` tokens: ``PAD``
    0, ``BOS`` 1, ``EOS`` 2, letters from 3) to features ``(N, n_features)``; its parameters train
    with the rest unless the user freezes them (``requires_grad_(False)``). The features feed the
    pooled-feedback :class:`~scgde.nn.ResNetEncoder`, so the set vector stays a function of the
    set's empirical distribution and streams exactly; the element network runs once per chunk
    (per pass over the chunks when streaming).
    """

    def __init__(self, element_encoder: nn.Module, max_length: int, n_latent: int, **set_encoder_kwargs):
        super().__init__(max_length, n_latent)
        self.element_encoder = element_encoder
        self.n_features = element_feature_size(element_encoder, max_length)
        self.set_encoder = ResNetEncoder(self.n_features, n_latent, **set_encoder_kwargs)
        self.n_stages = self.set_encoder.n_stages
        self.state_carries_input = True

    def step(self, stage, x, state, pooled, seg):
        # the set encoder reads the element features at stage 0 only (its state carries what later stages need)
        features = self.element_encoder(x.long()) if stage == 0 else None
        return self.set_encoder.step(stage, features, state, pooled, seg)

    def head(self, pooled):
        return self.set_encoder.head(pooled)


class CausalBlock(nn.Module):
    """Pre-norm transformer block with causal self-attention and an optional key/value cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}.")
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, cache: dict | None = None) -> Tensor:
        """``h (N, T, d)``; with a ``cache`` dict, keys and values of earlier calls are reused and extended."""
        n, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # a fresh sequence attends causally; new tokens after a cache attend to everything before them
        causal = k.shape[2] == t and t > 1
        # no dropout on the attention weights: it forces torch's materialised kernel (on CPU ~10x slower and
        # O(T^2) memory for protein-length sequences); dropout acts on the residual branches instead
        att = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        h = h + self.drop(self.proj(att.transpose(1, 2).reshape(n, t, d)))
        return h + self.drop(self.ff(self.norm2(h)))


class AutoregressiveGenerator(ConditionalGenerator):
    """A small causal transformer over tokens, conditioned on the set vector by prefix tokens.

    The set vector is mapped to ``n_prefix`` input embeddings placed before ``BOS``; every token
    attends to them (the prefix recipe of the paper's DNA and protein generators, trained from
    scratch here). The per-set loss is the weighted mean over sequences of the per-token negative
    log-likelihood of the letters and the final ``EOS``; padding is never a target. Sequences of
    one set are subsampled to ``max_loss_elements`` for the loss (an unbiased estimate of the same
    objective; the encoder still sees all of them).

    Parameters
    ----------
    n_tokens
        Vocabulary size (specials and letters).
    max_length
        Longest sequence (letters, without ``BOS``/``EOS``).
    n_cond
        Set-vector dimension.
    d_model, n_layers, n_heads
        Transformer width, depth and heads.
    n_prefix
        Prefix embeddings per set vector.
    dropout
        Dropout in the transformer layers.
    max_loss_elements
        Sequences per set that enter the loss (``None``: all).
    p_uncond
        Probability that a training sequence sees a learned null condition instead of its set
        vector, so that :meth:`sample` can apply classifier-free guidance.
    """

    def __init__(
        self,
        n_tokens: int,
        max_length: int,
        n_cond: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        n_prefix: int = 2,
        dropout: float = 0.1,
        max_loss_elements: int | None = 8,
        p_uncond: float = 0.0,
    ):
        super().__init__(max_length, n_cond)
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}.")
        self.p_uncond = p_uncond
        self.null_cond = nn.Parameter(torch.zeros(n_cond))
        self.n_tokens, self.max_length, self.n_prefix = n_tokens, max_length, n_prefix
        self.max_loss_elements = max_loss_elements
        self.token_embedding = nn.Embedding(n_tokens, d_model)
        self.position_embedding = nn.Embedding(n_prefix + max_length + 1, d_model)
        self.prefix = MLP(n_cond, n_prefix * d_model, 2 * d_model, 1)
        self.blocks = nn.ModuleList(CausalBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.logits = nn.Linear(d_model, n_tokens)

    def _next_token_logits(self, cond: Tensor, inputs: Tensor, caches: list[dict] | None = None) -> Tensor:
        """Logits ``(N, T, V)`` after each of ``[BOS, t_1, ..., t_{T-1}]`` given prefixes from ``cond (N, Z)``.

        With ``caches`` (one dict per block, filled by the first call), later calls pass only the
        new tokens, which continue the cached sequence.
        """
        n, t = inputs.shape
        start = 0 if not caches or "k" not in caches[0] else caches[0]["k"].shape[2]
        h = self.token_embedding(inputs)
        if start == 0:
            h = torch.cat([self.prefix(cond).view(n, self.n_prefix, -1), h], dim=1)
        h = h + self.position_embedding(torch.arange(start, start + h.shape[1], device=h.device))
        for i, block in enumerate(self.blocks):
            h = block(h, None if caches is None else caches[i])
        h = h[:, self.n_prefix :] if start == 0 else h
        return self.logits(self.norm(h))

    def _targets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``[BOS, letters]`` and targets ``[letters, EOS]`` (``PAD`` after the end) of ``x (N, L)``."""
        x = x.long()
        lengths = (x >= N_SPECIAL).sum(1)
        pad = x.new_full((x.shape[0], 1), PAD)
        targets = torch.cat([x, pad], dim=1)
        targets[torch.arange(len(x), device=x.device), lengths] = EOS
        inputs = torch.cat([x.new_full((x.shape[0], 1), BOS), x], dim=1)
        return inputs, targets

    def log_likelihood(self, x: Tensor, cond: Tensor) -> Tensor:
        """``log p(sequence | set vector)`` of each row of ``x (N, L)`` (letters and ``EOS``), ``(N,)``."""
        inputs, targets = self._targets(x)
        logits = self._next_token_logits(cond, inputs)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, reduction="none")
        return -nll.sum(1)

    def _subsample(self, x: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor | None]:
        k = self.max_loss_elements
        n_sets, m = x.shape[:2]
        if k is None or m <= k:
            return x, weights
        if weights is None:
            idx = torch.rand(n_sets, m, device=x.device).argsort(1)[:, :k]
        else:  # draws proportional to the weights: their plain mean estimates the weighted mean
            idx = torch.multinomial(weights.clamp_min(0) + 1e-12 * (weights.sum(1, keepdim=True) == 0), k, True)
        return x.gather(1, idx[..., None].expand(-1, -1, x.shape[2])), None

    def loss(self, x, z, weights=None, covariates=None):
        x, weights = self._subsample(x, weights)
        n_sets, m, length = x.shape
        inputs, targets = self._targets(x.reshape(-1, length))
        cond = z.repeat_interleave(m, dim=0)
        if self.training and self.p_uncond > 0:  # condition dropout per sequence, for classifier-free guidance
            drop = torch.rand(len(cond), 1, device=cond.device) < self.p_uncond
            cond = torch.where(drop, self.null_cond.expand_as(cond), cond)
        logits = self._next_token_logits(cond, inputs)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, reduction="none")
        per_sequence = (nll.sum(1) / (targets != PAD).sum(1)).view(n_sets, m)
        if weights is None:
            return per_sequence.mean(1)
        return (per_sequence * weights).sum(1) / weights.sum(1).clamp_min(1e-12)

    @torch.no_grad()
    def sample(
        self,
        z: Tensor,
        n: int,
        covariates: Tensor | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_length: int | None = None,
        guidance: float = 0.0,
    ) -> Tensor:
        """Draw ``n`` sequences per set vector: ``(B, n, max_length)`` tokens, ``PAD`` after ``EOS``.

        ``temperature`` scales the logits; ``top_p < 1`` samples from the smallest set of tokens
        whose probability reaches ``top_p`` (nucleus sampling); ``guidance = w > 0`` samples from
        ``(1 + w) * conditional - w * unconditional`` logits (classifier-free guidance; needs a
        model trained with ``p_uncond > 0``).
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}.")
        if guidance > 0 and self.p_uncond == 0:
            raise ValueError("guidance needs a generator trained with p_uncond > 0 (its null condition is untrained).")
        length = min(max_length or self.max_length, self.max_length)
        cond = z.repeat_interleave(n, dim=0)
        n_rows = len(cond)
        if guidance > 0:  # conditional and unconditional rows advance together on the same tokens
            cond = torch.cat([cond, self.null_cond.expand_as(cond)])
        tokens = cond.new_full((n_rows, 1), BOS, dtype=torch.long)
        done = torch.zeros(n_rows, dtype=torch.bool, device=z.device)
        caches: list[dict] = [{} for _ in self.blocks]
        step_input = tokens
        for step in range(length + 1):
            both = step_input if guidance == 0 else torch.cat([step_input, step_input])
            logits = self._next_token_logits(cond, both, caches)[:, -1]
            if guidance > 0:
                logits = (1 + guidance) * logits[:n_rows] - guidance * logits[n_rows:]
            logits = logits / temperature
            logits[:, [PAD, BOS]] = -math.inf
            if step == length:  # the longest allowed sequence ends here
                logits[:, N_SPECIAL:] = -math.inf
            nxt = _nucleus_sample(logits, top_p)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            done |= nxt == EOS
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            step_input = nxt[:, None]
            if done.all():
                break
        out = tokens[:, 1:]
        out = torch.where(out == EOS, torch.full_like(out, PAD), out)
        out = F.pad(out, (0, length + 1 - out.shape[1]), value=PAD)[:, :length]
        return out.view(len(z), n, length)


def _nucleus_sample(logits: Tensor, top_p: float) -> Tensor:
    """One token per row from ``softmax(logits)`` restricted to the top-``top_p`` mass."""
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p  # keeps at least the top token
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(1)
