"""Weighted pooling over the elements of each set, exact under streaming.

Sets are stored "flat": elements ``x`` of shape ``(N, F)`` and a segment index ``seg`` of shape
``(N,)`` naming the set of each element. Pooling is a *weighted* mean (optionally a weighted
softmax-attention mean): it depends on the elements only through the weighted empirical
distribution, which is what makes every encoder distributionally invariant (invariant to order,
to duplicating every element, and to zero-weight padding).

Both poolings are ratios of sums over elements, so a set can be pooled in chunks: accumulate the
sums chunk by chunk, divide at the end. The softmax variant keeps a running maximum per segment
(the log-sum-exp trick) so chunking gives the same result as pooling the whole set at once.
"""

from __future__ import annotations

import torch
from torch import Tensor


class PoolAccumulator:
    """Accumulates weighted (softmax-)means per segment over any number of chunks.

    Parameters
    ----------
    n_segments
        Number of sets.
    attention
        If ``True``, :meth:`add` expects ``logits`` of shape ``(N, S)`` and the result is the
        weighted softmax mean for each of the ``S`` queries, shape ``(n_segments, S, F)``.
        Otherwise the result is the weighted mean, shape ``(n_segments, F)``.
    """

    def __init__(self, n_segments: int, attention: bool = False):
        self.n_segments = n_segments
        self.attention = attention
        self._num: Tensor | None = None
        self._den: Tensor | None = None
        self._max: Tensor | None = None
        self._dtype = torch.float32

    def add(self, seg: Tensor, weights: Tensor, values: Tensor, logits: Tensor | None = None) -> None:
        """Add one chunk of elements.

        Parameters
        ----------
        seg
            ``(N,)`` long tensor, the set of each element.
        weights
            ``(N,)`` non-negative masses.
        values
            ``(N, F)`` features to average.
        logits
            ``(N, S)`` attention logits; required if and only if ``attention=True``.
        """
        if (logits is not None) != self.attention:
            raise ValueError("`logits` must be given exactly when the accumulator is attention pooling.")
        # sums in at least fp32 (half-precision features pool exactly too); the result in the features' dtype
        self._dtype = values.dtype
        dtype = torch.promote_types(values.dtype, torch.float32)
        values, weights = values.to(dtype), weights.to(dtype)
        logits = None if logits is None else logits.to(dtype)
        n, dev = self.n_segments, values.device
        if not self.attention:
            num = values.new_zeros(n, values.shape[-1]).index_add(0, seg, weights[:, None] * values)
            den = values.new_zeros(n).index_add(0, seg, weights)
            self._num = num if self._num is None else self._num + num
            self._den = den if self._den is None else self._den + den
            return

        n_queries = logits.shape[-1]
        # zero-weight elements (padding) must not set the running maximum
        masked = logits.masked_fill((weights <= 0)[:, None], float("-inf"))
        chunk_max = torch.full((n, n_queries), float("-inf"), device=dev, dtype=dtype)
        chunk_max = chunk_max.scatter_reduce(
            0, seg[:, None].expand(-1, n_queries), masked.detach(), reduce="amax", include_self=True
        )
        new_max = chunk_max if self._max is None else torch.maximum(self._max, chunk_max)
        safe_max = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        e = weights[:, None] * torch.exp(masked - safe_max[seg])  # (N, S)
        num = values.new_zeros(n, n_queries, values.shape[-1]).index_add(0, seg, e[:, :, None] * values[:, None, :])
        den = values.new_zeros(n, n_queries).index_add(0, seg, e)
        if self._num is not None:
            old_safe = torch.where(torch.isfinite(self._max), self._max, torch.zeros_like(self._max))
            rescale = torch.where(torch.isfinite(self._max), torch.exp(old_safe - safe_max), torch.zeros_like(safe_max))
            num = num + rescale[:, :, None] * self._num
            den = den + rescale * self._den
        self._num, self._den, self._max = num, den, new_max

    def result(self) -> Tensor:
        """The pooled statistic of every segment (NaN for a segment with no mass)."""
        if self._num is None:
            raise RuntimeError("No elements were added.")
        return (self._num / self._den[..., None]).to(self._dtype)


def segment_pool(
    values: Tensor,
    seg: Tensor,
    n_segments: int,
    weights: Tensor,
    logits: Tensor | None = None,
) -> Tensor:
    """Weighted mean (or weighted softmax-attention mean) of ``values`` within each segment."""
    acc = PoolAccumulator(n_segments, attention=logits is not None)
    acc.add(seg, weights, values, logits)
    return acc.result()
