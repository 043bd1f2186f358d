"""Spatial niches: each cell's weighted neighbourhood on squidpy's spatial graph, and its embedding."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from scgde._docs import inject_docs

NicheKernel = Literal["gaussian", "exponential"]


def niche_sets(
    adata: AnnData,
    spatial_key: str = "spatial",
    n_neighbors: int = 30,
    radius: float | None = None,
    kernel: NicheKernel = "gaussian",
    bandwidth: float | None = None,
    key_added: str = "gde_niches",
    graph_key: str = "spatial",
    include_self: bool = False,
) -> None:
    """Build every cell's niche: its spatial neighbours, weighted by a distance kernel.

    The neighbourhood graph is squidpy's (:func:`squidpy.gr.spatial_neighbors_knn`, or
    :func:`squidpy.gr.spatial_neighbors_radius` with ``radius``); row ``i`` of the result is the
    weighted set around cell ``i``: each neighbour ``j`` of the graph at distance ``d_ij`` with
    weight ``exp(-d^2 / (2 bandwidth^2))`` (``"gaussian"``) or ``exp(-d / bandwidth)``
    (``"exponential"``, the paper's spatial prior); with ``include_self``, cell ``i`` too (distance
    0, weight 1). Weights are not normalised: a niche is the weighted empirical distribution of its
    cells, which depends only on their ratios. Register it with
    ``GDE.setup_anndata(adata, niche_key=key_added)``.

    Parameters
    ----------
    adata
        AnnData with cell coordinates in ``adata.obsm[spatial_key]`` (2-D or 3-D).
    spatial_key
        Key of the coordinates in ``adata.obsm``.
    n_neighbors
        Neighbours per cell (a k-nearest-neighbour graph); ignored when ``radius`` is given.
    radius
        Neighbours are all cells within this distance instead (same units as the coordinates).
    kernel
        ``"gaussian"`` (default) or ``"exponential"`` (heavier tails).
    bandwidth
        Kernel width; default: the median over cells of the distance to the farthest neighbour.
    key_added
        Key of the niche weights in ``adata.obsp``.
    graph_key
        ``key_added`` of squidpy's graph: it writes ``obsp[f"{graph_key}_connectivities"]``,
        ``obsp[f"{graph_key}_distances"]`` and ``uns[f"{graph_key}_neighbors"]`` (the default is the
        key squidpy's own tools such as :func:`squidpy.gr.nhood_enrichment` read).
    include_self
        Also put each cell in its own niche (weight 1, as at distance 0).

    Notes
    -----
    Writes ``adata.obsp[key_added]`` (CSR, ``n_obs x n_obs``, the kernel weights),
    ``adata.uns[key_added]`` (the parameters and the bandwidth used) and squidpy's graph keys.
    ``adata.X`` is not touched.

    Examples
    --------
    >>> tissue = scgde.datasets.niche_tissue(seed=0)
    >>> scgde.tl.niche_sets(tissue, n_neighbors=20)  # doctest: +SKIP
    >>> scgde.model.GDE.setup_anndata(tissue, niche_key="gde_niches")  # doctest: +SKIP
    """
    coords = _coordinates(adata, spatial_key)
    if kernel not in ("gaussian", "exponential"):
        raise ValueError(f"kernel must be 'gaussian' or 'exponential', got {kernel!r}.")
    if radius is not None and not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}.")
    if radius is None and not 1 <= n_neighbors < adata.n_obs:
        raise ValueError(f"n_neighbors must be between 1 and n_obs - 1 = {adata.n_obs - 1}, got {n_neighbors}.")
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}.")
    import squidpy as sq

    keys = [f"{graph_key}_connectivities", f"{graph_key}_distances"]
    before = {k: adata.obsp[k] for k in keys if k in adata.obsp}
    before_uns = adata.uns.get(f"{graph_key}_neighbors")
    if radius is not None:
        sq.gr.spatial_neighbors_radius(adata, radius=float(radius), spatial_key=spatial_key, key_added=graph_key)
    else:
        sq.gr.spatial_neighbors_knn(adata, n_neighs=int(n_neighbors), spatial_key=spatial_key, key_added=graph_key)
    graph = sp.csr_matrix(adata.obsp[f"{graph_key}_connectivities"])
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.sort_indices()
    isolated = np.flatnonzero(np.diff(graph.indptr) == 0)
    if len(isolated):
        for k in keys:  # leave the AnnData as it was
            if k in before:
                adata.obsp[k] = before[k]
            else:
                del adata.obsp[k]
        adata.uns.pop(f"{graph_key}_neighbors", None)
        if before_uns is not None:
            adata.uns[f"{graph_key}_neighbors"] = before_uns
        raise ValueError(
            f"radius={radius} leaves {len(isolated)} of {adata.n_obs} cells with no neighbour "
            f"(e.g. {adata.obs_names[isolated[0]]!r}), so their niches would be empty. "
            "Pass a larger radius, or n_neighbors instead."
        )
    rows = np.repeat(np.arange(adata.n_obs), np.diff(graph.indptr))
    # distances from the coordinates: squidpy's distance matrix drops cells at distance 0
    dist = np.linalg.norm(coords[rows] - coords[graph.indices], axis=1)
    if bandwidth is None:
        farthest = np.maximum.reduceat(dist, graph.indptr[:-1])
        bandwidth = float(np.median(farthest))
        if not bandwidth > 0:
            raise ValueError("All neighbours share their cell's coordinates; pass bandwidth= explicitly.")
    scaled = dist / bandwidth
    values = np.exp(-scaled) if kernel == "exponential" else np.exp(-0.5 * scaled**2)
    n = adata.n_obs
    if include_self:
        values, rows, cols = np.r_[values, np.ones(n)], np.r_[rows, np.arange(n)], np.r_[graph.indices, np.arange(n)]
    else:
        cols = graph.indices
    weights = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(n, n))
    # far neighbours of a narrow kernel underflow to 0: keep every graph neighbour in its niche
    weights.data = np.maximum(weights.data, np.finfo(np.float32).tiny)
    weights.sort_indices()
    adata.obsp[key_added] = weights
    adata.uns[key_added] = {
        "params": {
            "spatial_key": spatial_key,
            "n_neighbors": None if radius is not None else int(n_neighbors),
            "radius": None if radius is None else float(radius),
            "kernel": kernel,
            "bandwidth": float(bandwidth),
            "graph_key": graph_key,
            "include_self": bool(include_self),
        }
    }


def _coordinates(adata: AnnData, spatial_key: str) -> np.ndarray:
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"spatial_key={spatial_key!r} is not a key of adata.obsm (available: {list(adata.obsm)}); "
            "store the cell coordinates there, e.g. adata.obsm['spatial'] = xy."
        )
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if coords.ndim != 2 or coords.shape[0] != adata.n_obs or coords.shape[1] < 1:
        raise ValueError(f"adata.obsm[{spatial_key!r}] must have shape (n_obs, d); got {coords.shape}.")
    if not np.isfinite(coords).all():
        raise ValueError(f"adata.obsm[{spatial_key!r}] has non-finite coordinates.")
    return coords


@inject_docs
def embed_niches(
    model,
    adata: AnnData | None = None,
    key_added: str = "X_gde_niche",
    copy: bool = False,
    chunk_size: int | None = None,
    progress_bar: bool = True,
) -> AnnData | None:
    """Embed every cell's niche with a model set up with ``niche_key`` and store one row per cell.

    Parameters
    ----------
    model
        A trained :class:`scgde.model.GDE` registered with ``niche_key``.
    adata
        AnnData with the model's genes and its own niches under the model's ``niche_key``
        (default: the training AnnData).
    key_added
        Key of the embeddings in ``adata.obsm``.
    %(copy)s
    chunk_size, progress_bar
        Passed to :meth:`~scgde.model.GDE.get_set_representation`.

    Returns
    -------
    The copy if ``copy=True``, else ``None``. Writes ``adata.obsm[key_added]`` (``n_obs x n_latent``,
    rows in ``adata``'s order).

    Examples
    --------
    >>> scgde.tl.embed_niches(model)  # doctest: +SKIP
    >>> sc.pp.neighbors(adata, use_rep="X_gde_niche")  # doctest: +SKIP
    >>> sc.tl.leiden(adata, key_added="niche_domain")  # doctest: +SKIP
    """
    if getattr(model, "niche_key", None) is None:
        raise ValueError(
            "This model embeds named sets, not niches: set it up with GDE.setup_anndata(adata, niche_key=...) "
            "or store its set vectors with scgde.tl.embed_sets(model)."
        )
    adata = model.adata if adata is None else adata
    if copy:
        adata = adata.copy()
    emb = model.get_set_representation(adata, chunk_size=chunk_size, progress_bar=progress_bar)
    adata.obsm[key_added] = emb.to_numpy(dtype=np.float32)  # one row per cell, in obs order
    return adata if copy else None
