"""Distribution embeddings of sets of cell images.

The same engine as :mod:`scgde.model` (set samplers, training plan, streamed exact embedding),
with a convolutional set encoder of images and a conditional UNet generator (diffusion or flow
matching).
"""

from ._data import ImageObsmField, ImageReader, ImageSetDataSplitter
from ._features import image_features, nucleus_masks, otsu_threshold
from ._io import read_crops, read_h5ad_images, write_images_zarr
from ._model import ImageGDE
from ._module import ImageGDEModule
from ._nn import ConditionalUNet, ConvImageEncoder

__all__ = [
    "ConditionalUNet",
    "ConvImageEncoder",
    "ImageGDE",
    "ImageGDEModule",
    "ImageObsmField",
    "ImageReader",
    "ImageSetDataSplitter",
    "image_features",
    "nucleus_masks",
    "otsu_threshold",
    "read_crops",
    "read_h5ad_images",
    "write_images_zarr",
]
