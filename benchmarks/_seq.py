"""k-mer features of DNA sequences (the baselines of the sequence benchmarks) and their default SeqGDE."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from benchmarks import _common
from scgde.seq import N_SPECIAL, SeqGDE, get_alphabet

#: ``SeqGDE.train``'s budget in the --quick runs (the full runs take the library's default budget)
QUICK_BUDGET = {"max_epochs": 2, "batches_per_epoch": 3, "sets_per_batch": 4, "cells_per_set": 8}


def kmer_matrix(sequences, k: int) -> sparse.csr_matrix:
    """``(n, 4**k)`` overlapping k-mer counts over ACGT (k-mers with N or padding are skipped)."""
    tokens, lengths = get_alphabet("dna").encode(list(sequences))
    letters = tokens.astype(np.int64) - N_SPECIAL  # A C G T N -> 0..4; padding < 0
    valid = (letters >= 0) & (letters < 4)
    n, width = letters.shape
    if width < k:
        return sparse.csr_matrix((n, 4**k))
    windows = np.lib.stride_tricks.sliding_window_view(letters, k, axis=1)
    ok = np.lib.stride_tricks.sliding_window_view(valid, k, axis=1).all(-1)
    codes = (np.clip(windows, 0, 3) * 4 ** np.arange(k - 1, -1, -1)).sum(-1)
    rows = np.broadcast_to(np.arange(n)[:, None], codes.shape)
    return sparse.csr_matrix((np.ones(ok.sum()), (rows[ok], codes[ok])), shape=(n, 4**k))


def kmer_frequencies(sequences, k: int) -> np.ndarray:
    """Per-sequence k-mer frequency vectors (rows sum to 1; sequences shorter than k are all 0)."""
    counts = kmer_matrix(sequences, k)
    total = np.asarray(counts.sum(1)).ravel()
    return np.asarray(sparse.diags(1 / np.maximum(total, 1)) @ counts.toarray())


def set_spectra(sequences, set_codes: np.ndarray, k: int) -> np.ndarray:
    """Each set's k-mer frequency vector (counts pooled over its sequences), sets in code order."""
    counts = kmer_matrix(sequences, k)
    codes = np.asarray(set_codes)
    member = sparse.csr_matrix(
        (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(codes.max() + 1, len(codes))
    )
    pooled = (member @ counts).toarray()
    return pooled / np.maximum(pooled.sum(1, keepdims=True), 1)


def fit_default(
    adata, setup: dict, quick: bool, *, seed: int | None = None, quick_budget: dict = QUICK_BUDGET, **options
) -> _common.Fit:
    """A default ``SeqGDE`` trained by ``train(**options)`` (``quick``: on ``quick_budget``); ``Fit.untrained``: its
    untrained twin, built right after it (the same architecture, the next initial weights of the random stream)."""
    return _common.fit_model(
        SeqGDE,
        adata,
        setup=setup,
        options=options,
        quick_budget=quick_budget if quick else None,
        seed=seed,
        before_train=lambda _: SeqGDE(adata),
    )
