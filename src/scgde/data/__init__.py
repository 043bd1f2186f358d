"""Set construction ("meta-distributions") and set-wise data loading."""

from ._datamodule import SetDataModule
from ._fetch import RowFetcher
from ._samplers import DirichletMixer, GroupSampler, KernelSampler, SetBatch, SetSampler, prescribed_mixture
from ._sets import SET_NAME_SEP, SetIndex, as_key_list, set_labels, split_sets

__all__ = [
    "SET_NAME_SEP",
    "DirichletMixer",
    "GroupSampler",
    "KernelSampler",
    "RowFetcher",
    "SetBatch",
    "SetDataModule",
    "SetIndex",
    "SetSampler",
    "as_key_list",
    "prescribed_mixture",
    "set_labels",
    "split_sets",
]
