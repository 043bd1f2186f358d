"""Lightning data module yielding batches of sets, split by set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ._fetch import RowFetcher
from ._samplers import SetBatch, SetSampler


class _SetBatches(Dataset):
    """``n_batches`` batches of sets; random for training, fixed (seeded per item) for validation."""

    def __init__(
        self, datamodule: SetDataModule, sampler: SetSampler, n_batches: int, fixed_codes: np.ndarray | None, seed: int
    ):
        self.dm = datamodule
        self.sampler = sampler
        self.n_batches = n_batches
        self.fixed_codes = fixed_codes
        self.seed = seed
        self.rng = np.random.default_rng(seed)

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
    ):
        super().__init__()
        if sets_per_batch < 1:
            raise ValueError(f"sets_per_batch must be >= 1, got {sets_per_batch}.")
        self.fetcher = fetcher
        self.sets_per_batch = int(sets_per_batch)
        self.batch_codes = batch_codes
        self.train_idx = np.asarray(set_names[train_sets])
        self.val_idx = np.asarray(set_names[val_sets])
        self.test_idx = np.asarray([], dtype=object)
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

    def tensors(self, batch: SetBatch) -> dict[str, torch.Tensor]:
        """Fetch the rows of a :class:`SetBatch` as model input tensors."""
        n_sets, m = batch.cells.shape
        x = self.fetcher.rows(batch.cells.ravel()).reshape(n_sets, m, -1)
        out = {"X": torch.from_numpy(x)}
        if batch.weights is not None:
            out["weights"] = torch.as_tensor(batch.weights, dtype=torch.float32)
        if self.batch_codes is not None:
            out["batch"] = torch.from_numpy(self.batch_codes[batch.cells].astype(np.int64))
        return out

    def train_dataloader(self) -> DataLoader:
        """Batches of training sets; each item is already a whole batch, so the loader does not batch again."""
        return DataLoader(self._train, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader | list:
        """Batches of validation sets, or an empty list when no set was held out."""
        return [] if self._val is None else DataLoader(self._val, batch_size=None, shuffle=False)
