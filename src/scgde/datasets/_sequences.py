"""Synthetic sets of DNA sequences with known composition (the paper's DNA simplex, Fig. 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def dna_patterns(n_patterns: int = 3, pattern_length: int = 4, seed: int = 0) -> list[str]:
    """Distinct random DNA patterns (the "pure" sources of :func:`synthetic_dna_simplex`)."""
    rng = np.random.default_rng(seed)
    patterns: list[str] = []
    while len(patterns) < n_patterns:
        p = "".join(rng.choice(list("ACGT"), pattern_length))
        # distinct up to rotation, so that every sequence reveals its source
        if all(p not in q + q for q in patterns):
            patterns.append(p)
    return patterns


def synthetic_dna_simplex(
    n_sets: int = 300,
    set_size: int = 100,
    length: int = 10,
    alpha: float = 1.0,
    compositions: np.ndarray | None = None,
    patterns: list[str] | None = None,
    seed: int = 0,
) -> AnnData:
    """Sets of DNA sequences drawn from mixtures of three planted patterns, with known weights.

    Each source repeats its pattern cyclically from a random offset (``"ACGT"`` gives
    ``"GTACGTACGT"`` from offset 2); a set draws each sequence's source from its composition
    ``w ~ Dirichlet(alpha 1_3)`` (or from the rows of ``compositions``, e.g.
    :func:`scgde.datasets.simplex_grid` for the paper's 55-point evaluation grid). Latent
    distances should track the distances between compositions, and sequences generated from a
    set vector should come from the sources in the set's proportions.

    Parameters
    ----------
    n_sets, set_size
        Number of sets (ignored with ``compositions``) and sequences per set.
    length
        Sequence length.
    alpha
        Dirichlet concentration.
    compositions
        ``(n_sets, n_patterns)`` source weights (rows summing to 1) instead of random ones.
    patterns
        The sources (default: :func:`dna_patterns` of ``seed``, three patterns of 4 letters).
    seed
        Random seed.

    Returns
    -------
    AnnData with no variables; ``obs["sequence"]``, ``obs["set"]``, ``obs["source"]`` (index of the
    pattern) and ``uns["composition"]`` (DataFrame, sets x patterns), ``uns["patterns"]``.

    Examples
    --------
    >>> adata = synthetic_dna_simplex(n_sets=4, set_size=5, seed=0)
    >>> adata.n_obs, adata.uns["composition"].shape
    (20, (4, 3))
    """
    from scgde.seq import sequences_to_adata

    patterns = dna_patterns(seed=seed) if patterns is None else list(patterns)
    rng = np.random.default_rng(seed + 1)
    weights = rng.dirichlet(np.full(len(patterns), alpha), size=n_sets) if compositions is None else compositions
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[1] != len(patterns) or not np.allclose(weights.sum(1), 1):
        raise ValueError(f"compositions must be (n_sets, {len(patterns)}) with rows summing to 1.")
    names = [f"set_{i:0{len(str(len(weights) - 1))}d}" for i in range(len(weights))]
    sources = np.concatenate([rng.choice(len(patterns), size=set_size, p=w) for w in weights])
    offsets = rng.integers(0, 64, size=len(sources))
    repeated = [p * (length // len(p) + 2) for p in patterns]
    seqs = [
        repeated[s][o % len(patterns[s]) : o % len(patterns[s]) + length] for s, o in zip(sources, offsets, strict=True)
    ]
    obs = pd.DataFrame({"set": pd.Categorical(np.repeat(names, set_size), categories=names), "source": sources})
    adata = sequences_to_adata(seqs, obs=obs)
    adata.uns["composition"] = pd.DataFrame(weights, index=names, columns=patterns)
    adata.uns["patterns"] = list(patterns)
    return adata


def dna_simplex_sources(sequences, patterns: list[str]) -> np.ndarray:
    """Index of the pattern each sequence repeats cyclically (``-1``: none), to score generated sequences.

    Examples
    --------
    >>> dna_simplex_sources(["GTACGT", "ACGA", "AC"], ["ACGT", "CCAT"]).tolist()
    [0, -1, -1]
    """
    out = np.full(len(sequences), -1, dtype=np.int64)
    for i, seq in enumerate(sequences):
        for j, p in enumerate(patterns):
            if (
                len(seq) >= len(p)
                and all(seq[k] == seq[k % len(p)] for k in range(len(seq)))
                and seq[: len(p)] in p + p
            ):
                out[i] = j
                break
    return out
