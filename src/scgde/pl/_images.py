"""Panel grids of single-cell images: real vs generated cells of each set."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from scgde.data import OneChannelImages

#: colour of each channel in 2- and 3-channel composites (2: magenta/green, colour-blind safe; 3: RGB)
_COLOURS = {
    2: np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    3: np.eye(3),
}
#: groups shown when ``groups`` is not given
_MAX_DEFAULT_GROUPS = 8


def _images_of(adata: AnnData, image_key: str, argument: str) -> Any:
    if image_key not in adata.obsm:
        raise KeyError(
            f"image_key={image_key!r} is not in {argument}.obsm (available: {list(adata.obsm)}); "
            "pass the key that holds the (n, C, H, W) images."
        )
    images = adata.obsm[image_key]
    if len(images.shape) == 3:  # (n, H, W): one channel, read only where shown
        return OneChannelImages(images)
    if len(images.shape) != 4:
        raise ValueError(
            f"{argument}.obsm[{image_key!r}] must be (n, C, H, W) or (n, H, W); got shape {tuple(images.shape)}."
        )
    return images


def _group_labels(adata: AnnData, groupby: str | None, argument: str) -> pd.Series | None:
    if groupby is None:
        return None
    if groupby not in adata.obs:
        raise KeyError(f"groupby={groupby!r} is not a column of {argument}.obs (columns: {list(adata.obs.columns)}).")
    # compare as strings: generated sets may be numbered where the real ones are named alike as text
    return adata.obs[groupby].astype(str).reset_index(drop=True)


def _default_groups(adata: AnnData, groupby: str) -> list[str]:
    column = adata.obs[groupby]
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(column.astype(str))
        found = [str(c) for c in column.cat.categories if str(c) in present]
    else:
        found = [str(g) for g in pd.unique(column.astype(str))]
    if len(found) > _MAX_DEFAULT_GROUPS:
        warnings.warn(
            f"{len(found)} groups in obs[{groupby!r}]; showing the first {_MAX_DEFAULT_GROUPS}. "
            "Pass groups=[...] to choose.",
            stacklevel=4,  # the caller of image_grid (-> _group_list -> _default_groups)
        )
        found = found[:_MAX_DEFAULT_GROUPS]
    return found


def _take(images: Any, positions: np.ndarray, channels: Sequence[int]) -> np.ndarray:
    """Images at ``positions`` as float (m, len(channels), H, W); one read per image works for numpy, h5py, zarr."""
    if len(positions) == 0:
        return np.zeros((0, len(channels), *images.shape[2:]))
    return np.stack([np.asarray(images[int(i)], dtype=np.float64)[list(channels)] for i in positions])


def _per_channel(value: float | Sequence[float] | None, n_channels: int, name: str) -> list[float | None]:
    if value is None or np.isscalar(value):
        return [value] * n_channels  # type: ignore[list-item]
    values = list(value)  # type: ignore[arg-type]
    if len(values) != n_channels:
        raise ValueError(f"{name} has {len(values)} values but {n_channels} channels are shown; give one each.")
    return values


def _limits(
    blocks: Sequence[np.ndarray],
    n_channels: int,
    vmin: float | Sequence[float] | None,
    vmax: float | Sequence[float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Display range of each channel, shared by all panels so that real and generated cells compare directly."""
    lows = _per_channel(vmin, n_channels, "vmin")
    highs = _per_channel(vmax, n_channels, "vmax")
    stacked = [b for b in blocks if len(b)]
    lo = np.zeros(n_channels)
    hi = np.ones(n_channels)
    for ch in range(n_channels):
        values = np.concatenate([b[:, ch].ravel() for b in stacked]) if stacked else np.zeros(1)
        values = values[np.isfinite(values)]
        if values.size == 0:
            values = np.zeros(1)
        lo[ch] = np.percentile(values, 1) if lows[ch] is None else lows[ch]
        hi[ch] = np.percentile(values, 99) if highs[ch] is None else highs[ch]
        if not hi[ch] > lo[ch]:
            hi[ch] = lo[ch] + 1.0
    return lo, hi


def _display(image: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) in [0, 1] for one channel, (H, W, 3) RGB composite for 2-3 channels."""
    scaled = np.clip((image - lo[:, None, None]) / (hi - lo)[:, None, None], 0.0, 1.0)
    scaled = np.nan_to_num(scaled)
    if scaled.shape[0] == 1:
        return scaled[0]
    colours = _COLOURS[scaled.shape[0]]
    return np.clip(np.einsum("chw,ck->hwk", scaled, colours), 0.0, 1.0)


def image_grid(
    adata: AnnData,
    n: int = 16,
    image_key: str = "image",
    groupby: str | None = None,
    groups: Sequence[str] | None = None,
    channels: Sequence[int] | None = None,
    reference: AnnData | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    vmin: float | Sequence[float] | None = None,
    vmax: float | Sequence[float] | None = None,
    title: str | None = None,
    labels: tuple[str, str] = ("real", "generated"),
    reference_groupby: str | None = None,
    show: bool | None = None,
    save: str | None = None,
    ax: Axes | None = None,
) -> Figure | None:
    """Grid of the first ``n`` images of each group, optionally under the real cells of the same group.

    Parameters
    ----------
    adata
        Cells with ``(n, C, H, W)`` images in ``obsm[image_key]`` (numpy, h5py or zarr; only the shown images
        are read), e.g. the output of a generative model.
    n
        Images shown per group (and per row block of ``reference``).
    image_key
        ``obsm`` key of the images, in ``adata`` and ``reference``.
    groupby
        ``obs`` column with the groups (one row block each). Default: ``"set"`` if ``adata.obs`` has it (generated
        AnnData), otherwise all cells form one group.
    groups
        Groups to show, in this order. Default: all groups of ``adata`` (categories order, else order of
        appearance), at most 8.
    channels
        Channel indices to show (1 to 3). Default: all channels if there are at most 3.
    reference
        Another AnnData, e.g. the real cells: for each group, its first ``n`` images of the group named alike are
        shown in the row(s) above those of ``adata`` ("real vs generated" panels).
    ncols
        Panels per row; default ``min(n, 8)``.
    cmap
        Colormap of 1-channel images. With 2 channels they are composited magenta (first) and green; with 3, red,
        green and blue.
    vmin, vmax
        Display range: one number, or one per shown channel. Default: the 1st and 99th percentiles of each channel
        over all shown images (``adata`` and ``reference`` together, so both are on the same scale).
    title
        Figure title.
    labels
        Row labels of ``reference`` and ``adata`` images.
    reference_groupby
        ``obs`` column of ``reference`` with the groups; default ``groupby``.
    show, save
        Show the figure (default) or return it; save it to a path.
    ax
        A subplot to draw the grid into (its area is split into panels); default: a new figure.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure` when ``show=False``, otherwise None.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> adata = AnnData(obs=pd.DataFrame({"set": ["a"] * 5 + ["b"] * 5}, index=[f"c{i}" for i in range(10)]))
    >>> adata.obsm["image"] = rng.random((10, 2, 16, 16))
    >>> fig = image_grid(adata, n=4, reference=adata, show=False)
    >>> len(fig.axes)  # 2 groups x (real, generated) x 4 panels
    16
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    n = int(n)
    images = _images_of(adata, image_key, "adata")
    ref_images = _images_of(reference, image_key, "reference") if reference is not None else None
    if groupby is None and "set" in adata.obs:
        groupby = "set"
    if groupby is None and groups is not None:
        raise ValueError("groups= needs groupby=, the obs column that holds them.")
    channels = _channels(channels, images, ref_images)

    own = _group_labels(adata, groupby, "adata")
    ref_groupby = reference_groupby if reference_groupby is not None else groupby
    theirs = _group_labels(reference, ref_groupby, "reference") if reference is not None else None
    group_list = _group_list(adata, groupby, groups, own, theirs)

    real = (ref_images, theirs, reference.n_obs) if reference is not None else None
    blocks = _blocks(group_list, n, channels, labels, (images, own, adata.n_obs), real)
    lo, hi = _limits([b for _, b in blocks], len(channels), vmin, vmax)

    ncols = min(n, 8) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be a positive integer; got {ncols!r}.")
    rows_per_block = math.ceil(n / ncols)
    fig, grid = _figure_grid(ax, rows_per_block * len(blocks), ncols, title)
    for b, (label, stack) in enumerate(blocks):
        for j in range(rows_per_block * ncols):
            panel = fig.add_subplot(grid[b * rows_per_block + j // ncols, j % ncols])
            _draw_panel(panel, stack[j] if j < len(stack) else None, lo, hi, cmap)
            if j == 0:
                _label_block(panel, label, empty=len(stack) == 0)
            else:
                panel.set_axis_off()
    if title is not None:
        fig.suptitle(title)
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    if show is None or show:
        plt.show()
        return None
    return fig


def _channels(channels: Sequence[int] | None, images: Any, ref_images: Any | None) -> list[int]:
    """The 1 to 3 channel indices to show, checked against both image stacks."""
    n_channels = images.shape[1]
    if channels is None:
        if n_channels > 3:
            raise ValueError(
                f"The images have {n_channels} channels; choose up to 3 to show with channels=[...] (indices)."
            )
        channels = list(range(n_channels))
    channels = [int(c) for c in channels]
    if not 1 <= len(channels) <= 3:
        raise ValueError(f"channels must select 1 to 3 channels; got {channels}.")
    for name, stack in (("adata", images), ("reference", ref_images)):
        if stack is not None and any(not -stack.shape[1] <= c < stack.shape[1] for c in channels):
            raise ValueError(f"channels={channels} is out of range for {name} images with {stack.shape[1]} channels.")
    return channels


def _group_list(
    adata: AnnData,
    groupby: str | None,
    groups: Sequence[str] | None,
    own: pd.Series | None,
    theirs: pd.Series | None,
) -> list[str | None]:
    """The groups shown, in order: ``[None]`` (all cells) without ``groupby``, else ``groups`` or the defaults."""
    if groupby is None:
        return [None]
    if groups is None:
        return list(_default_groups(adata, groupby))
    group_list = [str(g) for g in groups]
    known = set(own) | (set(theirs) if theirs is not None else set())
    unknown = [g for g in group_list if g not in known]
    if unknown:
        raise KeyError(f"groups {unknown} are not in obs[{groupby!r}]; available: {sorted(set(own))[:20]}.")
    return group_list


def _blocks(
    group_list: list[str | None],
    n: int,
    channels: list[int],
    labels: tuple[str, str],
    generated: tuple[Any, pd.Series | None, int],
    real: tuple[Any, pd.Series | None, int] | None,
) -> list[tuple[str, np.ndarray]]:
    """One block of rows per (group, source), the reference above ``adata``: its label and its images.

    ``generated`` and ``real`` are ``(images, group labels, n_obs)`` of ``adata`` and of ``reference`` (``None``
    without one).
    """
    blocks: list[tuple[str, np.ndarray]] = []
    for group in group_list:
        name = "" if group is None else str(group)
        if real is not None:
            positions = _first_positions(real[1], real[2], group, n)
            blocks.append((f"{name}\n{labels[0]}" if name else labels[0], _take(real[0], positions, channels)))
        positions = _first_positions(generated[1], generated[2], group, n)
        label = (f"{name}\n{labels[1]}" if name else labels[1]) if real is not None else name
        blocks.append((label, _take(generated[0], positions, channels)))
    return blocks


def _first_positions(labels: pd.Series | None, n_obs: int, group: str | None, n: int) -> np.ndarray:
    """Positions of the first ``n`` cells of ``group`` (of all cells when there are no groups)."""
    if group is None or labels is None:
        return np.arange(min(n, n_obs))
    return np.flatnonzero((labels == group).to_numpy())[:n]


def _figure_grid(ax: Axes | None, nrows: int, ncols: int, title: str | None) -> tuple[Figure, Any]:
    """A new figure and its grid of panels, or the area of ``ax`` split into panels (``ax`` is removed)."""
    if ax is None:
        fig = plt.figure(figsize=(0.9 * ncols + 1.0, 0.9 * nrows + (0.5 if title else 0.1)))
        return fig, fig.add_gridspec(nrows, ncols, wspace=0.04, hspace=0.04)
    spec = ax.get_subplotspec()
    if spec is None:
        raise ValueError("ax must be a subplot (from plt.subplots or fig.add_subplot) so that it can be split.")
    fig = ax.figure
    grid = spec.subgridspec(nrows, ncols, wspace=0.04, hspace=0.04)
    ax.remove()
    return fig, grid


def _draw_panel(panel: Axes, image: np.ndarray | None, lo: np.ndarray, hi: np.ndarray, cmap: str) -> None:
    """Show one (C, H, W) image in ``panel`` on the shared display range (nothing for an empty panel)."""
    if image is None:
        return
    shown = _display(image, lo, hi)
    if shown.ndim == 2:
        panel.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        panel.imshow(shown, interpolation="nearest")


def _label_block(panel: Axes, label: str, empty: bool) -> None:
    """Label a block on its first panel: frame invisible but label visible, even for an empty block."""
    panel.set_xticks([])
    panel.set_yticks([])
    for spine in panel.spines.values():
        spine.set_visible(False)
    panel.set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    if empty:
        panel.text(0.5, 0.5, "no cells", ha="center", va="center", fontsize="small", color="grey")
