"""Lightning data modules yielding batches of sets, split by set (never by cell)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from scvi import REGISTRY_KEYS
from torch.utils.data import DataLoader, Dataset

from scgde._docs import inject_docs
from scgde.module import BATCH_KEY, SET_LABEL_KEY, WEIGHTS_KEY, X_KEY

from ._fetch import RowFetcher
from ._fields import registered_set_labels, registered_sets
from ._mudata import ModalityFetcher, registered_fetcher, registered_modalities
from ._niches import NICHE_KEY, registered_niches
from ._samplers import SetBatch, SetSampler, make_sampler
from ._sets import split_sets
from ._stream import pca_coordinates

#: ``kernel="auto"`` trains on kernel neighbourhoods when there are fewer training sets than this
AUTO_KERNEL_SETS = 50
AUTO_KERNEL_NEIGHBORS = 100


def uses_auto_kernel(n_train_sets: int, mixer=None, window=None, has_set_labels: bool = False) -> bool:
    """Whether ``kernel="auto"`` trains on kernel neighbourhoods: few training sets, no other sampler, no labels.

    A label head learns from whole labelled sets, so labelled data keep whole sets.
    """
    return mixer is None and window is None and not has_set_labels and n_train_sets < AUTO_KERNEL_SETS


def auto_kernel_applies(adata_manager, n_train_sets: int, mixer=None, window=None) -> bool:
    """Whether ``kernel="auto"`` trains the data registered with ``adata_manager`` on kernel neighbourhoods.

    Never for niche models (a niche is already a neighbourhood) nor MuData (principal components of
    multimodal cells would group them by their missing modalities); otherwise :func:`uses_auto_kernel`,
    with the registered set labels. The one decision, made by ``train()`` and by a
    :class:`SetDataSplitter` given ``kernel="auto"``.
    """
    if NICHE_KEY in adata_manager.data_registry or registered_modalities(adata_manager) is not None:
        return False
    return uses_auto_kernel(n_train_sets, mixer, window, registered_set_labels(adata_manager) is not None)


class _SetBatches(Dataset):
    """``n_batches`` batches of sets; random for training, fixed (seeded per item) for validation."""

    def __init__(
        self,
        datamodule: SetDataModule,
        sampler: SetSampler,
        n_batches: int,
        fixed_codes: np.ndarray | None,
        seed: int,
        stream: int = 0,
    ):
        self.dm = datamodule
        self.sampler = sampler
        self.n_batches = n_batches
        self.fixed_codes = fixed_codes
        self.seed = seed
        # stream > 0: another process's draws (DDP rank), independent of stream 0's
        self.rng = np.random.default_rng((seed, stream) if stream else seed)

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.fixed_codes is None:
            batch = self.sampler.sample(self.dm.sets_per_batch, self.rng)
        else:
            # validation: the same sets and cells every epoch, so epochs are comparable
            codes = self.fixed_codes[i * self.dm.sets_per_batch : (i + 1) * self.dm.sets_per_batch]
            batch = self.sampler.sample_sets(codes, np.random.default_rng((self.seed, i)))
        return self.dm.tensors(batch)


class SetDataModule(LightningDataModule):
    """Batches ``{"X": (B, m, G)[, "weights": (B, m)][, "batch": (B, m)]}`` of training/validation sets.

    Parameters
    ----------
    fetcher
        Reads expression rows.
    train_sampler, val_sampler
        Samplers restricted to the training and the validation sets (``val_sampler=None``: no
        validation).
    set_names
        Names of all sets (to report the split).
    train_sets, val_sets
        Codes of the sets in each split.
    sets_per_batch
        ``B``.
    batches_per_epoch
        Training batches per epoch.
    batch_codes
        Optional ``(n_obs,)`` integer covariate (e.g. the experimental batch) passed per cell.
    seed
        Seed of the set and cell draws.
    set_label_values
        Optional label of each set (NaN: unlabelled), passed per drawn set as ``"set_label"``;
        mixtures and other sets without a source set are unlabelled.
    make_train_sampler
        Builds the training sampler of a share of the training sets (a function of set codes). Under
        Lightning DDP (more than one process) each process draws with its own random stream and,
        given this function, from its own disjoint share of the training sets (every
        ``world_size``-th one, starting at its rank); Lightning's distributed sampler gives each
        process its share of the batches and of the validation sets.
    """

    def __init__(
        self,
        fetcher: RowFetcher,
        train_sampler: SetSampler,
        val_sampler: SetSampler | None,
        set_names: pd.Index,
        train_sets: np.ndarray,
        val_sets: np.ndarray,
        sets_per_batch: int,
        batches_per_epoch: int,
        batch_codes: np.ndarray | None = None,
        seed: int = 0,
        set_label_values: np.ndarray | None = None,
        make_train_sampler: Callable[[np.ndarray], SetSampler] | None = None,
    ):
        super().__init__()
        self.set_label_values = set_label_values
        self._make_train_sampler = make_train_sampler
        self._train_codes = np.asarray(train_sets)
        self._set_names = set_names
        self._seed = seed
        if sets_per_batch < 1:
            raise ValueError(f"sets_per_batch must be >= 1, got {sets_per_batch}.")
        self.fetcher = fetcher
        self.sets_per_batch = int(sets_per_batch)
        self.batch_codes = batch_codes
        self.train_idx = np.asarray(set_names[train_sets])
        self.val_idx = np.asarray(set_names[val_sets])
        self.test_idx = np.asarray([], dtype=object)
        #: names of the training sets this process draws from (all of them unless distributed)
        self.rank_train_idx = self.train_idx
        self._train = _SetBatches(self, train_sampler, batches_per_epoch, None, seed)
        self._val = None
        if val_sampler is not None and len(val_sets):
            n_val = int(np.ceil(len(val_sets) / self.sets_per_batch))
            self._val = _SetBatches(self, val_sampler, n_val, np.asarray(val_sets), seed + 1)

    @property
    def n_train(self) -> int:
        """Number of training sets."""
        return len(self.train_idx)

    @property
    def n_val(self) -> int:
        """Number of validation sets."""
        return len(self.val_idx)

    def setup(self, stage: str | None = None) -> None:
        """Under DDP, give this process its own random stream and, if possible, its own share of the training sets."""
        trainer = getattr(self, "trainer", None)
        world = 1 if trainer is None else int(trainer.world_size)
        if world == 1:
            return
        rank = int(trainer.global_rank)
        sampler = self._train.sampler
        if self._make_train_sampler is not None:
            if len(self._train_codes) < world:
                raise ValueError(
                    f"Distributed training over {world} processes needs at least {world} training sets, "
                    f"got {len(self._train_codes)}: use fewer devices or more sets."
                )
            share = self._train_codes[rank::world]
            self.rank_train_idx = np.asarray(self._set_names[share])
            sampler = self._make_train_sampler(share)
        self._train = _SetBatches(self, sampler, self._train.n_batches, None, self._seed, stream=rank + 1)

    def tensors(self, batch: SetBatch) -> dict[str, torch.Tensor]:
        """Fetch the rows of a :class:`SetBatch` as model input tensors."""
        n_sets, m = batch.cells.shape
        x = self.fetcher.rows(batch.cells.ravel()).reshape(n_sets, m, -1)
        out = {X_KEY: torch.from_numpy(x)}
        if batch.weights is not None:
            out[WEIGHTS_KEY] = torch.as_tensor(batch.weights, dtype=torch.float32)
        if self.batch_codes is not None:
            out[BATCH_KEY] = torch.from_numpy(self.batch_codes[batch.cells].astype(np.int64))
        if self.set_label_values is not None:
            labels = np.full(n_sets, np.nan, dtype=np.float32)
            if batch.sets is not None:
                whole = batch.sets >= 0
                labels[whole] = self.set_label_values[batch.sets[whole]]
            out[SET_LABEL_KEY] = torch.from_numpy(labels)
        return out

    def train_dataloader(self) -> DataLoader:
        """Batches of training sets; each item is already a whole batch, so the loader does not batch again."""
        return DataLoader(self._train, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader | list:
        """Batches of validation sets, or an empty list when no set was held out."""
        return [] if self._val is None else DataLoader(self._val, batch_size=None, shuffle=False)


@inject_docs
class SetDataSplitter(SetDataModule):
    """scvi-tools data splitter for sets: the ``_data_splitter_cls`` of :class:`scgde.model.GDE`.

    Built from a registered AnnData like :class:`scvi.dataloaders.DataSplitter`, but splits
    **sets** into training and validation sets and yields batches of random subsets of them. The
    expression matrix, set codes and batches are read through the ``adata_manager`` registry.

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    %(train_size)s
    validation_size
        Unused (the validation sets are all sets not used for training); accepted for scvi-tools.
    batch_size
        Sets per minibatch ``B``.
    shuffle_set_split
        Shuffle sets before splitting (``False``: the first sets train).
    distributed_sampler
        Set by scvi-tools when the strategy is DDP; unused: under DDP (any run with more than one
        process) each process draws from its own disjoint share of the training sets (see
        :class:`SetDataModule`), except with ``mixer`` or ``window``, which need every set (each
        process then only has its own random stream).
    load_sparse_tensor
        Unused; accepted for scvi-tools.
    %(cells_per_set)s
    mixer, kernel, window
        Training-set sampler options (see :func:`scgde.data.make_sampler`). ``kernel="auto"``: kernel
        neighbourhoods within each set, in the principal components of the data, when there are fewer
        than ``AUTO_KERNEL_SETS`` training sets and no mixer (few groups give the generator too few
        distinct set vectors to learn from); whole sets otherwise (decided by
        :func:`auto_kernel_applies`; :meth:`scgde.model.GDE.train` decides it once and passes the
        kernel it chose).
    %(min_set_size)s
    batches_per_epoch
        Training minibatches per epoch.
    seed
        Seed of the split and of the set and cell draws.
    **kwargs
        Other options scvi-tools passes; ignored.
    """

    def __init__(
        self,
        adata_manager,
        train_size: float | None = None,
        validation_size: float | None = None,
        batch_size: int = 32,
        shuffle_set_split: bool = True,
        distributed_sampler: bool = False,
        load_sparse_tensor: bool = False,
        *,
        cells_per_set: int = 64,
        mixer: str | dict | None = None,
        kernel: dict | Literal["auto"] | None = None,
        window: int | None = None,
        min_set_size: int = 1,
        batches_per_epoch: int = 10,
        seed: int = 0,
        **kwargs,
    ):
        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        train_size = 0.9 if train_size is None else train_size
        niches = registered_niches(adata_manager)
        index = registered_sets(adata_manager) if niches is None else niches
        usable = np.flatnonzero(index.sizes >= max(1, min_set_size))
        n_skipped = index.n_sets - len(usable)
        if n_skipped:
            warnings.warn(
                f"Skipping {n_skipped} of {index.n_sets} sets with fewer than min_set_size={min_set_size} cells.",
                UserWarning,
                stacklevel=3,
            )
        if len(usable) < 2:
            raise ValueError(f"Only {len(usable)} set(s) have at least min_set_size={min_set_size} cells; GDE needs 2.")
        rng = np.random.default_rng(seed)
        if shuffle_set_split:
            train_sets, val_sets = split_sets(usable, train_size, rng)
        else:
            n_train = len(split_sets(usable, train_size, rng)[0])
            train_sets, val_sets = usable[:n_train], usable[n_train:]
        adata = adata_manager.adata
        registry = adata_manager.data_registry
        batch_codes = None
        if REGISTRY_KEYS.BATCH_KEY in registry:
            batch_codes = np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()

        fetcher = self.make_fetcher(adata_manager)
        labels = registered_set_labels(adata_manager)
        if kernel == "auto":  # model.train() passes the kernel it decided; "auto" is decided here for direct use
            kernel = None
            if auto_kernel_applies(adata_manager, len(train_sets), mixer, window):
                kernel = self.neighbourhood_kernel(self.kernel_coordinates(fetcher, seed))
        self.kernel = kernel
        # kernel neighbourhoods and windows are not the labelled sets themselves
        set_label_values = None
        if labels is not None:
            set_label_values = np.asarray(labels["set_values"], dtype=np.float32)
            if kernel is not None or window is not None:
                set_label_values = np.full_like(set_label_values, np.nan)

        # a partial, not a closure: DDP's spawn strategies pickle the data module
        sampler = partial(
            make_sampler,
            index,
            cells_per_set=cells_per_set,
            mixer=mixer,
            kernel=kernel,
            obsm=dict(adata.obsm),
            window=window,
        )

        super().__init__(
            fetcher,
            sampler(train_sets),
            sampler(val_sets) if len(val_sets) else None,
            index.names,
            train_sets,
            val_sets,
            batch_size,
            batches_per_epoch,
            batch_codes=None if batch_codes is None else batch_codes.astype(np.int64),
            seed=seed,
            set_label_values=set_label_values,
            # windows and mixtures need all training sets: under DDP those processes share them (own streams only)
            make_train_sampler=sampler if mixer is None and window is None else None,
        )

    @staticmethod
    def make_fetcher(adata_manager) -> RowFetcher | ModalityFetcher:
        """Reader of the training elements: the registered matrix or a MuData's modalities (subclasses read others)."""
        return registered_fetcher(adata_manager)

    @staticmethod
    def neighbourhood_kernel(coords: np.ndarray | None) -> dict | None:
        """The ``kernel`` option of ``kernel="auto"`` neighbourhoods in ``coords`` (``None``: whole sets)."""
        return None if coords is None else {"coords": coords, "n_neighbors": AUTO_KERNEL_NEIGHBORS}

    @staticmethod
    def kernel_coordinates(fetcher, seed: int) -> np.ndarray | None:
        """Coordinates of ``kernel="auto"`` neighbourhoods (``None``: whole sets): principal components."""
        return pca_coordinates(fetcher, seed=seed)
