"""Position weight matrix (PWM) motif scanning: count motif hits per DNA sequence.

Motifs come from motif files (:func:`read_motifs`: JASPAR, MEME, TRANSFAC or plain PFM, read by :mod:`Bio.motifs`)
or from the JASPAR database shipped with :mod:`pyjaspar` (:func:`jaspar_motifs`). :func:`motif_counts` slides each motif's log-odds
matrix (:func:`pwm_log_odds`) over every sequence and counts the windows whose score passes a threshold, e.g. to
compare real and generated promoter sets (the GDE paper's rule: forward strand, a hit is a log2-odds score > 5).

All motifs are ``(length, 4)`` arrays with columns in ``A, C, G, T`` order.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ._io import _open_text

__all__ = ["jaspar_motifs", "motif_counts", "motif_hits_per_set", "motif_scores", "pwm_log_odds", "read_motifs"]

MotifFormat = Literal["auto", "jaspar", "meme", "transfac", "pfm"]
_FORMATS = ("auto", "jaspar", "meme", "transfac", "pfm")
_LETTERS = "ACGT"

#: rows of a matrix summing to 1 within this tolerance make it a probability matrix
_PROBABILITY_ATOL = 1e-3
#: a probability matrix is read as counts from this many sites (MEME's default ``nsites``)
_PROBABILITY_SITES = 20.0

# byte -> code: A, C, G, T -> 0..3 (case-insensitive, U read as T); everything else -> 4, which scores 0
_CODE_OTHER, _CODE_PAD = 4, 5  # _CODE_PAD: past the end of a sequence
_LOOKUP = np.full(256, _CODE_OTHER, dtype=np.uint8)
for _i, _letter in enumerate(_LETTERS):
    _LOOKUP[ord(_letter)] = _LOOKUP[ord(_letter.lower())] = _i
_LOOKUP[ord("U")] = _LOOKUP[ord("u")] = 3
del _i, _letter
# code -> one-hot over (A, C, G, T, padding); N and other characters -> all zeros
_ONE_HOT = np.zeros((6, 5))
_ONE_HOT[[0, 1, 2, 3, _CODE_PAD], [0, 1, 2, 3, 4]] = 1
_ONE_HOT_T = np.ascontiguousarray(_ONE_HOT.T)
#: score of a motif position over padding: any window not inside its sequence fails every cutoff
_PAD_SCORE = -1e12
_MIN_THRESHOLD = -1e6  # far above _PAD_SCORE, far below any real score

# window starts per tile: long sequences are cut into tiles so that memory stays bounded
_TILE = 4096
# bytes per chunk of tiles, for the one-hot windows and their scores
_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------------------------------
# Log-odds
# --------------------------------------------------------------------------------------------------------------------


def _background(background: Sequence[float] | None) -> np.ndarray:
    if background is None:
        return np.full(4, 0.25)
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or not np.isfinite(bg).all() or (bg <= 0).any():
        raise ValueError(
            f"`background` must be 4 positive frequencies of A, C, G, T, got {np.asarray(background).tolist()!r}."
        )
    return bg / bg.sum()


def _check_matrix(pfm, name: str = "pfm") -> np.ndarray:
    try:
        m = np.asarray(pfm, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a numeric (length, 4) array of A, C, G, T counts: {err}") from None
    if m.ndim != 2 or m.shape[1] != 4 or m.shape[0] == 0:
        hint = " (it looks like (4, length): pass its transpose `.T`)" if m.ndim == 2 and m.shape[0] == 4 else ""
        raise ValueError(
            f"`{name}` must have shape (length, 4) with columns A, C, G, T and length >= 1, got {m.shape}{hint}."
        )
    if not np.isfinite(m).all():
        raise ValueError(f"`{name}` must hold finite numbers; found NaN or inf.")
    if (m < 0).any():
        raise ValueError(f"`{name}` must be non-negative counts or probabilities; found {m.min():g}.")
    return m


def pwm_log_odds(
    pfm: np.ndarray,
    background: Sequence[float] | None = None,
    pseudocount: float = 0.5,
) -> np.ndarray:
    """Convert a count or probability matrix to a log2-odds position weight matrix.

    Entry ``(i, b)`` is ``log2(p[i, b] / background[b])`` with ``p[i] = (counts[i] + pseudocount) /
    (counts[i].sum() + 4 * pseudocount)``. A matrix whose rows all sum to 1 (within 0.001) is read as
    probabilities and first multiplied by 20 (MEME's default number of sites), so that ``pseudocount`` is a count
    for both kinds of input; pass counts (probabilities times the number of sites) to control this.

    Parameters
    ----------
    pfm
        ``(length, 4)`` non-negative counts or probabilities, columns ``A, C, G, T``.
    background
        Frequencies of ``A, C, G, T`` (positive; rescaled to sum to 1). Default uniform.
    pseudocount
        Non-negative count added to every entry. With 0, a zero entry would give ``-inf`` and raises an error.

    Returns
    -------
    ``(length, 4)`` float64 array of log2-odds scores.

    Examples
    --------
    >>> pwm_log_odds([[10, 0, 0, 0], [0, 0, 5, 5]], pseudocount=0).round(2)
    Traceback (most recent call last):
    ...
    ValueError: `pfm` has zero entries, whose log-odds are -inf; pass pseudocount > 0.
    >>> pwm_log_odds([[9, 1, 0, 0], [0, 0, 5, 5]]).round(2)
    array([[ 1.66, -1.  , -2.58, -2.58],
           [-2.58, -2.58,  0.87,  0.87]])
    """
    m = _check_matrix(pfm)
    bg = _background(background)
    if not (np.isfinite(pseudocount) and pseudocount >= 0):
        raise ValueError(f"`pseudocount` must be a non-negative number, got {pseudocount!r}.")
    totals = m.sum(axis=1, keepdims=True)
    if np.allclose(totals, 1.0, rtol=0, atol=_PROBABILITY_ATOL):
        m = m / totals * _PROBABILITY_SITES
        totals = np.full_like(totals, _PROBABILITY_SITES)
    if pseudocount == 0:
        if (totals == 0).any():
            raise ValueError("`pfm` has an all-zero row; pass pseudocount > 0.")
        if (m == 0).any():
            raise ValueError("`pfm` has zero entries, whose log-odds are -inf; pass pseudocount > 0.")
    p = (m + pseudocount) / (totals + 4 * pseudocount)
    return np.log2(p / bg)


# --------------------------------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------------------------------


def _as_motif_dict(motifs) -> dict[str, np.ndarray]:
    if isinstance(motifs, Mapping):
        if not motifs:
            raise ValueError("`motifs` is empty; pass at least one (length, 4) matrix.")
        return {str(k): _check_matrix(v, f"motifs[{k!r}]") for k, v in motifs.items()}
    return {"motif": _check_matrix(motifs, "motifs")}


def _sequences(sequences) -> tuple[list[str], pd.Index]:
    """The sequences as a list of ``str`` and the row index of results (a Series keeps its index)."""
    if isinstance(sequences, str):
        sequences = [sequences]
    index = sequences.index if isinstance(sequences, pd.Series) else None
    seqs = sequences.tolist() if hasattr(sequences, "tolist") else list(sequences)
    for i, s in enumerate(seqs):
        if not isinstance(s, str):
            raise TypeError(
                f"`sequences` must hold strings; element {i} is {type(s).__name__} ({s!r}). "
                "Drop or fill missing sequences first (e.g. `series.dropna()`)."
            )
    return seqs, pd.RangeIndex(len(seqs)) if index is None else index


def _encode(seqs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of all sequences concatenated, with the offset and length of each."""
    n = len(seqs)
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    # one byte per character: a non-ASCII character becomes "?", which scores 0 like N
    codes = _LOOKUP[np.frombuffer("".join(seqs).encode("ascii", errors="replace"), dtype=np.uint8)]
    return codes, offsets, lengths


def _tiles(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut every non-empty sequence into tiles of at most :data:`_TILE` window starts: (row, first start, starts)."""
    n_tiles = -(-lengths // _TILE)
    rows = np.repeat(np.arange(len(lengths)), n_tiles)
    first = (np.arange(len(rows)) - np.repeat(np.cumsum(n_tiles) - n_tiles, n_tiles)) * _TILE
    return rows, first, np.minimum(lengths[rows] - first, _TILE)


def _weights(pwms: list[np.ndarray]) -> np.ndarray:
    """Stack log-odds matrices into ``(max_length, 5, n_motifs)`` weights of one-hot windows.

    Column 4 is the padding past the end of a sequence: :data:`_PAD_SCORE` at the motif's positions, so a window
    that does not fit in its sequence fails every threshold without a mask. Shorter motifs get zero rows.
    """
    weights = np.zeros((max(map(len, pwms)), 5, len(pwms)))
    for j, p in enumerate(pwms):
        weights[: len(p), :4, j] = p
        weights[: len(p), 4, j] = _PAD_SCORE
    return weights


def _length_groups(motif_lengths: np.ndarray) -> list[np.ndarray]:
    """Motif indices grouped by similar lengths: each group is scored with windows as long as its longest motif."""
    order = np.argsort(motif_lengths, kind="stable")
    groups, start = [], 0
    for k in range(1, len(order) + 1):
        if k == len(order) or motif_lengths[order[k]] > 1.5 * motif_lengths[order[start]]:
            groups.append(order[start:k])
            start = k
    return groups


def _scan(
    seqs: list[str], weights: list[np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]]:
    """Window scores of every sequence under every motif of every group of ``weights``.

    Each element of ``weights`` is ``(length, 5, n_columns)`` (:func:`_weights`). One matrix product of the
    one-hot windows (BLAS does the sliding sums) scores all motifs of a group; the windows are built once per
    chunk, at the longest length, and shorter groups use their first positions. Yields, per chunk of tiles,
    ``rows`` (the sequence of each tile), ``starts`` (``(c, width)`` window start of each score), the
    ``lengths`` of the tiles' sequences and, per group, ``(n_columns, c, width)`` scores. Windows that do not
    fit in their sequence score about :data:`_PAD_SCORE`.
    """
    codes, offsets, lengths = _encode(seqs)
    rows, first, n_starts = _tiles(lengths)
    order = np.argsort(n_starts, kind="stable")  # similar widths per chunk: little padding
    rows, first, n_starts = rows[order], first[order], n_starts[order]
    padded = np.append(codes, np.uint8(_CODE_PAD))  # index len(codes): past the end of a sequence
    span = max(len(w) for w in weights)
    budget = max(1, _CHUNK_BYTES // (8 * (5 * span + sum(w.shape[2] for w in weights))))  # windows per chunk
    flat = [w.reshape(-1, w.shape[2]).T.copy() for w in weights]  # (n_columns, 5 * length)
    i = 0
    while i < len(rows):
        # greedy chunk: the most tiles k whose padded size k * (widest start count) fits the budget
        cand = n_starts[i : i + max(1, budget // int(n_starts[i]))]  # sorted, so no more tiles can fit
        stop = i + max(1, int(np.searchsorted(np.arange(1, len(cand) + 1) * cand, budget, side="right")))
        width = int(n_starts[stop - 1])
        r, f = rows[i:stop], first[i:stop]
        pos = f[:, None] + np.arange(width + span - 1)  # positions within each sequence
        tile_codes = padded[np.where(pos < lengths[r, None], offsets[r, None] + pos, len(codes))]
        # (position in window, letter, window): a group's first positions are one contiguous block for BLAS
        windows = np.empty((span, 5, len(r), width))
        for k in range(span):
            windows[k] = _ONE_HOT_T[:, tile_codes[:, k : k + width]]
        windows = windows.reshape(5 * span, -1)
        scores = [(w @ windows[: w.shape[1]]).reshape(-1, len(r), width) for w in flat]
        yield r, pos[:, :width], lengths[r], scores
        i = stop


def _cutoffs(pwms: list[np.ndarray], threshold: float, relative: bool) -> np.ndarray:
    if not np.isfinite(threshold) or threshold <= _MIN_THRESHOLD:
        raise ValueError(f"`threshold` must be a finite number above {_MIN_THRESHOLD:g}, got {threshold!r}.")
    if not relative:
        return np.full(len(pwms), float(threshold))
    if not 0 <= threshold <= 1:
        raise ValueError(
            f"With relative=True, `threshold` is a fraction of the score range in [0, 1], got {threshold!r}; "
            "pass relative=False for an absolute log2-odds threshold."
        )
    low = np.array([p.min(axis=1).sum() for p in pwms])
    high = np.array([p.max(axis=1).sum() for p in pwms])
    # a little slack so that threshold=1.0 keeps the consensus despite rounding in the matrix product
    return low + threshold * (high - low) - 1e-9 * np.maximum(1.0, np.abs(high))


def motif_scores(
    sequences: Iterable[str] | str,
    motif: np.ndarray,
    strand: Literal["+", "-"] = "+",
    background: Sequence[float] | None = None,
    pseudocount: float = 0.5,
) -> np.ndarray:
    """Log2-odds score of every window of every sequence under one motif.

    Parameters
    ----------
    sequences
        DNA sequences (an iterable of ``str``, of any lengths; a single ``str`` is one sequence).
        Case-insensitive, ``U`` is read as ``T``; ``N`` and any other character scores 0 at its position.
    motif
        ``(length, 4)`` counts or probabilities (columns ``A, C, G, T``), converted with :func:`pwm_log_odds`.
    strand
        ``"+"``: score the sequence as given; ``"-"``: score its reverse complement, reported at the forward
        coordinates of the window (column ``s`` covers positions ``s .. s + length - 1`` on both strands).
    background, pseudocount
        Passed to :func:`pwm_log_odds`.

    Returns
    -------
    ``(n, max(0, longest - length + 1))`` float64 array: column ``s`` is the window starting at position ``s``;
    ``NaN`` where that window does not fit in the sequence.

    Examples
    --------
    >>> pfm = np.array([[10, 0, 0, 0], [0, 10, 0, 0]])  # "AC"
    >>> motif_scores(["ACAC", "GA"], pfm).round(2)
    array([[ 3.61, -5.17,  3.61],
           [-5.17,   nan,   nan]])
    >>> motif_scores(["GT"], pfm, strand="-").round(2)  # GT is the reverse complement of AC
    array([[3.61]])
    """
    if strand not in ("+", "-"):
        raise ValueError(f"`strand` must be '+' or '-', got {strand!r}.")
    pwm = pwm_log_odds(_check_matrix(motif, "motif"), background, pseudocount)
    if strand == "-":
        pwm = pwm[::-1, ::-1]  # reverse complement: reversed positions, A<->T and C<->G
    seqs, _ = _sequences(sequences)
    longest = max(map(len, seqs), default=0)
    out = np.full((len(seqs), max(0, longest - len(pwm) + 1)), np.nan)
    for rows, starts, lengths, (scores,) in _scan(seqs, [_weights([pwm])]):
        fits = starts + len(pwm) <= lengths[:, None]
        out[np.broadcast_to(rows[:, None], starts.shape)[fits], starts[fits]] = scores[0][fits]
    return out


def motif_counts(
    sequences: Iterable[str] | str,
    motifs: Mapping[str, np.ndarray] | np.ndarray,
    threshold: float = 5.0,
    *,
    relative: bool = False,
    both_strands: bool = False,
    background: Sequence[float] | None = None,
    pseudocount: float = 0.5,
) -> pd.DataFrame:
    """Count, per sequence, the windows where each motif's log-odds score passes a threshold.

    Each motif is converted with :func:`pwm_log_odds`; the score of a window is the sum of the log2-odds of its
    letters. All sequences are encoded once and all motifs are scored together by a matrix product of one-hot
    windows, so thousands of sequences times hundreds of motifs take seconds.

    Parameters
    ----------
    sequences
        DNA sequences: an iterable of ``str`` of any lengths (a :class:`pandas.Series` keeps its index; a single
        ``str`` is one sequence). Case-insensitive, ``U`` is read as ``T``. ``N`` and any other character
        (gap, IUPAC code, non-ASCII) scores 0 at its position: the window is still scored from its other letters.
        A sequence shorter than a motif has no window and counts 0.
    motifs
        ``{name: (length, 4) counts or probabilities}`` (columns ``A, C, G, T``), e.g. from :func:`read_motifs`
        or :func:`jaspar_motifs`; or a single ``(length, 4)`` array (column ``"motif"``).
    threshold
        With ``relative=False``: a hit is a window scoring strictly more than ``threshold`` log2 units (the GDE
        paper's rule is ``> 5``). With ``relative=True``: a fraction in ``[0, 1]`` of each motif's score range;
        a hit scores at least ``min + threshold * (max - min)``, where ``min`` and ``max`` are the motif's lowest
        and highest possible scores, so ``1.0`` only counts the consensus and ``0.85`` is a common choice.
    relative
        Whether ``threshold`` is relative to each motif's score range (see above).
    both_strands
        ``False`` (the paper's rule): scan the given strand only. ``True``: also scan the reverse complement and
        add its hits; a window matching on both strands (e.g. a palindromic site) counts twice.
    background, pseudocount
        Passed to :func:`pwm_log_odds`.

    Returns
    -------
    Hit counts (int64): one row per sequence (index ``0 .. n-1``, or the Series index), one column per motif.

    Examples
    --------
    >>> motifs = {"AAC": np.array([[20, 0, 0, 0], [20, 0, 0, 0], [0, 20, 0, 0]])}  # max score 3 * 1.93
    >>> motif_counts(["GAACTAAC", "AANGTT", "A"], motifs)
       AAC
    0    2
    1    0
    2    0
    >>> motif_counts(["GAACTAAC", "GTTA"], motifs, both_strands=True)["AAC"].tolist()
    [2, 1]
    >>> motif_counts(["AACAAT"], motifs, threshold=0.6, relative=True)["AAC"].tolist()
    [2]
    """
    named = _as_motif_dict(motifs)
    pwms = [pwm_log_odds(m, background, pseudocount) for m in named.values()]
    cutoffs = _cutoffs(pwms, threshold, relative)
    seqs, index = _sequences(sequences)

    groups = _length_groups(np.array([len(p) for p in pwms]))
    weights = []
    for g in groups:
        group = [pwms[j] for j in g]
        if both_strands:
            group += [p[::-1, ::-1] for p in group]  # reverse complements, as extra columns
        weights.append(_weights(group))
    counts = np.zeros((len(seqs), len(pwms)), dtype=np.int64)
    for rows, _, _, scores in _scan(seqs, weights):
        for g, s in zip(groups, scores, strict=True):
            cut = (np.tile(cutoffs[g], 2) if both_strands else cutoffs[g])[:, None, None]
            hits = (s >= cut if relative else s > cut).sum(axis=2)  # (n_columns, c)
            if both_strands:
                hits = hits[: len(g)] + hits[len(g) :]
            np.add.at(counts, (rows[:, None], g[None, :]), hits.T)
    return pd.DataFrame(counts, index=index, columns=pd.Index(list(named)))


def motif_hits_per_set(counts: pd.DataFrame, sets) -> pd.DataFrame:
    """Mean number of hits per sequence of each motif within each set of sequences.

    Parameters
    ----------
    counts
        Output of :func:`motif_counts` (rows are sequences).
    sets
        Set label of every row: an array-like as long as ``counts``, or a :class:`pandas.Series` indexed like
        ``counts`` (e.g. ``adata.obs["set"]`` or an expression quantile).

    Returns
    -------
    One row per set (sorted labels), one column per motif.

    Examples
    --------
    >>> counts = pd.DataFrame({"REB1": [0, 2, 1, 1]})
    >>> motif_hits_per_set(counts, ["real", "real", "generated", "generated"])
               REB1
    set
    generated   1.0
    real        1.0
    """
    if isinstance(sets, pd.Series):
        if not sets.index.equals(counts.index):
            if not counts.index.isin(sets.index).all():
                raise ValueError("`sets` is a Series whose index does not cover the index of `counts`.")
            sets = sets.loc[counts.index]
        labels = sets.to_numpy()
    else:
        labels = np.asarray(sets)
    if labels.shape != (len(counts),):
        raise ValueError(f"`sets` must hold one label per row of `counts` ({len(counts)}), got shape {labels.shape}.")
    return counts.groupby(pd.Index(labels, name="set"), observed=True).mean()


# --------------------------------------------------------------------------------------------------------------------
# Motif files
# --------------------------------------------------------------------------------------------------------------------


def _stem(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return name.rsplit(".", 1)[0] if "." in name and not re.fullmatch(r"[A-Z]{2}\d+\.\d+", name) else name


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMERIC_ROW = re.compile(rf"^\s*{_NUMBER}(?:[\s,]+{_NUMBER})*\s*$")
#: a matrix row as written in JASPAR and PFM files: an optional letter (and ':' or '|'), numbers, optional brackets
_MATRIX_ROW = re.compile(r"^(?:([ACGTU])\s*[:|]?\s*)?\[?\s*(.*?)\s*\]?$", re.IGNORECASE)
#: Bio.motifs' MEME reader rounds probabilities x nsites to whole counts: reading with this many sites keeps 9 decimals
_MEME_SITES = 10**9
_MEME_HEADER = "MEME version 4\n\nALPHABET= ACGT\n\nBackground letter frequencies\nA 0.25 C 0.25 G 0.25 T 0.25\n\n"


def _detect(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if any(ln.lstrip().startswith("letter-probability matrix") for ln in lines) or any(
        ln.startswith("MEME version") for ln in lines
    ):
        return "meme"
    if any(re.match(r"^P[O0]\s", ln) for ln in lines):
        return "transfac"
    body = [ln for ln in lines if not ln.startswith((">", "#"))]
    if body and any(re.match(rf"^\s*[ACGTU]\s*[\[:|]|^\s*[ACGTU]\s+{_NUMBER}", ln, re.IGNORECASE) for ln in body):
        return "jaspar"
    if body and all(_NUMERIC_ROW.match(ln) for ln in body):
        return "pfm"
    raise ValueError(
        "Could not detect the motif file format (JASPAR, MEME, TRANSFAC or PFM); pass format=... explicitly."
    )


def _bio_parse(text: str, bio_format: str, **kwargs) -> list:
    """Motifs read by ``Bio.motifs.parse``; any error it raises becomes a ``ValueError``."""
    try:
        from Bio import motifs as bio_motifs
    except ImportError:
        raise ImportError(
            "read_motifs needs biopython: `pip install 'scgde[seq]'` (or `pip install biopython`)."
        ) from None
    try:
        return list(bio_motifs.parse(io.StringIO(text), bio_format, **kwargs))
    except Exception as err:  # noqa: BLE001 - Bio raises bare Exceptions too ("data has inconsistent lengths")
        raise ValueError(str(err)) from None


def _counts(motif) -> np.ndarray:
    """A ``Bio.motifs`` motif's counts as a ``(length, 4)`` array, columns A, C, G, T."""
    return np.array([motif.counts[b] for b in _LETTERS], dtype=np.float64).reshape(4, -1).T


def _blocks(text: str) -> list[tuple[str | None, list[tuple[int, str]]]]:
    """The numbered lines of each motif: a ``>`` header starts one; blank and ``#`` lines are skipped."""
    blocks: list[tuple[str | None, list[tuple[int, str]]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(">"):
            blocks.append((" ".join(stripped[1:].split()), []))
        else:
            if not blocks:
                blocks.append((None, []))
            blocks[-1][1].append((lineno, stripped))
    return blocks


def _matrix_rows(text: str, default: str, fmt: str) -> list[tuple[str, np.ndarray]]:
    """JASPAR and PFM files, read by ``Bio.motifs`` (``pfm-four-rows`` / ``pfm-four-columns``) motif by motif.

    Each row is first checked (numbers only; ``U`` read as ``T``; ``:``, ``|`` and brackets allowed), since Bio's
    readers read ``1 x`` as ``1`` and pair the rows of a motif that lacks one with the next motif's.
    """
    blocks = _blocks(text)
    out = []
    for k, (header, lines) in enumerate(blocks):
        label = header or (default if len(blocks) == 1 else f"{default}_{k}")
        rows = []
        for lineno, line in lines:
            letter, numbers = _MATRIX_ROW.match(line).groups()  # type: ignore[union-attr]
            if not _NUMERIC_ROW.match(numbers):
                raise ValueError(f"Expected numbers on line {lineno} ({fmt} format), got {line!r}.")
            rows.append(((letter or "").upper().replace("U", "T"), numbers.replace(",", " ").replace("+", "").split()))
        letters = [letter for letter, _ in rows if letter]
        widths = sorted({len(numbers) for _, numbers in rows})
        if not rows:
            raise ValueError(f"Motif {label!r} has no rows of numbers ({fmt} format).")
        if letters:
            missing = [b for b in _LETTERS if b not in letters]
            if missing or len(letters) != len(rows) or len(rows) != 4:
                raise ValueError(
                    f"Motif {label!r} lacks the row(s) {', '.join(missing) or 'A, C, G, T'}: it needs one row for "
                    f"each of A, C, G, T ({fmt} format), got rows {letters or len(rows)}."
                )
        if (letters or len(rows) == 4) and len(widths) > 1:
            raise ValueError(f"Motif {label!r} has rows of different lengths {widths} ({fmt} format).")
        if letters or len(rows) == 4:
            bio_format = "pfm-four-rows"  # rows A, C, G, T (in the letters' order when they are named)
        elif fmt == "PFM" and widths == [4]:
            bio_format = "pfm-four-columns"  # one row per position
        else:
            raise ValueError(
                f"Motif {label!r} must be 4 rows (A, C, G, T) of equal length or rows of 4 numbers "
                f"({fmt} format), got {len(rows)} rows of lengths {widths}."
            )
        canonical = "\n".join(f"{letter} {' '.join(numbers)}".strip() for letter, numbers in rows)
        motifs = _bio_parse(canonical, bio_format)
        if len(motifs) != 1:
            raise ValueError(f"Motif {label!r} could not be read ({fmt} format).")
        out.append((label, _counts(motifs[0])))
    return out


def _meme(text: str, default: str) -> list[tuple[str, np.ndarray]]:
    """MEME (minimal) files, read by ``Bio.motifs`` (``minimal``); the file's probabilities are returned.

    Bio's reader needs the ``MEME version``, ``ALPHABET=`` and background lines, takes only the first word of a
    motif's name and gives a ``MOTIF`` without matrix the next motif's: the text handed to it has a standard header,
    only the motifs with a matrix, and ``nsites`` large enough that its rounding to whole counts keeps 9 decimals.
    """
    labels: list[str] = []
    widths: list[int | None] = []
    body: list[str] = []
    name = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("ALPHABET"):
            alphabet = stripped.split("=", 1)[-1].strip() if "=" in stripped else stripped.split(None, 1)[-1]
            if alphabet.upper() not in ("ACGT", "ACGU") and '"DNA"' not in alphabet and '"RNA"' not in alphabet:
                raise ValueError(f"Only DNA motifs (ALPHABET= ACGT) can be read, got ALPHABET {alphabet!r}.")
        elif stripped.startswith("MOTIF"):
            name = " ".join(stripped.split()[1:]) or None
        elif stripped.startswith("letter-probability matrix"):
            label = name or f"{default}_{len(labels)}"
            info = dict(re.findall(r"(\w+)\s*=\s*(\S+)", stripped.split(":", 1)[-1]))
            if "alength" in info and int(float(info["alength"])) != 4:
                raise ValueError(f"Motif {label!r} has alength= {info['alength']}; only DNA (4 letters) is read.")
            width = int(float(info["w"])) if "w" in info else None
            labels.append(label)
            widths.append(width)
            w = f" w= {width}" if width else ""
            body += [f"MOTIF m{len(labels)}", f"letter-probability matrix: alength= 4{w} nsites= {_MEME_SITES}"]
            name = None
        elif body and not stripped.startswith(("MOTIF", "URL")):
            body.append(stripped)
    if not labels:
        return []
    motifs = _bio_parse(_MEME_HEADER + "\n".join(body) + "\n", "minimal")
    out = []
    for label, width, motif in zip(labels, widths, motifs, strict=True):
        if motif.length == 0 or (width is not None and motif.length != width):
            raise ValueError(
                f"Motif {label!r} must have {width or 'its'} rows of 4 probabilities after "
                f"'letter-probability matrix' (MEME format), got {motif.length} rows."
            )
        out.append((label, _counts(motif) / _MEME_SITES))
    return out


def _transfac(text: str, default: str) -> list[tuple[str, np.ndarray]]:
    """TRANSFAC files, read by ``Bio.motifs`` (``transfac``, not strict about spacing); named ``"<AC> <ID>"``."""
    if not text.rstrip().endswith("//"):
        text = text.rstrip() + "\n//\n"  # Bio keeps a motif only at its closing '//'
    try:
        motifs = _bio_parse(text, "transfac", strict=False)
    except ValueError as err:
        raise ValueError(
            f"{err} (TRANSFAC format: AC/ID lines, a 'P0 A C G T' line naming the columns A, C, G, T, numbered "
            "rows and '//' after each motif)"
        ) from None
    out = []
    for k, motif in enumerate(motifs):
        ident = motif.get("AC") or motif.get("ID") or motif.get("NA")
        extra = motif.get("ID") if motif.get("AC") else motif.get("NA") if motif.get("ID") else None
        label = ident or f"{default}_{k}"
        if extra and extra != ident:
            label = f"{label} {extra}"
        if motif.length == 0:
            raise ValueError(f"Motif {label!r} has a P0 line but no matrix rows (TRANSFAC format).")
        out.append((label, _counts(motif)))
    return out


_PARSERS = {
    "jaspar": lambda text, default: _matrix_rows(text, default, "JASPAR"),
    "pfm": lambda text, default: _matrix_rows(text, default, "PFM"),
    "meme": _meme,
    "transfac": _transfac,
}


def read_motifs(
    path: str | PathLike | Sequence[str | PathLike],
    format: MotifFormat = "auto",
) -> dict[str, np.ndarray]:
    r"""Read DNA motifs (count or probability matrices) from motif files.

    Parameters
    ----------
    path
        A motif file, or several (their motifs are merged). Gzip-compressed files (e.g. ``.gz``) are read too.
    format
        ``"jaspar"``: ``>MA0001.1 AGL3`` headers followed by rows ``A [ 0 3 79 ... ]`` for A, C, G, T (brackets
        optional). ``"meme"``: MEME minimal format, ``MOTIF id name`` then a ``letter-probability matrix:``
        block. ``"transfac"``: ``AC``/``ID`` lines, a ``P0 A C G T`` header, numbered rows and ``//`` between
        motifs. ``"pfm"``: plain numbers, either 4 rows (A, C, G, T) or one row of 4 numbers per position,
        optionally after a ``>id name`` header (otherwise the motif is named after the file).
        ``"auto"``: detected from the content of each file. The matrices are read by :mod:`Bio.motifs`
        (``pfm-four-rows``, ``pfm-four-columns``, ``minimal`` and ``transfac`` readers; needs biopython), after a
        check of every row that names the line of a malformed one.

    Returns
    -------
    ``{name: (length, 4) float64 array}``, columns ``A, C, G, T``, values as in the file (counts, or probabilities
    for MEME). Names are ``"<id> <name>"`` (e.g. ``"MA0001.1 AGL3"``) or the id alone when there is no name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "motifs.jaspar"
    >>> _ = path.write_text(">MA0363.3 REB1\nA [ 0 1 ]\nC [ 2 0 ]\nG [ 0 1 ]\nT [ 8 8 ]\n")
    >>> read_motifs(path)
    {'MA0363.3 REB1': array([[0., 2., 0., 8.],
           [1., 0., 1., 8.]])}
    """
    if format not in _FORMATS:
        raise ValueError(f"`format` must be one of {', '.join(map(repr, _FORMATS))}, got {format!r}.")
    paths = [path] if isinstance(path, str | PathLike) else list(path)
    if not paths:
        raise ValueError("`path` is an empty list; pass at least one motif file.")
    motifs: dict[str, np.ndarray] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"Motif file {str(p)!r} does not exist (or is not a file).")
        with _open_text(p) as handle:
            text = handle.read()
        if not text.strip():
            raise ValueError(f"Motif file {str(p)!r} is empty.")
        fmt = _detect(text) if format == "auto" else format
        try:
            parsed = _PARSERS[fmt](text, _stem(p))
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None
        if not parsed:
            raise ValueError(f"No motifs found in {str(p)!r} read as format={fmt!r}; check the file or `format`.")
        for name, matrix in parsed:
            if name in motifs:
                raise ValueError(f"Motif name {name!r} appears twice (in {str(p)!r}); names must be unique.")
            motifs[name] = _check_matrix(matrix, f"motif {name!r} of {p}")
    return motifs


# --------------------------------------------------------------------------------------------------------------------
# JASPAR database
# --------------------------------------------------------------------------------------------------------------------


def jaspar_motifs(
    tax_group: str | None = "fungi",
    collection: str = "CORE",
    release: str | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Count matrices of JASPAR motifs, from the SQLite database shipped with :mod:`pyjaspar` (works offline).

    Parameters
    ----------
    tax_group
        JASPAR taxonomic group (``"fungi"``, ``"vertebrates"``, ``"plants"``, ``"insects"``, ``"nematodes"``,
        ``"urochordates"``, ...); ``None`` for all.
    collection
        JASPAR collection, e.g. ``"CORE"`` or ``"UNVALIDATED"``.
    release
        Database release, e.g. ``"JASPAR2024"``; default the newest one that pyjaspar ships.
    ids
        Matrix ids, e.g. ``["MA0363.3", "MA0265"]`` (without a version: the latest). When given, exactly these
        motifs are returned, whatever ``tax_group`` and ``collection``.

    Returns
    -------
    ``{"<matrix id> <TF name>": (length, 4) float64 counts}``, columns ``A, C, G, T``, e.g. ``"MA0363.3 REB1"``.

    Examples
    --------
    >>> motifs = jaspar_motifs("fungi", release="JASPAR2024")  # doctest: +SKIP
    >>> motifs["MA0363.3 REB1"].shape  # doctest: +SKIP
    (9, 4)
    """
    try:
        import pyjaspar
        from pyjaspar import jaspardb
    except ImportError:
        raise ImportError(
            "jaspar_motifs needs pyjaspar: `pip install pyjaspar`; or pass JASPAR/MEME motif files to read_motifs."
        ) from None
    releases = list(getattr(pyjaspar, "jaspar_releases", {}))
    if release is None:
        release = getattr(pyjaspar, "JASPAR_LATEST_RELEASE", None) or (max(releases) if releases else "JASPAR2024")
    if releases and release not in releases:
        raise ValueError(f"`release` must be one of {', '.join(map(repr, releases))}, got {release!r}.")
    db = jaspardb(release=release)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyjaspar warns (and returns nothing) where we raise below
        if ids is not None:
            ids = [ids] if isinstance(ids, str) else list(ids)
            found = [db.fetch_motif_by_id(i) for i in ids]
            missing = [i for i, m in zip(ids, found, strict=True) if m is None]
            if missing:
                raise ValueError(f"No JASPAR motif with id {', '.join(map(repr, missing))} in {release}.")
        else:
            found = list(db.fetch_motifs(collection=collection, tax_group=tax_group))
    if not found:
        raise ValueError(
            f"No {release} motifs in collection={collection!r} with tax_group={tax_group!r}; {_jaspar_choices(db)}."
        )
    return {
        f"{m.matrix_id} {m.name}".strip(): np.array([m.counts[b] for b in _LETTERS], dtype=np.float64).T for m in found
    }


def _jaspar_choices(db) -> str:
    """The collections and taxonomic groups in the database, for error messages."""
    try:
        cur = db.conn.cursor()
        collections = sorted(r[0] for r in cur.execute("select distinct COLLECTION from MATRIX"))
        groups = sorted(r[0] for r in cur.execute("select distinct VAL from MATRIX_ANNOTATION where TAG='tax_group'"))
    except Exception:  # noqa: BLE001 - only a hint in an error message
        return "check the spelling"
    return f"collections are {collections}, tax groups {groups}"
