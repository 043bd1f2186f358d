"""Read rows of an expression matrix (dense, sparse, or backed on disk) as dense float32 blocks."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import scipy.sparse as sp
from anndata.abc import CSCDataset, CSRDataset


class RowFetcher:
    """Dense float32 rows of ``X`` without densifying the whole matrix.

    Works with numpy arrays, scipy sparse matrices/arrays (CSC is converted once to CSR, which
    stays sparse) and backed AnnData matrices (``h5py`` datasets and anndata's on-disk sparse
    datasets), reading only the requested rows. Every block read is checked for NaN and inf.

    Parameters
    ----------
    X
        The matrix, ``n_obs x n_vars``.
    name
        How to call the matrix in error messages (e.g. ``"adata.layers['counts']"``).
    """

    def __init__(self, X, name: str = "adata.X"):
        if isinstance(X, CSCDataset):
            warnings.warn(
                f"{name} is a backed CSC matrix: reading rows loads whole columns. Write it as CSR for fast access.",
                UserWarning,
                stacklevel=2,
            )
        elif sp.issparse(X) and X.format == "csc":
            X = X.tocsr()
        elif not (sp.issparse(X) or isinstance(X, np.ndarray | h5py.Dataset | CSRDataset | CSCDataset)):
            X = np.asarray(X)
        self.X = X
        self.name = name
        self.shape = tuple(X.shape)

    def _dense(self, block) -> np.ndarray:
        out = block.toarray() if sp.issparse(block) else np.asarray(block)
        out = out.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            raise ValueError(f"{self.name} contains NaN or infinite values; remove or impute them before using scgde.")
        return out

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed) as a dense ``(len(idx), n_vars)`` array."""
        idx = np.asarray(idx, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)  # sorted, as backed storage requires
        return self._dense(self.X[uniq])[inverse.ravel()]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Contiguous rows ``start:stop`` (the fast path for backed files)."""
        return self._dense(self.X[start:stop])

    def check_finite(self, chunk_size: int = 65536) -> None:
        """Raise a clear error if any entry is NaN or inf (in-memory matrices; a no-op when backed)."""
        if isinstance(self.X, h5py.Dataset | CSRDataset | CSCDataset):
            return  # checked block by block while reading
        data = self.X.data if sp.issparse(self.X) else self.X
        for start in range(0, data.shape[0], chunk_size):
            if not np.isfinite(data[start : start + chunk_size]).all():
                raise ValueError(
                    f"{self.name} contains NaN or infinite values; remove or impute them before using scgde."
                )

    def check_counts(self, n_rows: int = 2000, seed: int = 0) -> None:
        """Raise if a sample of rows has negative or non-integer values (for count likelihoods)."""
        rng = np.random.default_rng(seed)
        rows = self.rows(rng.choice(self.shape[0], size=min(n_rows, self.shape[0]), replace=False))
        if (rows < 0).any() or (np.mod(rows, 1) != 0).any():
            raise ValueError(
                f"likelihood='nb' needs raw counts, but {self.name} has negative or non-integer values. "
                "Register a counts layer with GDE.setup_anndata(adata, layer='counts', ...) or use likelihood='gaussian'."
            )

    def moments(self, n_rows: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and standard deviation estimated from a random sample of rows."""
        rng = np.random.default_rng(seed)
        n = self.shape[0]
        idx = np.arange(n) if n <= n_rows else np.sort(rng.choice(n, size=n_rows, replace=False))
        total, total_sq = np.zeros(self.shape[1]), np.zeros(self.shape[1])
        for start in range(0, len(idx), 2048):  # bounded memory
            rows = self.rows(idx[start : start + 2048]).astype(np.float64)
            total += rows.sum(0)
            total_sq += np.square(rows).sum(0)
        mean = total / len(idx)
        return mean, np.sqrt(np.maximum(total_sq / len(idx) - mean**2, 0.0))
