"""Niche sets: every cell's weighted neighbourhood is one set (a row of a sparse weight matrix)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import settings
from scvi.utils import track

from ._fields import RegistryField
from ._samplers import SetBatch, SetSampler, register_set_kind

#: registry key of the niche weights (``adata_manager.get_from_registry(NICHE_KEY)``)
NICHE_KEY = "niches"


def as_niche_weights(matrix, n_obs: int, name: str) -> sp.csr_matrix:
    """Check and convert niche weights: ``(n_obs, n_obs)``, finite, non-negative, every row with mass."""
    if matrix.shape != (n_obs, n_obs):
        raise ValueError(f"{name} must have shape (n_obs, n_obs) = ({n_obs}, {n_obs}); got {matrix.shape}.")
    weights = sp.csr_matrix(matrix, dtype=np.float32)
    if weights.nnz and (not np.isfinite(weights.data).all() or weights.data.min() < 0):
        raise ValueError(f"{name} must hold finite, non-negative weights.")
    empty = np.flatnonzero(np.asarray(weights.sum(1)).ravel() <= 0)
    if len(empty):
        raise ValueError(
            f"{name}: {len(empty)} row(s) have no weight (e.g. row {int(empty[0])}), so their niche is empty; "
            "rebuild the niches with scgde.tl.niche_sets (a larger radius or n_neighbors)."
        )
    weights.eliminate_zeros()
    weights.sort_indices()
    return weights


class NicheSets:
    """Set ``i`` is the weighted neighbourhood of cell ``i``: the cells and masses of row ``i`` of ``weights``.

    Offers the parts of :class:`~scgde.data.SetIndex` that samplers and training use (``n_sets``,
    ``names``, ``sizes``, ``members``) plus each niche's masses.

    Parameters
    ----------
    weights
        ``(n_obs, n_obs)`` sparse weights (rows need not be normalised).
    names
        Name of each niche: the obs name of its centre cell.
    """

    def __init__(self, weights, names: pd.Index):
        self.weights = as_niche_weights(weights, len(names), "niche weights")
        self.names = pd.Index(names)

    @property
    def n_sets(self) -> int:
        """Number of niches (one per cell)."""
        return self.weights.shape[0]

    @property
    def sizes(self) -> np.ndarray:
        """Number of cells in each niche."""
        return np.diff(self.weights.indptr)

    def members(self, code: int) -> np.ndarray:
        """Rows of the cells in niche ``code``."""
        return self.weights.indices[self.weights.indptr[code] : self.weights.indptr[code + 1]]

    def masses(self, code: int) -> np.ndarray:
        """Weights of the cells in niche ``code`` (summing to 1)."""
        w = self.weights.data[self.weights.indptr[code] : self.weights.indptr[code + 1]].astype(np.float64)
        return w / w.sum()

    def chunks(self, rows: np.ndarray, max_elements: int) -> Iterator[np.ndarray]:
        """Consecutive groups of the niches ``rows`` with at most ``max_elements`` cells in all (>= one niche)."""
        sizes = self.sizes[rows]
        start, n = 0, len(rows)
        while start < n:
            ends = np.cumsum(sizes[start:])
            stop = start + max(1, int(np.searchsorted(ends, max_elements, side="right")))
            yield rows[start:stop]
            start = stop


class NicheSampler:
    """Training sets drawn from niches: ``cells_per_set`` cells of a random niche, with probability ∝ its weights.

    Parameters
    ----------
    niches
        The niches.
    cells_per_set
        Cells drawn per set (with replacement).
    sets
        Codes of the niches to draw from (default: all).
    """

    def __init__(self, niches: NicheSets, cells_per_set: int, sets: np.ndarray | None = None):
        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        self.niches, self.cells_per_set = niches, int(cells_per_set)
        self.sets = np.arange(niches.n_sets) if sets is None else np.asarray(sets)
        if len(self.sets) == 0:
            raise ValueError("No niches to sample from.")

    def sample(self, n_sets: int, rng: np.random.Generator) -> SetBatch:
        return self.sample_sets(rng.choice(self.sets, size=n_sets, replace=n_sets > len(self.sets)), rng)

    def sample_sets(self, codes: np.ndarray, rng: np.random.Generator) -> SetBatch:
        cells = np.stack(
            [rng.choice(self.niches.members(c), size=self.cells_per_set, p=self.niches.masses(c)) for c in codes]
        )
        return SetBatch(cells=cells, sets=np.asarray(codes))


@register_set_kind(NicheSets)
def _niche_sampler(
    niches: NicheSets,
    sets: np.ndarray,
    cells_per_set: int,
    *,
    mixer: str | dict | None = None,
    kernel: dict | None = None,
    obsm: dict | None = None,
    window: int | None = None,
) -> SetSampler:
    """Niches train on themselves: cells drawn by their niche weights (:class:`NicheSampler`)."""
    if mixer is not None or kernel is not None or window is not None:
        raise ValueError("A niche model (niche_key=) trains on its niches: mixer=, kernel= and window= do not apply.")
    return NicheSampler(niches, cells_per_set, sets)


class NicheObspField(RegistryField):
    """Niche weights from ``adata.obsp[niche_key]``, registered with scvi-tools (e.g. from :func:`scgde.tl.niche_sets`).

    Row ``i`` is the weighted set of cells around cell ``i``. Registering checks the matrix (square,
    non-negative, no empty row) and writes nothing to the AnnData.

    Parameters
    ----------
    niche_key
        Key of ``adata.obsp``.
    """

    REGISTRY_KEY = NICHE_KEY
    ATTR_NAME = "obsp"

    def __init__(self, niche_key: str):
        super().__init__()
        self.niche_key = niche_key

    @property
    def attr_key(self) -> str:
        return self.niche_key

    def validate_field(self, adata: AnnData) -> None:
        """Check that the weights exist and form non-empty niches."""
        if self.niche_key not in adata.obsp:
            raise KeyError(
                f"niche_key={self.niche_key!r} is not a key of adata.obsp (available: {list(adata.obsp)}); "
                "build the niches first with scgde.tl.niche_sets(adata)."
            )
        as_niche_weights(adata.obsp[self.niche_key], adata.n_obs, f"adata.obsp[{self.niche_key!r}]")

    def register_field(self, adata: AnnData) -> dict:
        """Validate; the state registry keeps the key."""
        self.validate_field(adata)
        return {"niche_key": self.niche_key}

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """A query AnnData needs its own niches under the same key."""
        return self.register_field(adata_target)

    def get_summary_stats(self, state_registry: dict) -> dict:
        """Niches are sets: one per cell."""
        return {}


def registered_niches(adata_manager) -> NicheSets | None:
    """The niches of an AnnData registered with ``niche_key`` (``None``: the model has named sets)."""
    if NICHE_KEY not in adata_manager.data_registry:
        return None
    adata = adata_manager.adata
    return NicheSets(adata_manager.get_from_registry(NICHE_KEY), adata.obs_names)


@torch.no_grad()
def encode_niches(
    encoder,
    niches: NicheSets,
    rows: np.ndarray,
    reader,
    transform: Callable[[torch.Tensor], torch.Tensor],
    device,
    chunk_size: int,
    progress_bar: bool = True,
) -> np.ndarray:
    """Embed the niches ``rows``: each chunk holds whole niches (about ``chunk_size`` members), encoded exactly.

    A niche is small, so it is encoded in one piece with its weights (no pass per pooling stage);
    the cells of a chunk's niches are read once and shared between overlapping niches.

    Parameters
    ----------
    encoder
        A :class:`scgde.nn.SetEncoder`.
    niches
        The niches.
    rows
        Codes of the niches to embed, in output order.
    reader
        Reader of the cells (``rows(idx)`` returns dense rows).
    transform
        Applied to the cells before encoding (the module's encoder input transform).
    device
        Where the encoding runs.
    chunk_size
        Niche members per chunk (the cells of a chunk's niches are read together).
    progress_bar
        Show a progress bar for long runs.

    Returns
    -------
    ``(len(rows), L)`` niche embeddings.
    """
    groups = list(niches.chunks(np.asarray(rows), chunk_size))
    if progress_bar and len(groups) > 4:
        groups = track(groups, description="Encoding niches", style=settings.progress_bar_style)
    out = []
    for group in groups:
        sub = niches.weights[group]
        cells, inverse = np.unique(sub.indices, return_inverse=True)
        x = transform(torch.from_numpy(reader.rows(cells)).to(device))[torch.as_tensor(inverse, device=device)]
        seg = torch.repeat_interleave(
            torch.arange(len(group), device=device), torch.as_tensor(np.diff(sub.indptr)).to(device)
        )
        w = torch.as_tensor(sub.data, dtype=torch.float32, device=device)
        out.append(encoder.encode_segments(x, seg, len(group), w).cpu())
    if not out:
        return np.zeros((0, encoder.n_latent), dtype=np.float32)
    return torch.cat(out).numpy()
