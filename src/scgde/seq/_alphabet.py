"""Alphabets: vectorised conversion between sequences (str) and integer token arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

#: special token ids; the letters of an alphabet start at :data:`N_SPECIAL`
PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3

_INVALID = 255  # lookup-table value of characters that are not letters of the alphabet


@dataclass(frozen=True)
class Alphabet:
    """A tokeniser: letter ``i`` of :attr:`letters` has token id ``N_SPECIAL + i``.

    Ids ``0, 1, 2`` are reserved for :data:`PAD`, :data:`BOS` and :data:`EOS`; they never collide with a letter.

    Parameters
    ----------
    name
        Name of the alphabet (``"dna"`` or ``"protein"`` for the built-in ones).
    letters
        The upper-case ASCII letters, in token order.
    unknown
        The mask letter (one of :attr:`letters`) that unknown characters become with ``unknown="mask"``.

    Examples
    --------
    >>> dna = get_alphabet("dna")
    >>> tokens, lengths = dna.encode(["ACGT", "acg", ""])
    >>> tokens
    array([[3, 4, 5, 6],
           [3, 4, 5, 0],
           [0, 0, 0, 0]], dtype=uint8)
    >>> lengths
    array([4, 3, 0])
    >>> dna.decode(tokens)
    ['ACGT', 'ACG', '']
    """

    name: str
    letters: str
    unknown: str

    def __post_init__(self):
        if (
            not self.letters.isascii()
            or self.letters != self.letters.upper()
            or len(set(self.letters)) != len(self.letters)
        ):
            raise ValueError(f"`letters` must be distinct upper-case ASCII characters, got {self.letters!r}.")
        if len(self.unknown) != 1 or self.unknown not in self.letters:
            raise ValueError(f"`unknown` must be one of the letters {self.letters!r}, got {self.unknown!r}.")
        if N_SPECIAL + len(self.letters) > _INVALID:
            raise ValueError(f"At most {_INVALID - N_SPECIAL} letters fit in uint8 tokens, got {len(self.letters)}.")

    @property
    def n_tokens(self) -> int:
        """Number of token ids: the special tokens plus one per letter."""
        return N_SPECIAL + len(self.letters)

    @property
    def _aliases(self) -> str:
        """Characters read as ``T``: ``U`` and ``u`` for DNA."""
        return "Uu" if self.name == "dna" and "T" in self.letters else ""

    @cached_property
    def _lookup(self) -> np.ndarray:
        """Read-only table byte -> token id (``_INVALID`` for characters outside the alphabet)."""
        table = np.full(256, _INVALID, dtype=np.uint8)
        for i, letter in enumerate(self.letters):
            table[ord(letter)] = table[ord(letter.lower())] = N_SPECIAL + i
        for alias in self._aliases:  # RNA input for DNA
            table[ord(alias)] = table[ord("T")]
        table.setflags(write=False)
        return table

    def encode(
        self,
        sequences: Sequence[str] | str,
        max_length: int | None = None,
        unknown: Literal["error", "mask"] = "error",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise sequences into a right-padded array.

        Parameters
        ----------
        sequences
            Sequences (a list, tuple, numpy array, :class:`pandas.Series`, ...); a single ``str`` is one sequence.
            Case-insensitive; for DNA, ``"U"`` is read as ``"T"``.
        max_length
            Number of columns of the result; by default the length of the longest sequence.
        unknown
            ``"error"``: characters outside the alphabet (including any non-ASCII character) raise a
            :class:`ValueError`; ``"mask"``: they become the mask letter :attr:`unknown`.

        Returns
        -------
        tokens
            ``(n, L)`` uint8 array; letters are ``N_SPECIAL + i``, padding is :data:`PAD`; no BOS/EOS is added.
        lengths
            ``(n,)`` int64 array of sequence lengths.

        Examples
        --------
        >>> dna = get_alphabet("dna")
        >>> tokens, lengths = dna.encode(["ACGU", "AC?"], max_length=5, unknown="mask")
        >>> dna.decode(tokens)
        ['ACGT', 'ACN']
        >>> tokens.shape, lengths.tolist()
        ((2, 5), [4, 3])
        """
        if unknown not in ("error", "mask"):
            raise ValueError(f"`unknown` must be 'error' or 'mask', got {unknown!r}.")
        if isinstance(sequences, str):
            sequences = [sequences]
        seqs = sequences.tolist() if hasattr(sequences, "tolist") else list(sequences)
        n = len(seqs)
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
        longest = int(lengths.max()) if n else 0
        if max_length is not None:
            if max_length < 0:
                raise ValueError(f"`max_length` must be non-negative, got {max_length}.")
            if longest > max_length:
                i = int(lengths.argmax())
                raise ValueError(
                    f"Sequence {i} has length {longest}, longer than max_length={max_length}; "
                    f"pass max_length >= {longest} (or trim the sequences)."
                )
        width = longest if max_length is None else max_length

        joined = "".join(seqs)
        # one byte per character: every non-ASCII character becomes "?", which is not a letter
        ids = self._lookup[np.frombuffer(joined.encode("ascii", errors="replace"), dtype=np.uint8)]
        bad = ids == _INVALID
        if bad.any():
            if unknown == "error":
                first = int(np.searchsorted(np.cumsum(lengths), int(bad.argmax()), side="right"))
                chars = sorted(set(joined) - set(self.letters + self.letters.lower() + self._aliases))
                raise ValueError(
                    f"Unknown characters {', '.join(map(repr, chars))} for the {self.name!r} alphabet "
                    f"(letters {self.letters!r}), first in sequence {first}; "
                    f"pass unknown='mask' to map them to {self.unknown!r}."
                )
            ids[bad] = self._lookup[ord(self.unknown)]

        tokens = np.zeros((n, width), dtype=np.uint8)
        if n and (lengths == width).all():
            tokens[:] = ids.reshape(n, width)
        else:
            tokens[np.arange(width) < lengths[:, None]] = ids  # row-major order = order of concatenation
        return tokens, lengths

    def decode(self, tokens: np.ndarray) -> list[str]:
        """Convert token ids back to sequences.

        Each row stops at its first :data:`EOS` or :data:`PAD`; :data:`BOS` tokens are skipped.

        Parameters
        ----------
        tokens
            ``(n, L)`` or ``(L,)`` integer array (a CPU :class:`torch.Tensor` works too).

        Returns
        -------
        One string per row (a one-element list for a ``(L,)`` input).

        Examples
        --------
        >>> from scgde.seq._alphabet import BOS, EOS, PAD
        >>> get_alphabet("dna").decode([BOS, 3, 4, EOS, 5, PAD])
        ['AC']
        """
        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            tokens = tokens[None, :]
        if tokens.ndim != 2:
            raise ValueError(f"`tokens` must be a 1-D or 2-D array, got shape {tokens.shape}.")
        if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"`tokens` must hold integer ids, got dtype {tokens.dtype}.")
        if tokens.dtype != np.uint8 and tokens.size and 0 <= tokens.min() and tokens.max() <= 255:
            tokens = tokens.astype(np.uint8)  # the usual case (e.g. int64 from torch): 8x less memory traffic below
        n, width = tokens.shape
        stop = (tokens == PAD) | (tokens == EOS)
        ends = np.where(stop.any(axis=1), stop.argmax(axis=1), width) if width else np.zeros(n, dtype=np.int64)
        keep = (np.arange(width) < ends[:, None]) & (tokens != BOS)
        ids = tokens[keep]
        if ids.size and (ids.min() < N_SPECIAL or ids.max() >= self.n_tokens):
            raise ValueError(
                f"Token ids must be special ids (< {N_SPECIAL}) or letter ids in [{N_SPECIAL}, {self.n_tokens}) "
                f"for the {self.name!r} alphabet; found {int(ids.min())}..{int(ids.max())}."
            )
        table = np.frombuffer(b"\0" * N_SPECIAL + self.letters.encode("ascii"), dtype=np.uint8)
        text = table[ids.astype(np.uint8, copy=False)].tobytes().decode("ascii")
        bounds = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).tolist()
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


DNA = Alphabet("dna", "ACGTN", "N")
PROTEIN = Alphabet("protein", "ACDEFGHIKLMNPQRSTVWYX", "X")
_ALPHABETS = {a.name: a for a in (DNA, PROTEIN)}


def get_alphabet(name: Literal["dna", "protein"] | Alphabet) -> Alphabet:
    """Return a built-in alphabet by name (an :class:`Alphabet` is returned as is).

    Parameters
    ----------
    name
        ``"dna"`` (``ACGTN``) or ``"protein"`` (the 20 amino acids and ``X``), or an :class:`Alphabet`.

    Returns
    -------
    The alphabet.

    Examples
    --------
    >>> get_alphabet("protein").n_tokens
    24
    """
    if isinstance(name, Alphabet):
        return name
    if name not in _ALPHABETS:
        raise ValueError(f"Unknown alphabet {name!r}; choose one of {sorted(_ALPHABETS)} or pass an Alphabet.")
    return _ALPHABETS[name]
