"""Spatial data: a simulated tissue with planted niches, and two real datasets of novosparc (downloaded on use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ._downloads import _registered_file

#: the planted niches of :func:`niche_tissue`: cell-type proportions (types A, B, C, D) per domain
NICHE_MIXTURES = {
    "AB": (0.5, 0.5, 0.0, 0.0),
    "CD": (0.0, 0.0, 0.5, 0.5),
    "ABCD": (0.25, 0.25, 0.25, 0.25),
}


def niche_tissue(
    n_cells: int = 3000,
    n_genes: int = 20,
    separation: float = 1.5,
    noise: float = 0.5,
    seed: int = 0,
) -> AnnData:
    """A 2-D tissue whose three niche domains differ in cell-type mixture, not in mean expression.

    Four cell types have means ``m + d1``, ``m - d1``, ``m + d2``, ``m - d2`` (``d1``, ``d2``
    orthogonal, norm ``separation``); every cell adds isotropic noise of sd ``noise``. The tissue
    is the unit square cut into three vertical stripes (domains): ``"AB"`` holds types A and B
    half and half, ``"CD"`` types C and D, ``"ABCD"`` all four equally (exact proportions, cells
    placed at random, noise centred within each domain and type so that the realised domain means
    are equal too). Every domain therefore has
    the same mean expression ``m``: the mean of a neighbourhood carries no domain signal, and a
    cell's own type is shared by two domains, while a niche's *distribution* (two modes along
    ``d1``, along ``d2``, or four) identifies its domain.

    Parameters
    ----------
    n_cells
        Number of cells, at uniform random positions.
    n_genes
        Number of genes (at least 2).
    separation
        Distance of each type mean from ``m``.
    noise
        Within-type standard deviation per gene.
    seed
        Random seed.

    Returns
    -------
    AnnData with ``X`` (float32), ``obsm["spatial"]`` (positions), ``obs["domain"]`` (the planted
    niche, categorical), ``obs["cell_type"]`` and ``uns["niche_tissue"]`` (type means, mixtures).

    Examples
    --------
    >>> adata = scgde.datasets.niche_tissue(n_cells=500, seed=0)
    >>> adata.obs["domain"].value_counts().index.tolist() # doctest: +SKIP
    """
    if n_genes < 2:
        raise ValueError(f"n_genes must be >= 2 (two orthogonal type contrasts), got {n_genes}.")
    if n_cells < 3:
        raise ValueError(f"n_cells must be >= 3, got {n_cells}.")
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1, size=(n_cells, 2))
    domains = np.array(list(NICHE_MIXTURES))
    domain = domains[np.minimum((xy[:, 0] * 3).astype(int), 2)]
    basis, _ = np.linalg.qr(rng.normal(size=(n_genes, 2)))
    m = rng.uniform(1.0, 2.0, size=n_genes)
    type_means = np.stack([m + separation * basis[:, 0], m - separation * basis[:, 0]])
    type_means = np.vstack([type_means, m + separation * basis[:, 1], m - separation * basis[:, 1]])
    types = np.array(["A", "B", "C", "D"])
    cell_type = np.empty(n_cells, dtype=object)
    for name, mix in NICHE_MIXTURES.items():
        here = np.flatnonzero(domain == name)
        # exact proportions (not random draws), so that every domain's mean is m also in a finite tissue
        present = types[np.asarray(mix) > 0]
        cell_type[here] = rng.permutation(np.resize(present, len(here)))
    codes = pd.Categorical(cell_type, categories=types).codes
    eps = rng.normal(size=(n_cells, n_genes))
    for group in pd.Series(np.arange(n_cells)).groupby([domain, cell_type]).indices.values():
        eps[group] -= eps[group].mean(0)  # no realised offset of a domain's mean either
    x = type_means[codes] + noise * eps
    obs = pd.DataFrame(
        {
            "domain": pd.Categorical(domain, categories=domains),
            "cell_type": pd.Categorical(cell_type, categories=types),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = AnnData(x.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    adata.obsm["spatial"] = xy
    adata.uns["niche_tissue"] = {
        "type_means": type_means,
        "mixtures": pd.DataFrame(NICHE_MIXTURES, index=types).T,
        "seed": seed,
    }
    return adata


def _files(dataset: str, path: str | Path | None, names: dict[str, str], cache: str | Path | None) -> list[Path]:
    """The files ``names`` (file key -> name) in the user's folder ``path``, or the registered ones of ``dataset``."""
    if path is None:
        return [_registered_file(dataset, key, argument="path", cache=cache) for key in names]
    if not isinstance(path, str | Path):
        raise ValueError(f"`path` must be a folder path (str or Path) or None; got {path!r}.")
    files = [Path(path).expanduser() / name for name in names.values()]
    for file in files:
        if not file.exists():
            raise FileNotFoundError(
                f"{file} not found; pass path= to the folder with {' and '.join(names.values())}, or path=None to "
                "download them."
            )
    return files


def bdtnp_embryo(path: str | Path | None = None, *, cache: str | Path | None = None) -> AnnData:
    """The BDTNP *Drosophila* stage-6 embryo (novosparc's copy): 3,039 cells x 84 genes with 3-D positions.

    Parameters
    ----------
    path
        Folder with novosparc's ``dge.txt`` and ``geometry.txt``. ``None`` (default): the two files of novosparc's
        ``novosparc/datasets/bdtnp`` (commit ``a3c9f3d``, 2.4 MB), downloaded once into the cache and verified
        against their registered SHA256.
    cache
        Cache folder of the download (the files go to ``cache / "bdtnp_embryo"``). Default
        ``pooch.os_cache("scgde")`` or ``$SCGDE_DATA_DIR``.

    Returns
    -------
    AnnData with the in-situ expression in ``X`` (float32) and ``obsm["spatial"]`` (x, y, z; row
    ``i`` of the geometry belongs to cell ``i``, as novosparc pairs them).
    """
    dge, geometry = _files("bdtnp_embryo", path, {"dge": "dge.txt", "geometry": "geometry.txt"}, cache)
    x = pd.read_csv(dge, sep="\t")
    xyz = pd.read_csv(geometry, sep=" ").to_numpy(dtype=np.float64)[: len(x)]
    adata = AnnData(
        x.to_numpy(dtype=np.float32),
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(len(x))]),
        var=pd.DataFrame(index=x.columns.astype(str)),
    )
    adata.obsm["spatial"] = xyz
    return adata


def intestine_zonation(path: str | Path | None = None, *, cache: str | Path | None = None) -> AnnData:
    """Mouse small-intestine epithelium (Moor et al. 2018, novosparc's copy): 1,383 cells with crypt-villus zones.

    Parameters
    ----------
    path
        Folder with novosparc's ``dge.tsv.gz`` and ``zones.tsv``. ``None`` (default): the two files of
        novosparc's ``novosparc/datasets/intestine`` (commit ``a3c9f3d``, 3.5 MB), downloaded once into the cache
        and verified against their registered SHA256.
    cache
        Cache folder of the download (the files go to ``cache / "intestine_zonation"``). Default
        ``pooch.os_cache("scgde")`` or ``$SCGDE_DATA_DIR``.

    Returns
    -------
    AnnData with UMI counts in ``X`` (float32, CSR; 27,998 genes), ``obs["zone"]`` (0-6 along the
    crypt-villus axis, ordered categorical) and ``obsm["X_tsne"]`` (the authors' t-SNE). The
    cells have no measured positions. ``zones.tsv`` is paired with the expression columns by
    position, as novosparc reads it (its cell ids do not match the expression's barcodes).
    """
    import scipy.sparse as sp

    dge, zones = _files("intestine_zonation", path, {"dge": "dge.tsv.gz", "zones": "zones.tsv"}, cache)
    counts = pd.read_csv(dge, sep="\t", index_col=0)
    meta = pd.read_csv(zones, sep="\t", index_col=0)
    if len(meta) != counts.shape[1]:
        raise ValueError(f"{zones} has {len(meta)} rows but {dge} has {counts.shape[1]} cells.")
    # paired by position, as novosparc reads them: the cell ids of zones.tsv do not name the dge columns
    # (matched by name, no zone marker varies with the zone; by position Apoa4 and Ada rise towards the villus tip)
    adata = AnnData(
        sp.csr_matrix(counts.to_numpy(dtype=np.float32).T),
        obs=pd.DataFrame(
            {"zone": pd.Categorical(meta["zone"].to_numpy(), categories=range(7), ordered=True)}, index=counts.columns
        ),
        var=pd.DataFrame(index=counts.index.astype(str)),
    )
    adata.obsm["X_tsne"] = meta[["tSNE_coordinate_1", "tSNE_coordinate_2"]].to_numpy(dtype=np.float64)
    return adata
