"""Sparse elements: a CSR batch of cells read by the first linear layer without densifying it.

Expression matrices are mostly zeros (5% non-zero is typical at 2,000 genes), so the first layer
of an encoder, ``x @ W.T``, is cheapest as a sparse matrix product. The module's input map
(standardising each gene, ``(x - shift) / scale``) would make the matrix dense; it is affine, so
:class:`SparseRows` defers it into the weights: ``((x - shift) / scale) @ W.T = x @ (W / scale).T -
(shift / scale) @ W.T``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def _tensor(array, dtype) -> Tensor:
    """``array`` as a tensor of ``dtype``; a read-only array (copy-on-write anndata / pandas) is copied, not wrapped."""
    array = np.asarray(array, dtype=dtype)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def csr_tensor(matrix) -> Tensor:
    """A ``scipy.sparse`` CSR matrix as a float32 torch sparse CSR tensor (shares no memory).

    Duplicate entries are summed and column indices sorted first (torch's CSR invariants;
    column-indexed scipy matrices may hold unsorted ones).
    """
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            _tensor(matrix.indptr, np.int64),
            _tensor(matrix.indices, np.int64),
            _tensor(matrix.data, np.float32),
            size=matrix.shape,
            check_invariants=False,  # scipy's CSR is valid; checking costs a pass over the entries
        )


@dataclass
class SparseRows:
    """Elements ``(x - shift) / scale`` of a sparse CSR matrix ``x``, kept sparse.

    Parameters
    ----------
    x
        ``(N, D)`` torch sparse CSR tensor.
    shift, scale
        ``(D,)`` per-feature affine map (``None``: none).
    """

    x: Tensor
    shift: Tensor | None = None
    scale: Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self.x.shape

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device) -> SparseRows:
        move = lambda t: None if t is None else t.to(device)
        return SparseRows(self.x.to(device), move(self.shift), move(self.scale))

    def linear(self, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """``F.linear`` of the elements: ``(N, out)``, computed from the sparse entries."""
        if self.scale is not None:
            weight = weight / self.scale
        out = torch.sparse.mm(self.x, weight.T)
        if self.shift is not None:
            out = out - self.shift @ weight.T
        return out if bias is None else out + bias

    def dense(self) -> Tensor:
        """The elements as a dense ``(N, D)`` tensor."""
        out = self.x.to_dense()
        if self.shift is not None:
            out = out - self.shift
        return out if self.scale is None else out / self.scale


def sparse_log_normalise(x: Tensor) -> Tensor:
    """:func:`~scgde.nn._layers.log_normalise` of a CSR tensor of counts, on its stored entries only."""
    crow, col, values = x.crow_indices(), x.col_indices(), x.values()
    row = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), crow.diff())
    totals = values.new_zeros(x.shape[0]).index_add(0, row, values).clamp_min(1.0)
    out = torch.log1p(1e4 * values / totals[row])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, out, size=x.shape, check_invariants=False)


def linear_input(x: Tensor | SparseRows, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for dense elements or :class:`SparseRows`."""
    if isinstance(x, SparseRows):
        return x.linear(weight, bias)
    return torch.nn.functional.linear(x, weight, bias)
