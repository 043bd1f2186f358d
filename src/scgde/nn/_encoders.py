"""Distributionally invariant set encoders.

Every encoder is a sequence of *pooling stages*. Stage ``s`` maps each element (its raw features,
its hidden state from stage ``s - 1`` and its set's pooled statistic from stage ``s - 1``) to
features that are pooled by a weighted mean, or by a weighted softmax-attention mean. The set
vector is a function of the last pooled statistic. Because an element's state depends on other
elements only through pooled statistics, a set of any size can be encoded exactly in chunks with
one pass over the chunks per stage (:func:`encode_stream`).

No layer normalises across elements or sets (no BatchNorm), so a set's vector never depends on
the other sets of a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from ._layers import MLP
from ._pooling import PoolAccumulator, segment_pool
from ._sparse import SparseRows, linear_input

Chunks = Callable[[], Iterable[tuple[Tensor, Tensor, Tensor | None]]]


class SetEncoder(nn.Module):
    """Base class: subclasses define :meth:`step` and :meth:`head`.

    Attributes
    ----------
    n_input
        Element dimension ``D``.
    n_latent
        Set-vector dimension ``L``.
    n_stages
        Number of pooling stages.
    """

    n_stages: int = 1
    #: whether :meth:`step` reads :class:`~scgde.nn.SparseRows` elements (else they are densified first)
    accepts_sparse: bool = False
    #: whether stages after the first read only the state, not the raw elements (``x`` is then ``None``)
    state_carries_input: bool = False

    def __init__(self, n_input: int, n_latent: int):
        super().__init__()
        self.n_input = n_input
        self.n_latent = n_latent

    def step(
        self, stage: int, x: Tensor, state: Tensor | None, pooled: Tensor | None, seg: Tensor
    ) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """Per-element computation of one stage.

        Parameters
        ----------
        stage
            Stage index.
        x
            ``(N, D)`` raw elements (a :class:`~scgde.nn.SparseRows` when :attr:`accepts_sparse`).
        state
            The element states returned by the previous stage (``None`` at stage 0): a tensor
            with one row per element, or a tuple of them.
        pooled
            The previous stage's pooled statistic, one row per set (``None`` at stage 0).
        seg
            ``(N,)`` set index of each element, to look up rows of ``pooled``.

        Returns
        -------
        ``(state, values, logits)``: the new element states, the features to pool, and attention
        logits ``(N, S)`` for softmax pooling (``None`` for a weighted mean).
        """
        raise NotImplementedError

    def head(self, pooled: Tensor) -> Tensor:
        """Map the last pooled statistic to set vectors ``(n_sets, L)``."""
        raise NotImplementedError

    def encode_segments(self, x: Tensor, seg: Tensor, n_segments: int, weights: Tensor | None = None) -> Tensor:
        """Encode sets stored flat: ``x (N, D)``, ``seg (N,)`` -> ``(n_segments, L)``."""
        if weights is None:  # float masses also for integer elements (token sequences)
            weights = torch.ones(x.shape[0], device=x.device)
        state = pooled = None
        for stage in range(self.n_stages):
            state, values, logits = self.step(stage, x, state, pooled, seg)
            pooled = segment_pool(values, seg, n_segments, weights, logits)
        return self.head(pooled)

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """Encode a batch of sets.

        Parameters
        ----------
        x
            ``(B, m, D)`` elements, or ``(m, D)`` for a single set.
        weights
            ``(B, m)`` non-negative masses of a weighted empirical distribution (zero marks
            padding). Uniform if ``None``.

        Returns
        -------
        ``(B, L)`` set vectors (``(L,)`` for a single set).
        """
        single = x.dim() == 2
        if single:
            x = x[None]
            weights = None if weights is None else weights[None]
        n_sets, m, d = x.shape
        seg = torch.arange(n_sets, device=x.device).repeat_interleave(m)
        w = None if weights is None else weights.reshape(-1).float()
        z = self.encode_segments(x.reshape(-1, d), seg, n_sets, w)
        return z[0] if single else z


def _nbytes(obj) -> int:
    """Bytes held by a chunk's cached tensors (tensors, tuples of them, :class:`SparseRows`, ``None``)."""
    if obj is None:
        return 0
    if isinstance(obj, Tensor):
        if obj.layout == torch.sparse_csr:
            return sum(_nbytes(t) for t in (obj.crow_indices(), obj.col_indices(), obj.values()))
        return obj.numel() * obj.element_size()
    if isinstance(obj, SparseRows):
        return _nbytes(obj.x)
    return sum(_nbytes(item) for item in obj)


def _compact(obj):
    """Copies of views, so a cached state holds only its own rows and columns, not the tensor it was cut from."""
    if isinstance(obj, Tensor):
        return obj.clone() if obj.layout == torch.strided and obj._base is not None else obj
    if isinstance(obj, tuple):
        return tuple(_compact(item) for item in obj)
    return obj


@torch.no_grad()
def encode_stream(
    encoder: SetEncoder,
    chunks: Chunks,
    n_segments: int,
    progress: Callable | None = None,
    cache_bytes: int = 0,
) -> Tensor:
    """Encode sets of any size chunk by chunk, exactly.

    Parameters
    ----------
    encoder
        A :class:`SetEncoder`.
    chunks
        A callable returning a fresh iterable of ``(x, seg, weights)`` chunks, where ``x`` is
        ``(n, D)``, ``seg`` ``(n,)`` the set index of each element and ``weights`` ``(n,)`` or
        ``None``. It is called once per pooling stage (fewer with a cache), so it must yield the
        same elements each time.
    n_segments
        Number of sets.
    progress
        Optional wrapper applied to each pass's iterable (e.g. a progress bar).
    cache_bytes
        Memory for keeping the chunks' element states between stages, used only when all of them
        fit (estimated from the first chunk and ``chunks.n_elements`` when the chunks say how many
        elements they hold): the later stages then call ``chunks`` no more and recompute nothing.
        A partial cache would save little (every chunk is read again anyway) and fragments memory.
        ``0``: no cache, the least memory.

    Returns
    -------
    ``(n_segments, L)`` set vectors, equal to encoding each set whole (to float tolerance). Memory
    is bounded by the chunk size plus one pooled statistic per set (plus the cache).
    """
    history: list[Tensor] = []
    n_elements = getattr(chunks, "n_elements", None) if cache_bytes > 0 else None
    # per cached chunk: (its state after the last stage, raw elements if later stages read them, seg, weights)
    cache: list[tuple] = []
    used, complete = 0, False
    fits = cache_bytes > 0  # False once the whole stream is known not to fit: then nothing is cached
    for stage in range(encoder.n_stages):
        acc: PoolAccumulator | None = None
        if complete:
            passes: Iterable = ((None, seg, weights) for _, _, seg, weights in cache)
        else:
            passes = iter(chunks())
            if progress is not None:
                passes = progress(passes, stage)
        full = True  # every chunk of this pass fit in the cache
        for i, (x, seg, weights) in enumerate(passes):
            if weights is None:
                weights = torch.ones(x.shape[0], device=x.device)
            if i < len(cache):  # resume from the cached state of the previous stage
                state, kept, seg, weights = cache[i]
                x = kept if kept is not None else x
                state, values, logits = encoder.step(stage, x, state, history[stage - 1], seg)
            else:
                # recompute the element states up to this stage from the earlier stages' pooled stats
                state = None
                for j in range(stage + 1):
                    state, values, logits = encoder.step(j, x, state, history[j - 1] if j else None, seg)
            if stage < encoder.n_stages - 1 and fits:
                kept = None if encoder.state_carries_input else x
                if i == 0 and stage == 0 and n_elements is not None:
                    # all chunks or none: estimated from this chunk's bytes per element
                    per_element = _nbytes((state, kept, seg, weights)) / max(1, seg.shape[0])
                    fits = full = per_element * n_elements <= cache_bytes
                if i < len(cache):
                    used += _nbytes(state) - _nbytes(cache[i][0])
                    cache[i] = (_compact(state), kept, seg, weights)
                elif full and used + _nbytes((state, kept, seg, weights)) <= cache_bytes:
                    state = _compact(state)
                    used += _nbytes((state, kept, seg, weights))
                    cache.append((state, kept, seg, weights))
                else:
                    full = False
            if acc is None:
                acc = PoolAccumulator(n_segments, attention=logits is not None)
            acc.add(seg, weights.to(values.dtype), values, logits)
        if acc is None:
            raise ValueError("`chunks` yielded no elements.")
        complete = complete or (full and len(cache) > 0)
        history.append(acc.result())
    return encoder.head(history[-1])


class MeanEncoder(SetEncoder):
    """A linear map of the weighted mean, ``z = W mean(x) + b``: sees first moments only (a baseline)."""

    def __init__(self, n_input: int, n_latent: int):
        super().__init__(n_input, n_latent)
        self.linear = nn.Linear(n_input, n_latent)

    def step(self, stage, x, state, pooled, seg):
        return None, x, None

    def head(self, pooled):
        return self.linear(pooled)


class KMEEncoder(SetEncoder):
    """Kernel mean embedding with random Fourier features (a baseline).

    ``z = mean_j sqrt(2 / L) cos(W x_j / bandwidth + b)`` with fixed Gaussian ``W`` and uniform
    phases ``b``, so that ``<z_P, z_Q>`` approximates the mean Gaussian-kernel similarity. Only
    the bandwidth is trained.
    """

    def __init__(self, n_input: int, n_latent: int, bandwidth: float = 1.0, seed: int = 0):
        super().__init__(n_input, n_latent)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(n_input, n_latent, generator=gen))
        self.register_buffer("phases", 2 * math.pi * torch.rand(n_latent, generator=gen))
        self.log_bandwidth = nn.Parameter(torch.tensor(math.log(bandwidth)))

    def step(self, stage, x, state, pooled, seg):
        proj = x @ self.freqs / self.log_bandwidth.exp() + self.phases
        return None, math.sqrt(2.0 / self.n_latent) * torch.cos(proj), None

    def head(self, pooled):
        return pooled


class DeepSetsEncoder(SetEncoder):
    """DeepSets with mean pooling: element MLP, weighted mean, set MLP."""

    def __init__(self, n_input: int, n_latent: int, n_hidden: int = 128, n_layers: int = 2):
        super().__init__(n_input, n_latent)
        self.phi = MLP(n_input, n_hidden, n_hidden, n_layers)
        self.rho = MLP(n_hidden, n_latent, n_hidden, n_layers)

    def step(self, stage, x, state, pooled, seg):
        return None, self.phi(x), None

    def head(self, pooled):
        return self.rho(pooled)


class ResNetEncoder(SetEncoder):
    """Stacked pool-and-concatenate blocks with skip connections and LayerNorm (the paper's best).

    ``h0 = LN(MLP(x) + W0 x)`` and, for each block ``k``,
    ``hk = LN(MLP_k([h_{k-1}, mean(h_{k-1})]) + h_{k-1} + W_k x)``; ``z = A mean(h_K) + c``.
    ``quadratic=True`` adds ``(P x) * (Q x)`` inside ``h0``'s LayerNorm:
    ``h0 = LN(MLP(x) + W0 x + (P x) * (Q x))``, ``n_hidden`` products of two learned projections
    whose set means are (uncentred) second moments of the elements; with the first moments they
    give covariances, which an MLP of this width otherwise learns slowly in many dimensions
    (``docs/benchmarks.md``).

    Every linear map of the raw elements (the MLP's first layer and the skips ``W_k``) runs as
    one matrix product at stage 0, the bulk of the work for wide inputs; the later stages' skips
    travel in the element state. Accepts :class:`~scgde.nn.SparseRows` (sparse CSR elements).
    """

    accepts_sparse = True
    state_carries_input = True

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 128,
        n_blocks: int = 2,
        n_layers: int = 2,
        quadratic: bool = False,
    ):
        super().__init__(n_input, n_latent)
        self.n_stages = n_blocks + 1
        self.n_hidden = n_hidden
        self.inp = MLP(n_input, n_hidden, n_hidden, n_layers)
        self.skips = nn.ModuleList(nn.Linear(n_input, n_hidden, bias=False) for _ in range(self.n_stages))
        # products of two projections of each element: their set means are second moments
        self.quadratic = nn.Linear(n_input, 2 * n_hidden, bias=False) if quadratic else None
        self.blocks = nn.ModuleList(MLP(2 * n_hidden, n_hidden, n_hidden, n_layers) for _ in range(n_blocks))
        self.norms = nn.ModuleList(nn.LayerNorm(n_hidden) for _ in range(self.n_stages))
        self.out = nn.Linear(n_hidden, n_latent)

    def input_projection(self, x: Tensor | SparseRows) -> Tensor:
        """``[first layer of the MLP, W_0 x, ..., W_K x(, P x, Q x)]`` of the raw elements, in one product.

        ``(N, (K + 2) H)``, or ``(N, (K + 4) H)`` with ``quadratic``.
        """
        first = self.inp[0]
        extra = [] if self.quadratic is None else [self.quadratic.weight]
        weight = torch.cat([first.weight, *(skip.weight for skip in self.skips), *extra])
        bias = torch.cat([first.bias, first.bias.new_zeros(weight.shape[0] - self.n_hidden)])
        return linear_input(x, weight, bias)

    def step(self, stage, x, state, pooled, seg):
        width = self.n_hidden
        if stage == 0:
            proj = self.input_projection(x)
            h, skips = proj[:, :width], proj[:, width : (self.n_stages + 1) * width]
            for layer in list(self.inp)[1:]:  # the rest of the input MLP
                h = layer(h)
            if self.quadratic is not None:
                left, right = proj[:, (self.n_stages + 1) * width :].chunk(2, dim=-1)
                h = h + left * right
        else:
            prev, skips = state
            h = self.blocks[stage - 1](torch.cat([prev, pooled[seg]], dim=-1)) + prev
        h = self.norms[stage](h + skips[:, :width])
        return (h, skips[:, width:]), h, None

    def head(self, pooled):
        return self.out(pooled)


class AttentionEncoder(SetEncoder):
    """Induced self-attention blocks with weighted softmax pooling.

    Each block summarises the set into ``n_seeds`` tokens by weighted softmax-attention pooling
    (learned queries attend over all elements; an element's weight multiplies its attention
    mass, so duplicating elements or scaling integer weights changes nothing), then every element
    attends to those tokens (residual, LayerNorm, feed-forward). This is the induced set attention
    of Lee et al. (2019): self-attention through a learned bottleneck, linear in the set size and
    exact under chunked streaming. The set vector is a linear map of the weighted mean of the last
    element states.
    """

    state_carries_input = True

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 128,
        n_blocks: int = 2,
        n_seeds: int = 8,
        n_heads: int = 4,
    ):
        super().__init__(n_input, n_latent)
        if n_hidden % n_heads:
            raise ValueError(f"n_hidden={n_hidden} must be divisible by n_heads={n_heads}.")
        self.n_stages = n_blocks + 1
        self.n_heads = n_heads
        self.embed = MLP(n_input, n_hidden, n_hidden, 1)
        self.seeds = nn.ParameterList(
            nn.Parameter(torch.randn(n_seeds, n_hidden) / math.sqrt(n_hidden)) for _ in range(n_blocks)
        )
        self.pool_keys = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_blocks))
        self.pool_values = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_blocks))
        self.queries = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_blocks))
        self.keys_values = nn.ModuleList(nn.Linear(n_hidden, 2 * n_hidden) for _ in range(n_blocks))
        self.outs = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_blocks))
        self.norms1 = nn.ModuleList(nn.LayerNorm(n_hidden) for _ in range(n_blocks))
        self.norms2 = nn.ModuleList(nn.LayerNorm(n_hidden) for _ in range(n_blocks))
        self.ffs = nn.ModuleList(MLP(n_hidden, n_hidden, 2 * n_hidden, 1) for _ in range(n_blocks))
        self.out = nn.Linear(n_hidden, n_latent)

    def _attend(self, block: int, h: Tensor, tokens: Tensor, seg: Tensor) -> Tensor:
        """Each element attends to its set's pooled tokens ``(n_sets, S, H)``."""
        n, width = h.shape
        heads, dh = self.n_heads, width // self.n_heads
        k, v = self.keys_values[block](tokens).chunk(2, dim=-1)  # projected once per set
        q = self.queries[block](h).view(n, heads, dh)
        k = k[seg].view(n, -1, heads, dh)
        v = v[seg].view(n, -1, heads, dh)
        attn = torch.softmax(torch.einsum("nhd,nshd->nhs", q, k) / math.sqrt(dh), dim=-1)
        return self.outs[block](torch.einsum("nhs,nshd->nhd", attn, v).reshape(n, width))

    def step(self, stage, x, state, pooled, seg):
        if stage == 0:
            h = self.embed(x)
        else:
            b = stage - 1
            h = self.norms1[b](state + self._attend(b, state, pooled, seg))
            h = self.norms2[b](h + self.ffs[b](h))
        if stage == self.n_stages - 1:
            return h, h, None
        keys = self.pool_keys[stage](h)
        logits = keys @ self.seeds[stage].T / math.sqrt(h.shape[-1])
        return h, self.pool_values[stage](h), logits

    def head(self, pooled):
        return self.out(pooled)


ENCODERS: dict[str, type[SetEncoder]] = {
    "mean": MeanEncoder,
    "deepsets": DeepSetsEncoder,
    "resnet": ResNetEncoder,
    "attention": AttentionEncoder,
    "kme": KMEEncoder,
}


def build_encoder(name: str, n_input: int, n_latent: int, **kwargs) -> SetEncoder:
    """Build an encoder by name; one of ``mean``, ``deepsets``, ``resnet``, ``attention``, ``kme``."""
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoder={name!r}; choose one of {sorted(ENCODERS)}.")
    return ENCODERS[name](n_input, n_latent, **kwargs)
