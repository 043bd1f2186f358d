"""Clone labels from lineage-tracing data: a cell-by-clone matrix or a cell/clone table -> one label per cell."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

logger = logging.getLogger(__name__)

_MULTI = ("drop", "max", "error")
_TABLE_INDEX = ("auto", "obs_names", "position")
_MATRIX_SUFFIXES = (".npz", ".npy", ".mtx")
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip")
#: a cell id usable as a row position: an optional non-digit prefix and an integer (``12``, ``cell_12``)
_POSITION_ID = re.compile(r"^(\D*?)(\d+)$")

ClonesLike = str | os.PathLike | np.ndarray | sp.spmatrix | sp.sparray | pd.DataFrame


def clones_from_matrix(
    adata: AnnData,
    clones: ClonesLike = "X_clone",
    *,
    key_added: str = "clone",
    multi: Literal["drop", "max", "error"] = "drop",
    min_cells: int = 1,
    clone_names: Sequence[str] | None = None,
    table_index: Literal["auto", "obs_names", "position"] = "auto",
    copy: bool = False,
) -> AnnData | None:
    """Label every cell with its clone, from a cell-by-clone matrix or a cell/clone table.

    Lineage-tracing data usually store clones as an ``n_obs × n_clones`` matrix (binary or barcode counts), e.g. in
    ``adata.obsm["X_clone"]`` (CoSpar, MEGATRON) or a separate ``.npz`` file, or as a table with one row per
    (cell, clone) pair. This function turns either into one categorical label per cell,
    ``adata.obs[key_added]``, which defines the sets (clones) used by :class:`scgde.model.GDE`
    (``set_key=key_added``).

    A cell in exactly one clone gets that clone's name. A cell in no clone gets a missing label (NaN). A cell in
    several clones is resolved by ``multi``. Clones with fewer than ``min_cells`` labelled cells are then set to NaN
    too (one pass, after ``multi``; a ``multi="max"`` cell whose clone is removed is not moved to another clone).
    Categories are the kept clones, in column order (matrix) or natural sort order of the ids (table).

    ``adata.X``, layers and the source matrix are never modified.

    Parameters
    ----------
    adata
        Annotated data matrix.
    clones
        Where the clones are:

        - a key of ``adata.obsm`` holding an ``n_obs × n_clones`` matrix (scipy sparse, dense, or a DataFrame whose
          columns name the clones);
        - such a matrix, passed directly (any nonzero entry means membership; entries are counts for
          ``multi="max"``; negative or non-finite entries are an error);
        - a path to a matrix file: ``.npz`` (:func:`scipy.sparse.save_npz`, or an :func:`numpy.savez` archive
          with a single array), ``.npy`` or Matrix Market ``.mtx``; rows are cells in the order of ``adata``;
        - a cell/clone table: a :class:`~pandas.DataFrame` with exactly two columns (cell id, clone id) or the path
          of a ``.csv``, ``.tsv``, ``.txt`` or ``.tab`` file (optionally compressed) holding one, with a header line
          (the separator of ``.txt``/``.tab`` files is detected). One row per (cell, clone) pair; a cell listed
          with several clones is multi-clone, a pair listed ``k`` times counts ``k``. Rows with a missing id are
          ignored. How cell ids are matched to ``adata`` is set by ``table_index``.

        A string is read as an ``.obsm`` key if it is one, else as a path.
    key_added
        Column of ``adata.obs`` for the labels; the summary goes to ``adata.uns[f"{key_added}_summary"]``.
    multi
        Cells in several clones: ``"drop"`` gives them a missing label; ``"max"`` assigns the clone with the largest
        count, and drops the cell if that maximum is tied (so binary matrices drop every multi-clone cell);
        ``"error"`` raises a :class:`ValueError` saying how many cells are affected.
    min_cells
        Clones with fewer labelled cells (after ``multi``) are set to missing. ``0`` and ``1`` keep every clone.
    clone_names
        Names of the matrix columns (default: the columns of an ``.obsm`` DataFrame, else ``"clone_0"``,
        ``"clone_1"``, …). Not allowed with a table, whose clone ids are the names.
    table_index
        How the cell ids of a table are matched to ``adata``:

        - ``"obs_names"``: ids are compared, as strings, to ``adata.obs_names``. Table rows whose cell is not in
          ``adata`` are ignored (counted in the summary, with a warning); it is an error if no id matches.
        - ``"position"``: ids are row positions of ``adata``: integers, or a common prefix and an integer
          (``cell_0``, ``cell_1``, … as in CoSpar's ``clonal_data_in_table_format.txt``). Only valid if the table
          was written for exactly this AnnData, in this cell order.
        - ``"auto"``: ``"obs_names"`` if any id is an obs name; otherwise ``"position"`` if every id parses as a
          position in range (with a :class:`UserWarning`, since positions silently break after subsetting or
          reordering cells); otherwise an error.
    copy
        Return a modified copy instead of writing in place (``adata`` is then left untouched).

    Returns
    -------
    The copy if ``copy=True``, else ``None``. Writes

    ``adata.obs[key_added]``
        Categorical clone label per cell, NaN for cells without a (kept) clone.
    ``adata.uns[f"{key_added}_summary"]``
        Dict of counts (also logged at INFO level). ``n_cells`` = ``n_cells_unassigned`` +
        ``n_cells_in_one_clone`` + ``n_cells_multi``, and ``n_cells_labelled`` = ``n_cells_in_one_clone`` +
        ``n_cells_multi_resolved`` − ``n_cells_small_clone``:

        - ``n_cells``: number of cells;
        - ``n_cells_in_one_clone``: cells in exactly one clone;
        - ``n_cells_unassigned``: cells in no clone;
        - ``n_cells_multi``: cells in two or more clones;
        - ``n_cells_multi_resolved``: multi-clone cells assigned a clone by ``multi="max"`` (else 0);
        - ``n_cells_small_clone``: cells set to missing because their clone has fewer than ``min_cells`` cells;
        - ``n_cells_labelled``: cells with a label in ``adata.obs[key_added]``;
        - ``n_clones``: clones in the source (matrix columns, including empty ones; distinct clone ids of a table);
        - ``n_clones_nonempty``: clones with at least one cell after ``multi`` (before ``min_cells``);
        - ``n_clones_kept``: clones with at least ``min_cells`` cells, the categories of the labels;
        - ``n_table_rows``, ``n_table_rows_unmatched`` (tables only): rows with both ids, and those whose cell is
          not in ``adata``;
        - ``parameters``: dict with ``clones`` (the key, path or a description of the object), ``source``
          (``"obsm"``, ``"matrix"``, ``"file"`` or ``"table"``), ``multi``, ``min_cells``, ``key_added`` and, for
          tables, the ``table_index`` used (``"obs_names"`` or ``"position"``).

    Examples
    --------
    Clones stored as a matrix in ``.obsm`` (CoSpar, MEGATRON):

    >>> import anndata as ad, numpy as np, scipy.sparse as sp
    >>> adata = ad.AnnData(np.ones((5, 2), dtype=np.float32))
    >>> adata.obsm["X_clone"] = sp.csr_matrix([[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]])  # cells x clones
    >>> scgde.pp.clones_from_matrix(adata, "X_clone", min_cells=2)
    >>> adata.obs["clone"].tolist()
    ['clone_0', 'clone_0', 'clone_1', 'clone_1', nan]
    >>> int(adata.uns["clone_summary"]["n_cells_unassigned"])
    1

    A separate sparse matrix file, rows in the order of ``adata``:

    >>> scgde.pp.clones_from_matrix(adata, "clones_weinreb20.npz")  # doctest: +SKIP

    A cell/clone table whose ids are row positions (``cell_0``, ``cell_1``, …):

    >>> scgde.pp.clones_from_matrix(adata, "clonal_data_in_table_format.txt", table_index="position")  # doctest: +SKIP

    Then embed the clones (on this toy data setup_anndata warns: its clones have two cells, and one cell has none):

    >>> scgde.model.GDE.setup_anndata(adata, set_key="clone")  # doctest: +SKIP
    """
    if multi not in _MULTI:
        raise ValueError(f"multi={multi!r} is not one of {list(_MULTI)}.")
    if table_index not in _TABLE_INDEX:
        raise ValueError(f"table_index={table_index!r} is not one of {list(_TABLE_INDEX)}.")
    if isinstance(min_cells, bool) or not isinstance(min_cells, int | np.integer) or min_cells < 0:
        raise ValueError(f"min_cells={min_cells!r} must be a non-negative integer.")

    source, described, obj = _resolve(adata, clones)
    extra: dict[str, Any] = {}
    parameters: dict[str, Any] = {"clones": described, "source": source}
    if isinstance(obj, pd.DataFrame) and source in ("table", "file"):
        if clone_names is not None:
            raise ValueError("clone_names cannot be used with a cell/clone table: its clone ids are the names.")
        matrix, names, used_index, extra = _table_to_matrix(obj, adata, table_index, described)
        parameters["source"] = "table"
        parameters["table_index"] = used_index
    else:
        matrix, names = _as_matrix(obj, adata.n_obs, described, clone_names)

    codes, counts, n_nonempty = _assign(matrix, multi, int(min_cells), adata.obs_names)
    kept = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(names)))
    remap = np.full(len(names), -1)
    remap[kept] = np.arange(len(kept))
    labels = pd.Categorical.from_codes(
        np.where(codes >= 0, remap[np.maximum(codes, 0)], -1),
        categories=pd.Index(np.asarray(names, dtype=object)[kept], dtype=object),
    )
    summary: dict[str, Any] = {
        "n_cells": int(adata.n_obs),
        **counts,
        "n_clones": len(names),
        "n_clones_nonempty": n_nonempty,
        "n_clones_kept": len(kept),
        **extra,
        "parameters": {**parameters, "multi": multi, "min_cells": int(min_cells), "key_added": key_added},
    }

    if copy:
        adata = adata.copy()
    adata.obs[key_added] = labels
    adata.uns[f"{key_added}_summary"] = summary
    logger.info(_describe(summary))
    return adata if copy else None


# --------------------------------------------------------------------------- resolving the source


def _resolve(adata: AnnData, clones: Any) -> tuple[str, str, Any]:
    """(source, description, object): the object is an obsm value, a matrix, or a DataFrame (table)."""
    if isinstance(clones, str) and clones in adata.obsm:
        return "obsm", clones, adata.obsm[clones]
    if isinstance(clones, str | os.PathLike):
        path = Path(clones)
        if not path.exists():
            if isinstance(clones, str) and not _suffix(path) and os.sep not in clones:
                raise KeyError(
                    f"clones={clones!r} is not a key of adata.obsm (available: {list(adata.obsm.keys())}) "
                    "nor an existing file."
                )
            raise FileNotFoundError(f"clones={str(clones)!r}: no such file (and not a key of adata.obsm).")
        return "file", str(clones), _read(path)
    if isinstance(clones, pd.DataFrame):
        return "table", f"<DataFrame {clones.shape[0]} x {clones.shape[1]}>", clones
    if sp.issparse(clones) or isinstance(clones, np.ndarray) or hasattr(clones, "__array__"):
        shape = getattr(clones, "shape", None)
        return "matrix", f"<{type(clones).__name__} {shape}>", clones
    raise TypeError(
        "clones must be a key of adata.obsm, a cell-by-clone matrix, a path (.npz/.npy/.mtx/.csv/.tsv/.txt) "
        f"or a two-column DataFrame; got {type(clones).__name__}."
    )


def _suffix(path: Path) -> str:
    """Lower-case suffix, ignoring a compression suffix (``x.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read(path: Path) -> Any:
    """Read a clone matrix or a cell/clone table from a file."""
    suffix = _suffix(path)
    try:
        if suffix == ".npz":
            try:
                return sp.load_npz(path)
            except (ValueError, KeyError, OSError):
                with np.load(path, allow_pickle=False) as archive:
                    if len(archive.files) != 1:
                        raise ValueError(
                            f"not a scipy sparse matrix, and holds {len(archive.files)} arrays, not one"
                        ) from None
                    return archive[archive.files[0]]
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".mtx":
            import scipy.io

            return sp.csr_array(scipy.io.mmread(path, spmatrix=False))
        if suffix in _TABLE_SUFFIXES:
            sep: str | None = {".csv": ",", ".tsv": "\t"}.get(suffix)
            return pd.read_csv(path, sep=sep, engine="c" if sep else "python", dtype=str)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as e:
        raise ValueError(f"clones={str(path)!r} could not be read: {e}") from e
    raise ValueError(
        f"clones={str(path)!r}: unknown file type {suffix or '(no suffix)'!r}; expected one of "
        f"{list(_MATRIX_SUFFIXES + _TABLE_SUFFIXES)} (tables optionally compressed)."
    )


# --------------------------------------------------------------------------- matrices


def _as_matrix(
    obj: Any, n_obs: int, described: str, clone_names: Sequence[str] | None
) -> tuple[sp.csr_array, list[str]]:
    """A CSR copy (float64, explicit zeros removed) and the clone names."""
    default_names: list[str] | None = None
    if isinstance(obj, pd.DataFrame):  # an .obsm DataFrame: columns are clones
        default_names = [str(c) for c in obj.columns]
        obj = obj.to_numpy()
    if sp.issparse(obj):
        matrix = sp.csr_array(obj, dtype=np.float64, copy=True)
    else:
        dense = np.asarray(obj)
        if dense.dtype == object or not (np.issubdtype(dense.dtype, np.number) or np.issubdtype(dense.dtype, np.bool_)):
            raise ValueError(f"clones={described}: the matrix must be numeric or boolean, not {dense.dtype}.")
        if dense.ndim != 2:
            raise ValueError(f"clones={described}: expected a 2-D cell-by-clone matrix, got {dense.ndim} dimension(s).")
        matrix = sp.csr_array(dense.astype(np.float64))
    if matrix.shape[0] != n_obs:
        raise ValueError(
            f"clones={described}: the matrix has {matrix.shape[0]} rows but adata has n_obs={n_obs} "
            f"(shape {matrix.shape}; rows must be the cells of adata, in order)."
        )
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"clones={described}: the matrix has non-finite entries.")
    if np.any(matrix.data < 0):
        raise ValueError(f"clones={described}: the matrix has negative entries.")
    matrix.eliminate_zeros()
    n_clones = matrix.shape[1]
    if clone_names is None:
        names = default_names if default_names is not None else [f"clone_{j}" for j in range(n_clones)]
    else:
        names = [str(c) for c in clone_names]
        if len(names) != n_clones:
            raise ValueError(f"clone_names has {len(names)} names but the clone matrix has {n_clones} columns.")
        if len(set(names)) != len(names):
            raise ValueError("clone_names must be unique.")
    return matrix, names


def _assign(
    matrix: sp.csr_array, multi: str, min_cells: int, obs_names: pd.Index
) -> tuple[np.ndarray, dict[str, int], int]:
    """Per-cell clone code (-1: none), the cell counts of the summary and the number of nonempty clones."""
    n_obs = matrix.shape[0]
    n_per_cell = np.diff(matrix.indptr)
    is_multi = n_per_cell >= 2
    n_multi = int(is_multi.sum())
    if multi == "error" and n_multi:
        examples = ", ".join(repr(str(n)) for n in obs_names[is_multi][:5])
        raise ValueError(
            f"{n_multi} of {n_obs} cells belong to several clones (e.g. {examples}); "
            "pass multi='drop' to leave them unlabelled or multi='max' to take the clone with the largest count."
        )
    row = np.repeat(np.arange(n_obs), n_per_cell)
    row_max = np.zeros(n_obs)
    np.maximum.at(row_max, row, matrix.data)
    at_max = matrix.data == row_max[row]
    n_at_max = np.bincount(row[at_max], minlength=n_obs)
    codes = np.full(n_obs, -1, dtype=np.int64)
    unique_max = n_at_max == 1 if multi == "max" else n_per_cell == 1
    take = at_max & unique_max[row]
    codes[row[take]] = matrix.indices[take]
    n_resolved = int((is_multi & (codes >= 0)).sum())

    sizes = np.bincount(codes[codes >= 0], minlength=matrix.shape[1])
    n_nonempty = int((sizes > 0).sum())
    small = (sizes > 0) & (sizes < min_cells)
    dropped = (codes >= 0) & small[np.maximum(codes, 0)]
    codes[dropped] = -1
    counts = {
        "n_cells_in_one_clone": int((n_per_cell == 1).sum()),
        "n_cells_unassigned": int((n_per_cell == 0).sum()),
        "n_cells_multi": n_multi,
        "n_cells_multi_resolved": n_resolved,
        "n_cells_small_clone": int(dropped.sum()),
        "n_cells_labelled": int((codes >= 0).sum()),
    }
    return codes, counts, n_nonempty


# --------------------------------------------------------------------------- tables


def _id_strings(col: pd.Series) -> pd.Series:
    """Ids as strings (missing kept missing); integral floats (``10.0`` from a column with NaN) become ``"10"``."""
    if pd.api.types.is_float_dtype(col):
        values = col.dropna()
        if len(values) and np.all(np.mod(values, 1) == 0):
            col = col.astype("Int64")
    out = col.astype(object).where(col.notna(), None)
    return out.map(lambda v: None if v is None else str(v).strip())


def _natural_key(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _positions(ids: pd.Series, n_obs: int) -> tuple[np.ndarray | None, str]:
    """Row positions parsed from ids (``12``, ``cell_12``), or None and the reason."""
    parsed = ids.str.extract(_POSITION_ID)
    bad = parsed[1].isna()
    if bad.any():
        return None, f"id {ids[bad].iloc[0]!r} is not an integer with an optional prefix"
    prefixes = parsed[0].unique()
    if len(prefixes) > 1:
        return None, f"ids have different prefixes {list(prefixes[:5])}"
    if len(prefixes) and prefixes[0] in ("-", "+"):
        return None, f"id {ids.iloc[0]!r} is a signed integer"
    pos = parsed[1].astype(np.int64).to_numpy()
    if len(pos) and pos.max() >= n_obs:
        return None, f"position {int(pos.max())} is out of range for n_obs={n_obs}"
    return pos, ""


def _table_to_matrix(
    table: pd.DataFrame, adata: AnnData, table_index: str, described: str
) -> tuple[sp.csr_array, list[str], str, dict[str, int]]:
    """Count matrix (cells of adata × distinct clone ids) from a two-column cell/clone table."""
    if table.shape[1] != 2:
        raise ValueError(
            f"clones={described}: a cell/clone table must have exactly two columns (cell id, clone id); "
            f"it has {table.shape[1]}: {[str(c) for c in table.columns][:10]}."
        )
    cells = _id_strings(table.iloc[:, 0])
    clone_ids = _id_strings(table.iloc[:, 1])
    ok = cells.notna() & clone_ids.notna()
    cells, clone_ids = cells[ok].reset_index(drop=True), clone_ids[ok].reset_index(drop=True)
    names = sorted(pd.unique(clone_ids), key=_natural_key)
    col = pd.Index(names).get_indexer(clone_ids)

    obs_names = adata.obs_names.astype(str)
    pos_in_obs = obs_names.get_indexer(cells) if obs_names.is_unique else None
    if pos_in_obs is None:
        found = cells.isin(obs_names).to_numpy()
    else:
        found = pos_in_obs >= 0
    used = table_index
    if table_index == "auto":
        if found.any():
            used = "obs_names"
        else:
            pos, why = _positions(cells, adata.n_obs)
            if pos is None:
                raise ValueError(
                    f"clones={described}: no cell id of the table matches adata.obs_names "
                    f"(table: {list(cells[:3])}, obs_names: {list(obs_names[:3])}), and the ids are not row "
                    f"positions ({why}). Check the first column of the table, or pass table_index explicitly."
                )
            used = "position"
            warnings.warn(
                f"clones={described}: no cell id matches adata.obs_names, so the ids (e.g. {cells.iloc[0]!r}) "
                "are read as row positions of adata; this is only right if the table was written for this "
                "AnnData in this cell order. Pass table_index='position' to silence this warning.",
                UserWarning,
                stacklevel=3,
            )
    if used == "obs_names":
        if not obs_names.is_unique:
            raise ValueError("adata.obs_names must be unique to match a cell/clone table by name.")
        if not found.any():
            raise ValueError(
                f"clones={described}: no cell id of the table matches adata.obs_names "
                f"(table: {list(cells[:3])}, obs_names: {list(obs_names[:3])}). If the ids are row positions "
                "(e.g. 'cell_0', 'cell_1', …), pass table_index='position'."
            )
        if str(table.columns[0]) in set(obs_names):
            warnings.warn(
                f"clones={described}: the header {str(table.columns[0])!r} is a cell of adata; "
                "does the table lack a header line?",
                UserWarning,
                stacklevel=3,
            )
        rows = pos_in_obs
        n_unmatched = int((~found).sum())
        if n_unmatched:
            warnings.warn(
                f"clones={described}: {n_unmatched} of {len(cells)} table rows name cells that are not in adata "
                f"(e.g. {cells[~found].iloc[0]!r}); they are ignored.",
                UserWarning,
                stacklevel=3,
            )
    else:
        rows, why = _positions(cells, adata.n_obs)
        if rows is None:
            raise ValueError(f"clones={described}: table_index='position' but {why}.")
        found = np.ones(len(cells), dtype=bool)
        n_unmatched = 0
    data = np.ones(int(found.sum()))
    matrix = sp.coo_array((data, (rows[found], col[found])), shape=(adata.n_obs, len(names))).tocsr()
    matrix.sum_duplicates()
    extra = {"n_table_rows": len(cells), "n_table_rows_unmatched": n_unmatched}
    return matrix, list(names), used, extra


# --------------------------------------------------------------------------- reporting


def _describe(s: dict[str, Any]) -> str:
    p = s["parameters"]
    multi = {"drop": "dropped", "max": f"{s['n_cells_multi_resolved']} resolved by max count", "error": "none"}
    return (
        f"clones from {p['source']} {p['clones']}: {s['n_cells']} cells, {s['n_cells_in_one_clone']} in one clone, "
        f"{s['n_cells_unassigned']} in none, {s['n_cells_multi']} in several ({multi[p['multi']]}); "
        f"{s['n_clones']} clones, {s['n_clones_nonempty']} with cells, {s['n_clones_kept']} kept "
        f"(min_cells={p['min_cells']}, {s['n_cells_small_clone']} cells dropped); "
        f"{s['n_cells_labelled']} cells labelled in obs[{p['key_added']!r}]"
    )
