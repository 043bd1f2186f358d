"""Classical per-cell image features (nucleus area, intensities, shape) for checking generated crops.

Everything runs on ``(n, C, H, W)`` numpy arrays, h5py Datasets or zarr Arrays, a chunk of images at a time,
with numpy and :mod:`scipy.ndimage` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import ndimage

from scgde.data import OneChannelImages

__all__ = ["image_features", "nucleus_masks", "otsu_threshold"]

_BINS = 256
#: float64 working memory per chunk of images
_CHUNK_BYTES = 64 * 2**20
# foreground objects are 8-connected, background (holes) 4-connected; no connection between images of a stack
_FOREGROUND = np.zeros((3, 3, 3), dtype=bool)
_FOREGROUND[1] = True
_BACKGROUND = np.zeros((3, 3, 3), dtype=bool)
_BACKGROUND[1] = ndimage.generate_binary_structure(2, 1)


def _otsu_rows(values: np.ndarray, bins: int = _BINS) -> np.ndarray:
    """Otsu threshold of each row of ``values`` (n, P); foreground is ``values > threshold``."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    finite = np.isfinite(values)
    has = finite.any(axis=1)
    with np.errstate(invalid="ignore"):
        lo = np.where(has, np.nanmin(np.where(finite, values, np.inf), axis=1), 0.0)
        hi = np.where(has, np.nanmax(np.where(finite, values, -np.inf), axis=1), 0.0)
    span = hi - lo
    scale = np.where(span > 0, span, 1.0)
    scaled = np.where(finite, (values - lo[:, None]) / scale[:, None], 0.0)
    idx = np.clip((scaled * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(
        (idx + bins * np.arange(n)[:, None]).ravel(), weights=finite.ravel().astype(np.float64), minlength=n * bins
    ).reshape(n, bins)
    # the between-class variance is invariant to the affine map bin index -> intensity, so work in bin indices
    k = np.arange(bins, dtype=np.float64)
    w0 = np.cumsum(counts, axis=1)[:, :-1]
    s0 = np.cumsum(counts * k, axis=1)[:, :-1]
    total = counts.sum(axis=1, keepdims=True)
    s_total = (counts * k).sum(axis=1, keepdims=True)
    w1 = total - w0
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (s0 / w0 - (s_total - s0) / w1) ** 2
    between = np.where((w0 > 0) & (w1 > 0), between, -1.0)
    best = between.max(axis=1, keepdims=True)
    # empty bins between two modes give a plateau of equal scores: split in its middle, not at its start
    at_best = between == best
    first = at_best.argmax(axis=1)
    last = bins - 2 - at_best[:, ::-1].argmax(axis=1)
    split = (first + last) / 2.0 + 1.0  # upper edge of the last background bin, in bin units
    thresholds = lo + split * span / bins
    # constant (or empty) images: everything is background
    return np.where((span > 0) & (best[:, 0] >= 0), thresholds, lo)


def otsu_threshold(image: Any) -> float:
    """Otsu's threshold of an image (any shape), from a 256-bin histogram of its finite values.

    The threshold maximises the between-class variance of background (``<= threshold``) and foreground
    (``> threshold``). Constant images return their value (all background).

    Parameters
    ----------
    image
        Array of intensities, integer or float.

    Returns
    -------
    The threshold, in the image's units.

    Examples
    --------
    >>> image = np.r_[np.full(50, 10.0), np.full(50, 200.0)]
    >>> t = otsu_threshold(image)
    >>> 10 < t < 200
    True
    """
    values = np.asarray(image, dtype=np.float64).reshape(1, -1)
    if values.size == 0:
        raise ValueError("otsu_threshold needs a non-empty image.")
    return float(_otsu_rows(values)[0])


def _as_four_d(images: Any) -> Any:
    """``(n, C, H, W)`` images as given; ``(n, H, W)`` read as one channel."""
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    return OneChannelImages(images) if len(images.shape) == 3 else images


def _check_images(images: Any) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in getattr(images, "shape", np.shape(images)))
    if len(shape) != 4:
        raise ValueError(f"images must be an (n, C, H, W) or (n, H, W) array; got shape {shape}.")
    return shape  # type: ignore[return-value]


def _auto_chunk(shape: Sequence[int], chunk_size: int | None) -> int:
    if chunk_size is not None:
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None (automatic); got {chunk_size!r}.")
        return int(chunk_size)
    per_image = 8 * int(np.prod(shape[1:])) or 1
    return max(1, _CHUNK_BYTES // per_image)


def _chunks(n: int, chunk_size: int) -> Iterator[slice]:
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def _check_channel(channel: int, n_channels: int) -> int:
    if not -n_channels <= channel < n_channels:
        raise ValueError(f"channel={channel} is out of range for images with {n_channels} channels.")
    return channel % n_channels


def _masks_block(
    block: np.ndarray,
    threshold: Literal["otsu"] | float,
    keep: Literal["center", "largest"],
) -> np.ndarray:
    """Masks of one in-memory ``(m, H, W)`` float block."""
    m, h, w = block.shape
    if isinstance(threshold, str):
        thresholds = _otsu_rows(block.reshape(m, -1))[:, None, None]
    else:
        thresholds = float(threshold)
    foreground = block > thresholds
    # one 3-D labelling with no connections across images: fast, and each image's labels form a contiguous range
    labels, _ = ndimage.label(foreground, structure=_FOREGROUND)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    last = labels.reshape(m, -1).max(axis=1)
    first = np.r_[0, np.maximum.accumulate(last)[:-1]] + 1
    chosen = labels[:, h // 2, w // 2].copy() if keep == "center" else np.zeros(m, dtype=labels.dtype)
    for i in np.flatnonzero((chosen == 0) & (last > 0)):
        chosen[i] = first[i] + np.argmax(sizes[first[i] : last[i] + 1])
    masks = (labels == chosen[:, None, None]) & (chosen[:, None, None] > 0)
    # fill holes (dark nucleoli): background components that do not touch the crop's border
    background, _ = ndimage.label(~masks, structure=_BACKGROUND)
    border = np.unique(
        np.concatenate([background[:, 0], background[:, -1], background[:, :, 0], background[:, :, -1]], axis=None)
    )
    masks |= (background > 0) & ~np.isin(background, border)
    return masks


def nucleus_masks(
    images: Any,
    channel: int = 0,
    threshold: Literal["otsu"] | float = "otsu",
    keep: Literal["center", "largest"] = "center",
    chunk_size: int | None = None,
) -> np.ndarray:
    """Segment one object (the nucleus) per crop by thresholding one channel.

    Per image: foreground = pixels of ``channel`` above the threshold; connected components (8-connected) by
    :func:`scipy.ndimage.label`; one component is kept and its holes are filled.

    Parameters
    ----------
    images
        ``(n, C, H, W)`` numpy array, h5py Dataset or zarr Array (read ``chunk_size`` images at a time).
    channel
        Channel to segment (e.g. the DNA stain).
    threshold
        ``"otsu"``: Otsu's threshold of each image separately (:func:`otsu_threshold`); a number: one absolute
        threshold in the images' units for all images.
    keep
        ``"center"``: the component covering the crop's centre pixel, or the largest one if the centre is
        background; ``"largest"``: the largest component.
    chunk_size
        Images processed at a time (default: about 64 MB of float64 working memory).

    Returns
    -------
    Boolean masks ``(n, H, W)``, in memory (call it on slices of very large inputs, or let
    :func:`image_features` compute masks chunk by chunk). Images without foreground get an empty mask.

    Examples
    --------
    >>> yy, xx = np.mgrid[:32, :32]
    >>> disc = ((yy - 16) ** 2 + (xx - 16) ** 2 <= 8**2).astype(np.uint8) * 200
    >>> masks = nucleus_masks(disc[None, None])
    >>> masks.shape, int(masks.sum()) == int((disc > 0).sum())
    ((1, 32, 32), True)
    """
    if keep not in ("center", "largest"):
        raise ValueError(f"keep must be 'center' or 'largest'; got {keep!r}.")
    if isinstance(threshold, str) and threshold != "otsu":
        raise ValueError(f"threshold must be 'otsu' or a number; got {threshold!r}.")
    images = _as_four_d(images)
    n, c, h, w = _check_images(images)
    channel = _check_channel(channel, c)
    out = np.zeros((n, h, w), dtype=bool)
    for rows in _chunks(n, _auto_chunk((n, 1, h, w), chunk_size)):
        block = np.asarray(images[rows.start : rows.stop, channel], dtype=np.float64)
        out[rows] = _masks_block(block, threshold, keep)
    return out


def _eccentricity(masks: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Eccentricity of the ellipse with the same second central moments as each mask."""
    m, h, w = masks.shape
    yy = np.arange(h, dtype=np.float64)[None, :, None]
    xx = np.arange(w, dtype=np.float64)[None, None, :]
    weight = masks.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (weight * yy).sum(axis=(1, 2)) / area
        cx = (weight * xx).sum(axis=(1, 2)) / area
        dy = yy - cy[:, None, None]
        dx = xx - cx[:, None, None]
        myy = (weight * dy**2).sum(axis=(1, 2)) / area
        mxx = (weight * dx**2).sum(axis=(1, 2)) / area
        mxy = (weight * dx * dy).sum(axis=(1, 2)) / area
        half_trace = (myy + mxx) / 2
        root = np.sqrt(((myy - mxx) / 2) ** 2 + mxy**2)
        major, minor = half_trace + root, half_trace - root
        ecc = np.sqrt(np.clip(1 - minor / major, 0, 1))
    ecc = np.where(major > 0, ecc, 0.0)  # a single pixel is round
    return np.where(area > 0, ecc, np.nan)


def image_features(
    images: Any,
    masks: Any | None = None,
    channel_names: Sequence[str] | None = None,
    channel: int = 0,
    value_range: tuple[float, float] | None = None,
    chunk_size: int | None = None,
) -> pd.DataFrame:
    """Per-image nucleus area, shape and channel intensities.

    Columns, for channel names ``<name>``:

    - ``area``: mask pixels;
    - ``eccentricity``: of the ellipse with the mask's second moments (0 for a disc, towards 1 when elongated;
      NaN for an empty mask);
    - ``mean_intensity_<name>``: mean inside the mask, every channel (NaN for an empty mask);
    - ``total_intensity_<name>``: sum over the whole crop, every channel.

    Intensities are in the input's units (raw counts for integer images, the values as they are for float
    images), unless ``value_range`` rescales them; compare real and generated cells in the same units.

    Parameters
    ----------
    images
        ``(n, C, H, W)`` numpy array, h5py Dataset or zarr Array, integer or float. Read ``chunk_size`` images at
        a time, so memory stays bounded for on-disk inputs.
    masks
        Boolean ``(n, H, W)`` array-like (numpy, h5py, zarr). Default: :func:`nucleus_masks` of ``channel``,
        computed chunk by chunk.
    channel_names
        One name per channel for the column names; default ``ch0``, ``ch1``, ...
    channel
        Channel segmented when ``masks`` is None.
    value_range
        ``(low, high)``: report intensities as ``(x - low) / (high - low)``, e.g. ``(0, 65535)`` to compare uint16
        crops with generated images in [0, 1]. Segmentation is not affected.
    chunk_size
        Images processed at a time (default: about 64 MB of float64 working memory).

    Returns
    -------
    One row per image, in input order (index 0..n-1; set ``df.index = adata.obs_names`` to align).

    Examples
    --------
    >>> yy, xx = np.mgrid[:32, :32]
    >>> disc = (yy - 16) ** 2 + (xx - 16) ** 2 <= 8**2
    >>> images = np.stack([disc * 100.0, np.full((32, 32), 5.0)])[None]  # (1, 2, 32, 32)
    >>> df = image_features(images, channel_names=["dna", "actin"])
    >>> list(df.columns)
    ['area', 'eccentricity', 'mean_intensity_dna', 'mean_intensity_actin', 'total_intensity_dna', 'total_intensity_actin']
    >>> float(df.loc[0, "mean_intensity_dna"]), float(df.loc[0, "total_intensity_actin"])
    (100.0, 5120.0)
    """
    images = _as_four_d(images)
    n, c, h, w = _check_images(images)
    if channel_names is None:
        names = [f"ch{i}" for i in range(c)]
    else:
        names = [str(name) for name in channel_names]
        if len(names) != c:
            raise ValueError(f"channel_names has {len(names)} names but the images have {c} channels; give one each.")
    if masks is None:
        channel = _check_channel(channel, c)
    else:
        mask_shape = tuple(int(s) for s in masks.shape)
        if mask_shape != (n, h, w):
            raise ValueError(f"masks must have shape (n, H, W) = {(n, h, w)}; got {mask_shape}.")
    if value_range is not None:
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low; got {value_range!r}.")
    area = np.zeros(n)
    ecc = np.zeros(n)
    mean = np.zeros((n, c))
    total = np.zeros((n, c))
    for rows in _chunks(n, _auto_chunk((n, c, h, w), chunk_size)):
        block = np.asarray(images[rows.start : rows.stop], dtype=np.float64)
        if masks is None:
            block_masks = _masks_block(block[:, channel], "otsu", "center")
        else:
            block_masks = np.asarray(masks[rows.start : rows.stop], dtype=bool)
        if value_range is not None:
            block = (block - low) / (high - low)
        a = block_masks.sum(axis=(1, 2)).astype(np.float64)
        area[rows] = a
        ecc[rows] = _eccentricity(block_masks, a)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[rows] = (block * block_masks[:, None]).sum(axis=(2, 3)) / a[:, None]
        total[rows] = block.sum(axis=(2, 3))
    columns: dict[str, np.ndarray] = {"area": area, "eccentricity": ecc}
    columns.update({f"mean_intensity_{name}": mean[:, i] for i, name in enumerate(names)})
    columns.update({f"total_intensity_{name}": total[:, i] for i, name in enumerate(names)})
    return pd.DataFrame(columns)
