"""Which cells form which set."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: separator of the labels of a multi-key set name, e.g. ``"CD4T|stimulated"``
SET_NAME_SEP = "|"
#: sets with fewer cells than this get a warning when registered (their embeddings are noisy)
SMALL_SET_CELLS = 5
#: set names quoted in a warning
_N_QUOTED = 3


def as_key_list(set_key: str | Sequence[str]) -> list[str]:
    """Normalise ``set_key`` (a column name or a list of them) to a list."""
    if isinstance(set_key, str):
        return [set_key]
    keys = [str(k) for k in np.atleast_1d(np.asarray(set_key, dtype=object))]
    if not keys:
        raise ValueError("set_key must name at least one column of adata.obs.")
    return keys


def set_labels(obs: pd.DataFrame, set_key: str | Sequence[str]) -> tuple[np.ndarray, pd.Index]:
    """Set code of every cell from one or several ``obs`` columns.

    With several keys, each observed combination of values is one set, named by joining the
    values with ``"|"``. Cells with a missing value in any key belong to no set (code ``-1``).

    Returns
    -------
    ``codes`` ``(n_obs,)`` int64 and the set ``names`` (position = code), ordered by the
    columns' category order.
    """
    keys = as_key_list(set_key)
    missing = [k for k in keys if k not in obs.columns]
    if missing:
        raise KeyError(f"set_key={missing[0]!r} is not a column of adata.obs; available columns: {list(obs.columns)}.")
    if obs.shape[0] == 0:
        raise ValueError("The AnnData is empty (0 cells), so there are no sets. Pass an AnnData with cells.")
    # a lazy AnnData's obs (anndata.experimental.read_lazy) holds xarray columns: read them as arrays
    cats = [pd.Categorical(obs[k] if isinstance(obs[k], pd.Series) else np.asarray(obs[k])) for k in keys]
    per_key = np.stack([c.codes.astype(np.int64) for c in cats], axis=1)
    in_set = (per_key >= 0).all(axis=1)
    if not in_set.any():
        raise ValueError(f"set_key={set_key!r}: every cell has a missing value, so there are no sets.")
    combos, inverse = np.unique(per_key[in_set], axis=0, return_inverse=True)
    codes = np.full(len(per_key), -1, dtype=np.int64)
    codes[in_set] = inverse.ravel()
    labels = [np.asarray(c.categories.astype(str))[combos[:, i]] for i, c in enumerate(cats)]
    names = labels[0] if len(keys) == 1 else [SET_NAME_SEP.join(parts) for parts in zip(*labels, strict=True)]
    return codes, pd.Index(names, name=SET_NAME_SEP.join(keys))


def warn_set_coverage(
    codes: np.ndarray, names: pd.Index, set_key, small: int = SMALL_SET_CELLS, noun: str = "cell", stacklevel: int = 3
) -> None:
    """Warn, with counts, about elements in no set (a missing set label) and sets of fewer than ``small`` elements.

    Parameters
    ----------
    codes, names
        As returned by :func:`set_labels`.
    set_key
        The column(s) the codes come from (named in the warnings).
    small
        Sets with fewer elements than this are counted as small.
    noun
        What the elements are called ("cell", "sequence", "image").
    stacklevel
        Passed to :func:`warnings.warn` (3: the caller of the function that calls this one).
    """
    codes = np.asarray(codes)
    n_missing = int((codes < 0).sum())
    if n_missing:
        warnings.warn(
            f"{n_missing} of {len(codes)} {noun}s have a missing value (NaN) in set_key={set_key!r}: they belong to "
            "no set and are left out of training and embeddings. Fill the missing labels in adata.obs to keep them.",
            UserWarning,
            stacklevel=stacklevel,
        )
    sizes = np.bincount(codes[codes >= 0], minlength=len(names))
    few = np.flatnonzero(sizes < small)
    if len(few):
        quoted = ", ".join(f"{names[i]!r}: {sizes[i]} {noun}{'' if sizes[i] == 1 else 's'}" for i in few[:_N_QUOTED])
        more = ", ..." if len(few) > _N_QUOTED else ""
        warnings.warn(
            f"{len(few)} of {len(names)} sets have fewer than {small} {noun}s ({quoted}{more}): their embeddings "
            f"rest on a few {noun}s and are noisy, and training draws the same few {noun}s over and over. Merge or "
            f"drop them, or leave them out of training with train(min_set_size={small}).",
            UserWarning,
            stacklevel=stacklevel,
        )


@dataclass
class SetIndex:
    """Cells grouped by set: ``members(i)`` lists the rows of set ``i``.

    Build it with :meth:`from_obs` (or from precomputed codes). Rows are kept in their original
    order within each set.
    """

    codes: np.ndarray
    names: pd.Index

    def __post_init__(self):
        self.codes = np.asarray(self.codes, dtype=np.int64)
        in_set = np.flatnonzero(self.codes >= 0)
        self.order = in_set[np.argsort(self.codes[in_set], kind="stable")]
        counts = np.bincount(self.codes[in_set], minlength=len(self.names))
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    @classmethod
    def from_obs(cls, obs: pd.DataFrame, set_key: str | Sequence[str]) -> SetIndex:
        """Group the rows of ``obs`` by ``set_key`` (see :func:`set_labels`)."""
        return cls(*set_labels(obs, set_key))

    @property
    def n_sets(self) -> int:
        """Number of sets."""
        return len(self.names)

    @property
    def sizes(self) -> np.ndarray:
        """Number of cells in each set."""
        return np.diff(self.offsets)

    def members(self, code: int) -> np.ndarray:
        """Row indices of the cells of set ``code``."""
        return self.order[self.offsets[code] : self.offsets[code + 1]]

    def codes_of(self, names: Sequence[str]) -> np.ndarray:
        """Codes of the sets called ``names`` (error listing a few valid names if one is unknown)."""
        pos = self.names.get_indexer(list(names))
        if (pos < 0).any():
            bad = [n for n, p in zip(names, pos, strict=True) if p < 0][:5]
            raise KeyError(f"Unknown set name(s) {bad}; valid names include {list(self.names[:5])}.")
        return pos


def n_training_sets(n_sets: int, train_size: float) -> int:
    """How many of ``n_sets`` sets :func:`split_sets` trains on (at least one is left for validation)."""
    n_train = max(1, int(round(train_size * n_sets)))
    return min(n_train, n_sets - 1) if train_size < 1.0 else n_train


def split_sets(codes: np.ndarray, train_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split set codes (never cells) into training and validation sets.

    With ``train_size < 1`` at least one set is kept for validation.
    """
    if not 0.0 < train_size <= 1.0:
        raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
    codes = rng.permutation(np.asarray(codes))
    n_train = n_training_sets(len(codes), train_size)
    return np.sort(codes[:n_train]), np.sort(codes[n_train:])
