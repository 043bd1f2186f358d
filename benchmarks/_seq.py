"""k-mer features of DNA sequences, the baselines of the sequence benchmarks."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from scgde.seq import N_SPECIAL, get_alphabet


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
