"""Plots of clone-level results."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from scgde.tl import clone_representations


def _finish(ax: Axes, show: bool | None, save: str | None) -> Axes | None:
    if save is not None:
        ax.figure.savefig(save, dpi=150, bbox_inches="tight")
    if show is None or show:
        plt.show()
        return None
    return ax


def clone_information(
    adata: AnnData,
    basis: str = "X_umap",
    key: str = "clone_information",
    ax: Axes | None = None,
    cmap: str = "viridis",
    size: float = 12.0,
    show: bool | None = None,
    save: str | None = None,
) -> Axes | None:
    """Paint each cell with the pointwise mutual information of its clone on a cell embedding.

    Cells of clones without a value (not present at both periods) are drawn in grey.

    Parameters
    ----------
    adata
        Cells after :func:`scgde.tl.clone_information` with ``key_added=key``.
    basis
        ``obsm`` key of a 2-D embedding (``"X_umap"``, ``"X_spring"``, ...).
    key
        The ``key_added`` of :func:`scgde.tl.clone_information`.
    ax, cmap, size
        Matplotlib options.
    show, save
        Show the figure (default) or return the Axes; save it to a path.
    """
    column = f"{key}_pointwise"
    if column not in adata.obs or key not in adata.uns:
        raise KeyError(
            f"No clone information under key={key!r}; run scgde.tl.clone_information(..., key_added={key!r})."
        )
    if basis not in adata.obsm:
        raise KeyError(f"basis={basis!r} is not in adata.obsm (available: {list(adata.obsm)}).")
    xy = np.asarray(adata.obsm[basis])[:, :2]
    values = adata.obs[column].to_numpy(dtype=float)
    has = np.isfinite(values)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(*xy[~has].T, s=size * 0.5, c="lightgrey", linewidths=0, label="no early/late pair")
    order = np.argsort(values[has])
    points = ax.scatter(*xy[has][order].T, s=size, c=values[has][order], cmap=cmap, linewidths=0)
    ax.figure.colorbar(points, ax=ax, label="pointwise MI of the clone (bits)")
    info = adata.uns[key]
    ax.set_title(
        f"{info['params']['representation']}: MI = {float(info['mi']):.2f} bits ({int(info['n_clones'])} clones)"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return _finish(ax, show, save)


def fate_composition(
    adata: AnnData,
    predicted: pd.DataFrame,
    clone_key: str,
    time_key: str,
    state_key: str,
    late: Sequence,
    clones: Sequence[str] | None = None,
    n_clones: int = 8,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> Axes | None:
    """True vs predicted late cell-state composition of a few clones (stacked bars).

    Parameters
    ----------
    adata
        The cells.
    predicted
        Predicted compositions (clones x states), e.g. the second output of :func:`scgde.tl.predict_fate`.
    clone_key, time_key, state_key, late
        As in :func:`scgde.tl.predict_fate`.
    clones
        Clones to show (default: the ``n_clones`` largest late clones among the predicted ones).
    """
    true = clone_representations(adata, clone_key, time_key, late, "composition", state_key)
    if clones is None:
        late_sizes = adata.obs.loc[
            adata.obs[time_key].astype(str).isin([str(t) for t in late]), clone_key
        ].value_counts()
        clones = [c for c in late_sizes.index.astype(str) if c in predicted.index][:n_clones]
    clones = list(clones)
    states = list(true.columns)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5, 1.1 * len(clones)), 4))
    colors = plt.get_cmap("tab20")(np.arange(len(states)) % 20)
    x = np.arange(len(clones))
    for offset, table, hatch in ((-0.2, true, None), (0.2, predicted.reindex(columns=states, fill_value=0), "//")):
        bottom = np.zeros(len(clones))
        for j, state in enumerate(states):
            h = table.loc[clones, state].to_numpy()
            ax.bar(
                x + offset,
                h,
                width=0.38,
                bottom=bottom,
                color=colors[j],
                hatch=hatch,
                edgecolor="white",
                label=state if offset < 0 else None,
            )
            bottom += h
    ax.set_xticks(x, clones, rotation=45, ha="right")
    ax.set_ylabel("fraction of late cells")
    ax.set_title("late composition: true (left) vs predicted (right, hatched)")
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize="small", frameon=False)
    return _finish(ax, show, save)
