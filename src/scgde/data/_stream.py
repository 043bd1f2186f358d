"""Stream the cells of many sets in chunks, for exact encoding of sets of any size."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from scvi import settings
from scvi.utils import track

from scgde.nn._sparse import csr_tensor

from ._fetch import RowFetcher


class GeneOrder:
    """Read rows of a matrix whose columns are the model's genes in another order.

    Parameters
    ----------
    fetcher
        Reader of the query matrix.
    columns
        For each model gene, its column in the query matrix (``None``: same order).
    """

    def __init__(self, fetcher: RowFetcher, columns: np.ndarray | None):
        self.fetcher, self.columns = fetcher, columns
        self.shape = (fetcher.shape[0], fetcher.shape[1] if columns is None else len(columns))

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` with columns in the model's order."""
        out = self.fetcher.rows(idx)
        return out if self.columns is None else out[:, self.columns]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Contiguous rows ``start:stop`` with columns in the model's order."""
        out = self.fetcher.slice(start, stop)
        return out if self.columns is None else out[:, self.columns]

    @property
    def is_sparse(self) -> bool:
        """Whether blocks can be read sparse."""
        return getattr(self.fetcher, "is_sparse", False)

    def sparse_rows(self, idx: np.ndarray):
        """Rows ``idx`` as a CSR matrix, columns in the model's order."""
        out = self.fetcher.sparse_rows(idx)
        return out if self.columns is None else out[:, self.columns]

    def sparse_slice(self, start: int, stop: int):
        """Contiguous rows ``start:stop`` as a CSR matrix, columns in the model's order."""
        out = self.fetcher.sparse_slice(start, stop)
        return out if self.columns is None else out[:, self.columns]


def host_tensor(array: np.ndarray, device=None) -> torch.Tensor:
    """``array`` as a tensor on ``device``, sharing its memory when it may.

    A writable array is wrapped without copying (the hot path: blocks read from a backed file or
    gathered by row). A read-only one (a view of anndata >= 0.13's copy-on-write ``X``, a pandas 3
    column, a memory map) is copied when the tensor stays on the CPU, since a tensor that shares
    its memory could be written in place; for another device the transfer is the copy, so it is
    wrapped only for that transfer.
    """
    if array.flags.writeable:
        return torch.from_numpy(array).to(device)
    if device is None or torch.device(device).type == "cpu":
        return torch.from_numpy(array.copy())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array).to(device)


def default_chunk_size(n_vars: int) -> int:
    """Cells per chunk: about 4M matrix entries (e.g. 2,097 cells at 2,000 genes), 256 to 16,384 cells."""
    return max(256, min(16384, 2**22 // max(n_vars, 1)))


class SetChunks:
    """Re-iterable chunks ``(x, seg, weights)`` of the cells of the wanted sets, in file order.

    Each iteration reads the wanted rows once, so an encoder with several pooling stages reads
    the data once per stage (see :func:`scgde.nn.encode_stream`).

    Parameters
    ----------
    fetcher
        Reader of the rows (an object with ``rows(idx)`` and ``slice(start, stop)``).
    codes
        ``(n_obs,)`` set code of every row; rows with code ``-1`` are skipped.
    transform
        Applied to each dense chunk tensor (e.g. the module's encoder input transform).
    device
        Where the chunks go.
    chunk_size
        Rows per chunk.
    weights
        Optional callable ``weights(rows) -> (len(rows),)`` masses of the given rows; it must
        return the same values each pass (e.g. seeded by the rows).
    description
        Progress-bar text.
    progress_bar
        Show a progress bar for long passes.
    sparse_transform
        Applied instead of ``transform`` to each chunk as a torch sparse CSR tensor when the
        matrix is stored sparse (e.g. the module's :meth:`sparse_encoder_input`); it may return
        ``None`` (then chunks are read dense). Sparse chunks are never densified.
    """

    def __init__(
        self,
        fetcher,
        codes: np.ndarray,
        transform: Callable[[torch.Tensor], torch.Tensor],
        device,
        chunk_size: int,
        weights: Callable[[np.ndarray], np.ndarray] | None = None,
        description: str = "Encoding sets",
        progress_bar: bool = True,
        sparse_transform: Callable[[torch.Tensor], object | None] | None = None,
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive number of cells.")
        self.fetcher, self.codes, self.transform, self.device = fetcher, np.asarray(codes), transform, device
        self.sparse_transform = sparse_transform if getattr(fetcher, "is_sparse", False) else None
        self.rows = np.flatnonzero(self.codes >= 0)
        # contiguous reads when most rows are needed (fast when backed), else only the wanted rows
        self.contiguous = len(self.rows) > 0.5 * len(self.codes)
        total = len(self.codes) if self.contiguous else len(self.rows)
        self.bounds = [(s, min(s + chunk_size, total)) for s in range(0, total, chunk_size)]
        self.weights = weights
        self.description, self.progress_bar = description, progress_bar
        self.passes = 0
        #: elements yielded per pass (for a stream cache to know whether everything fits)
        self.n_elements = int(len(self.rows))

    def __call__(self) -> SetChunks:
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        self.passes += 1
        bounds = self.bounds
        if self.progress_bar and len(bounds) > 4:
            bounds = track(
                bounds, description=f"{self.description} (pass {self.passes})", style=settings.progress_bar_style
            )
        for start, stop in bounds:
            sparse = self.sparse_transform is not None
            if self.contiguous:
                rows = np.arange(start, stop)
                seg = self.codes[start:stop]
                keep = seg >= 0
                if not keep.any():
                    continue
                x = self.fetcher.sparse_slice(start, stop) if sparse else self.fetcher.slice(start, stop)
                if not keep.all():  # avoid copying a chunk that is all wanted
                    x, seg, rows = x[keep], seg[keep], rows[keep]
            else:
                rows = self.rows[start:stop]
                x = self.fetcher.sparse_rows(rows) if sparse else self.fetcher.rows(rows)
                seg = self.codes[rows]
            w = None if self.weights is None else host_tensor(np.asarray(self.weights(rows), np.float32), self.device)
            x = self._elements(x)
            yield x, host_tensor(seg, self.device), w

    def _elements(self, block):
        """The encoder's elements of a block read from the matrix (sparse kept sparse when possible)."""
        if self.sparse_transform is not None:
            out = self.sparse_transform(csr_tensor(block).to(self.device))
            if out is not None:
                return out
            self.sparse_transform = None  # the module reads dense elements: read dense from now on
            block = block.toarray()
        return self.transform(host_tensor(block, self.device))


class ChainedChunks:
    """The chunks of several :class:`SetChunks` in turn (the parts of a collection), re-iterable like them."""

    def __init__(self, parts: list[SetChunks]):
        self.parts = parts
        self.n_elements = sum(part.n_elements for part in parts)

    def __call__(self) -> ChainedChunks:
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        for part in self.parts:
            yield from part


def pca_coordinates(
    fetcher, n_components: int = 30, n_fit: int = 20000, chunk_size: int = 8192, seed: int = 0
) -> np.ndarray:
    """``(n_obs, n_components)`` principal-component coordinates of standardised rows, in bounded memory.

    The components are fitted on a random sample of ``n_fit`` rows; all rows are then projected chunk
    by chunk. With few features the standardised features themselves are returned.
    """
    from sklearn.decomposition import PCA

    n_obs, n_vars = fetcher.shape
    mean, std = fetcher.moments(seed=seed)
    std = np.where(std > 1e-6, std, 1.0)
    n_components = min(n_components, n_vars, max(1, n_obs - 1))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n_obs, size=min(n_fit, n_obs), replace=False))
    if n_components >= n_vars:
        pca = None
    else:
        pca = PCA(n_components=n_components, random_state=seed).fit((fetcher.rows(sample) - mean) / std)
    out = np.empty((n_obs, n_components if pca is not None else n_vars), dtype=np.float32)
    for start in range(0, n_obs, chunk_size):
        block = (fetcher.slice(start, min(start + chunk_size, n_obs)) - mean) / std
        out[start : start + len(block)] = block if pca is None else pca.transform(block)
    return out
