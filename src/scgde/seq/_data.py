"""Sequences as set elements: a registry field, a token reader and the data splitter of ``SeqGDE``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from scgde.data import RegistryField, SetDataSplitter

from ._alphabet import Alphabet, get_alphabet

#: registry key of the sequences (``adata_manager.get_from_registry(SEQUENCE_KEY)``)
SEQUENCE_KEY = "sequence"


class SequenceObsField(RegistryField):
    """The sequences of ``adata.obs[sequence_key]``, registered with scvi-tools.

    Registering checks every sequence against the alphabet (unknown characters are an error that
    lists them, or are masked with ``unknown="mask"``) and against ``max_length``, and keeps the
    alphabet, the length and the unknown-character rule in the state registry. Nothing is written
    to the AnnData: sequences are tokenised when read.

    Parameters
    ----------
    sequence_key
        Column of ``adata.obs`` with the sequences (str).
    alphabet
        ``"dna"`` or ``"protein"``.
    max_length
        Longest allowed sequence (default: the longest registered one).
    unknown
        ``"error"`` or ``"mask"`` (map unknown characters to ``N`` / ``X``).
    """

    REGISTRY_KEY = SEQUENCE_KEY
    ATTR_NAME = "obs"

    def __init__(
        self,
        sequence_key: str,
        alphabet: str = "dna",
        max_length: int | None = None,
        unknown: Literal["error", "mask"] = "error",
    ):
        super().__init__()
        self._attr_key = sequence_key
        self.alphabet, self.max_length, self.unknown = get_alphabet(alphabet), max_length, unknown

    def validate_field(self, adata: AnnData) -> None:
        """Check that the column exists and holds strings."""
        if self.attr_key not in adata.obs.columns:
            raise KeyError(
                f"sequence_key={self.attr_key!r} is not a column of adata.obs; "
                f"available columns: {list(adata.obs.columns)}. Build one with scgde.seq.sequences_to_adata."
            )
        column = adata.obs[self.attr_key]
        bad = ~column.map(lambda s: isinstance(s, str)).to_numpy()
        if bad.any():
            raise TypeError(
                f"adata.obs[{self.attr_key!r}] must hold one str per row; row {int(np.argmax(bad))} holds "
                f"{column.iloc[int(np.argmax(bad))]!r}."
            )

    def register_field(self, adata: AnnData, max_length: int | None = None) -> dict:
        """Validate every sequence once; keep the alphabet and the padded length."""
        self.validate_field(adata)
        limit = self.max_length if max_length is None else max_length
        _, lengths = self.alphabet.encode(adata.obs[self.attr_key].to_numpy(), limit, self.unknown)
        length = limit if limit is not None else max(1, int(lengths.max(initial=0)))
        return {"alphabet": self.alphabet.name, "max_length": int(length), "unknown": self.unknown}

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """A query must fit the model's alphabet and length."""
        return self.register_field(adata_target, max_length=state_registry["max_length"])

    def get_summary_stats(self, state_registry: dict) -> dict:
        """The padded sequence length."""
        return {"max_length": state_registry["max_length"]}


class SequenceReader:
    """Rows of tokens ``(n, max_length)`` (uint8) of the sequences of an AnnData, tokenised on read.

    It reads like :class:`scgde.data.RowFetcher` (``rows``, ``slice``, ``shape``), so the set
    samplers, data modules and streamed encoding of the cell engine work on sequences unchanged.
    """

    columns = None  # always in the model's order: there are no genes to match

    def __init__(
        self,
        sequences: pd.Series | np.ndarray,
        alphabet: Alphabet | str,
        max_length: int,
        unknown: Literal["error", "mask"] = "error",
    ):
        self.sequences = np.asarray(sequences, dtype=object).reshape(-1)
        self.alphabet, self.max_length, self.unknown = get_alphabet(alphabet), int(max_length), unknown
        self.shape = (len(self.sequences), self.max_length)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Tokens of rows ``idx``."""
        return self.alphabet.encode(self.sequences[np.asarray(idx)], self.max_length, self.unknown)[0]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Tokens of rows ``start:stop``."""
        return self.alphabet.encode(self.sequences[start:stop], self.max_length, self.unknown)[0]


def registered_reader(adata_manager) -> SequenceReader:
    """A :class:`SequenceReader` of the AnnData registered with ``adata_manager``."""
    state = adata_manager.get_state_registry(SEQUENCE_KEY)
    sequences = adata_manager.get_from_registry(SEQUENCE_KEY)
    return SequenceReader(sequences, state["alphabet"], state["max_length"], state["unknown"])


class SeqSetDataSplitter(SetDataSplitter):
    """:class:`scgde.data.SetDataSplitter` over sequences: batches ``{"X": (B, m, max_length)}`` of tokens.

    ``kernel="auto"`` keeps whole sets (there is no expression space to draw neighbourhoods in);
    pass ``kernel={"obsm": ...}`` to draw them in coordinates of your own.
    """

    @staticmethod
    def make_fetcher(adata_manager) -> SequenceReader:
        return registered_reader(adata_manager)

    @staticmethod
    def kernel_coordinates(fetcher, seed: int) -> None:
        return None
