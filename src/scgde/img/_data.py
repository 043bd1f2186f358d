"""Images as set elements: a registry field, a chunked reader and the data splitter of ``ImageGDE``."""

from __future__ import annotations

import warnings

import numpy as np
from anndata import AnnData

from scgde.data import RegistryField, SetDataSplitter

#: registry key of the images (``adata_manager.get_from_registry(IMAGE_KEY)``)
IMAGE_KEY = "image"
#: images read to infer the range of float images
RANGE_SAMPLE = 2048


def image_array(adata: AnnData, image_key: str):
    """``adata.obsm[image_key]`` (numpy, h5py, zarr or dask), checked to be ``(n, C, H, W)`` or ``(n, H, W)``."""
    if image_key not in adata.obsm:
        raise KeyError(
            f"image_key={image_key!r} is not a key of adata.obsm; available: {list(adata.obsm)}. "
            "Store images there as an (n, C, H, W) array (numpy, h5py, zarr), e.g. with scgde.img.read_crops."
        )
    images = adata.obsm[image_key]
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) not in (3, 4):
        raise ValueError(
            f"adata.obsm[{image_key!r}] must be (n, C, H, W) or (n, H, W) (one channel); got shape {shape}."
        )
    if len(shape) == 4 and shape[-1] <= 4 < min(shape[1], shape[2]):
        raise ValueError(
            f"adata.obsm[{image_key!r}] has shape {shape}, which looks channel-last (n, H, W, C); scgde reads "
            f"(n, C, H, W): store np.moveaxis(images, -1, 1) instead."
        )
    dtype = np.dtype(images.dtype)
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"adata.obsm[{image_key!r}] must hold integer or float pixels, not {dtype}.")
    return images


def check_query_dtype(images, image_key: str, dtype: str) -> None:
    """Query images must be scaled like the training ones: the same integer dtype, or floats for floats."""
    registered, query = np.dtype(dtype), np.dtype(images.dtype)
    same = query == registered if np.issubdtype(registered, np.integer) else np.issubdtype(query, np.floating)
    if not same:
        raise TypeError(
            f"adata.obsm[{image_key!r}] holds {query} pixels; the model was trained on {registered} images and "
            f"scales pixels by that type's range. Convert the images to {registered} first."
        )


def image_shape(images) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image array (one channel for ``(n, H, W)``)."""
    shape = tuple(int(s) for s in images.shape[1:])
    return (1, *shape) if len(shape) == 2 else shape


def first_images(images, sample: int = RANGE_SAMPLE) -> np.ndarray:
    """The first ``sample`` images, read once to infer and check the pixel range."""
    return _to_numpy(images[: min(sample, images.shape[0])])


def dtype_range(dtype, head: np.ndarray) -> tuple[float, float]:
    """Pixel range mapped to [-1, 1]: the dtype's for integers; for floats [0, 1] if the data lie there.

    Float images outside [0, 1] use the range of ``head``, the first images (pass ``value_range`` to
    :meth:`ImageGDE.setup_anndata` to fix it).
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    if not np.isfinite(head).any():
        raise ValueError("The first images hold no finite pixel; pass value_range=(low, high) to setup_anndata.")
    lo, hi = float(np.nanmin(head)), float(np.nanmax(head))
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _warn_narrow_range(head: np.ndarray, dtype, image_key: str, lo: float, hi: float) -> None:
    """Images using a sliver of the range mapped to [-1, 1] train poorly: say how to fix it."""
    used_lo, used_hi = float(np.nanmin(head)), float(np.nanmax(head))
    if used_hi - used_lo < (hi - lo) / 16:
        warnings.warn(
            f"The pixels of adata.obsm[{image_key!r}] span {used_lo:g}-{used_hi:g} of the {dtype} range "
            f"{lo:g}-{hi:g} mapped to [-1, 1]; pass value_range=({used_lo:g}, {used_hi:g}) (or the instrument's "
            "range) to setup_anndata so that the images fill it.",
            UserWarning,
            stacklevel=6,
        )


def _to_numpy(block) -> np.ndarray:
    """A read block as numpy (dask blocks are computed)."""
    return np.asarray(block.compute() if hasattr(block, "compute") else block)


class ImageObsmField(RegistryField):
    """The images of ``adata.obsm[image_key]``, registered with scvi-tools.

    Registering checks the array's shape and dtype and records ``(C, H, W)``, the dtype and the
    pixel range mapped to [-1, 1] (the dtype's range for integer images), so that generated images
    can be returned in the input's units. Nothing is written to the AnnData and the images are
    never loaded whole: they are read in chunks when used.

    Parameters
    ----------
    image_key
        Key of ``adata.obsm``.
    value_range
        ``(low, high)`` pixel values mapped to -1 and 1 (default: see :func:`dtype_range`).
    """

    REGISTRY_KEY = IMAGE_KEY
    ATTR_NAME = "obsm"

    def __init__(self, image_key: str, value_range: tuple[float, float] | None = None):
        super().__init__()
        self._attr_key = image_key
        self.value_range = value_range

    def validate_field(self, adata: AnnData) -> None:
        """Check that the images exist with a usable shape and dtype."""
        image_array(adata, self.attr_key)

    def register_field(self, adata: AnnData) -> dict:
        """Record shape, dtype and the pixel range."""
        images = image_array(adata, self.attr_key)
        if self.value_range is None:
            head = first_images(images)
            lo, hi = dtype_range(images.dtype, head)
            _warn_narrow_range(head, images.dtype, self.attr_key, lo, hi)
        else:
            lo, hi = (float(v) for v in self.value_range)
            if not hi > lo:
                raise ValueError(f"value_range must be (low, high) with high > low, got {self.value_range}.")
        return {"shape": list(image_shape(images)), "dtype": str(np.dtype(images.dtype)), "value_range": [lo, hi]}

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """A query must have the model's image shape; it keeps the model's pixel scaling."""
        images = image_array(adata_target, self.attr_key)
        check_query_dtype(images, self.attr_key, state_registry["dtype"])
        if list(image_shape(images)) != list(state_registry["shape"]):
            raise ValueError(
                f"adata.obsm[{self.attr_key!r}] holds images of shape {image_shape(images)}; the model was "
                f"trained on {tuple(state_registry['shape'])} (C, H, W)."
            )
        return dict(state_registry)

    def get_summary_stats(self, state_registry: dict) -> dict:
        """Channels and pixels."""
        c, h, w = state_registry["shape"]
        return {"n_channels": c, "image_pixels": h * w}


class ImageReader:
    """Flat float32 rows ``(n, C * H * W)`` of images scaled to [-1, 1], read in chunks.

    It reads like :class:`scgde.data.RowFetcher` (``rows``, ``slice``, ``shape``), so the set
    samplers, data modules and streamed encoding of the cell engine work on images unchanged. The
    source may be a numpy array, an ``h5py.Dataset`` (e.g. of an ``.h5ad`` file), a zarr array or
    a dask array; only the requested rows are read.

    Parameters
    ----------
    images
        ``(n, C, H, W)`` or ``(n, H, W)`` array.
    value_range
        ``(low, high)`` pixel values mapped to -1 and 1.
    """

    columns = None  # images have no variables to reorder

    def __init__(self, images, value_range: tuple[float, float]):
        self.images = images
        self.low, self.high = (float(v) for v in value_range)
        c, h, w = image_shape(images)
        self.shape = (int(images.shape[0]), c * h * w)
        # h5py wants increasing indices; zarr v3 reads lists through its orthogonal indexer
        self._indexer = getattr(images, "oindex", None)
        self._sorted_only = type(images).__module__.startswith("h5py")

    def _scale(self, block) -> np.ndarray:
        x = _to_numpy(block).reshape(len(block), -1).astype(np.float32)
        return (x - self.low) * np.float32(2.0 / (self.high - self.low)) - np.float32(1.0)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Images of rows ``idx`` (any order, repeats allowed)."""
        idx = np.asarray(idx, dtype=np.int64)
        if isinstance(self.images, np.ndarray):
            return self._scale(self.images[idx])
        unique, inverse = np.unique(idx, return_inverse=True)  # each stored image read once, in order
        source = self._indexer if self._indexer is not None else self.images
        block = source[unique] if not self._sorted_only else self.images[unique.tolist()]
        return self._scale(block)[inverse]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Images of rows ``start:stop``."""
        return self._scale(self.images[start:stop])


def to_pixels(x: np.ndarray, shape, dtype, value_range) -> np.ndarray:
    """Inverse of the reader's scaling: flat [-1, 1] rows to ``(n, C, H, W)`` images of ``dtype``.

    Values are clipped to [-1, 1] first; integer images are rounded.
    """
    lo, hi = (float(v) for v in value_range)
    pixels = (np.clip(x, -1.0, 1.0) + 1.0) * (0.5 * (hi - lo)) + lo
    pixels = pixels.reshape(len(x), *shape)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):  # a value_range beyond the dtype must not wrap around
        info = np.iinfo(dtype)
        return np.clip(np.rint(pixels), info.min, info.max).astype(dtype)
    return pixels.astype(dtype)


def registered_reader(adata_manager) -> ImageReader:
    """An :class:`ImageReader` of the AnnData registered with ``adata_manager``."""
    state = adata_manager.get_state_registry(IMAGE_KEY)
    key = adata_manager.data_registry[IMAGE_KEY].attr_key
    return ImageReader(image_array(adata_manager.adata, key), state["value_range"])


class ImageSetDataSplitter(SetDataSplitter):
    """:class:`scgde.data.SetDataSplitter` over images: batches ``{"X": (B, m, C * H * W)}`` in [-1, 1].

    ``kernel="auto"`` keeps whole sets (there is no expression space to draw neighbourhoods in);
    pass ``kernel={"obsm": "spatial", "kernel": "exponential"}`` to train on spatial neighbourhoods
    of cell centroids.
    """

    @staticmethod
    def make_fetcher(adata_manager) -> ImageReader:
        return registered_reader(adata_manager)

    @staticmethod
    def kernel_coordinates(fetcher, seed: int) -> None:
        return None
