"""Read single-cell image crops into :class:`~anndata.AnnData`, in memory or streamed to disk.

Images live in ``adata.obsm[image_key]`` with shape ``(n, C, H, W)``. anndata accepts numpy arrays, h5py Datasets
and zarr Arrays there, so millions of crops can stay on disk and be read a batch at a time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import anndata
import h5py
import numpy as np
import pandas as pd
import zarr

__all__ = ["read_crops", "read_h5ad_images", "write_images_zarr"]

_TIFF = (".tif", ".tiff")
_PIL = (".png", ".jpg", ".jpeg")

#: a progress bar is worth it from this many chunks on
_MIN_CHUNKS_FOR_PROGRESS = 4


# --------------------------------------------------------------------------------------------------------------------
# single files
# --------------------------------------------------------------------------------------------------------------------


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - tifffile is an optional dependency
        raise ImportError(
            f'Reading TIFF crops ({path.name}) needs tifffile: `pip install tifffile` or `pip install "scgde[img]"`.'
        ) from err
    return np.asarray(tifffile.imread(path))


def _read_pil(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow is an optional dependency
        raise ImportError(
            f'Reading PNG/JPEG crops ({path.name}) needs Pillow: `pip install pillow` or `pip install "scgde[img]"`.'
        ) from err
    with Image.open(path) as img:
        # palette and 1-bit images hold indices / booleans, not intensities
        if img.mode in ("P", "PA"):
            img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
        elif img.mode == "1":
            img = img.convert("L")
        return np.asarray(img)


def _read_image(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in _TIFF:
        return _read_tiff(path)
    if suffix in _PIL:
        return _read_pil(path)
    raise ValueError(
        f"Cannot read {str(path)!r}: unsupported extension {suffix!r}. "
        f"Supported: {', '.join(_TIFF + _PIL)}; convert the crops to one of them."
    )


def _resolve_channel_axis(shape: tuple[int, ...], channel_axis: Literal[0, -1] | None, path: Path) -> int | None:
    """Channel axis of a raw crop (``None`` for 2-D crops), decided once from the first file."""
    if len(shape) == 2:
        return None
    if len(shape) != 3:
        raise ValueError(
            f"Crop {str(path)!r} has shape {shape}; expected 2-D (H, W) or 3-D (C, H, W) / (H, W, C) crops. "
            "Project or split z-stacks / time series before reading."
        )
    if channel_axis is None:
        # RGB(A)-style files put a few channels last; microscopy TIFFs usually put them first
        return 2 if shape[-1] <= 4 and shape[0] > 4 else 0
    if channel_axis not in (0, -1, 2):
        raise ValueError(f"channel_axis must be 0, -1 or None (infer); got {channel_axis!r}.")
    return 0 if channel_axis == 0 else 2


def _to_chw(image: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return image[None]
    return np.moveaxis(image, axis, 0)


class _CropStack:
    """Lazy ``(n, C, H, W)`` array over crop files: slicing reads the files and checks shape and dtype."""

    def __init__(self, paths: Sequence[Path], channel_axis: Literal[0, -1] | None):
        self.paths = list(paths)
        first = _read_image(self.paths[0])
        self.raw_shape = first.shape
        self.dtype = first.dtype
        self._axis = _resolve_channel_axis(first.shape, channel_axis, self.paths[0])
        self.shape = (len(self.paths), *_to_chw(first, self._axis).shape)
        self.ndim = 4

    def __len__(self) -> int:
        return len(self.paths)

    def _read_checked(self, i: int) -> np.ndarray:
        path = self.paths[i]
        image = _read_image(path)
        if image.shape != self.raw_shape:
            raise ValueError(
                f"All crops must have the same shape: {str(path)!r} has shape {image.shape} but "
                f"{str(self.paths[0])!r} has {self.raw_shape}. Pad or resize the crops to one size first."
            )
        if image.dtype != self.dtype:
            raise ValueError(
                f"All crops must have the same dtype: {str(path)!r} is {image.dtype} but "
                f"{str(self.paths[0])!r} is {self.dtype}. Convert the crops to one dtype first."
            )
        return _to_chw(image, self._axis)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("_CropStack supports slices only.")
        rows = range(*key.indices(len(self)))
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for j, i in enumerate(rows):
            out[j] = self._read_checked(i)
        return out


# --------------------------------------------------------------------------------------------------------------------
# chunked streaming
# --------------------------------------------------------------------------------------------------------------------


def _chunk_starts(n: int, chunk_size: int, progress_bar: bool, description: str) -> Iterable[int]:
    starts: Iterable[int] = range(0, n, chunk_size)
    if progress_bar and len(starts) >= _MIN_CHUNKS_FOR_PROGRESS:
        try:
            from scvi.utils import track
        except ImportError:  # pragma: no cover - scvi-tools is a dependency, but the reader does not need it
            return starts
        return track(starts, description=description)
    return starts


def _iter_chunks(
    images: Any, chunk_size: int, progress_bar: bool, description: str
) -> Iterator[tuple[int, np.ndarray]]:
    n = images.shape[0]
    for start in _chunk_starts(n, chunk_size, progress_bar, description):
        yield start, np.asarray(images[start : start + chunk_size])


def _check_chunk_size(chunk_size: int) -> int:
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    return int(chunk_size)


def write_images_zarr(
    images: Any,
    store: str | os.PathLike | Any,
    chunk_size: int = 256,
    batch_size: int | None = None,
    overwrite: bool = False,
    progress_bar: bool = False,
) -> zarr.Array:
    """Stream an ``(n, C, H, W)`` image array into a zarr v3 array, ``chunk_size`` images at a time.

    Only one chunk of images is in memory at any time, so this also converts an h5py dataset or another zarr
    array that does not fit in memory.

    Parameters
    ----------
    images
        Any array-like with ``shape``, ``dtype`` and slicing along the first axis: a numpy array, an
        :class:`h5py.Dataset`, a :class:`zarr.Array`, ...
    store
        Where to write: a path (``"crops.zarr"``) or a zarr store.
    chunk_size
        Images per zarr chunk along the first axis. Smaller chunks make random access to single cells cheaper
        (a read decompresses a whole chunk).
    batch_size
        Images read and written at a time (the memory bound); default ``chunk_size``. Rounded down to a multiple
        of ``chunk_size`` (at least one chunk), so that no chunk is written twice.
    overwrite
        Replace an existing array at ``store``; otherwise an existing store is an error.
    progress_bar
        Show a progress bar over the chunks.

    Returns
    -------
    The written array, reopened read-only.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> images = np.arange(5 * 2 * 3 * 3, dtype=np.uint16).reshape(5, 2, 3, 3)
    >>> z = write_images_zarr(images, pathlib.Path(tempfile.mkdtemp()) / "crops.zarr", chunk_size=2)
    >>> z.shape, z.chunks, str(z.dtype), bool((z[:] == images).all())
    ((5, 2, 3, 3), (2, 2, 3, 3), 'uint16', True)
    """
    chunk_size = _check_chunk_size(chunk_size)
    batch_size = chunk_size if batch_size is None else _check_chunk_size(batch_size)
    batch_size = max(chunk_size, batch_size // chunk_size * chunk_size)
    shape = tuple(int(s) for s in getattr(images, "shape", ()))
    if len(shape) != 4:
        raise ValueError(
            f"images must be an (n, C, H, W) array; got shape {shape}. Add the missing axes, e.g. images[:, None]."
        )
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if isinstance(store, str) and os.path.exists(store) and not overwrite:
        raise FileExistsError(f"store={store!r} already exists; delete it, choose another path or pass overwrite=True.")
    target = zarr.create_array(
        store,
        shape=shape,
        chunks=(max(1, min(chunk_size, shape[0])), *shape[1:]),
        dtype=np.dtype(images.dtype),
        zarr_format=3,
        overwrite=overwrite,
        attributes={"axes": ["cell", "channel", "y", "x"]},
    )
    for start, block in _iter_chunks(images, batch_size, progress_bar, "Writing images"):
        target[start : start + block.shape[0]] = block
    return zarr.open_array(store, mode="r")


# --------------------------------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------------------------------


def _read_manifest(manifest: pd.DataFrame | str | os.PathLike) -> tuple[pd.DataFrame, Path]:
    if isinstance(manifest, pd.DataFrame):
        return manifest, Path.cwd()
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"manifest={str(manifest)!r} is not a file; pass a CSV/TSV path or a DataFrame.")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") else ","
    return pd.read_csv(path, sep=sep), path.parent


def read_crops(
    manifest: pd.DataFrame | str | os.PathLike,
    root: str | os.PathLike | None = None,
    path_key: str = "path",
    image_key: str = "image",
    channel_axis: Literal[0, -1] | None = None,
    store: str | os.PathLike | None = None,
    chunk_size: int = 1024,
    progress_bar: bool = True,
    overwrite: bool = False,
) -> anndata.AnnData:
    """Read single-cell image crops listed in a table into an AnnData with the images in ``obsm``.

    Parameters
    ----------
    manifest
        One row per crop: a DataFrame or the path of a CSV (``,``) or TSV (``.tsv``/``.tab``/``.txt``, tab) table.
        ``manifest[path_key]`` holds the crop files; the other columns become ``obs`` (e.g. the perturbation or
        neighbourhood of each cell).
    root
        Folder the paths are relative to. Default: the manifest's folder, or the working directory for a
        DataFrame. Absolute paths are used as they are.
    path_key
        Column of ``manifest`` with the file paths.
    image_key
        ``obsm`` key for the images.
    channel_axis
        Channel axis of 3-D crops: ``0`` for ``(C, H, W)``, ``-1`` for ``(H, W, C)``. ``None`` infers it from the
        first crop: the last axis if it has at most 4 entries and the first more than 4 (RGB-style PNG/JPEG),
        otherwise the first. 2-D crops get one channel. Pillow reads 16-bit RGB PNGs as 8-bit: keep
        multi-channel 16-bit crops in TIFF files.
    store
        ``None``: keep the images in memory as one numpy array. A path such as ``"crops.zarr"``: write them chunk by
        chunk into a zarr v3 array there (never all in memory) and put the opened, read-only array in ``obsm``.
    chunk_size
        Crops read (and, with ``store``, written) at a time: the memory bound. Zarr chunks hold
        ``min(chunk_size, 256)`` crops, so that random access to single cells stays cheap.
    progress_bar
        Show a progress bar over the chunks (when there are a few).
    overwrite
        Replace an existing ``store``.

    Returns
    -------
    AnnData with no variables (shape ``(n, 0)``), ``obs`` = the manifest's other columns (index as strings) and
    ``obsm[image_key]`` of shape ``(n, C, H, W)`` in the files' dtype.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     tifffile.imwrite(folder / f"cell{i}.tif", np.full((2, 8, 8), i, dtype=np.uint16))
    >>> manifest = pd.DataFrame({"path": [f"cell{i}.tif" for i in range(3)], "gene": ["A", "A", "B"]})
    >>> adata = read_crops(manifest, root=folder)
    >>> adata.shape, adata.obsm["image"].shape, adata.obsm["image"].dtype, adata.obs["gene"].tolist()
    ((3, 0), (3, 2, 8, 8), dtype('uint16'), ['A', 'A', 'B'])
    >>> on_disk = read_crops(manifest, root=folder, store=folder / "crops.zarr", chunk_size=2)
    >>> type(on_disk.obsm["image"]).__name__, int(on_disk.obsm["image"][2].max())
    ('Array', 2)
    """
    chunk_size = _check_chunk_size(chunk_size)
    table, default_root = _read_manifest(manifest)
    if path_key not in table.columns:
        raise KeyError(
            f"path_key={path_key!r} is not a column of the manifest (columns: {list(table.columns)}); "
            "pass the column that holds the crop files."
        )
    if len(table) == 0:
        raise ValueError("The manifest has no rows; it needs one row per crop.")
    base = Path(root) if root is not None else default_root
    paths = [base / str(p) for p in table[path_key]]
    # fail before hours of reading, not at the end
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Crop file {str(missing[0])!r} does not exist ({len(missing)} of {len(paths)} missing). "
            f"Check `root` (now {str(base)!r}) and manifest[{path_key!r}]."
        )
    stack = _CropStack(paths, channel_axis)

    if store is None:
        images = np.empty(stack.shape, dtype=stack.dtype)
        for start, block in _iter_chunks(stack, chunk_size, progress_bar, "Reading crops"):
            images[start : start + block.shape[0]] = block
    else:
        store = os.fspath(store)
        existed = os.path.exists(store)
        try:
            images = write_images_zarr(
                stack,
                store,
                chunk_size=min(chunk_size, 256),
                batch_size=chunk_size,
                overwrite=overwrite,
                progress_bar=progress_bar,
            )
        except BaseException:
            # a half-written store would look valid later (with overwrite=True the old one is gone already)
            if (overwrite or not existed) and os.path.isdir(store):
                shutil.rmtree(store, ignore_errors=True)
            raise

    obs = table.drop(columns=[path_key]).copy()
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(obs=obs)
    adata.obsm[image_key] = images
    return adata


def read_h5ad_images(path: str | os.PathLike, image_key: str = "image") -> anndata.AnnData:
    """Open an ``.h5ad`` file with everything in memory except the images, which stay on disk.

    ``anndata.read_h5ad(path, backed="r")`` keeps only ``X`` on disk and loads every ``obsm`` entry into memory
    (checked with anndata 0.12), which is no use for millions of crops. Here all other elements are read as
    usual and ``obsm[image_key]`` is an :class:`h5py.Dataset` of the file, opened read-only; slices of it are read
    on demand.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    image_key
        ``obsm`` key of the ``(n, C, H, W)`` images.

    Returns
    -------
    In-memory AnnData whose ``obsm[image_key]`` is an open :class:`h5py.Dataset`. The file stays open while the
    dataset is referenced; close it with ``adata.obsm[image_key].file.close()``. ``adata.copy()`` does not work
    on such an object (anndata cannot copy an h5py dataset); subset with ``adata[idx]`` or load the images with
    ``adata.obsm[image_key] = adata.obsm[image_key][:]`` first.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cells.h5ad"
    >>> adata = anndata.AnnData(obs=pd.DataFrame({"gene": ["A", "B"]}, index=["c0", "c1"]))
    >>> adata.obsm["image"] = np.zeros((2, 1, 4, 4), dtype=np.uint8)
    >>> adata.write_h5ad(path)
    >>> lazy = read_h5ad_images(path)
    >>> type(lazy.obsm["image"]).__name__, lazy.obsm["image"].shape, lazy.obs["gene"].tolist()
    ('Dataset', (2, 1, 4, 4), ['A', 'B'])
    >>> lazy.obsm["image"].file.close()
    """
    from anndata.experimental import read_dispatched

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} does not exist; pass an .h5ad file.")
    f = h5py.File(path, "r")
    try:
        available = list(f["obsm"].keys()) if "obsm" in f else []
        if image_key not in available:
            raise KeyError(
                f"image_key={image_key!r} is not in the obsm of {str(path)!r} (available: {available}); "
                "pass the key that holds the images."
            )
        dataset = f["obsm"][image_key]
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim not in (3, 4):
            shape = getattr(dataset, "shape", "a group")
            raise ValueError(
                f"obsm[{image_key!r}] of {str(path)!r} must be a dense (n, C, H, W) or (n, H, W) array; got {shape}. "
                "Write the images as one 4-D numpy array."
            )
        target = f"/obsm/{image_key}"

        def callback(read_func, elem_name, elem, iospec):
            # every element is read as usual, except the images, which stay a lazy dataset
            if elem_name == target:
                return elem
            return read_func(elem)

        adata = read_dispatched(f, callback)
    except BaseException:
        f.close()
        raise
    return adata
