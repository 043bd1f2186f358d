"""Donor-like sets whose label changes only a rare sub-population (set-level supervision benchmark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def synthetic_donors(
    n_sets: int = 200,
    set_size: int = 200,
    n_genes: int = 20,
    n_types: int = 3,
    rare_fraction: float = 0.05,
    shift: float = 4.0,
    n_markers: int = 3,
    donor_sd: float = 0.5,
    seed: int = 0,
) -> AnnData:
    """Sets of cells ("donors") whose binary label moves only a rare sub-population.

    Every donor has ``n_types`` common cell types in random proportions (Dirichlet(5)), a rare
    type making up ``rare_fraction`` of its cells, and a donor effect (a random offset of every
    gene, sd ``donor_sd``). Cell types sit at random centres (sd 2 per gene); cells scatter around
    them with unit noise. In ``"case"`` donors the rare cells move by ``shift`` on ``n_markers``
    marker genes. A donor's pseudobulk mean then moves by only ``rare_fraction * shift`` (0.2 with
    the defaults) on those genes, less than the donor-to-donor spread (``donor_sd`` plus the
    composition's), while the rare cells themselves move by 4 noise sds.

    Parameters
    ----------
    n_sets
        Number of donors (sets); labels alternate so the classes are balanced.
    set_size
        Cells per donor.
    n_genes
        Number of genes (features).
    n_types
        Number of common cell types.
    rare_fraction
        Fraction of each donor's cells in the rare type (at least 2 cells).
    shift
        Shift of the case donors' rare cells on each marker gene.
    n_markers
        Genes on which the case states move.
    donor_sd
        Standard deviation of the per-donor offset of every gene.
    seed
        Random seed.

    Returns
    -------
    AnnData ``(n_sets * set_size, n_genes)`` with ``obs["donor"]``, ``obs["label"]``
    (``"case"``/``"control"``, constant per donor) and ``obs["cell_type"]`` (``"rare"`` for the
    rare type); ``uns["synthetic_donors"]`` records the parameters.

    Examples
    --------
    >>> adata = scgde.datasets.synthetic_donors(n_sets=10, set_size=50, seed=0)
    >>> int(adata.obs.groupby("donor", observed=True)["label"].nunique().max())  # one label per donor
    1
    """
    for name, value in (("n_sets", n_sets), ("set_size", set_size), ("n_genes", n_genes), ("n_types", n_types)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if n_sets < 2:
        raise ValueError(f"n_sets must be >= 2 so that both labels occur, got {n_sets}.")
    if not 0.0 < rare_fraction < 1.0:
        raise ValueError(f"rare_fraction must be in (0, 1), got {rare_fraction}.")
    if not 1 <= n_markers <= n_genes:
        raise ValueError(f"n_markers must be between 1 and n_genes={n_genes}, got {n_markers}.")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, (n_types + 1, n_genes))  # last row: the rare type
    is_case = np.arange(n_sets) % 2 == 1
    n_rare = max(2, int(round(rare_fraction * set_size)))
    if n_rare >= set_size:
        raise ValueError(f"set_size={set_size} is too small for a rare population; use at least {n_rare + 1} cells.")
    xs, types = [], []
    for case in is_case:
        share = rng.dirichlet(np.full(n_types, 5.0))
        common = rng.choice(n_types, size=set_size - n_rare, p=share)
        kind = np.concatenate([common, np.full(n_rare, n_types)])
        x = centres[kind] + rng.normal(0.0, donor_sd, n_genes) + rng.normal(0.0, 1.0, (set_size, n_genes))
        if case:
            x[set_size - n_rare :, :n_markers] += shift
        xs.append(x)
        types.append(kind)
    names = [f"donor_{i:03d}" for i in range(n_sets)]
    kinds = np.concatenate(types)
    type_names = np.array([f"type_{t}" for t in range(n_types)] + ["rare"])
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical(np.repeat(names, set_size), categories=names),
            "label": pd.Categorical(np.repeat(np.where(is_case, "case", "control"), set_size)),
            "cell_type": pd.Categorical(type_names[kinds]),
        },
        index=[f"cell_{i}" for i in range(n_sets * set_size)],
    )
    adata = AnnData(np.concatenate(xs).astype(np.float32), obs=obs)
    adata.var_names = [f"gene_{g}" for g in range(n_genes)]
    adata.uns["synthetic_donors"] = {
        "rare_fraction": rare_fraction,
        "shift": shift,
        "n_markers": n_markers,
        "donor_sd": donor_sd,
        "seed": seed,
    }
    return adata
