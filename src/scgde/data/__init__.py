"""Set construction ("meta-distributions") and set-wise data loading."""

from ._datamodule import (
    SET_LABEL_KEY,
    WEIGHTS_KEY,
    SetDataModule,
    SetDataSplitter,
    auto_kernel_applies,
    uses_auto_kernel,
)
from ._design import PerturbationDesign
from ._fetch import MissingLayerError, OneChannelImages, RowFetcher, layer_fetcher, layer_matrix, layer_names
from ._fields import (
    SET_KEY,
    SET_LABELS_KEY,
    RegistryField,
    SetLabelsObsField,
    SetObsField,
    registered_set_labels,
    registered_sets,
)
from ._mudata import MODALITY_ARGS, ModalityFetcher, registered_fetcher, registered_modalities
from ._niches import NICHE_KEY, NicheObspField, NicheSampler, NicheSets, encode_niches, registered_niches
from ._samplers import (
    DirichletMixer,
    GroupSampler,
    KernelSampler,
    SetBatch,
    SetSampler,
    WindowSampler,
    make_sampler,
    prescribed_mixture,
    register_set_kind,
)
from ._sets import SET_NAME_SEP, SetIndex, as_key_list, n_training_sets, set_labels, split_sets
from ._stream import ChainedChunks, GeneOrder, SetChunks, default_chunk_size, pca_coordinates

__all__ = [
    "MODALITY_ARGS",
    "ModalityFetcher",
    "registered_fetcher",
    "registered_modalities",
    "NICHE_KEY",
    "NicheObspField",
    "NicheSampler",
    "NicheSets",
    "encode_niches",
    "registered_niches",
    "SET_KEY",
    "SET_LABELS_KEY",
    "SET_LABEL_KEY",
    "WEIGHTS_KEY",
    "SET_NAME_SEP",
    "DirichletMixer",
    "GroupSampler",
    "KernelSampler",
    "PerturbationDesign",
    "OneChannelImages",
    "RowFetcher",
    "MissingLayerError",
    "layer_fetcher",
    "layer_matrix",
    "layer_names",
    "SetBatch",
    "GeneOrder",
    "ChainedChunks",
    "SetChunks",
    "SetDataModule",
    "SetDataSplitter",
    "SetLabelsObsField",
    "RegistryField",
    "SetObsField",
    "SetIndex",
    "SetSampler",
    "WindowSampler",
    "as_key_list",
    "auto_kernel_applies",
    "default_chunk_size",
    "make_sampler",
    "n_training_sets",
    "pca_coordinates",
    "prescribed_mixture",
    "register_set_kind",
    "registered_set_labels",
    "registered_sets",
    "set_labels",
    "split_sets",
    "uses_auto_kernel",
]
