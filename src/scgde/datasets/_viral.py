"""SARS-CoV-2 spike proteins grouped by month and place: the paper's GISAID experiment and two open stand-ins.

* :func:`read_gisaid_spike` reads a user-supplied GISAID ``spikeprot*.fasta(.gz)`` with the paper's protocol
  (GISAID data cannot be redistributed, so the file is never downloaded nor shipped).
* :func:`nextstrain_spike_sets` translates the S gene of the open GenBank genomes of Nextstrain's example data
  (418 genomes, Dec 2019 to May 2020) and groups the proteins by collection month and country.
* :func:`spike_variant_sets` samples month-indexed sets of spike variants from GISAID-derived monthly counts of
  single substitutions (EVEscape's aggregates), applied to the Wuhan-Hu-1 reference spike.

Every set is labelled by its month; ``obs["months_since_2019_12"]`` is the paper's regression target,
``(collection date - 2019-12-01).days // 30``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from ._downloads import _registered_file

__all__ = ["nextstrain_spike_sets", "read_gisaid_spike", "spike_variant_sets"]

logger = logging.getLogger(__name__)

#: origin of the month index: ``months_since_2019_12 = (date - 2019-12-01).days // 30``
_ORIGIN = dt.date(2019, 12, 1)
#: the spike's N-terminus (signal peptide), used to find the S gene in a genome
SPIKE_N_TERMINUS = "MFVFLVLLPLV"
#: first base of the S gene in Wuhan-Hu-1 (NC_045512.2), 1-based
_S_START_WUHAN = 21_563
_S_WINDOW = 1_500  # the S start is searched this many bases either side of its Wuhan-Hu-1 position

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_SUBSTITUTION = re.compile(r"([A-Z])(\d+)([A-Z])")

_OBS_COLUMNS = ["accession", "strain", "date", "month", "months_since_2019_12", "location", "set"]


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------


def _iter_fasta(path: Path) -> Iterator[tuple[str, str]]:
    """Stream ``(header without '>', sequence)`` pairs from a FASTA file, plain or gzipped (``scgde.seq``'s reader)."""
    from scgde.seq._io import _iter_fasta as iter_fasta  # scgde.seq loads torch: imported on use

    return iter_fasta(path)


def _parse_date(value: str) -> dt.date | None:
    """A ``yyyy-mm-dd`` date, or None when it is malformed (another format, month or day ``00``, no such day)."""
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    try:
        return dt.date(*(int(g) for g in match.groups()))
    except ValueError:  # month or day 00, day 31 of a 30-day month, ...
        return None


def _months_since_origin(date: dt.date) -> int:
    return (date - _ORIGIN).days // 30


def _check_positive_int(name: str, value: object, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a positive integer{extra}; got {value!r}.")
    return int(value)


def _existing_file(
    name: str, value: str | PathLike | None, what: str, default: tuple[str, str], cache: str | PathLike | None
) -> Path:
    """The user's file ``value``; for ``None``, the registered ``default`` (dataset, file key) from the cache."""
    if value is None:
        return _registered_file(*default, argument=name, cache=cache)
    if not isinstance(value, str | PathLike):
        raise ValueError(f"`{name}` must be a file path (str or Path) or None; got {value!r}.")
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"`{name}`: {path} does not exist. Pass the path of the {what}.")
    return path


def _sets_adata(records: list[dict], sequences: list[str], index: list[str]) -> AnnData:
    """AnnData of spike proteins with the standard obs columns, ``set`` categorical."""
    from scgde.seq import sequences_to_adata  # scgde.seq loads torch: imported on use, so scgde.datasets stays light

    obs = pd.DataFrame(
        records, columns=_OBS_COLUMNS + [c for c in (records[0] if records else {}) if c not in _OBS_COLUMNS]
    )
    obs.index = index
    obs["months_since_2019_12"] = obs["months_since_2019_12"].astype(np.int64)
    obs["set"] = pd.Categorical(obs["set"], categories=sorted(set(obs["set"])))
    return sequences_to_adata(sequences, obs=obs)


# ---------------------------------------------------------------------------------------------------------------------
# GISAID spike proteins (user-supplied file)
# ---------------------------------------------------------------------------------------------------------------------


def read_gisaid_spike(
    fasta: str | PathLike,
    location: Literal["country", "last_field"] = "last_field",
    set_size: int | None = 16,
    max_length: int | None = 1000,
) -> AnnData:
    r"""Read GISAID's spike-protein FASTA into sets of proteins grouped by collection month and location.

    GISAID distributes the translated spikes of all its genomes as ``spikeprot<MMDD>.fasta`` (about a million
    records; registration required, redistribution not allowed: bring your own copy). Headers are
    ``|``-separated: protein, virus name, collection date, accession, ..., and the location as the last field,
    e.g. ``>Spike|hCoV-19/Australia/NT12/2020|2020-03-25|EPI_ISL_426900|Original|...|Australia``.
    The file is streamed; as in the GDE paper (Fishman et al. 2025), records are then

    1. dropped when the collection date is malformed: not ``yyyy-mm-dd``, month or day ``00`` (GISAID's
       incomplete dates), or no such day; also dropped (and counted apart) when dated before 2019-12-01, which
       would give a negative month index;
    2. grouped by ``"yyyy-mm|<location>"`` (collection month and location);
    3. capped at the first ``set_size`` records of every group, in file order, and only groups that reach
       ``set_size`` records are kept (``set_size=None``: every record of every group);
    4. stripped of a trailing stop ``*`` and truncated to ``max_length`` residues.

    The numbers of dropped records are logged (``logging.INFO``) and stored in ``uns["read_gisaid_spike"]``.

    Parameters
    ----------
    fasta
        GISAID ``spikeprot*.fasta``, optionally gzipped.
    location
        ``"last_field"``: the last header field (GISAID's location/country field). ``"country"``: the second
        ``/``-separated part of the virus name (``hCoV-19/<country>/<id>/<year>``).
    set_size
        Records per set (16 in the paper); ``None`` keeps all records and all groups.
    max_length
        Truncate proteins to this many residues (1,000 in the paper; the full spike has 1,273); ``None``
        keeps them whole.

    Returns
    -------
    AnnData with no variables, one observation per kept record (in file order; obs names are the accessions,
    made unique), and ``obs`` columns ``accession``, ``strain`` (virus name), ``date`` (``yyyy-mm-dd``),
    ``month`` (``yyyy-mm``), ``months_since_2019_12`` (int, ``(date - 2019-12-01).days // 30``),
    ``location``, ``set`` (categorical ``"yyyy-mm|<location>"``) and ``sequence``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "spikeprot.fasta"
    >>> head = "Spike|hCoV-19/Australia/NT{i}/2020|{date}|EPI_ISL_{i}|Original|x|Human|A|B|C|Australia"
    >>> dates = ["2020-03-25", "2020-03-00", "2020-03-02", "2020-04-01"]
    >>> _ = path.write_text("".join(f">{head.format(i=i, date=d)}\nMFVFLV*\n" for i, d in enumerate(dates)))
    >>> adata = read_gisaid_spike(path, set_size=2)
    >>> adata.obs[["date", "months_since_2019_12", "set", "sequence"]]
                        date  months_since_2019_12                set sequence
    EPI_ISL_0  2020-03-25                     3  2020-03|Australia   MFVFLV
    EPI_ISL_2  2020-03-02                     3  2020-03|Australia   MFVFLV
    """
    path = Path(fasta).expanduser() if isinstance(fasta, str | PathLike) else None
    if path is None:
        raise ValueError(f"`fasta` must be the path (str or Path) of a GISAID spikeprot FASTA; got {fasta!r}.")
    if not path.is_file():
        raise FileNotFoundError(
            f"`fasta`: {path} does not exist. Download GISAID's spikeprot*.fasta (EpiCoV downloads, requires a "
            "GISAID account) and pass its path."
        )
    if location not in ("country", "last_field"):
        raise ValueError(f"`location` must be 'country' or 'last_field'; got {location!r}.")
    set_size = _check_positive_int("set_size", set_size, allow_none=True)
    max_length = _check_positive_int("max_length", max_length, allow_none=True)

    groups: dict[str, list[tuple[int, dict, str]]] = {}
    counts = dict.fromkeys(
        ("records", "malformed_header", "malformed_date", "before_2019_12", "empty_sequence", "over_set_size"), 0
    )
    for order, (header, sequence) in enumerate(_iter_fasta(path)):
        counts["records"] += 1
        fields = [f.strip() for f in header.split("|")]
        strain = fields[1] if len(fields) > 1 else ""
        if location == "country":
            parts = strain.split("/")
            place = parts[1].strip() if len(parts) >= 3 else ""
        else:
            place = fields[-1]
        if len(fields) < 5 or not place:
            counts["malformed_header"] += 1
            continue
        date = _parse_date(fields[2])
        if date is None:
            counts["malformed_date"] += 1
            continue
        if date < _ORIGIN:
            counts["before_2019_12"] += 1
            continue
        sequence = sequence.rstrip("*")
        if not sequence:
            counts["empty_sequence"] += 1
            continue
        month = date.isoformat()[:7]
        key = f"{month}|{place}"
        members = groups.setdefault(key, [])
        if set_size is not None and len(members) >= set_size:
            counts["over_set_size"] += 1
            continue
        record = {
            "accession": fields[3],
            "strain": strain,
            "date": date.isoformat(),
            "month": month,
            "months_since_2019_12": _months_since_origin(date),
            "location": place,
            "set": key,
        }
        members.append((order, record, sequence if max_length is None else sequence[:max_length]))

    small = {k for k, members in groups.items() if set_size is not None and len(members) < set_size}
    counts["in_small_sets"] = sum(len(groups[k]) for k in small)
    kept = sorted((m for k, members in groups.items() if k not in small for m in members), key=lambda m: m[0])
    counts["kept"] = len(kept)
    counts["sets"] = len(groups) - len(small)
    logger.info(
        "read_gisaid_spike: %d records in %s; kept %d in %d sets; dropped %d with a malformed header, %d with a "
        "malformed date, %d dated before 2019-12-01, %d empty, %d beyond the first %s of their set, %d in %d sets "
        "smaller than %s.",
        counts["records"],
        path.name,
        counts["kept"],
        counts["sets"],
        counts["malformed_header"],
        counts["malformed_date"],
        counts["before_2019_12"],
        counts["empty_sequence"],
        counts["over_set_size"],
        set_size,
        counts["in_small_sets"],
        len(small),
        set_size,
    )
    records = [m[1] for m in kept]
    adata = _sets_adata(records, [m[2] for m in kept], [r["accession"] for r in records])
    adata.uns["read_gisaid_spike"] = {
        "file": str(path),
        "location": location,
        "set_size": -1 if set_size is None else set_size,
        "max_length": -1 if max_length is None else max_length,
        "counts": counts,
    }
    return adata


# ---------------------------------------------------------------------------------------------------------------------
# Nextstrain example genomes (open GenBank data)
# ---------------------------------------------------------------------------------------------------------------------


def _find_spike(genome: str, max_mismatches: int = 2) -> tuple[int, str] | None:
    """``(start, CDS)`` of the S gene: the ORF beginning like the spike near nt 21,563, to its first stop codon.

    The start is the codon, in any of the three frames of a window around the Wuhan-Hu-1 start, from which
    the translation matches the spike's N-terminus ``MFVFLVLLPLV`` with at most ``max_mismatches`` differences
    (real variants such as L5F exist); the best match nearest the Wuhan-Hu-1 start wins.
    """
    from scgde.seq import translate  # scgde.seq loads torch: imported on use, so scgde.datasets stays light

    genome = genome.upper()
    lo = max(0, _S_START_WUHAN - 1 - _S_WINDOW)
    window = genome[lo : _S_START_WUHAN - 1 + _S_WINDOW + 3 * len(SPIKE_N_TERMINUS)]
    k = len(SPIKE_N_TERMINUS)
    target = np.frombuffer(SPIKE_N_TERMINUS.encode(), dtype=np.uint8)
    best: tuple[int, int, int] | None = None  # (mismatches, distance to the expected start, start)
    for frame in range(3):
        protein = translate(window[frame:], to_stop=False)
        if len(protein) < k:
            continue
        codes = np.frombuffer(protein.encode(), dtype=np.uint8)
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        mismatches = (windows != target).sum(axis=1)
        for i in np.flatnonzero((mismatches <= max_mismatches) & (codes[: len(windows)] == ord("M"))):
            start = lo + frame + 3 * int(i)
            candidate = (int(mismatches[i]), abs(start - (_S_START_WUHAN - 1)), start)
            best = candidate if best is None or candidate < best else best
    if best is None:
        return None
    start = best[2]
    stop = translate(genome[start:], to_stop=False).find("*")
    if stop < 0:  # runs off the end of the genome: incomplete
        return None
    return start, genome[start : start + 3 * (stop + 1)]


def nextstrain_spike_sets(
    fasta: str | PathLike | None = None,
    metadata: str | PathLike | None = None,
    min_set_size: int = 2,
    max_n: int = 0,
    *,
    cache: str | PathLike | None = None,
) -> AnnData:
    """Spike proteins of Nextstrain's open example genomes, in sets by collection month and country.

    The open stand-in of the paper's GISAID experiment (see :func:`read_gisaid_spike`): the 418 complete
    SARS-CoV-2 genomes (GenBank records, December 2019 to May 2020) of the Nextstrain ``ncov`` example data and
    their metadata table. For every genome the S gene is located (the three reading frames of a window of
    about 1,500 nt either side of its Wuhan-Hu-1 start, nt 21,563, are translated; the ORF is the one that
    begins like the spike's N-terminus ``MFVFLVLLPLV``, up to 2 differences such as the L5F variant, nearest
    that start, and runs to its first stop codon) and translated without the stop. Genomes whose S gene cannot
    be found or is incomplete, whose S gene has more than ``max_n`` ``N`` bases, that are missing from the metadata or have a malformed date are dropped (counts logged
    at ``INFO`` and kept in ``uns``). Other IUPAC ambiguity codes are kept and their codons translate to ``X``.

    The proteins are grouped by ``"yyyy-mm|<country>"`` and groups with fewer than ``min_set_size`` proteins
    are dropped. These early-2020 spikes are nearly identical (most equal Wuhan-Hu-1 or carry D614G only), so
    this is a small-scale smoke test of month regression and country classification, not a benchmark.

    Parameters
    ----------
    fasta
        Gzipped or plain FASTA of the genomes, headers = the metadata's ``strain``. Default: Nextstrain's
        ``data/example_sequences.fasta.gz`` (ncov commit ``5993a74``, 1.6 MB), downloaded once into the cache and
        verified against its registered SHA256.
    metadata
        Tab-separated metadata with columns ``strain``, ``date`` and ``country`` (``genbank_accession``,
        ``region`` and ``division`` are used when present). Default: ``example_metadata.tsv`` beside ``fasta``
        when it is given, otherwise Nextstrain's ``data/example_metadata.tsv`` (downloaded like the FASTA).
    min_set_size
        Smallest group kept.
    max_n
        Most ``N`` bases allowed in the S gene (their codons translate to ``X``); by default genomes with any
        ``N`` there are dropped (98 of the 418 example genomes).
    cache
        Cache folder of the downloaded defaults (they go to ``cache / "nextstrain_spike_sets"``). Default
        ``pooch.os_cache("scgde")`` or ``$SCGDE_DATA_DIR``.

    Returns
    -------
    AnnData with no variables, one observation per kept genome (file order; obs names are the strains), and
    ``obs`` columns ``accession`` (GenBank), ``strain``, ``date``, ``month``, ``months_since_2019_12``,
    ``location`` (the country), ``set`` (categorical ``"yyyy-mm|<country>"``), ``region``, ``division``,
    ``spike_start`` (0-based position of the S gene in the genome) and ``sequence`` (the spike protein).

    Raises
    ------
    FileNotFoundError
        When a given file does not exist, or a default file is not cached and cannot be downloaded (pass
        ``fasta=`` / ``metadata=``).

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.nextstrain_spike_sets()  # doctest: +SKIP
    >>> adata.obs.groupby("set", observed=True).size().sort_values().tail(3)  # doctest: +SKIP
    """
    from scgde.seq import translate  # scgde.seq loads torch: imported on use, so scgde.datasets stays light

    fasta_path = _existing_file("fasta", fasta, "genome FASTA", ("nextstrain_spike_sets", "fasta"), cache)
    if metadata is None and fasta is not None:  # the metadata beside the user's FASTA
        metadata = fasta_path.parent / "example_metadata.tsv"
        if not metadata.is_file():
            raise FileNotFoundError(
                f"`metadata` was not given and {metadata} (beside `fasta`) does not exist. Pass `metadata=` the path "
                "of the tab-separated metadata table."
            )
    meta_path = _existing_file("metadata", metadata, "metadata table", ("nextstrain_spike_sets", "metadata"), cache)
    min_set_size = _check_positive_int("min_set_size", min_set_size)
    if isinstance(max_n, bool) or not isinstance(max_n, int | np.integer) or max_n < 0:
        raise ValueError(f"`max_n` must be a non-negative integer; got {max_n!r}.")

    meta = pd.read_csv(meta_path, sep="\t", dtype=str, keep_default_na=False)
    missing = {"strain", "date", "country"} - set(meta.columns)
    if missing:
        raise ValueError(
            f"`metadata` ({meta_path}) lacks the columns {sorted(missing)}; it needs `strain`, `date` and `country`."
        )
    meta = meta.drop_duplicates("strain").set_index("strain")

    counts = dict.fromkeys(
        ("genomes", "not_in_metadata", "malformed_date", "no_spike", "n_in_spike", "in_small_sets", "kept"), 0
    )
    rows: list[tuple[dict, str]] = []
    for header, genome in _iter_fasta(fasta_path):
        counts["genomes"] += 1
        strain = header.split("|")[0].strip()
        if strain not in meta.index:
            counts["not_in_metadata"] += 1
            continue
        info = meta.loc[strain]
        date = _parse_date(info["date"])
        if date is None or date < _ORIGIN:
            counts["malformed_date"] += 1
            continue
        found = _find_spike(genome)
        if found is None:
            counts["no_spike"] += 1
            continue
        start, cds = found
        if cds.count("N") > max_n:
            counts["n_in_spike"] += 1
            continue
        month, country = date.isoformat()[:7], str(info["country"]).strip()
        record = {
            "accession": str(info.get("genbank_accession", "")),
            "strain": strain,
            "date": date.isoformat(),
            "month": month,
            "months_since_2019_12": _months_since_origin(date),
            "location": country,
            "set": f"{month}|{country}",
            "region": str(info.get("region", "")),
            "division": str(info.get("division", "")),
            "spike_start": start,
        }
        rows.append((record, translate(cds, to_stop=True)))

    sizes = pd.Series([r["set"] for r, _ in rows]).value_counts()
    keep = set(sizes.index[sizes >= min_set_size])
    counts["in_small_sets"] = sum(1 for r, _ in rows if r["set"] not in keep)
    rows = [row for row in rows if row[0]["set"] in keep]
    counts["kept"] = len(rows)
    logger.info(
        "nextstrain_spike_sets: %d genomes; kept %d in %d sets; dropped %d not in the metadata, %d with a malformed "
        "date, %d without a complete S gene, %d with more than %d N in the S gene, %d in sets smaller than %d.",
        counts["genomes"],
        counts["kept"],
        len(keep),
        counts["not_in_metadata"],
        counts["malformed_date"],
        counts["no_spike"],
        counts["n_in_spike"],
        max_n,
        counts["in_small_sets"],
        min_set_size,
    )
    records = [r for r, _ in rows]
    adata = _sets_adata(records, [s for _, s in rows], [r["strain"] for r in records])
    adata.obs["spike_start"] = adata.obs["spike_start"].astype(np.int64)
    adata.uns["nextstrain_spike_sets"] = {
        "fasta": str(fasta_path),
        "metadata": str(meta_path),
        "min_set_size": min_set_size,
        "max_n": int(max_n),
        "counts": counts,
    }
    return adata


# ---------------------------------------------------------------------------------------------------------------------
# month-indexed spike variants from GISAID-derived monthly mutation counts (EVEscape aggregates)
# ---------------------------------------------------------------------------------------------------------------------


def _is_file(value: str) -> bool:
    """Whether ``value`` names an existing file (a whole protein sequence is too long a name: no file)."""
    try:
        return Path(value).expanduser().is_file()
    except OSError:  # e.g. a file name longer than the file system allows
        return False


def _read_reference(reference: str | PathLike | None, cache: str | PathLike | None = None) -> str:
    if isinstance(reference, str) and not _is_file(reference):
        protein = "".join(reference.split()).upper()
        if not re.fullmatch(r"[A-Z]+\*?", protein):
            raise FileNotFoundError(
                f"`reference` is neither an existing FASTA file nor a protein sequence (letters only): "
                f"{reference[:60]!r}. Pass the path of the reference spike FASTA or the protein itself."
            )
        return protein.rstrip("*")
    path = _existing_file("reference", reference, "reference spike FASTA", ("spike_variant_sets", "reference"), cache)
    header, protein = next(_iter_fasta(path))
    return protein.upper().rstrip("*")


def _read_counts(counts: str | PathLike | pd.DataFrame | None, cache: str | PathLike | None = None) -> pd.DataFrame:
    if isinstance(counts, pd.DataFrame):
        table = counts.copy()
        if "mutation" in table.columns:
            table = table.set_index("mutation")
    else:
        path = _existing_file("counts", counts, "count table", ("spike_variant_sets", "counts"), cache)
        table = pd.read_csv(path, index_col=0)
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)
    bad_months = [c for c in table.columns if not _MONTH.fullmatch(c)]
    if bad_months:
        raise ValueError(
            f"`counts` must have one column per month named 'yyyy-mm' (and the mutations as index or in a "
            f"'mutation' column); got columns {bad_months[:5]}."
        )
    bad = [m for m in table.index if not _SUBSTITUTION.fullmatch(m)]
    if bad:
        raise ValueError(f"`counts` must be indexed by substitutions such as 'D614G'; got {bad[:5]}.")
    values = table.apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy().any() or (values.to_numpy() < 0).any():
        raise ValueError("`counts` must hold non-negative numbers only (sequence counts per mutation and month).")
    return values.astype(np.float64)


def _check_sampling_options(min_month_total, seed, on_mismatch) -> None:
    """Refuse a bad ``min_month_total``, ``seed`` or ``on_mismatch`` of :func:`spike_variant_sets`."""
    if isinstance(min_month_total, bool) or not isinstance(min_month_total, int | float | np.number):
        raise ValueError(f"`min_month_total` must be a non-negative number; got {min_month_total!r}.")
    if not min_month_total >= 0:
        raise ValueError(f"`min_month_total` must be a non-negative number; got {min_month_total!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"`seed` must be an integer; got {seed!r}.")
    if on_mismatch not in ("drop", "raise"):
        raise ValueError(f"`on_mismatch` must be 'drop' or 'raise'; got {on_mismatch!r}.")


def _given_month_totals(month_totals, table: pd.DataFrame) -> dict[str, float]:
    """The known numbers of sequences per month, checked against the months of ``table`` (``{}`` if none)."""
    if month_totals is None:
        return {}
    if not isinstance(month_totals, Mapping | pd.Series):
        raise ValueError(f"`month_totals` must be a mapping of 'yyyy-mm' to counts, or None; got {month_totals!r}.")
    totals_given = {str(k): float(v) for k, v in dict(month_totals).items()}
    unknown = sorted(set(totals_given) - set(table.columns))
    if unknown:
        raise ValueError(f"`month_totals` names months not in `counts`: {unknown[:5]}.")
    if any(not v > 0 for v in totals_given.values()):
        raise ValueError("`month_totals` must be positive numbers of sequences.")
    return totals_given


def _matching_substitutions(table: pd.DataFrame, ref: str, on_mismatch: str) -> tuple:
    """``(table, positions, alternative letters, mismatched names)`` of the substitutions that match ``ref``.

    The others are dropped with a warning in the log (``on_mismatch="drop"``) or raise (``"raise"``).
    """
    parsed = [_SUBSTITUTION.fullmatch(m).groups() for m in table.index]  # type: ignore[union-attr]
    ref_aa = np.array([p[0] for p in parsed])
    pos = np.array([int(p[1]) for p in parsed])
    alt = np.array([p[2] for p in parsed])
    in_range = (pos >= 1) & (pos <= len(ref))
    matches = in_range & (ref_aa == np.array([ref[p - 1] if ok else "" for p, ok in zip(pos, in_range)], dtype=object))
    matches &= ref_aa != alt
    mismatched = table.index[~matches].tolist()
    if mismatched:
        message = (
            f"{len(mismatched)} of {len(table)} substitutions do not match the reference (length {len(ref)}): their "
            f"reference letter differs from it, the position lies beyond it or ref equals alt, e.g. {mismatched[:5]}."
        )
        if on_mismatch == "raise":
            raise ValueError(message + " Pass the matching `reference`, or on_mismatch='drop' to skip them.")
        logger.warning("spike_variant_sets: %s They are dropped.", message)
    return table.loc[matches], pos[matches], alt[matches], mismatched


def spike_variant_sets(
    counts: str | PathLike | pd.DataFrame | None = None,
    reference: str | PathLike | None = None,
    sets_per_month: int = 8,
    set_size: int = 16,
    min_month_total: float = 1_000,
    seed: int = 0,
    *,
    month_totals: Mapping[str, float] | pd.Series | None = None,
    on_mismatch: Literal["drop", "raise"] = "drop",
    cache: str | PathLike | None = None,
) -> AnnData:
    """Month-indexed sets of spike variants sampled from GISAID-derived monthly counts of single substitutions.

    The open stand-in for the sequence content of the paper's GISAID experiment. The default counts are
    EVEscape's ``single_mutant_count_by_month.csv`` (from covidcg.org aggregates of GISAID EpiCoV: 3,546 spike
    substitutions x 32 months, 2020-01 to 2022-08): how many sequences of each month carried each substitution.
    They give neither the number of sequences per month nor which substitutions occurred together, so the sets
    are an approximation, built as follows.

    * **Month total** ``N_m``: the largest number of sequences mutated at any one position in the month (the
      counts of the substitutions at a position add up, since a sequence carries at most one of them), or
      ``month_totals[m]`` when given. This is a lower bound of the true number of sequences. From mid-2020 the
      largest is at position 614 (D614G), which is near fixation, so the bound is close. In early 2020, while
      D614G was rising from a minority, it is an underestimate: frequencies are overestimated there and D614G
      itself gets frequency 1 (in 2020-03, say). Months with ``N_m < min_month_total`` are dropped (by default
      2020-01 and 2020-02, with 11 and 15 counts in all); pass ``month_totals`` where better totals are known.
    * **Frequency** of substitution ``i`` in month ``m``: ``p = min(count / N_m, 1)``.
    * **Sequences**: every sampled sequence carries each substitution independently with probability ``p``:
      **linkage is lost** (a sampled Omicron-era sequence mixes lineages' mutations; only per-mutation marginal
      frequencies, and hence the expected number of mutations per sequence, are right). Substitutions at the
      same position are mutually exclusive: one of them (or none) is drawn with probabilities ``p``, so each
      has marginal frequency ``p`` (with ``month_totals`` smaller than a position's count the probabilities
      there are scaled to sum to 1).
    * The drawn substitutions are applied to the reference spike. A substitution whose ``ref`` letter does
      not match the reference at its position (or whose position lies beyond it) is dropped and counted
      (``on_mismatch="drop"``, with a warning in the log) or raises (``"raise"``).

    Every kept month gets ``sets_per_month`` sets of ``set_size`` sequences. Sampling is reproducible for a
    given ``seed``.

    Parameters
    ----------
    counts
        Table of counts, substitutions (``"D614G"``) x months (``"yyyy-mm"``): a CSV path (first column the
        substitutions) or a DataFrame (substitutions as index or in a ``mutation`` column). Default: EVEscape's
        ``data/gisaid/single_mutant_count_by_month.csv`` (commit ``fc312ff``, 0.3 MB), downloaded once into the
        cache and verified against its registered SHA256.
    reference
        Reference spike: a FASTA path (first record) or the protein sequence. Default: EVEscape's
        ``SPIKE_SARS2.fasta`` (Wuhan-Hu-1, 1,273 aa), downloaded like the counts.
    sets_per_month
        Number of sets per month.
    set_size
        Sequences per set.
    min_month_total
        Drop months whose estimated total ``N_m`` is below this.
    seed
        Random seed.
    month_totals
        Known numbers of sequences per month (``{"2020-03": 30_000, ...}``) to use instead of the estimate for
        those months.
    on_mismatch
        What to do with substitutions that do not match the reference: ``"drop"`` or ``"raise"``.
    cache
        Cache folder of the downloaded defaults (they go to ``cache / "spike_variant_sets"``). Default
        ``pooch.os_cache("scgde")`` or ``$SCGDE_DATA_DIR``.

    Returns
    -------
    AnnData with no variables, ``sets_per_month * set_size`` sequences per kept month and ``obs`` columns
    ``month``, ``months_since_2019_12`` (``(15th of the month - 2019-12-01).days // 30``), ``set``
    (categorical ``"yyyy-mm|k"``, ``k = 0 .. sets_per_month - 1``), ``n_mutations``, ``mutations``
    (``";"``-joined, by position) and ``sequence``. ``uns["spike_variant_sets"]`` holds the month totals
    used, the expected number of mutations per sequence by month, the dropped months and the reference
    mismatches.

    Examples
    --------
    >>> counts = pd.DataFrame({"2021-01": [90, 10], "2021-02": [100, 50]}, index=["A2G", "F3L"])
    >>> adata = spike_variant_sets(counts, reference="MAFK", sets_per_month=2, set_size=3, min_month_total=1)
    >>> adata.shape, adata.obs["set"].cat.categories.tolist()
    ((12, 0), ['2021-01|0', '2021-01|1', '2021-02|0', '2021-02|1'])
    >>> bool(adata.obs.loc[adata.obs["month"] == "2021-02", "sequence"].str[1].eq("G").all())  # A2G: 100 of 100
    True
    """
    from scgde.seq import sequences_to_adata  # scgde.seq loads torch: imported on use, so scgde.datasets stays light

    table = _read_counts(counts, cache)
    ref = _read_reference(reference, cache)
    sets_per_month = _check_positive_int("sets_per_month", sets_per_month)
    set_size = _check_positive_int("set_size", set_size)
    _check_sampling_options(min_month_total, seed, on_mismatch)
    totals_given = _given_month_totals(month_totals, table)
    table, pos, alt, mismatched = _matching_substitutions(table, ref, on_mismatch)
    names = table.index.to_numpy()

    # positions with their alternative substitutions (mutually exclusive)
    order = np.lexsort((alt, pos))
    table, pos, alt, names = table.iloc[order], pos[order], alt[order], names[order]
    positions, first = np.unique(pos, return_index=True)
    slot = np.arange(len(pos)) - np.repeat(first, np.diff(np.append(first, len(pos))))
    column = np.searchsorted(positions, pos)
    width = int(slot.max()) + 1 if len(pos) else 1

    lookup = np.full((len(positions), width), -1)  # (position, slot) -> substitution
    lookup[column, slot] = np.arange(len(pos))

    rng = np.random.default_rng(int(seed))
    n = sets_per_month * set_size
    ref_array = np.array(list(ref))
    sequences: list[str] = []
    records: list[dict] = []
    totals: dict[str, float] = {}
    expected: dict[str, float] = {}
    dropped: list[str] = []
    n_rescaled = 0
    for month in table.columns:
        values = table[month].to_numpy()
        per_position = np.bincount(column, weights=values, minlength=len(positions))
        total = totals_given.get(month, float(per_position.max()) if len(values) else 0.0)
        if total < min_month_total or total <= 0:
            dropped.append(month)
            continue
        p = np.minimum(values / total, 1.0)
        prob = np.zeros((len(positions), width))
        prob[column, slot] = p
        sums = prob.sum(axis=1)
        over = sums > 1
        n_rescaled += int(over.sum())
        prob[over] /= sums[over, None]
        totals[month], expected[month] = total, float(prob.sum())
        cumulative = np.cumsum(prob, axis=1)
        u = rng.random((n, len(positions)))
        choice = (u[:, :, None] >= cumulative[None, :, :]).sum(axis=2)  # == width: no substitution here
        date = dt.date(int(month[:4]), int(month[5:]), 15)
        index = _months_since_origin(date)
        for i in range(n):
            hit = np.flatnonzero(choice[i] < width)
            picked = lookup[hit, choice[i, hit]]
            seq = ref_array.copy()
            seq[pos[picked] - 1] = alt[picked]
            sequences.append("".join(seq))
            records.append(
                {
                    "month": month,
                    "months_since_2019_12": index,
                    "set": f"{month}|{i // set_size}",
                    "n_mutations": len(picked),
                    "mutations": ";".join(names[picked]),
                }
            )
    if dropped:
        logger.info(
            "spike_variant_sets: dropped %d months with an estimated total below %s sequences: %s.",
            len(dropped),
            min_month_total,
            ", ".join(dropped),
        )
    if n_rescaled:
        logger.info(
            "spike_variant_sets: %d (position, month) pairs had substitution frequencies summing to more than 1; "
            "they were scaled to sum to 1.",
            n_rescaled,
        )
    if not records:
        raise ValueError(
            f"No month of `counts` has an estimated total of at least min_month_total={min_month_total}; lower it."
        )
    obs = pd.DataFrame(records)
    obs.index = [f"{s}|{i % set_size}" for i, s in enumerate(obs["set"])]
    obs["months_since_2019_12"] = obs["months_since_2019_12"].astype(np.int64)
    obs["n_mutations"] = obs["n_mutations"].astype(np.int64)
    obs["set"] = pd.Categorical(obs["set"], categories=list(dict.fromkeys(obs["set"])))
    adata = sequences_to_adata(sequences, obs=obs)
    adata.uns["spike_variant_sets"] = {
        "month_total": totals,
        "expected_mutations": expected,
        "dropped_months": dropped,
        "n_reference_mismatches": len(mismatched),
        "reference_mismatches": mismatched,
        "n_rescaled": n_rescaled,
        "seed": int(seed),
        "reference_length": len(ref),
    }
    return adata
