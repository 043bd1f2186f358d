"""The set-model base: every hook the shared mixins call, declared once with its default."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.model.base import BaseModelClass

from scgde.model._train import default_steps


class BaseSetModelClass(BaseModelClass):
    """Base of every set model (``GDE``, ``MultimodalGDE``, :class:`~scgde.seq.SeqGDE`, :class:`~scgde.img.ImageGDE`).

    The training, embedding and generation mixins (:class:`TrainMixin`, :class:`EmbeddingMixin`,
    :class:`GenerationMixin`) use only the hooks declared here. A model lists the mixins first and
    this class last, so that a mixin's implementation (e.g. the multimodal one) takes precedence over
    the defaults below; a model overrides a hook where its elements differ (sequences, images).

    Hooks
    -----
    ``_reader(adata)``
        The one read path of a model: the rows of ``adata`` (the training AnnData or a query) in the
        model's element representation. Required.
    ``_fetcher(adata)``
        Raw rows of the registered matrix, for generation support (cell models only).
    ``_default_steps(n_train_cells, sets_per_batch, cells_per_set, few_sets)``
        Optimiser steps of ``train()`` without ``max_epochs``.
    ``_calibrate_support()``
        Called once after training (cell models learn the zero curves of generated sets).
    ``_wrap_generated(x, obs)``
        Generated elements -> AnnData (or MuData).
    ``_multimodal`` / ``_batch_key``
        Whether the model reads several modalities; the registered batch key, if any.

    Loading helpers (for a model's ``load``): ``_saved_var_names(dir_path)`` reads the features a
    saved model was trained on (a dict per modality for a MuData model) and ``_load_quietly`` is
    scvi-tools' ``load`` without its feature-order warnings (the model checks features itself).

    Set by the mixins: ``_default_plan``, the inputs and result of the default step rule of the last
    ``train()`` (``None`` when the length was given), and ``data_range_`` (cell models: where the
    training values lie; saved with the model).
    """

    _default_plan: dict | None = None
    data_range_: dict | None = None

    @property
    def _multimodal(self) -> bool:
        return False

    @property
    def _batch_key(self) -> str | None:
        return None

    def _reader(self, adata: AnnData):
        raise NotImplementedError(f"{type(self).__name__} must define _reader(adata), its read path.")

    def _fetcher(self, adata: AnnData):
        raise NotImplementedError(f"{type(self).__name__} reads no expression matrix.")

    @staticmethod
    def _default_steps(n_train_cells: int, sets_per_batch: int, cells_per_set: int, few_sets: bool = False) -> int:
        return default_steps(n_train_cells, sets_per_batch, cells_per_set, few_sets)

    def _calibrate_support(self) -> None:
        """Nothing to calibrate by default."""

    def _wrap_generated(self, x: np.ndarray, obs: pd.DataFrame) -> AnnData:
        return AnnData(x, obs=obs)

    # ------------------------------------------------------------------ loading helpers
    @staticmethod
    def _saved_var_names(dir_path: str | Path):
        """The features a saved model was trained on (scvi-tools saves a MuData model's per modality: a dict)."""
        model_file = Path(dir_path) / "model.pt"
        if not model_file.exists():
            raise FileNotFoundError(f"{dir_path} holds no saved model (no model.pt); pass the folder given to save().")
        return torch.load(model_file, map_location="cpu", weights_only=False)["var_names"]

    @classmethod
    def _load_quietly(cls, dir_path: str | Path, adata=None, **kwargs):
        """scvi-tools' ``load`` without its "already downloaded" log and feature warnings (the model checks them)."""
        scvi_logger = logging.getLogger("scvi")
        level = scvi_logger.level
        scvi_logger.setLevel(max(level, logging.WARNING))  # "File ... already downloaded"
        try:
            with warnings.catch_warnings():
                # features in another order are the model's to handle (or refuse), not scvi-tools' warning
                warnings.filterwarnings("ignore", message=".*var_names.*")
                return super().load(str(dir_path), adata=adata, **kwargs)
        finally:
            scvi_logger.setLevel(level)
