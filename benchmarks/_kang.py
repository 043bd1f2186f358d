"""Kang 2018 held-out cell-type folds, shared by the perturbation benchmarks and the peers' scripts.

A fold holds out the stimulated cells of one cell type: the model sees every other (cell type, condition) group,
and must predict the held-out type's stimulated distribution from its control cells. Genes are the highly variable
genes of the training cells only, so nothing of the held-out cells leaks into the gene choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scanpy as sc
from anndata import AnnData

import scgde

CELL_TYPES = ["CD4T", "CD14+Mono", "B", "CD8T", "NK", "FCGR3A+Mono", "Dendritic"]
DESIGN = scgde.data.PerturbationDesign("condition", control="control", context_key="cell_type")


def load(path: str | None = None) -> AnnData:
    """The Kang 2018 cells (``X`` log-normalised, ``layers["counts"]`` their integer counts)."""
    adata = scgde.datasets.kang2018(path)
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    adata.obs["condition"] = adata.obs["condition"].astype(str)
    return adata


@dataclass
class Fold:
    """One held-out cell type: training cells, the held-out stimulated cells and the type's control cells.

    All three have the fold's genes, dense float32 ``X`` (log-normalised) and ``layers["counts"]``.
    """

    held_out: str
    train: AnnData
    true: AnnData
    control: AnnData


def _dense(adata: AnnData) -> AnnData:
    adata.X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    counts = adata.layers["counts"]
    adata.layers["counts"] = np.asarray(counts.toarray() if hasattr(counts, "toarray") else counts, dtype=np.float32)
    return adata


def fold(adata: AnnData, held_out: str, n_genes: int = 1000) -> Fold:
    """Split ``adata`` for one held-out cell type (``n_genes`` HVGs of the training cells, PCA on them)."""
    if held_out not in set(adata.obs["cell_type"]):
        raise ValueError(f"Unknown cell type {held_out!r}; choose from {sorted(set(adata.obs['cell_type']))}.")
    target = (adata.obs["cell_type"] == held_out).to_numpy() & (adata.obs["condition"] == "stimulated").to_numpy()
    train = adata[~target].copy()
    sc.pp.highly_variable_genes(train, n_top_genes=n_genes)
    genes = train.var_names[train.var["highly_variable"].to_numpy()]
    train = _dense(train[:, genes].copy())
    sc.pp.pca(train, n_comps=30)
    true = _dense(adata[target][:, genes].copy())
    is_control = (train.obs["cell_type"] == held_out).to_numpy() & (train.obs["condition"] == "control").to_numpy()
    return Fold(held_out, train, true, train[is_control].copy())
