"""Readers and helpers for sets of sequences: AnnData with no variables, the sequences in ``obs``."""

from __future__ import annotations

import gzip
import itertools
import re
from collections.abc import Iterator, Sequence
from os import PathLike
from typing import TextIO

import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.utils import make_index_unique

# --------------------------------------------------------------------------------------------------------------------
# AnnData
# --------------------------------------------------------------------------------------------------------------------


def sequences_to_adata(
    sequences: Sequence[str],
    obs: pd.DataFrame | None = None,
    sequence_key: str = "sequence",
    index: Sequence[str] | None = None,
) -> AnnData:
    """Put sequences into an :class:`~anndata.AnnData` with no variables.

    Parameters
    ----------
    sequences
        One sequence per observation.
    obs
        Per-observation annotations (copied; its index becomes the obs names).
    sequence_key
        Column of ``obs`` that receives the sequences (overwritten if present).
    index
        Obs names when ``obs`` is not given (default ``"0", "1", ...``).

    Returns
    -------
    AnnData with ``n_vars == 0`` (``X`` is an empty ``(n, 0)`` float32 array), unique obs names and the sequences
    as ``str`` in ``obs[sequence_key]``.

    Examples
    --------
    >>> adata = sequences_to_adata(["ACGT", "GG"], obs=pd.DataFrame({"sample": ["a", "b"]}, index=["r1", "r2"]))
    >>> adata.shape, adata.obs_names.tolist(), adata.obs["sequence"].tolist()
    ((2, 0), ['r1', 'r2'], ['ACGT', 'GG'])
    """
    seqs = [str(s) for s in (sequences.tolist() if hasattr(sequences, "tolist") else sequences)]
    n = len(seqs)
    if obs is not None:
        if len(obs) != n:
            raise ValueError(f"Got {n} sequences but `obs` has {len(obs)} rows; they must match.")
        obs = obs.copy()
        names = obs.index
    else:
        names = range(n) if index is None else index
        if len(names) != n:
            raise ValueError(f"Got {n} sequences but `index` has {len(names)} entries; they must match.")
        obs = pd.DataFrame(index=range(n))
    obs.index = make_index_unique(pd.Index([str(name) for name in names], dtype=object))
    obs[sequence_key] = np.array(seqs, dtype=object)
    return AnnData(X=np.zeros((n, 0), dtype=np.float32), obs=obs)


# --------------------------------------------------------------------------------------------------------------------
# FASTA / FASTQ
# --------------------------------------------------------------------------------------------------------------------


_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: str | PathLike) -> bool:
    """Whether a file is gzip-compressed, from its first two bytes (the name does not matter)."""
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _open_text(path: str | PathLike) -> TextIO:
    """Open a text file for streaming, through :func:`gzip.open` when it starts with the gzip magic bytes."""
    return gzip.open(path, "rt") if _is_gzip(path) else open(path)


def _biopython(what: str):
    """``Bio.SeqIO``'s low-level parsers, with a clear message when biopython is missing."""
    try:
        from Bio.SeqIO.FastaIO import SimpleFastaParser
        from Bio.SeqIO.QualityIO import FastqGeneralIterator
    except ImportError:
        raise ImportError(f"{what} needs biopython: `pip install 'scgde[seq]'` (or `pip install biopython`).") from None
    return SimpleFastaParser, FastqGeneralIterator


def _iter_fasta(path: str | PathLike) -> Iterator[tuple[str, str]]:
    """Stream ``(title, sequence)`` of every FASTA record (gzipped or plain), parsed by ``Bio.SeqIO``.

    The title is the header without ``'>'`` and surrounding whitespace; records may span several lines (whitespace
    in sequences is removed). Raises ``ValueError`` when the first non-blank line is not a ``'>'`` header.
    """
    simple_fasta_parser, _ = _biopython("Reading FASTA")
    with _open_text(path) as handle:
        number, line = next(((k, ln) for k, ln in enumerate(handle, start=1) if ln.strip()), (0, ""))
        if not line:
            raise ValueError(
                f"{path} is not a FASTA file: expected a first record header starting with '>', but it is empty."
            )
        if not line.startswith(">"):
            raise ValueError(
                f"{path} is not a FASTA file: expected a first record header starting with '>', but it starts with "
                f"{line.strip()[:40]!r} (line {number}, before any header)."
            )
        for title, sequence in simple_fasta_parser(itertools.chain([line], handle)):
            yield title.strip(), sequence


class _CountedLines:
    """A text handle that numbers its lines and keeps those of the record being parsed (for error messages)."""

    def __init__(self, handle: TextIO):
        self._handle, self.number, self.kept, self.start = handle, 0, [], 1

    def read(self, size: int = -1) -> str:
        return self._handle.read(size)

    def readline(self) -> str:
        line = self._handle.readline()
        if line:
            self.number += 1
            self.kept.append(line)
        return line

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self.number += 1
        self.kept.append(line)
        return line

    def next_record(self) -> None:
        """The record was parsed: forget its lines, keeping the next header the parser read ahead."""
        self.kept = self.kept[-1:] if self.kept and self.kept[-1].startswith("@") else []
        self.start = self.number - len(self.kept) + 1


def _fastq_problem(lines: list[str], first_line: int, first_record: int, where: str) -> str | None:
    """The first violation of the 4-line FASTQ layout in ``lines`` (the lines a parser failed on), if any."""
    lines = [ln.rstrip("\r\n") for ln in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    for i in range(0, len(lines), 4):
        header, *rest = lines[i : i + 4]
        at = f"{where}, record {first_record + i // 4} (line {first_line + i})"
        if not header.startswith("@"):
            return f"{at}: expected a header starting with '@', got {header[:40]!r}."
        if len(rest) < 3:
            return f"{at} is truncated: a FASTQ record has 4 lines, got {len(rest) + 1}."
        seq, plus, qual = rest
        if not plus.startswith("+"):
            return f"{at}: expected a separator line starting with '+', got {plus[:40]!r}."
        if len(seq.strip()) != len(qual.strip()):
            return f"{at}: the sequence has {len(seq.strip())} characters but the quality has {len(qual.strip())}."
    return None


def _iter_fastq(path: str | PathLike) -> Iterator[tuple[str, str, str]]:
    """Stream ``(title, sequence, quality)`` of every FASTQ record (gzipped or plain), parsed by ``Bio.SeqIO``.

    Where the parser fails, the error names the record and its first line (and what breaks the 4-line layout).
    """
    _, fastq_general_iterator = _biopython("Reading FASTQ")
    with _open_text(path) as handle:
        lines = _CountedLines(handle)
        n = 0
        try:
            for title, sequence, quality in fastq_general_iterator(lines):
                n += 1
                yield title, sequence, quality
                lines.next_record()
        except ValueError as err:
            if n == 0 and not "".join(lines.kept).strip():
                raise ValueError(
                    f"{path} is empty: expected FASTQ records of 4 lines (@id, sequence, +, quality)."
                ) from None
            problem = _fastq_problem(lines.kept, lines.start, n + 1, str(path))
            raise ValueError(problem or f"{path}, record {n + 1} (line {lines.start}): {err}") from None
    if n == 0:
        raise ValueError(f"{path} is empty: expected FASTQ records of 4 lines (@id, sequence, +, quality).")


def _split_header(header: str) -> tuple[str, str]:
    name, _, description = header.strip().partition(" ")
    return name, description.strip()


def read_fasta(path: str | PathLike, sequence_key: str = "sequence") -> AnnData:
    r"""Read a FASTA file (optionally gzipped) into an AnnData with one observation per record.

    Parameters
    ----------
    path
        FASTA file, plain or gzipped (detected from its first bytes); records may span several lines. Parsed by
        ``Bio.SeqIO``'s ``SimpleFastaParser`` while streaming (needs biopython: ``pip install 'scgde[seq]'``).
    sequence_key
        Column of ``obs`` for the sequences (whitespace removed, case kept).

    Returns
    -------
    AnnData with no variables; obs names are the record ids (first word of the header, made unique), ``obs``
    holds ``"description"`` (the rest of the header) and ``sequence_key``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.fa"
    >>> _ = path.write_text(">r1 first read\nACGT\nAC\n>r2\nGGG\n")
    >>> adata = read_fasta(path)
    >>> adata.obs
       description sequence
    r1  first read   ACGTAC
    r2                  GGG
    """
    names, descriptions, seqs = [], [], []
    for title, sequence in _iter_fasta(path):
        name, description = _split_header(title)
        names.append(name)
        descriptions.append(description)
        seqs.append(sequence)
    obs = pd.DataFrame({"description": descriptions}, index=names)
    return sequences_to_adata(seqs, obs=obs, sequence_key=sequence_key)


def read_fastq(path: str | PathLike, sequence_key: str = "sequence") -> AnnData:
    r"""Read a FASTQ file of 4-line records (optionally gzipped) into an AnnData with one observation per read.

    Parameters
    ----------
    path
        FASTQ file, plain or gzipped: ``@id description``, sequence, ``+`` (optionally repeated id), quality, for
        every read. Parsed by ``Bio.SeqIO``'s ``FastqGeneralIterator`` while streaming (needs biopython); an error
        names the record and line where the 4-line layout breaks.
    sequence_key
        Column of ``obs`` for the sequences.

    Returns
    -------
    AnnData with no variables; obs names are the read ids (made unique), ``obs`` holds ``"description"``,
    ``"quality"`` and ``sequence_key``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.fq"
    >>> _ = path.write_text("@r1 lane1\nACGT\n+\nIIII\n@r2\nGG\n+r2\n#I\n")
    >>> adata = read_fastq(path)
    >>> adata.obs[["sequence", "quality"]]
       sequence quality
    r1     ACGT    IIII
    r2       GG      #I
    """
    names, descriptions, seqs, quals = [], [], [], []
    for title, sequence, quality in _iter_fastq(path):
        name, description = _split_header(title)
        names.append(name)
        descriptions.append(description)
        seqs.append(sequence)
        quals.append(quality)
    obs = pd.DataFrame({"description": descriptions, "quality": quals}, index=names)
    return sequences_to_adata(seqs, obs=obs, sequence_key=sequence_key)


# --------------------------------------------------------------------------------------------------------------------
# translation
# --------------------------------------------------------------------------------------------------------------------

# the standard genetic code: codon i (in the order TTT, TTC, TTA, TTG, TCT, ..., GGG) -> _AMINO_ACIDS[i]
_BASES = "TCAG"
_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_CODON_TABLE = {a + b + c: aa for (a, b, c), aa in zip(itertools.product(_BASES, repeat=3), _AMINO_ACIDS, strict=True)}


def _translate_one(cds: str, to_stop: bool) -> str:
    cds = cds.upper().replace("U", "T")
    protein = "".join(_CODON_TABLE.get(cds[i : i + 3], "X") for i in range(0, len(cds) - 2, 3))
    return protein.partition("*")[0] if to_stop else protein


def translate(cds: str | Sequence[str], to_stop: bool = True) -> str | list[str]:
    """Translate coding sequences with the standard genetic code.

    Parameters
    ----------
    cds
        A coding sequence (DNA or RNA, any case) read in frame from its first base, or a list of them.
        A trailing partial codon is dropped; codons containing ``N`` or any other letter become ``"X"``.
    to_stop
        Stop at the first stop codon (not included); otherwise stop codons are written as ``"*"``.

    Returns
    -------
    The protein (a list of proteins for a list input).

    Examples
    --------
    >>> translate("ATGGCCTAAGGG")
    'MA'
    >>> translate(["augNNNtgaGG", "TTT"], to_stop=False)
    ['MX*', 'F']
    """
    if isinstance(cds, str):
        return _translate_one(cds, to_stop)
    return [_translate_one(str(s), to_stop) for s in cds]


# --------------------------------------------------------------------------------------------------------------------
# bisulfite conversion
# --------------------------------------------------------------------------------------------------------------------

_METHYLATED, _UNMETHYLATED, _UNKNOWN, _NOT_CPG = "1MC", "0UT", ".", "2"
_STATE_TO_BASE = {**dict.fromkeys(_METHYLATED, "C"), **dict.fromkeys(_UNMETHYLATED, "T"), _UNKNOWN: "N"}


def _bisulfite_one(read: str, methylation: str, start: int) -> str:
    read, methylation = read.upper(), methylation.upper()
    if not 0 <= start <= len(read):
        raise ValueError(f"`start` must lie in [0, {len(read)}] (the read length), got {start}.")
    unexpected = set(methylation) - set(_STATE_TO_BASE) - {_NOT_CPG}
    if unexpected:
        raise ValueError(
            f"Unexpected methylation states {sorted(unexpected)}; use '1'/'M'/'C' (methylated), "
            f"'0'/'U'/'T' (unmethylated), '.' (unknown) and, position by position, '2' (not a CpG)."
        )
    cpgs = [m.start() for m in re.finditer("CG", read)]
    if _NOT_CPG in methylation:  # one character per read position from `start` (MethylBERT's methyl_seq)
        end = start + len(methylation)
        if end > len(read):
            raise ValueError(
                f"The methylation string covers positions {start}..{end - 1} but the read has length {len(read)}."
            )
        covered = [p for p in cpgs if start <= p < end]
        marked = [start + i for i, state in enumerate(methylation) if state != _NOT_CPG]
        if marked != covered:
            raise ValueError(
                f"The methylation string marks {len(marked)} CpGs but the read has {len(covered)} CpGs in "
                f"positions {start}..{end - 1} (CpG C positions {covered}, marked positions {marked})."
            )
        states = dict(zip(marked, methylation.replace(_NOT_CPG, ""), strict=True))
    else:  # one character per CpG of the read from `start`, in order (a .pat pattern)
        covered = [p for p in cpgs if p >= start]
        if len(covered) != len(methylation):
            raise ValueError(
                f"The read has {len(covered)} CpGs (from position {start}) but the methylation string has "
                f"{len(methylation)} characters; they must match."
            )
        states = dict(zip(covered, methylation, strict=True))
    out = list(read.replace("C", "T"))
    for p in cpgs:
        out[p] = _STATE_TO_BASE[states[p]] if p in states else "N"
    return "".join(out)


def bisulfite_convert(
    read: str | Sequence[str], methylation: str | Sequence[str], start: int | Sequence[int] = 0
) -> str | list[str]:
    """Simulate bisulfite sequencing of a read with a given CpG methylation.

    Every C of ``read`` becomes T, except the C of a methylated CpG, which stays C (the C of a CpG with unknown
    state becomes N). ``read`` is the unconverted sequence of the strand that is sequenced, 5' to 3' (for a read of
    the reverse strand pass the reverse complement of the reference); the result is upper case.

    ``methylation`` has one of two layouts; its states are ``1``/``M``/``C`` (methylated), ``0``/``U``/``T``
    (unmethylated) and ``.`` (unknown), case-insensitive:

    * **one character per CpG** of ``read`` whose C is at position ``start`` or later, in order of occurrence (the
      pattern of a wgbstools ``.pat`` line, e.g. ``"CT."``, or ``"10"``);
    * **one character per position** ``start, start + 1, ...`` of ``read``, with ``2`` at every position that is not
      the C of a CpG. This is MethylBERT's ``methyl_seq`` column, one character per 3-mer of ``dna_seq``, i.e. per
      3-mer centre: pass ``start=1`` with the reference sequence of the read. A string containing ``2`` is read
      this way.

    CpGs before ``start`` (or after the end of a per-position string) have unknown state and become ``NG``. A C at
    the very end of ``read`` has no next base, so it is not a CpG here: pass one more base of reference if it may be.

    Parameters
    ----------
    read
        Unconverted read sequence, or a list of them.
    methylation
        Methylation string (a list of them for a list of reads).
    start
        Position in ``read`` where the methylation string begins (one value, or one per read).

    Returns
    -------
    The converted read (a list for list inputs).

    Examples
    --------
    >>> bisulfite_convert("ACGTTCGCA", "10")  # CpGs at 1 (methylated) and 5 (unmethylated)
    'ACGTTTGTA'
    >>> bisulfite_convert("ACGTTCGCA", "C.")  # the same in .pat letters, second CpG unknown
    'ACGTTNGTA'
    >>> bisulfite_convert("ACGTTCGCA", "1222022", start=1)  # per position, from position 1
    'ACGTTTGTA'
    >>> bisulfite_convert(["CGA", "CCG"], ["0", "1"])
    ['TGA', 'TCG']
    """
    if isinstance(read, str):
        if not isinstance(methylation, str):
            raise ValueError("For a single read, `methylation` must be a single string.")
        return _bisulfite_one(read, methylation, int(start))
    reads, methylations = list(read), list(methylation)
    starts = [int(start)] * len(reads) if np.ndim(start) == 0 else [int(s) for s in start]
    if not len(reads) == len(methylations) == len(starts):
        raise ValueError(
            f"Got {len(reads)} reads, {len(methylations)} methylation strings and {len(starts)} starts; they must match."
        )
    out = []
    for i, (r, m, s) in enumerate(zip(reads, methylations, starts, strict=True)):
        try:
            out.append(_bisulfite_one(str(r), str(m), s))
        except ValueError as err:
            raise ValueError(f"Read {i}: {err}") from None
    return out


# --------------------------------------------------------------------------------------------------------------------
# wgbstools .pat files
# --------------------------------------------------------------------------------------------------------------------

_PAT_PATTERN = re.compile(r"[CT.]+")


def read_pat(path: str | PathLike) -> pd.DataFrame:
    r"""Read a wgbstools ``.pat`` file (optionally gzipped).

    Each line is tab-separated: chromosome, index of the first CpG site, the methylation pattern over consecutive
    CpG sites (``C`` methylated, ``T`` unmethylated, ``.`` unknown) and the number of identical reads.

    Parameters
    ----------
    path
        ``.pat`` or ``.pat.gz`` file.

    Returns
    -------
    DataFrame with columns ``chrom`` (str), ``start`` (int, CpG index), ``pattern`` (str) and ``count`` (int).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.pat"
    >>> _ = path.write_text("chr1\t10\tCCT\t2\nchr1\t12\tT.C\t1\n")
    >>> read_pat(path)
      chrom  start pattern  count
    0  chr1     10     CCT      2
    1  chr1     12     T.C      1
    """
    rows = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            line = line.rstrip("\r\n")
            fields = line.split("\t")
            if (
                len(fields) != 4
                or not fields[0]
                or not fields[1].isdigit()
                or not _PAT_PATTERN.fullmatch(fields[2])
                or not fields[3].isdigit()
            ):
                raise ValueError(
                    f"{path}, line {number}: expected 4 tab-separated fields (chromosome, CpG index, pattern of "
                    f"C/T/., count), got {line[:80]!r}."
                )
            rows.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
    df = pd.DataFrame(rows, columns=["chrom", "start", "pattern", "count"])
    return df.astype({"chrom": object, "start": np.int64, "pattern": object, "count": np.int64})


def expand_pat(df: pd.DataFrame) -> pd.DataFrame:
    """One row per read: repeat each row of :func:`read_pat`'s table ``count`` times.

    Parameters
    ----------
    df
        Table with a ``count`` column.

    Returns
    -------
    The repeated rows with a fresh index and without the ``count`` column.

    Examples
    --------
    >>> df = pd.DataFrame({"chrom": ["chr1", "chr2"], "start": [10, 5], "pattern": ["CT", "T"], "count": [2, 1]})
    >>> expand_pat(df)
      chrom  start pattern
    0  chr1     10      CT
    1  chr1     10      CT
    2  chr2      5       T
    """
    counts = df["count"].to_numpy()
    if (counts < 0).any():
        raise ValueError("`count` must be non-negative.")
    return df.iloc[np.repeat(np.arange(len(df)), counts)].drop(columns="count").reset_index(drop=True)
