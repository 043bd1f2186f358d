"""Read rows of an expression matrix (dense, sparse, or backed on disk) as dense float32 blocks."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import scipy.sparse as sp
from anndata.abc import CSCDataset, CSRDataset

_BACKED = (h5py.Dataset, CSRDataset, CSCDataset)
#: row numbers quoted in an error message
_N_QUOTED = 5


def _bad_count_mask(values: np.ndarray) -> np.ndarray:
    """True where ``values`` is negative or not a whole number (NaN included)."""
    if values.dtype.kind == "u" or values.dtype == bool:
        return np.zeros(values.shape, dtype=bool)
    if values.dtype.kind == "i":
        return values < 0
    return (values < 0) | (values != np.floor(values))


def _bad_rows(block, row_ids: np.ndarray, test) -> np.ndarray:
    """Sorted row numbers (from ``row_ids``) of the rows of ``block`` with an entry where ``test`` is True."""
    if sp.issparse(block):
        block = sp.csr_matrix(block)
        hit = np.flatnonzero(test(block.data))
        local = np.searchsorted(block.indptr, hit, side="right") - 1  # entry position -> row, without densifying
    else:
        local = np.flatnonzero(test(np.asarray(block)).any(axis=1))
    return np.unique(np.asarray(row_ids)[local])


def _not_finite(values: np.ndarray) -> np.ndarray:
    return ~np.isfinite(values)


def _is_lazy(X) -> bool:
    """A dask array (``anndata.experimental.read_lazy``): blocks are computed when read."""
    return hasattr(X, "compute") and hasattr(X, "chunks")


class RowFetcher:
    """Dense float32 rows of ``X`` without densifying the whole matrix.

    Works with numpy arrays, scipy sparse matrices/arrays (other formats are converted once to CSR,
    which stays sparse), backed AnnData matrices (``h5py`` datasets and anndata's on-disk sparse
    datasets) and lazy ones (dask arrays, from ``anndata.experimental.read_lazy``), reading only
    the requested rows. Every block read is checked for NaN and inf, and
    with ``counts=True`` also for negative or non-integer values.

    Parameters
    ----------
    X
        The matrix, ``n_obs x n_vars``.
    name
        How to call the matrix in error messages (e.g. ``"adata.layers['counts']"``).
    counts
        Also check every block read by :meth:`rows` and :meth:`slice` for raw counts (for count
        likelihoods); the error names the offending rows.
    """

    def __init__(self, X, name: str = "adata.X", counts: bool = False):
        if isinstance(X, CSCDataset):
            warnings.warn(
                f"{name} is a backed CSC matrix: reading rows loads whole columns. Write it as CSR for fast access.",
                UserWarning,
                stacklevel=2,
            )
        elif sp.issparse(X) and X.format != "csr":
            X = X.tocsr()  # CSC, COO, ... cannot be sliced by rows cheaply
        elif not (sp.issparse(X) or _is_lazy(X) or isinstance(X, (np.ndarray, *_BACKED))):
            X = np.asarray(X)
        shape = tuple(X.shape)
        if len(shape) != 2:
            raise ValueError(f"{name} must be 2-D (cells x genes), got shape {shape}.")
        if shape[0] == 0:
            raise ValueError(f"{name} has 0 cells: the AnnData is empty. Pass an AnnData with at least one cell.")
        if shape[1] == 0:
            raise ValueError(
                f"{name} has 0 genes: the AnnData has no features. Pass one with at least one gene "
                "(check the gene filtering upstream)."
            )
        self.X = X
        self.name = name
        self.counts = counts
        self.shape = tuple(X.shape)
        self._stats: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    # ------------------------------------------------------------------ errors
    def _raise_not_finite(self, rows: np.ndarray) -> None:
        raise ValueError(
            f"{self.name} contains NaN or infinite values (rows {rows[:_N_QUOTED].tolist()}); "
            "remove or impute them before using scgde."
        )

    def _raise_not_counts(self, rows: np.ndarray) -> None:
        more = " and more" if len(rows) > _N_QUOTED else ""
        raise ValueError(
            f"Count likelihoods (likelihood='nb') need raw counts, but {self.name} has negative or non-integer "
            f"values in rows {rows[:_N_QUOTED].tolist()}{more}. Register a counts layer with "
            "GDE.setup_anndata(adata, layer='counts', ...) or use likelihood='gaussian'."
        )

    # ------------------------------------------------------------------ reading
    def _get(self, key):
        """``X[key]``, computed when ``X`` is lazy."""
        block = self.X[key]
        return block.compute() if _is_lazy(block) else block

    def _dense(self, block, row_ids: np.ndarray) -> np.ndarray:
        if self.counts:
            bad = _bad_rows(block, row_ids, _bad_count_mask)
            if len(bad):
                self._raise_not_counts(bad)
        out = block.toarray() if sp.issparse(block) else np.asarray(block)
        out = out.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            self._raise_not_finite(_bad_rows(out, row_ids, _not_finite))
        return out

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed) as a dense ``(len(idx), n_vars)`` array."""
        idx = np.asarray(idx, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)  # sorted, as backed storage requires
        return self._dense(self._get(uniq), uniq)[inverse.ravel()]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Contiguous rows ``start:stop`` (the fast path for backed files)."""
        stop = min(stop, self.shape[0])
        return self._dense(self._get(slice(start, stop)), np.arange(start, stop))

    @property
    def is_sparse(self) -> bool:
        """Whether the matrix is stored sparse (in memory or backed CSR), so blocks can stay sparse."""
        if _is_lazy(self.X):
            return sp.issparse(getattr(self.X, "_meta", None))
        return sp.issparse(self.X) or isinstance(self.X, CSRDataset)

    def _sparse(self, block, row_ids: np.ndarray) -> sp.csr_matrix:
        block = sp.csr_matrix(block, dtype=np.float32)
        if self.counts:
            bad = _bad_rows(block, row_ids, _bad_count_mask)
            if len(bad):
                self._raise_not_counts(bad)
        if not np.isfinite(block.data).all():
            self._raise_not_finite(_bad_rows(block, row_ids, _not_finite))
        return block

    def sparse_rows(self, idx: np.ndarray) -> sp.csr_matrix:
        """Rows ``idx`` (any order, repeats allowed) as a float32 CSR matrix (for :attr:`is_sparse` matrices)."""
        idx = np.asarray(idx, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._sparse(self._get(uniq), uniq)[inverse.ravel()]

    def sparse_slice(self, start: int, stop: int) -> sp.csr_matrix:
        """Contiguous rows ``start:stop`` as a float32 CSR matrix (for :attr:`is_sparse` matrices)."""
        stop = min(stop, self.shape[0])
        return self._sparse(self._get(slice(start, stop)), np.arange(start, stop))

    # ------------------------------------------------------------------ whole-matrix checks
    def _scan(self, test, chunk_size: int) -> np.ndarray:
        """Stream the whole matrix for rows with an entry where ``test`` is True.

        Sparse matrices (in memory or backed) are scanned through their stored values only, never
        densified; dense ones in blocks of about ``chunk_size`` entries. Stops once more than
        ``_N_QUOTED`` offending rows are found and returns those found (sorted).
        """
        found = np.zeros(0, dtype=np.int64)
        for rows in self._offending_rows(test, chunk_size):
            found = np.union1d(found, rows)
            if len(found) > _N_QUOTED:
                break
        return found

    def _offending_rows(self, test, chunk_size: int):
        """Yield, chunk by chunk, the row numbers of entries where ``test`` is True."""
        X = self.X
        if not (sp.issparse(X) or isinstance(X, CSRDataset | CSCDataset)):
            step = max(1, chunk_size // self.shape[1])
            for start in range(0, self.shape[0], step):
                stop = min(start + step, self.shape[0])
                yield _bad_rows(self._get(slice(start, stop)), np.arange(start, stop), test)
            return
        parts = X if sp.issparse(X) else X.group  # in-memory CSR, or the backed group's arrays
        data = parts.data if sp.issparse(X) else parts["data"]
        indptr = None
        for start in range(0, data.shape[0], chunk_size):
            hit = start + np.flatnonzero(test(np.asarray(data[start : start + chunk_size])))
            if not len(hit):
                continue
            if X.format == "csc":  # backed CSC: a stored value's row is its index
                yield np.asarray(parts["indices"][hit[0] : hit[-1] + 1])[hit - hit[0]]
                continue
            if indptr is None:  # read only once something is wrong
                indptr = np.asarray(parts.indptr if sp.issparse(X) else parts["indptr"][:])
            yield np.searchsorted(indptr, hit, side="right") - 1

    def check_finite(self, chunk_size: int = 1 << 22) -> None:
        """Raise a clear error if any entry is NaN or inf (in-memory matrices; a no-op when backed)."""
        if isinstance(self.X, _BACKED) or _is_lazy(self.X):
            return  # checked block by block while reading
        bad = self._scan(_not_finite, chunk_size)
        if len(bad):
            self._raise_not_finite(bad)

    def check_counts(self, chunk_size: int = 1 << 22) -> None:
        """Raise if any row has negative or non-integer values (for count likelihoods).

        Every row is checked, streamed in chunks of about ``chunk_size`` entries; sparse matrices
        (in memory or backed) through their stored values only. The error names the first
        offending rows.
        """
        bad = self._scan(_bad_count_mask, chunk_size)
        if len(bad):
            self._raise_not_counts(bad)

    # ------------------------------------------------------------------ sample statistics
    def _sample_stats(self, n_rows: int, seed: int) -> dict[str, np.ndarray]:
        """Per-feature sums over a random sample of rows, computed in one pass and cached."""
        if (n_rows, seed) in self._stats:
            return self._stats[n_rows, seed]
        rng = np.random.default_rng(seed)
        n, n_vars = self.shape
        idx = np.arange(n) if n <= n_rows else np.sort(rng.choice(n, size=n_rows, replace=False))
        total, total_sq, n_neg = np.zeros(n_vars), np.zeros(n_vars), np.zeros(n_vars)
        min_pos = np.full(n_vars, np.inf)
        low, high = np.full(n_vars, np.inf), np.full(n_vars, -np.inf)
        for start in range(0, len(idx), 2048):  # bounded memory
            rows = self.rows(idx[start : start + 2048]).astype(np.float64)
            total += rows.sum(0)
            total_sq += np.square(rows).sum(0)
            n_neg += (rows < 0).sum(0)
            min_pos = np.minimum(min_pos, np.where(rows > 0, rows, np.inf).min(0))
            low, high = np.minimum(low, rows.min(0)), np.maximum(high, rows.max(0))
        stats = {"n": len(idx), "sum": total, "sum_sq": total_sq, "n_neg": n_neg, "min_pos": min_pos}
        stats.update(low=low, high=high)
        self._stats[n_rows, seed] = stats
        return stats

    def moments(self, n_rows: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and standard deviation estimated from a random sample of rows."""
        s = self._sample_stats(n_rows, seed)
        mean = s["sum"] / s["n"]
        return mean, np.sqrt(np.maximum(s["sum_sq"] / s["n"] - mean**2, 0.0))

    def support(self, n_rows: int = 20000, seed: int = 0) -> tuple[bool, np.ndarray]:
        """Where the data lie, over the same row sample as :meth:`moments` (same pass, cached).

        Returns
        -------
        nonneg
            Whether no sampled entry is negative.
        min_positive
            ``(n_vars,)``: each feature's smallest positive value (``+inf`` for features never positive).
        """
        s = self._sample_stats(n_rows, seed)
        return bool((s["n_neg"] == 0).all()), s["min_pos"].copy()

    def value_range(self, n_rows: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature smallest and largest value over the same row sample as :meth:`moments` (same pass, cached)."""
        s = self._sample_stats(n_rows, seed)
        return s["low"].copy(), s["high"].copy()

    def negative_fraction(self, n_rows: int = 20000, seed: int = 0) -> np.ndarray:
        """Per-feature fraction of negative entries over the same row sample as :meth:`moments`."""
        s = self._sample_stats(n_rows, seed)
        return s["n_neg"] / s["n"]


class MissingLayerError(KeyError, ValueError):
    """A layer named by an argument is not in the AnnData.

    Both a :class:`KeyError` (a missing key) and a :class:`ValueError` (a bad argument value), so
    callers that catch either keep working; printed without the quotes :class:`KeyError` adds.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def layer_names(adata) -> list[str]:
    """The named layers of an AnnData (anndata >= 0.13 also lists ``X`` as the layer ``None``; it is left out)."""
    return [key for key in adata.layers.keys() if key is not None]


def layer_matrix(
    adata, layer: str | None, *, argument: str = "layer", name: str = "adata", fix: str | None = None
) -> tuple[object, str]:
    """The matrix an AnnData holds at ``layer`` (``None``: ``X``) and how to call it in messages.

    Parameters
    ----------
    adata
        The AnnData (in memory, backed or lazy).
    layer
        Name of a layer of ``adata``, or ``None`` for ``adata.X``.
    argument
        The argument that named ``layer``, quoted in the errors (``"layer"``, ``"controls_layer"``, ...).
    name
        How to call ``adata`` in the returned name and in the errors (``"adata"``, ``"mdata.mod['rna']"``, ...).
    fix
        What the user should do when the layer is missing (default: pass one of the available
        layers, or ``argument=None`` for ``X``).

    Returns
    -------
    matrix
        ``adata.X`` or ``adata.layers[layer]``, as stored (nothing is copied or densified).
    where
        Its name, e.g. ``"adata.X"`` or ``"adata.layers['counts']"``.

    Raises
    ------
    MissingLayerError
        ``layer`` is not a layer of ``adata`` (a :class:`KeyError` and a :class:`ValueError`); the
        message names ``argument``, the available layers and ``fix``.
    ValueError
        ``layer`` is ``None`` but ``adata.X`` is empty (``None``).

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> adata = AnnData(np.zeros((3, 2)), layers={"counts": np.ones((3, 2))})
    >>> layer_matrix(adata, "counts")[1]
    "adata.layers['counts']"
    >>> layer_matrix(adata, None)[1]
    'adata.X'
    """
    if layer is None:
        where = f"{name}.X"
        if adata.X is None:
            raise ValueError(f"{where} is empty (None); pass {argument}= naming the layer that holds the values.")
        return adata.X, where
    if layer not in adata.layers:
        layers = layer_names(adata)
        todo = fix or f"pass one of them as {argument}=, or {argument}=None to read {name}.X"
        raise MissingLayerError(f"{argument}={layer!r} is not a layer of {name} (available layers: {layers}); {todo}.")
    return adata.layers[layer], f"{name}.layers[{layer!r}]"


def layer_fetcher(
    adata,
    layer: str | None,
    *,
    argument: str = "layer",
    name: str = "adata",
    fix: str | None = None,
    counts: bool = False,
) -> RowFetcher:
    """A :class:`RowFetcher` of :func:`layer_matrix` ``(adata, layer, ...)``, named as it names the matrix."""
    matrix, where = layer_matrix(adata, layer, argument=argument, name=name, fix=fix)
    return RowFetcher(matrix, where, counts=counts)


class OneChannelImages:
    """``(n, H, W)`` images read as ``(n, 1, H, W)``, block by block (the source may be on disk).

    Indexing reads from the source first and adds the channel axis after, so only the requested
    rows are read.
    """

    def __init__(self, images):
        self.images, self.dtype = images, np.dtype(images.dtype)
        self.shape = (int(images.shape[0]), 1, *(int(s) for s in images.shape[1:]))
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        block = np.asarray(self.images[rows])
        single = np.ndim(rows) == 0 and not isinstance(rows, slice)
        block = block[None, None] if single else block[:, None]
        block = block[(slice(None), *rest)] if rest else block
        return block[0] if single else block
