"""Sets of real PBMCs with known cell-type composition (offline: ships with scanpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def pbmc_composition_sets(
    n_sets: int = 200,
    cells_per_set: int = 150,
    k: int = 3,
    alpha: float = 1.0,
    label_key: str = "bulk_labels",
    seed: int = 0,
) -> AnnData:
    """Sets of real cells with Dirichlet cell-type proportions, so each set's composition is known.

    Uses the 700 processed PBMCs of :func:`scanpy.datasets.pbmc68k_reduced` (no download). Each set
    picks ``k`` cell types, draws proportions ``w ~ Dirichlet(alpha 1_k)`` and samples
    ``cells_per_set`` cells accordingly (with replacement within a type).

    Parameters
    ----------
    n_sets, cells_per_set
        Number of sets and cells per set.
    k, alpha
        Cell types per set and Dirichlet concentration.
    label_key
        Cell-type column of ``pbmc68k_reduced``.
    seed
        Random seed.

    Returns
    -------
    AnnData of ``n_sets * cells_per_set`` cells (the scaled expression of pbmc68k_reduced) with
    ``obs["set"]``, the cell type in ``obs["cell_type"]`` and the true compositions in
    ``uns["composition"]`` (DataFrame, sets x cell types).
    """
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    rng = np.random.default_rng(seed)
    types = pbmc.obs[label_key].astype("category")
    categories = list(types.cat.categories)
    members = [np.flatnonzero(types.cat.codes.to_numpy() == j) for j in range(len(categories))]
    width = len(str(n_sets - 1))
    names = [f"set_{i:0{width}d}" for i in range(n_sets)]
    composition = np.zeros((n_sets, len(categories)))
    rows = []
    for i in range(n_sets):
        chosen = rng.choice(len(categories), size=k, replace=False)
        w = rng.dirichlet(np.full(k, alpha))
        composition[i, chosen] = w
        counts = rng.multinomial(cells_per_set, w)
        rows.append(np.concatenate([rng.choice(members[c], size=n) for c, n in zip(chosen, counts, strict=True)]))
    rows = np.concatenate(rows)
    obs = pd.DataFrame(
        {
            "set": pd.Categorical(np.repeat(names, cells_per_set), categories=names),
            "cell_type": pd.Categorical(types.to_numpy()[rows], categories=categories),
            "source_cell": pbmc.obs_names[rows].to_numpy(),
        }
    )
    obs.index = [f"cell_{i}" for i in range(len(obs))]
    adata = AnnData(np.asarray(pbmc.X[rows], dtype=np.float32), obs=obs, var=pbmc.var[[]].copy())
    adata.uns["composition"] = pd.DataFrame(composition, index=names, columns=categories)
    return adata
