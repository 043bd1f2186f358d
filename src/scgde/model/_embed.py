"""Set embeddings: exact streamed encoding of whole sets, with optional bootstrap standard errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy.spatial.distance import cdist

from scgde._docs import inject_docs
from scgde.data import (
    ChainedChunks,
    NicheSets,
    SetChunks,
    SetIndex,
    as_key_list,
    default_chunk_size,
    encode_niches,
    registered_niches,
    registered_sets,
    set_labels,
)
from scgde.nn import encode_stream

#: default memory (MiB) for element states kept between pooling stages while streaming
STREAM_CACHE_MIB = 256
#: rows sampled to summarise where a matrix's values lie (the training data at ``GDE()``, a query when embedding)
RANGE_SAMPLE_ROWS = 2000
#: a query whose typical per-cell maximum exceeds the largest training value this many times is refused
RANGE_FACTOR = 10.0
#: raw counts: non-negative integers with at least this median sum per cell and this largest value
COUNTS_MIN_ROW_SUM, COUNTS_MIN_MAX = 100.0, 10.0


def value_range(fetcher, n_rows: int = RANGE_SAMPLE_ROWS, seed: int = 0, chunk: int = 512) -> dict:
    """Where the values of a matrix lie, from a random sample of rows read in chunks (also for backed data).

    Parameters
    ----------
    fetcher
        A :class:`~scgde.data.RowFetcher` (or anything with ``shape``, ``rows`` and, optionally,
        ``is_sparse`` and ``sparse_rows``).
    n_rows
        Rows sampled (all of them when there are fewer).
    seed
        Seed of the sample.
    chunk
        Rows read at a time (bounded memory).

    Returns
    -------
    A dict of plain numbers (it is saved with the model): ``n_rows`` sampled, ``max`` (largest absolute
    value), ``row_max_median`` and ``row_max_q99`` (of each cell's largest absolute value),
    ``row_sum_median`` (of each cell's sum), ``integer`` (all values whole numbers) and ``nonnegative``.
    """
    n = int(fetcher.shape[0])
    rng = np.random.default_rng(seed)
    idx = np.arange(n) if n <= n_rows else np.sort(rng.choice(n, size=n_rows, replace=False))
    sparse = bool(getattr(fetcher, "is_sparse", False))
    row_max, row_sum = [], []
    integer = nonnegative = True
    for start in range(0, len(idx), chunk):
        rows = idx[start : start + chunk]
        if sparse:
            block = fetcher.sparse_rows(rows)
            values = block.data
            row_max.append(np.asarray(abs(block).max(axis=1).todense()).ravel())
            row_sum.append(np.asarray(block.sum(axis=1)).ravel())
        else:
            block = fetcher.rows(rows)
            values = block
            row_max.append(np.abs(block).max(axis=1))
            row_sum.append(block.sum(axis=1))
        integer = integer and bool(np.all(values == np.round(values)))
        nonnegative = nonnegative and bool(np.all(values >= 0))
    row_max, row_sum = np.concatenate(row_max), np.concatenate(row_sum)
    return {
        "n_rows": len(idx),
        "max": float(row_max.max()),
        "row_max_median": float(np.median(row_max)),
        "row_max_q99": float(np.quantile(row_max, 0.99)),
        "row_sum_median": float(np.median(row_sum)),
        "integer": integer,
        "nonnegative": nonnegative,
    }


def looks_like_counts(summary: dict) -> bool:
    """Whether a :func:`value_range` summary looks like raw counts: non-negative integers, large sums per cell."""
    return (
        summary["integer"]
        and summary["nonnegative"]
        and summary["row_sum_median"] >= COUNTS_MIN_ROW_SUM
        and summary["max"] >= COUNTS_MIN_MAX
    )


def out_of_range(query: dict, trained: dict, where: str) -> str | None:
    """Why a query (a :func:`value_range` summary) lies far outside the training data's range, or ``None``.

    Refused: for a model trained on non-integer (e.g. log-normalised) values, a query of
    non-negative integers that looks like raw counts or whose typical per-cell maximum exceeds
    the largest training value; for any model, a query whose typical per-cell maximum exceeds the
    largest training value ``RANGE_FACTOR`` times.
    """
    top = trained["max"]
    if not top > 0:
        return None
    seen = f"the model was trained on values up to {top:.3g}" + ("" if trained["integer"] else " (not integers)")
    counts = query["integer"] and query["nonnegative"] and (looks_like_counts(query) or query["row_max_median"] > top)
    if counts and not trained["integer"]:
        return (
            f"{where} looks like raw counts (non-negative integers, median {query['row_sum_median']:.0f} per cell, "
            f"up to {query['max']:.0f}), but {seen}"
        )
    if query["row_max_median"] > RANGE_FACTOR * top:
        return (
            f"the values of {where} are far outside the training range: a typical cell's largest value is "
            f"{query['row_max_median']:.3g}, but {seen}"
        )
    return None


def collection_parts(adata) -> list[AnnData] | None:
    """The AnnData of a collection (a list or tuple of them, or an ``AnnCollection``); ``None`` for one AnnData."""
    if isinstance(adata, (list, tuple)):
        return list(adata)
    members = getattr(adata, "adatas", None)  # anndata.experimental.AnnCollection
    return list(members) if members is not None and not isinstance(adata, AnnData) else None


class EmbeddingMixin:
    """``get_set_representation``, ``get_latent_representation`` and ``set_distances``."""

    @property
    def _setup_args(self) -> dict:
        return self.adata_manager.registry["setup_args"]

    @property
    def set_key(self) -> list[str]:
        """The ``obs`` column(s) whose values define the registered sets (``[]`` for a niche model)."""
        key = self._setup_args.get("set_key")
        return [] if key is None else as_key_list(key)

    @property
    def niche_key(self) -> str | None:
        """The ``obsp`` key of the niche weights, for a model set up with ``niche_key`` (else ``None``)."""
        return self._setup_args.get("niche_key")

    @property
    def _sets_description(self) -> str:
        return f"niches from obsp[{self.niche_key!r}]" if self.niche_key else f"sets from {self.set_key}"

    def _niches(self, adata: AnnData) -> NicheSets:
        """The niches of the training AnnData, or a query's own under the model's ``niche_key``."""
        if adata is self.adata:
            return registered_niches(self.adata_manager)
        if self.niche_key not in adata.obsp:
            raise KeyError(
                f"The model embeds niches from adata.obsp[{self.niche_key!r}], which this AnnData lacks "
                f"(obsp: {list(adata.obsp)}); build them with scgde.tl.niche_sets(adata, key_added={self.niche_key!r})."
            )
        return NicheSets(adata.obsp[self.niche_key], adata.obs_names)

    def _niche_representation(self, adata, sets, chunk_size, progress_bar) -> pd.DataFrame:
        """One row per niche (all cells, or the cells named ``sets``), each niche encoded whole."""
        adata = self.adata if adata is None else adata
        reader = self._reader(adata)
        self._check_query_range(adata, reader)
        niches = self._niches(adata)
        rows = np.arange(adata.n_obs)
        if sets is not None:
            sets = [sets] if isinstance(sets, str) else list(sets)
            rows = adata.obs_names.get_indexer(sets)
            if (rows < 0).any():
                bad = [n for n, r in zip(sets, rows, strict=True) if r < 0][:5]
                raise KeyError(f"Unknown cell(s) {bad}: a niche model's sets are its cells (adata.obs_names).")
        chunk_size = self._default_chunk_size(reader) if chunk_size is None else chunk_size
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive number of cells.")
        self.module.eval()
        z = encode_niches(
            self.module.encoder, niches, rows, reader, self.module.encoder_input, self.device, chunk_size, progress_bar
        )
        names = adata.obs_names[rows]
        return pd.DataFrame(z, index=names, columns=[f"gde_{i}" for i in range(z.shape[1])])

    def _check_query_range(self, adata: AnnData, reader) -> None:
        """Refuse data far outside the range the model was trained on (Gaussian cell models).

        Compares a sample of ``adata``'s rows with the summary of the training data recorded by
        ``GDE()`` (``data_range_``, saved with the model); see :func:`out_of_range`.
        """
        trained = self.data_range_
        if not trained or getattr(self.module, "likelihood", None) != "gaussian":
            return
        if adata is self.adata and self.__dict__.get("_range_checked") is trained:
            return  # the training AnnData, already compared with this summary
        fetcher = getattr(reader, "fetcher", reader)
        where = getattr(fetcher, "name", "the data")
        why = out_of_range(value_range(fetcher, seed=self._seed()), trained, where)
        if why is not None:
            layer = self._setup_args.get("layer")
            raise ValueError(
                f"{why}. Embeddings of these values would be meaningless. Preprocess them as the training data "
                "(raw counts: sc.pp.normalize_total(adata); sc.pp.log1p(adata)), or pass the values the model was "
                f"trained on in {where} (the model reads layer={layer!r})."
            )
        if adata is self.adata:
            self._range_checked = trained

    def validate_query(self, adata: AnnData) -> None:
        """Raise a clear error if the model cannot embed ``adata``, before any set is encoded.

        Checks the genes (matched by name), raw counts for a count model (``likelihood="nb"``),
        and, for a model of log-normalised or other continuous data, that the values lie near the
        range the model was trained on (raw counts given to a model of log-normalised data are
        refused). :meth:`get_set_representation` runs the same checks.
        """
        self._check_query_range(adata, self._reader(adata))

    def _set_codes(self, adata: AnnData, set_key: str | Sequence[str] | None) -> tuple[np.ndarray, pd.Index]:
        """Set code of every element of ``adata`` and the set names (registered sets, or ``set_key``'s)."""
        if adata is self.adata and set_key is None:
            index = registered_sets(self.adata_manager)
            return index.codes, index.names
        return set_labels(adata.obs, set_key or self.set_key)

    def _default_chunk_size(self, reader) -> int:
        """Elements per chunk when streaming (about 4M matrix entries)."""
        return default_chunk_size(reader.shape[1])

    def _chunks(self, reader, codes, chunk_size, progress_bar, weights=None, description="Encoding sets") -> SetChunks:
        return SetChunks(
            reader,
            codes,
            self.module.encoder_input,
            self.device,
            chunk_size,
            weights=weights,
            description=description,
            progress_bar=progress_bar,
            sparse_transform=self.module.sparse_encoder_input,
        )

    def _encode(
        self, reader, codes, n_sets, chunk_size, progress_bar, weights=None, description="Encoding sets", cache_mib=None
    ):
        chunks = self._chunks(reader, codes, chunk_size, progress_bar, weights, description)
        return self._stream(chunks, n_sets, cache_mib)

    def _stream(self, chunks, n_sets: int, cache_mib: float | None) -> np.ndarray:
        cache_mib = STREAM_CACHE_MIB if cache_mib is None else cache_mib
        if cache_mib < 0:
            raise ValueError(f"cache_mib must be >= 0 (0: no cache), got {cache_mib}.")
        return encode_stream(self.module.encoder, chunks, n_sets, cache_bytes=int(cache_mib * 2**20)).cpu().numpy()

    def _collection_representation(self, parts, set_key, sets, chunk_size, progress_bar, cache_mib) -> pd.DataFrame:
        """Sets of several AnnData (e.g. backed files): a set's cells may lie in several; each part streams in turn."""
        if not parts:
            raise ValueError("adata is an empty collection: pass at least one AnnData.")
        inputs = [self._embedding_inputs(part, set_key, None, chunk_size) for part in parts]
        names = pd.Index(pd.unique(np.concatenate([np.asarray(n, dtype=object) for _, _, n, _ in inputs])))
        names.name = inputs[0][2].name
        if sets is not None:
            sets = [sets] if isinstance(sets, str) else list(sets)
            unknown = [s for s in sets if s not in names]
            if unknown:
                raise KeyError(f"Unknown set(s) {unknown[:5]}: no part of the collection has them.")
            names = pd.Index(sets, name=names.name)
        chunks = []
        for reader, codes, part_names, part_chunk in inputs:
            position = names.get_indexer(part_names)  # -1: a set not wanted
            codes = np.where(codes >= 0, position[np.maximum(codes, 0)], -1)
            if (codes >= 0).any():
                chunks.append(self._chunks(reader, codes, part_chunk, progress_bar))
        if not chunks:
            raise ValueError("No cell of the collection belongs to a wanted set.")
        self.module.eval()
        z = self._stream(ChainedChunks(chunks), len(names), cache_mib)
        return pd.DataFrame(z, index=names, columns=[f"gde_{i}" for i in range(z.shape[1])])

    def _embedding_inputs(self, adata, set_key, sets, chunk_size):
        adata = self.adata if adata is None else adata
        if adata.n_obs == 0:
            raise ValueError("adata is empty (0 cells): there are no sets to embed.")
        reader = self._reader(adata)
        self._check_query_range(adata, reader)
        codes, names = self._set_codes(adata, set_key)
        if self._multimodal:  # a cell measured in none of the model's modalities is no element
            codes = np.where(reader.fetcher.present().any(axis=1), codes, -1)
        if sets is not None:
            sets = [sets] if isinstance(sets, str) else list(sets)
            wanted = SetIndex(codes, names).codes_of(sets)
            remap = np.full(len(names) + 1, -1, dtype=np.int64)
            remap[wanted] = np.arange(len(wanted))
            codes, names = remap[codes], pd.Index(sets, name=names.name)
        if chunk_size is None:
            chunk_size = self._default_chunk_size(reader)
        elif chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive number of cells.")
        return reader, codes, names, chunk_size

    def _bootstrap(self, reader, codes, names, chunk_size, n_bootstrap, progress_bar, seed) -> np.ndarray:
        """``(n_bootstrap, n_sets, L)`` embeddings under Poisson(1) bootstrap weights (NaN: a set drew no cell)."""
        reps = []
        for r in range(n_bootstrap):

            def weights(rows, r=r):
                # the same weights at every pass of the encoder: seeded by the chunk's first row
                return np.random.default_rng((seed, r, int(rows[0]))).poisson(1.0, size=len(rows)).astype(np.float32)

            # a set that drew no cell pools no mass: its embedding is NaN in this replicate
            reps.append(
                self._encode(reader, codes, len(names), chunk_size, progress_bar, weights, f"Bootstrap {r + 1}")
            )
        return np.stack(reps)

    @torch.inference_mode()
    @inject_docs
    def get_set_representation(
        self,
        adata: AnnData | None = None,
        set_key: str | Sequence[str] | None = None,
        sets: Sequence[str] | None = None,
        chunk_size: int | None = None,
        return_std: bool = False,
        n_bootstrap: int = 20,
        progress_bar: bool = True,
        cache_mib: float | None = None,
    ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
        """Embed every set using all of its cells.

        Cells are streamed in chunks of ``chunk_size`` (one pass per pooling stage of the encoder,
        fewer when the element states fit in ``cache_mib``), so sets of any size, in memory or in
        a backed AnnData, are embedded exactly with bounded memory. Sparse (CSR) matrices are read
        sparse by the default encoder, never densified. The genes of ``adata`` are matched to the
        model's by name.

        Parameters
        ----------
        %(query_adata)s
            It may hold sets never seen in training, be backed (``read_h5ad(..., backed="r")``) or lazy (dask arrays, from
            ``anndata.experimental.read_lazy``). A list of AnnData, or an
            ``anndata.experimental.AnnCollection``, is one collection: a set's cells may lie in
            several parts (e.g. one backed file per batch), which are streamed in turn. Its values
            must be of the kind the model was trained on: raw counts given to a model of
            log-normalised data, or values far beyond the training range, are refused (a sample of
            rows is compared with the training data's range; see :meth:`validate_query`).
        %(set_key)s
        %(sets_subset)s
        chunk_size
            Cells per chunk (default: about 4M matrix entries per chunk, e.g. 2,097 cells at 2,000
            genes; peak memory grows with it, speed hardly does).
        return_std
            Also return each set's standard error per latent dimension, from a Poisson bootstrap of
            its cells (``n_bootstrap`` re-weighted encodings). It shrinks as 1/sqrt(set size), so a
            5-cell clone shows as noisy; it is NaN for sets of one cell (no spread to resample).
        %(n_bootstrap)s
        %(progress_bar)s
        cache_mib
            Memory (MiB) for keeping the element states between pooling stages when all of them
            fit: the data are then read and encoded once instead of once per stage (2-3x faster).
            Default ``STREAM_CACHE_MIB`` (256: up to about 350,000 cells with the default
            encoder); ``0``: no cache, the least memory. The process's resident memory can grow by
            up to about three times the cache (allocator fragmentation, measured).

        Returns
        -------
        DataFrame with one row per set (index: set names) and columns ``gde_0, ..., gde_{L-1}``;
        with ``return_std=True``, a pair ``(embedding, std)`` of such DataFrames. A model set up
        with ``niche_key`` returns one row per cell's niche (index: obs names, or the cells named
        in ``sets``), each niche encoded whole and exactly from its weighted cells, in chunks of
        about ``chunk_size`` niche members (memory bounded, one read per chunk).

        Examples
        --------
        >>> emb, se = model.get_set_representation(return_std=True, progress_bar=False)  # doctest: +SKIP
        """
        if self.niche_key is not None:
            if set_key is not None or return_std:
                raise ValueError(
                    "This model embeds niches (set up with niche_key=): its sets are the cells' niches, so "
                    "set_key= and return_std=True do not apply."
                )
            return self._niche_representation(adata, sets, chunk_size, progress_bar)
        parts = collection_parts(adata)
        if parts is not None:
            if return_std:
                raise ValueError("return_std=True is for one AnnData; embed the parts of a collection without it.")
            return self._collection_representation(parts, set_key, sets, chunk_size, progress_bar, cache_mib)
        reader, codes, names, chunk_size = self._embedding_inputs(adata, set_key, sets, chunk_size)
        self.module.eval()
        z = self._encode(reader, codes, len(names), chunk_size, progress_bar, cache_mib=cache_mib)
        columns = [f"gde_{i}" for i in range(z.shape[1])]
        emb = pd.DataFrame(z, index=names, columns=columns)
        if not return_std:
            return emb
        if n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be >= 2 for return_std=True, got {n_bootstrap}.")
        reps = self._bootstrap(reader, codes, names, chunk_size, n_bootstrap, progress_bar, self._seed())
        std = np.nanstd(reps, axis=0, ddof=1)
        sizes = np.bincount(codes[codes >= 0], minlength=len(names))
        std[sizes < 2] = np.nan
        return emb, pd.DataFrame(std, index=names, columns=columns)

    @inject_docs
    def get_latent_representation(
        self, adata: AnnData | None = None, set_key: str | Sequence[str] | None = None, progress_bar: bool = True
    ) -> np.ndarray:
        """Per-cell rows: each cell gets its set's embedding (NaN for cells in no set).

        Parameters
        ----------
        %(query_adata)s
        %(set_key)s
        %(progress_bar)s

        Returns
        -------
        ``(n_obs, n_latent)`` array, the scvi-tools convention for ``adata.obsm``.
        """
        adata = self.adata if adata is None else adata
        if self.niche_key is not None:  # each cell's own niche
            return self.get_set_representation(adata, progress_bar=progress_bar).to_numpy(dtype=np.float32)
        codes, _ = self._set_codes(adata, set_key)
        z = self.get_set_representation(adata, set_key, progress_bar=progress_bar).to_numpy()
        out = np.full((adata.n_obs, z.shape[1]), np.nan, dtype=np.float32)
        out[codes >= 0] = z[codes[codes >= 0]]
        return out

    @torch.inference_mode()
    @inject_docs
    def set_distances(
        self,
        adata: AnnData | None = None,
        set_key: str | Sequence[str] | None = None,
        sets: Sequence[str] | None = None,
        return_std: bool = False,
        n_bootstrap: int = 20,
        progress_bar: bool = True,
    ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
        """Pairwise Euclidean distances between set embeddings (sets x sets DataFrame).

        Parameters
        ----------
        %(query_adata)s
        %(set_key)s
        %(sets_subset)s
        return_std
            Also return the bootstrap standard error of each distance (the spread of the distance
            over the Poisson-bootstrap replicates of both sets' cells).
        %(n_bootstrap)s
        %(progress_bar)s
        """
        if return_std and self.niche_key is not None:
            raise ValueError("return_std=True is not available for niche models (niche_key=).")
        emb = self.get_set_representation(adata, set_key, sets, progress_bar=progress_bar)
        dist = pd.DataFrame(cdist(emb.to_numpy(), emb.to_numpy()), index=emb.index, columns=emb.index)
        if not return_std:
            return dist
        reader, codes, names, chunk_size = self._embedding_inputs(adata, set_key, sets, None)
        reps = self._bootstrap(reader, codes, names, chunk_size, n_bootstrap, progress_bar, self._seed())
        d = np.stack([cdist(r, r) for r in reps])
        return dist, pd.DataFrame(np.nanstd(d, axis=0, ddof=1), index=emb.index, columns=emb.index)

    def _seed(self) -> int:
        from scvi import settings

        return int(settings.seed if settings.seed is not None else 0)
