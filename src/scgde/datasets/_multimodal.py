"""A simulated multimodal (RNA + protein + accessibility) dataset whose sets each carry one parameter per modality."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def multimodal_sets(
    n_sets: int = 60,
    set_size: int = 150,
    n_genes: int = 100,
    n_proteins: int = 20,
    n_regions: int = 100,
    missing_protein: float = 0.0,
    seed: int = 0,
):
    """Sets of cells measured in RNA, protein and accessibility; each modality sees a different set parameter.

    Set ``s`` has three independent parameters in ``[0, 1]``: ``rna`` splits its cells into two
    states that differ by ``+-rna`` on the log rates of 20 genes (a spread, not a mean shift:
    the set's mean moves only at second order), ``prot`` shifts the log rates of its proteins along a
    fixed direction, ``atac`` opens or closes a fixed half of the regions. So each modality alone can
    recover only its own parameter, and all three together recover every one.

    Parameters
    ----------
    n_sets, set_size
        Number of sets and cells per set.
    n_genes, n_proteins, n_regions
        Features per modality (``n_genes >= 20``).
    missing_protein
        Fraction of cells without a protein measurement (absent from the ``"prot"`` modality).
    seed
        Random seed.

    Returns
    -------
    MuData with modalities ``"rna"`` (counts), ``"prot"`` (counts) and ``"atac"`` (0/1), the set
    in ``mdata.obs["clone"]`` (also in each modality's ``obs``) and the truth in
    ``mdata.uns["multimodal_sets"]["truth"]`` (one row per set, columns ``rna``, ``prot``, ``atac``).

    Examples
    --------
    >>> mdata = scgde.datasets.multimodal_sets(n_sets=10, set_size=50, seed=0)
    >>> sorted(mdata.mod)
    ['atac', 'prot', 'rna']
    """
    from mudata import MuData

    if n_genes < 20:
        raise ValueError(f"n_genes must be >= 20 (the state genes), got {n_genes}.")
    if not 0 <= missing_protein < 1:
        raise ValueError(f"missing_protein must be in [0, 1), got {missing_protein}.")
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame(
        rng.uniform(0, 1, size=(n_sets, 3)), columns=["rna", "prot", "atac"], index=[f"clone{s}" for s in range(n_sets)]
    )
    n = n_sets * set_size
    clone = np.repeat(truth.index.to_numpy(), set_size)
    theta = truth.to_numpy()[np.repeat(np.arange(n_sets), set_size)]
    names = [f"cell{i}" for i in range(n)]
    # RNA: two states at +-rna (x 1.5) on 20 genes
    gene_base = rng.normal(0.0, 1.0, size=n_genes)
    state_genes = np.zeros(n_genes)
    state_genes[:20] = rng.choice([-1.5, 1.5], size=20)
    sign = rng.choice([-1.0, 1.0], size=n)
    log_rate = gene_base + sign[:, None] * theta[:, [0]] * state_genes + 0.2 * rng.normal(size=(n, n_genes))
    library = rng.lognormal(np.log(2000), 0.3, size=n)
    prob = np.exp(log_rate - log_rate.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    rna = rng.poisson(rng.gamma(10.0, library[:, None] * prob / 10.0)).astype(np.float32)
    # protein: a mean shift of the log rates along a fixed direction
    direction = rng.normal(0.0, 1.0, size=n_proteins)
    log_prot = np.log(50.0) + 0.3 * rng.normal(size=n_proteins) + (theta[:, [1]] - 0.5) * 1.5 * direction
    prot = rng.poisson(np.exp(log_prot + 0.3 * rng.normal(size=(n, n_proteins)))).astype(np.float32)
    # accessibility: half of the regions open with the set's atac parameter, the other half close
    region_sign = np.where(np.arange(n_regions) < n_regions // 2, 1.0, -1.0)
    logits = rng.normal(-0.5, 0.5, size=n_regions) + 3.0 * (theta[:, [2]] - 0.5) * region_sign
    atac = (rng.uniform(size=(n, n_regions)) < 1 / (1 + np.exp(-logits))).astype(np.float32)

    obs = pd.DataFrame({"clone": pd.Categorical(clone, categories=truth.index)}, index=names)
    measured = rng.uniform(size=n) >= missing_protein
    mods = {
        "rna": AnnData(rna, obs=obs.copy(), var=pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])),
        "prot": AnnData(
            prot[measured], obs=obs[measured].copy(), var=pd.DataFrame(index=[f"protein{j}" for j in range(n_proteins)])
        ),
        "atac": AnnData(atac, obs=obs.copy(), var=pd.DataFrame(index=[f"region{j}" for j in range(n_regions)])),
    }
    mdata = MuData(mods)
    mdata.obs["clone"] = pd.Categorical(clone, categories=truth.index)
    mdata.uns["multimodal_sets"] = {"truth": truth, "seed": seed}
    return mdata
