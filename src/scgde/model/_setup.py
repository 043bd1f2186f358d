"""Registration shared by the models whose elements are not expression rows (sequences, images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from scvi.data import AnnDataManager

from scgde.data import SetObsField, as_key_list, set_labels


def register_element_sets(
    cls, adata: AnnData, set_key: str | Sequence[str], element_field, setup_method_args: dict, noun: str, **kwargs
) -> None:
    """Check that ``adata`` holds elements in at least 2 sets; register the set labels and ``element_field``.

    ``noun`` names the elements in errors ("sequence", "image"); ``kwargs`` come from ``load`` (a source registry).
    """
    keys = as_key_list(set_key)
    if adata.n_obs == 0:
        raise ValueError(f"adata is empty (0 {noun}s); {cls.__name__} needs {noun}s grouped into at least 2 sets.")
    if "source_registry" not in kwargs:
        _, names = set_labels(adata.obs, keys)
        if len(names) < 2:
            raise ValueError(f"set_key={set_key!r} defines {len(names)} set; {cls.__name__} needs at least 2 sets.")
    manager = AnnDataManager(fields=[SetObsField(keys), element_field], setup_method_args=setup_method_args)
    manager.register_fields(adata, **kwargs)
    cls.register_manager(manager)


def pass_steps(n_train_elements: int, sets_per_batch: int, cells_per_set: int, passes: int, low: int, high: int) -> int:
    """Optimiser steps for ``passes`` passes over the training elements, clipped to ``[low, high]``."""
    per_pass = -(-n_train_elements // (sets_per_batch * cells_per_set))
    return int(np.clip(passes * per_pass, low, high))
