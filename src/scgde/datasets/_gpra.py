"""Yeast random-promoter expression tables (GPRA): de Boer et al. 2020 (GEO GSE104878) and the DREAM 2022 demo.

In a Gigantic Parallel Reporter Assay, tens of millions of random 80-nt promoters, each in a fixed scaffold,
drive a fluorescent reporter in yeast; cells are sorted into expression bins and each promoter gets an
expression estimate on the bin scale. The tables are plain text, one promoter per line: the sequence, a tab and
its expression. :func:`read_promoter_table` reads any such table; :func:`gpra2020` downloads one condition of
de Boer et al. (*Nature Biotechnology* 38, 2020) from GEO into the pooch cache and reads it.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from ._downloads import _FROM_REGISTRY, REGISTRY, _check_known_hash, _fetch

__all__ = ["gpra2020", "read_promoter_table"]

logger = logging.getLogger(__name__)

_DATASET = "gpra2020"


# ---------------------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------------------


def _check_column(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative column index (0 is the first column); got {value!r}.")
    return int(value)


def read_promoter_table(
    path: str | PathLike,
    sequence_col: int = 0,
    expression_col: int = 1,
    n_quantiles: int | None = None,
) -> AnnData:
    r"""Read a tab-separated table of promoter sequences and their measured expression.

    The format of the GPRA tables of de Boer et al. 2020 (GEO GSE104878) and of the Random Promoter DREAM
    Challenge 2022 (e.g. its ``demo_train.txt``): one promoter per line, the sequence and the expression
    separated by a tab, no header. Gzipped files (detected from their first bytes) and a header row (a first
    line whose expression field is not a number) are accepted. Rows with a missing expression (empty, ``NA``)
    are dropped and counted in the log.

    Parameters
    ----------
    path
        The table (plain or gzipped).
    sequence_col
        Column of the sequences (0-based).
    expression_col
        Column of the expression values (0-based).
    n_quantiles
        Also assign every promoter to one of ``n_quantiles`` expression quantiles, ``0 .. n_quantiles - 1``
        from lowest to highest, by rank: the promoters sorted by expression (ties in file order) are cut into
        ``n_quantiles`` groups whose sizes differ by at most one. ``None``: no quantiles.

    Returns
    -------
    AnnData with no variables, one observation per promoter (obs names ``"0", "1", ...`` in file order) and
    ``obs["sequence"]``, ``obs["expression"]`` (float64), ``obs["expression_quantile"]`` (int64, with
    ``n_quantiles``); ``uns["read_promoter_table"]`` with the file, its header (``[]`` if none) and the number
    of dropped rows.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "promoters.txt"
    >>> _ = path.write_text("TGCAACGT\t11.5\nTGCATTGA\t3\nTGCAGGGC\t7.25\nTGCACCAT\t15\n")
    >>> adata = read_promoter_table(path, n_quantiles=2)
    >>> adata.obs
       sequence  expression  expression_quantile
    0  TGCAACGT       11.50                    1
    1  TGCATTGA        3.00                    0
    2  TGCAGGGC        7.25                    0
    3  TGCACCAT       15.00                    1
    """
    from scgde.seq import sequences_to_adata  # scgde.seq loads torch: imported on use, so scgde.datasets stays light
    from scgde.seq._io import _open_text  # the one gzip sniffer of scgde

    if not isinstance(path, str | PathLike):
        raise ValueError(f"`path` must be the path (str or Path) of a tab-separated table; got {path!r}.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"`path`: {file} does not exist. Pass the path of a sequence/expression table.")
    seq_col = _check_column("sequence_col", sequence_col)
    expr_col = _check_column("expression_col", expression_col)
    if seq_col == expr_col:
        raise ValueError(f"`sequence_col` and `expression_col` must differ; both are {seq_col}.")
    if n_quantiles is not None and (
        isinstance(n_quantiles, bool) or not isinstance(n_quantiles, int | np.integer) or n_quantiles < 1
    ):
        raise ValueError(f"`n_quantiles` must be a positive integer or None; got {n_quantiles!r}.")

    with _open_text(file) as handle:  # plain or gzipped, read once through one handle
        first = next((line.rstrip("\r\n") for line in handle if line.strip()), None)
        if first is None:
            raise ValueError(f"{file} is empty: expected lines of tab-separated sequence and expression.")
        fields = first.split("\t")
        if len(fields) <= max(seq_col, expr_col):
            raise ValueError(
                f"{file}: the first line has {len(fields)} tab-separated fields, but `sequence_col`={seq_col} and "
                f"`expression_col`={expr_col} need at least {max(seq_col, expr_col) + 1}."
            )
        try:  # a header row names its columns; a data row holds a number (or a missing value) there
            float(fields[expr_col].strip() or "nan")
            header: list[str] = []
        except ValueError:
            header = [] if fields[expr_col].strip().upper() in {"NA", "N/A"} else fields
        options = {
            "sep": "\t",
            "header": None,
            "skiprows": 1 if header else 0,
            "usecols": [seq_col, expr_col],
            "skip_blank_lines": True,
        }
        try:
            handle.seek(0)
            table = pd.read_csv(handle, dtype={seq_col: str, expr_col: np.float64}, **options)
        except ValueError:  # a field that is not a number: find it for the message
            handle.seek(0)
            raw = pd.read_csv(handle, dtype=str, keep_default_na=False, **options)[expr_col]
            bad = pd.to_numeric(raw, errors="coerce").isna() & ~raw.str.strip().isin(["", "NA", "NaN", "nan"])
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{file}, data row {row + 1} (after any header): the expression field (column {expr_col}) is "
                f"{raw.iloc[row]!r}, not a number. Check `expression_col`."
            ) from None
    expression = table[expr_col].to_numpy(np.float64)
    sequences = table[seq_col]
    missing = np.isnan(expression) | sequences.isna().to_numpy()
    if missing.any():
        logger.info("read_promoter_table: dropped %d rows of %s without expression or sequence.", missing.sum(), file)
        expression, sequences = expression[~missing], sequences[~missing]
    sequences = sequences.astype(str).str.strip().to_numpy()

    obs = pd.DataFrame({"expression": expression}, index=[str(i) for i in range(len(expression))])
    if n_quantiles is not None:
        if n_quantiles > len(expression):
            raise ValueError(
                f"`n_quantiles`={n_quantiles} exceeds the {len(expression)} promoters of {file}; lower it."
            )
        obs["expression_quantile"] = _rank_quantiles(expression, int(n_quantiles))
    adata = sequences_to_adata(sequences, obs=obs)
    adata.obs = adata.obs[["sequence", *[c for c in adata.obs.columns if c != "sequence"]]]
    adata.uns["read_promoter_table"] = {
        "file": str(file),
        "header": header,
        "n_dropped": int(missing.sum()),
        "n_quantiles": -1 if n_quantiles is None else int(n_quantiles),
    }
    return adata


def _rank_quantiles(values: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Quantile ``0 .. n_quantiles - 1`` of every value by rank (ties in order): balanced groups."""
    order = np.argsort(values, kind="stable")
    quantile = np.empty(len(values), dtype=np.int64)
    quantile[order] = np.arange(len(values)) * n_quantiles // len(values)
    return quantile


# ---------------------------------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------------------------------


def gpra2020(
    condition: Literal["Gal", "Gly", "pTpA", "Abf1TATA"],
    path: str | Path | None = None,
    url: str | None = None,
    *,
    filename: str | None = None,
    known_hash: str | None = _FROM_REGISTRY,
    n_quantiles: int | None = None,
) -> AnnData:
    """Random yeast promoters and their expression in one condition of de Boer et al. 2020 (GEO GSE104878).

    Downloads the GEO supplementary table of ``condition`` once into the cache
    (``https://ftp.ncbi.nlm.nih.gov/geo/series/GSE104nnn/GSE104878/suppl/<file>``, gzipped text, hundreds of
    MB to a few GB; see ``scgde.datasets._downloads.REGISTRY["gpra2020"]``) and reads it with :func:`read_promoter_table`: each line is a
    promoter (the 80-nt random region in its scaffold) and its expression estimate on the sort-bin scale.

    - ``"Gal"``: galactose as carbon source (``..._3p1E7_Gal_ALL.shuffled.txt.gz``), used in the GDE paper;
    - ``"Gly"``: glycerol as carbon source (``..._3p1E7_Gly_ALL.shuffled.txt.gz``), used in the GDE paper;
    - ``"pTpA"``: glucose, pTpA scaffold (``..._pTpA_ALL.shuffled.txt.gz``, the main experiment);
    - ``"Abf1TATA"``: glucose, Abf1TATA scaffold (``..._Abf1TATA_ALL.shuffled.txt.gz``).

    The file names come from public code that downloads them from GEO, including the authors' own scripts; they
    were not checked against GEO's listing (pass ``filename=`` if GEO names a file differently). The series
    holds other files too (e.g. ``..._OLS_Glu_goodCores_ALL.txt.gz``, native promoters), in other layouts.

    GEO publishes no checksums: unless ``known_hash`` is given, the SHA256 of the first download is stored next to
    the file (``<file>.sha256``) and every later load verifies the cached file against it (trust on first use).

    Parameters
    ----------
    condition
        ``"Gal"``, ``"Gly"``, ``"pTpA"`` or ``"Abf1TATA"``.
    path
        Cache folder (the file goes to ``path / "gpra2020"``). Default ``pooch.os_cache("scgde")`` or
        ``$SCGDE_DATA_DIR``.
    url
        Mirror URL of the file. Default: GEO's URL of the file.
    filename
        Another GEO file name for ``condition`` (also the name of the cached file); default the registered one.
    known_hash
        Checksum to verify (``"sha256:<hex>"``, ``"md5:<hex>"``), or ``None`` to trust the first download (the
        default, as no checksum is registered).
    n_quantiles
        Passed to :func:`read_promoter_table`: expression quantiles by rank in ``obs["expression_quantile"]``.

    Returns
    -------
    AnnData of :func:`read_promoter_table` (``obs["sequence"]``, ``obs["expression"]``, optionally
    ``obs["expression_quantile"]``), with ``uns["gpra2020"]`` naming the condition, file and URL.

    Examples
    --------
    >>> import scgde
    >>> gal = scgde.datasets.gpra2020("Gal", n_quantiles=10)  # doctest: +SKIP
    >>> gal.obs.groupby("expression_quantile")["expression"].mean()  # doctest: +SKIP
    """
    if condition not in REGISTRY[_DATASET]:
        raise ValueError(f"`condition` must be one of {sorted(REGISTRY[_DATASET])}; got {condition!r}.")
    if url is not None and not isinstance(url, str):
        raise ValueError(f"`url` must be a URL string or None; got {url!r}.")
    if filename is not None and (not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename):
        raise ValueError(
            f"`filename` must be a bare GEO file name such as {REGISTRY[_DATASET][condition]['fname']!r}, or None; "
            f"got {filename!r}."
        )
    if known_hash != _FROM_REGISTRY:
        known_hash = _check_known_hash("known_hash", known_hash)
    file = _fetch(_DATASET, condition, path=path, url=url, known_hash=known_hash, fname=filename)
    adata = read_promoter_table(file, n_quantiles=n_quantiles)
    adata.uns["gpra2020"] = {
        "condition": condition,
        "file": file.name,
        "url": url
        if url is not None
        else str(REGISTRY[_DATASET][condition]["url"]).rsplit("/", 1)[0] + "/" + file.name,
    }
    return adata
