"""Training of a GDE: sets split into training and validation sets, random subsets per step."""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import math
import signal
import tempfile
import threading
import warnings
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from scvi import settings
from scvi.model._utils import use_distributed_sampler
from scvi.model.base import UnsupervisedTrainingMixin
from scvi.train import Trainer, TrainingPlan, TrainRunner

from scgde._docs import inject_docs
from scgde.data import (
    SetDataSplitter,
    auto_kernel_applies,
    n_training_sets,
    registered_niches,
    registered_sets,
)

from ._supervision import check_label_training
from ._validate import check_choice

#: default training length: this many passes over the training cells, within [MIN_STEPS, MAX_STEPS]
DEFAULT_PASSES = 40
MIN_STEPS, MAX_STEPS = 2500, 8000
#: the floor when a few groups train as kernel neighbourhoods (longer runs extrapolated worse, docs/benchmarks.md)
FEW_SETS_MIN_STEPS = 1000


#: DDP strategies by name, and the variant that tolerates parameters a step does not use
_DDP_NAMES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def ddp_strategy(strategy):
    """A DDP strategy name that tolerates unused parameters; other strategies unchanged.

    Some parameters of a GDE take part only in some steps (the null condition of classifier-free
    guidance, a label head on batches without labels), which plain DDP refuses.
    """
    return f"{strategy}_find_unused_parameters_true" if strategy in _DDP_NAMES else strategy


def several_processes(accelerator, devices, num_nodes) -> bool:
    """Whether Lightning will run this training on more than one process (then it picks DDP itself)."""
    if int(num_nodes or 1) > 1:
        return True
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int):
        return devices > 1 or (devices == -1 and torch.cuda.device_count() > 1)
    # "auto": every visible GPU when the accelerator may be one
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1


def is_global_zero() -> bool:
    """Whether this process writes results: always, unless it is a non-zero rank of a DDP process group."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


#: loggers of Lightning's information lines (GPU/TPU availability, a logging-service tip, "`Trainer.fit` stopped"),
#: quieted while ``train()`` runs
LIGHTNING_LOGGERS = (
    "lightning.pytorch",
    "lightning.fabric",
    "lightning_utilities",
    "pytorch_lightning",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
)
#: library warnings of no use to a user, ignored while ``train()`` runs (Lightning calling a torch API torch deprecates)
_LIBRARY_WARNINGS = ((FutureWarning, r".*isinstance\(treespec, LeafSpec\).*"),)


@contextlib.contextmanager
def quiet_lightning():
    """Quiet Lightning's information lines and library deprecation warnings for the duration of a training.

    Raises the level of :data:`LIGHTNING_LOGGERS` to ``WARNING`` (their warnings and errors still
    show) and restores every level afterwards, so nothing outside the training changes. Nothing is
    quieted when scvi-tools' verbosity is ``logging.DEBUG`` or lower
    (``scvi.settings.verbosity = logging.DEBUG``).
    """
    if logging.getLogger("scvi").getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    for name in LIGHTNING_LOGGERS:
        log = logging.getLogger(name)
        if log.getEffectiveLevel() < logging.WARNING:
            log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for category, message in _LIBRARY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _restore_sigint(handler) -> None:
    """Put back the SIGINT handler Lightning replaces (with "ignore") when it handles a KeyboardInterrupt."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, OSError, TypeError):
        signal.signal(signal.SIGINT, handler)


class SetTrainRunner(TrainRunner):
    """scvi-tools' :class:`~scvi.train.TrainRunner`, stopping cleanly on KeyboardInterrupt (Ctrl-C).

    Lightning turns a KeyboardInterrupt during ``fit`` into ``sys.exit(1)`` (and leaves SIGINT
    ignored); scvi-tools then prints "Exception raised during training" and re-raises. Here the
    training stops instead: the model keeps the weights of the last step, in eval mode and marked
    trained, the SIGINT handler is restored, and ``model.training_interrupted_`` is set (the caller
    warns). Other exceptions propagate unchanged, without scvi-tools' message.
    """

    def _run_training_core(self):
        sigint = signal.getsignal(signal.SIGINT)
        try:
            self.trainer.fit(self.training_plan, self.data_splitter, ckpt_path=self.ckpt_path)
        except (KeyboardInterrupt, SystemExit) as exc:
            if isinstance(exc, SystemExit) and not isinstance(exc.__context__, KeyboardInterrupt):
                raise
            _restore_sigint(sigint)
            self._finish(interrupted=True)
            return
        except BaseException:
            self._update_history()  # what scvi-tools keeps of a failed training
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        self._finish(interrupted=False)

    def _finish(self, interrupted: bool) -> None:
        """What scvi-tools does after a training, and the record of an interruption."""
        self._update_history()
        self.model.train_indices = getattr(self.data_splitter, "train_idx", None)
        self.model.test_indices = getattr(self.data_splitter, "test_idx", None)
        self.model.validation_indices = getattr(self.data_splitter, "val_idx", None)
        self.model.module.eval()
        self.model.is_trained_ = True
        self.model.to_device(self.device)
        self.model.trainer = self.trainer
        self.model.training_interrupted_ = interrupted
        batches = self.trainer.num_training_batches
        planned = self.trainer.max_epochs * batches if np.isfinite(batches) and self.trainer.max_epochs else None
        self.model._steps_done = (int(self.trainer.global_step), planned)


def _scratch_dirs(trainer_kwargs: dict) -> bool:
    """Whether ``train()`` may point Lightning's output folders at a temporary folder (the user chose none).

    Not when the user passes a folder or a logger, or asks for checkpoints: those are files they asked for.
    """
    if any(k in trainer_kwargs for k in ("default_root_dir", "logger", "log_save_dir")):
        return False
    if trainer_kwargs.get("enable_checkpointing"):
        return False
    callbacks = trainer_kwargs.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list | tuple) else [callbacks]
    return not any(isinstance(c, Checkpoint) for c in callbacks)


#: whether scvi-tools' training plan has the ``fused_optimizer`` option (1.5 and newer)
_PLAN_TAKES_FUSED = "fused_optimizer" in inspect.signature(TrainingPlan.__init__).parameters


def default_steps(n_train_cells: int, sets_per_batch: int, cells_per_set: int, few_sets: bool = False) -> int:
    """Optimiser steps of the default training: 40 passes over the training cells, 2,500 to 8,000 steps.

    With ``few_sets`` (fewer than 50 training sets, trained as kernel neighbourhoods) the floor is
    1,000 steps.
    """
    per_pass = math.ceil(n_train_cells / (sets_per_batch * cells_per_set))
    return int(np.clip(DEFAULT_PASSES * per_pass, FEW_SETS_MIN_STEPS if few_sets else MIN_STEPS, MAX_STEPS))


def _set_trainer_defaults(trainer_kwargs: dict, train_size, accelerator, devices, batches_per_epoch: int) -> None:
    """Fill in the Lightning trainer options ``train()`` sets unless given (in place)."""
    if train_size < 1.0:
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
    trainer_kwargs.setdefault("gradient_clip_val", 10.0)
    if "strategy" in trainer_kwargs:
        trainer_kwargs["strategy"] = ddp_strategy(trainer_kwargs["strategy"])
    elif several_processes(accelerator, devices, trainer_kwargs.get("num_nodes")):
        trainer_kwargs["strategy"] = ddp_strategy("ddp")  # what Lightning would pick, tolerating unused parameters
    # fewer batches than Lightning's logging interval is no reason for a warning
    trainer_kwargs.setdefault("log_every_n_steps", max(1, min(10, batches_per_epoch)))


def _use_scratch_dirs(scratch: contextlib.ExitStack, trainer_kwargs: dict) -> None:
    """Point Lightning's folders to a temporary folder (removed by ``scratch``) where the user asked for none."""
    if not _scratch_dirs(trainer_kwargs):
        return
    folder = scratch.enter_context(tempfile.TemporaryDirectory(prefix="scgde-train-", ignore_cleanup_errors=True))
    trainer_kwargs["default_root_dir"] = folder
    takes_log_dir = "log_save_dir" in inspect.signature(Trainer.__init__).parameters
    if takes_log_dir and use_distributed_sampler(trainer_kwargs.get("strategy")):
        trainer_kwargs["log_save_dir"] = folder  # scvi-tools keeps a DDP loss history on disk


class TrainMixin(UnsupervisedTrainingMixin):
    """``train()`` for set models, through :class:`~scgde.data.SetDataSplitter`.

    Uses only the hooks of :class:`~scgde.model.base.BaseSetModelClass`.
    """

    _data_splitter_cls = SetDataSplitter
    _train_runner_cls = SetTrainRunner
    #: whether the last ``train()`` was stopped by a KeyboardInterrupt (saved with the model)
    training_interrupted_ = False

    @inject_docs
    def train(
        self,
        max_epochs: int | None = None,
        sets_per_batch: int = 64,
        cells_per_set: int = 100,
        mixer: str | dict | None = None,
        kernel: dict | Literal["auto"] | None = "auto",
        window: int | None = None,
        min_set_size: int = 1,
        train_size: float = 0.9,
        batches_per_epoch: int | None = None,
        lr: float = 1e-3,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        early_stopping: bool = False,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        label_weight: float = 1.0,
        **trainer_kwargs,
    ):
        """Train encoder and generator jointly on random subsets of the training sets.

        Sets (never cells) are split into training and validation sets; the validation loss is
        computed on the same validation subsets every epoch and logged as ``validation_loss``.
        For a niche model the sets are the cells' niches, which overlap: a validation niche shares
        cells with training niches, so its loss is not held out in the strict sense.
        The defaults are the best configuration measured (``benchmarks/defaults.py``).

        Parameters
        ----------
        max_epochs
            Number of epochs. Default: the data decide: 40 passes over the training cells, at
            least 2,500 and at most 8,000 optimiser steps (e.g. 5,640 steps for 2,000 sets of 500
            2-D points; 2,500 steps for up to ~400,000 cells). Short trainings cost quality: on
            covariance-heavy 2-D Gaussian sets, held-out Spearman(latent L2, W2) was 0.908 after
            1,000 steps, 0.935 after 2,500 and 0.942 after 5,000 (set means: 0.64); see
            ``docs/benchmarks.md`` for times. With fewer than 50 training sets (trained as kernel
            neighbourhoods, ``kernel="auto"``) the floor is 1,000 steps: on a held-out Kang 2018
            cell type, 2,500 steps predicted it worse than 1,000 (E-distance 0.60 against 0.51).
        %(sets_per_batch)s
        %(cells_per_set)s
        mixer
            ``None`` (each training set is one group), ``"dirichlet"`` or a dict such as
            ``{"k": 3, "alpha": 1.0}``: train on k-sparse Dirichlet mixtures of sets, which fills
            the space between sets (the paper's mixer).
        kernel
            Train on kernel-weighted neighbourhoods instead of whole sets, e.g.
            ``{"obsm": "X_pca", "bandwidth": None, "n_neighbors": 200, "within_set": True}``: each
            training set is centred on a random cell of a training set (see
            :class:`~scgde.data.KernelSampler`). Gives many local distributions when there are
            only a few groups. Embeddings are still computed from whole sets. ``"auto"`` (default):
            neighbourhoods of 100 cells within each set, in 30 principal components of the data,
            when there are fewer than 50 training sets and no ``mixer``; whole sets otherwise (and
            always for MuData and niche models: a niche is already a neighbourhood, and principal
            components of multimodal cells would group them by their missing modalities).
            ``None``: always whole sets.
        window
            Train on windows of neighbouring sets instead of single sets: the sets are bins of an
            ordered axis in their registered order (e.g. from :func:`scgde.pp.quantile_bins`), and
            each training set draws its elements from a centre bin and the ``window`` bins on each
            side (the paper's quantile-window prior; see :class:`~scgde.data.WindowSampler`).
        %(min_set_size)s
        %(train_size)s
        batches_per_epoch
            Minibatches per epoch; default: about one pass over the training cells, at least 10.
        lr
            Adam learning rate.
        lr_schedule
            ``"constant"`` (default; measured best with the flow generator) or ``"cosine"`` (2% warm-up,
            then cosine decay to 1% of ``lr``).
        early_stopping
            Stop when the validation loss stops improving (patience via ``early_stopping_patience``).
        accelerator, devices
            Lightning device selection (``"auto"`` uses a GPU when available).
            Several processes (``devices=2`` or more, ``num_nodes=``) train with Lightning's DDP
            when ``strategy="ddp"`` (a script, ``torchrun`` or SLURM: every process runs the
            script) or ``"ddp_spawn"`` (also from a notebook; on CPU the gloo backend). Each process
            draws from its own disjoint share of the training sets and gets its share of the
            epoch's batches (the gradients are averaged, so a step sees ``devices x
            sets_per_batch`` sets and the run takes ``1 / devices`` of the steps); the validation
            loss is reduced over the processes; early stopping is off (scvi-tools) and only the
            global-zero process writes with :meth:`save`.
        plan_kwargs
            Passed to :class:`~scgde.model.GDETrainingPlan` (e.g. ``weight_decay``).
        label_weight
            Weight of the set-label loss (models set up with ``set_labels_key``): the loss is the
            generator loss plus ``label_weight`` times the label loss over the labelled sets of each
            batch (mixtures and kernel neighbourhoods are unlabelled). ``0``: the head is not
            trained. ``plan_kwargs={"generator_weight": 0.0}`` trains encoder and head on the
            labels alone (a supervised-only baseline).
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``strategy``, ``num_nodes``, ``precision``,
            ``gradient_clip_val``, ``enable_progress_bar``, ``callbacks``).
            The seed of the split and of the draws is ``scvi.settings.seed``.
            Nothing is written to disk unless asked: Lightning's folders point to a temporary folder,
            removed after the training, unless ``default_root_dir``, ``logger`` or ``log_save_dir`` is
            given or checkpoints are asked for (``enable_checkpointing=True`` or a checkpoint callback).

        Notes
        -----
        **Interrupting.** A KeyboardInterrupt (Ctrl-C, or interrupting a notebook kernel) stops the
        training cleanly: ``train()`` returns normally (as Lightning's graceful shutdown does, and
        without re-raising) with one warning saying after how many optimiser steps it stopped; the
        model keeps the weights trained so far, is marked trained, in eval mode, and
        ``model.training_interrupted_`` is ``True`` (saved with the model). Call ``train()`` again to
        go on training; press Ctrl-C again to interrupt what follows.

        **Console output.** The progress bar is kept; Lightning's information lines (GPU/TPU
        availability, tips, "`Trainer.fit` stopped") and library deprecation warnings are quieted
        while the training runs, and the loggers' levels restored afterwards. Set
        ``scvi.settings.verbosity = logging.DEBUG`` to see them.
        """
        self._check_train_args(lr_schedule, sets_per_batch, cells_per_set)
        kernel, sizes = self._usable_set_sizes(mixer, kernel, window, min_set_size)
        few_sets = kernel == "auto" and auto_kernel_applies(
            self.adata_manager, n_training_sets(len(sizes), train_size), mixer, window
        )
        batches_per_epoch, max_epochs = self._step_plan(
            sizes, max_epochs, batches_per_epoch, train_size, sets_per_batch, cells_per_set, few_sets
        )
        if early_stopping and train_size >= 1.0:
            raise ValueError("early_stopping needs validation sets: use train_size < 1.")
        seed = settings.seed if settings.seed is not None else 0
        datasplitter_kwargs = {
            "cells_per_set": cells_per_set,
            "mixer": mixer,
            "kernel": kernel,
            "window": window,
            "min_set_size": min_set_size,
            "batches_per_epoch": batches_per_epoch,
            "seed": int(seed),
        }
        plan_kwargs = self._plan_kwargs(lr, lr_schedule, plan_kwargs, label_weight, mixer, kernel, window)
        _set_trainer_defaults(trainer_kwargs, train_size, accelerator, devices, batches_per_epoch)
        self.module.train()  # embedding calls leave the module in eval mode
        self.training_interrupted_, self._steps_done = False, None
        try:
            datasplitter_kwargs["kernel"] = self._resolve_auto_kernel(
                kernel, few_sets, len(sizes), train_size, int(seed)
            )
            with contextlib.ExitStack() as scratch, quiet_lightning(), warnings.catch_warnings():
                if not early_stopping:  # scvi-tools says it turned off what was not asked for
                    warnings.filterwarnings("ignore", message="early_stopping was automatically disabled")
                _use_scratch_dirs(scratch, trainer_kwargs)
                out = super().train(
                    max_epochs=max_epochs,
                    accelerator=accelerator,
                    devices=devices,
                    train_size=train_size,
                    batch_size=sets_per_batch,
                    early_stopping=early_stopping,
                    datasplitter_kwargs=datasplitter_kwargs,
                    plan_kwargs=plan_kwargs,
                    **trainer_kwargs,
                )
            self._after_training()
        finally:
            self.__dict__.pop("_train_pca", None)  # the coordinates serve this training only
        return out

    def _check_train_args(self, lr_schedule, sets_per_batch: int, cells_per_set: int) -> None:
        """Refuse options that cannot train, before anything is computed."""
        check_choice("lr_schedule", lr_schedule, Literal["constant", "cosine"])
        for name, value in (("sets_per_batch", sets_per_batch), ("cells_per_set", cells_per_set)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if self._reader(self.adata).columns is not None:
            raise ValueError(
                "The AnnData's genes are in another order than the model's: train on adata[:, model.var_names]."
            )

    def _usable_set_sizes(self, mixer, kernel, window, min_set_size: int) -> tuple:
        """The ``kernel`` option in force and the sizes of the sets that are large enough to train on.

        A niche model trains on its niches (one per cell, no kernel neighbourhoods); a pass over them draws
        about as many cells as there are niches.
        """
        niches = registered_niches(self.adata_manager)
        if niches is None:
            index = registered_sets(self.adata_manager)
            return kernel, index.sizes[index.sizes >= max(1, min_set_size)]
        if mixer is not None or window is not None or kernel not in (None, "auto"):
            raise ValueError("This model trains on its niches (niche_key=): mixer=, kernel= and window= do not apply.")
        return None, np.ones(int((niches.sizes >= max(1, min_set_size)).sum()), dtype=np.int64)

    def _resolve_auto_kernel(self, kernel, few_sets: bool, n_sets: int, train_size: float, seed: int):
        """The ``kernel`` the data splitter gets: ``"auto"`` decided here, once (the splitter does not decide again).

        With ``few_sets`` the neighbourhoods are drawn in the splitter's :meth:`~scgde.data.SetDataSplitter.kernel_coordinates`
        (``None``: whole sets); those principal components are kept for :meth:`_calibrate_support` of this training.
        """
        if kernel != "auto":
            return kernel
        if not few_sets:
            return None
        if n_sets < 2 or not 0.0 < train_size <= 1.0:
            return kernel  # the splitter refuses these, with its own message, before any coordinates are computed
        splitter = self._data_splitter_cls
        fetcher = splitter.make_fetcher(self.adata_manager)
        coords = splitter.kernel_coordinates(fetcher, seed)
        if coords is not None and splitter.kernel_coordinates is SetDataSplitter.kernel_coordinates:
            self._train_pca = (fetcher.name, fetcher.shape, seed, coords)  # the PCA of the registered matrix
        return splitter.neighbourhood_kernel(coords)

    def _step_plan(
        self, sizes, max_epochs, batches_per_epoch, train_size, sets_per_batch, cells_per_set, few_sets: bool
    ) -> tuple[int, int]:
        """``(batches_per_epoch, max_epochs)``: the given ones, or the defaults the data decide."""
        n_train_cells = max(1, int(train_size * sizes.sum()))
        self._default_plan = None
        if batches_per_epoch is None:
            batches_per_epoch = max(10, math.ceil(n_train_cells / (sets_per_batch * cells_per_set)))
        if max_epochs is None:
            steps = self._default_steps(n_train_cells, sets_per_batch, cells_per_set, few_sets)
            max_epochs = max(1, math.ceil(steps / batches_per_epoch))
            self._default_plan = {
                "n_train_cells": n_train_cells,
                "sets_per_batch": sets_per_batch,
                "cells_per_set": cells_per_set,
                "few_sets": few_sets,
                "steps": int(steps),
            }
        return batches_per_epoch, max_epochs

    def _plan_kwargs(self, lr, lr_schedule, plan_kwargs, label_weight, mixer, kernel, window) -> dict:
        """Options of the training plan: the optimiser's, the user's, and the label loss's weight."""
        plan_kwargs = {"lr": lr, "lr_schedule": lr_schedule, "eps": 1e-8, "weight_decay": 0.0, **(plan_kwargs or {})}
        if _PLAN_TAKES_FUSED:  # scvi-tools >= 1.5: its fused Adam refuses gradient clipping under mixed precision
            plan_kwargs.setdefault("fused_optimizer", False)
        if getattr(self.module, "label_head", None) is not None:
            check_label_training(
                label_weight, plan_kwargs, self.adata_manager, mixer=mixer, kernel=kernel, window=window
            )
            plan_kwargs["label_weight"] = float(label_weight)
        return plan_kwargs

    def _after_training(self) -> None:
        """Eval mode, the interruption warning, the split kept on the model, and the support calibrated."""
        self.module.eval()
        if self.training_interrupted_:
            done, planned = self._steps_done or (0, None)
            of = "" if planned is None else f" of {planned:,}"
            warnings.warn(
                f"Training was interrupted (KeyboardInterrupt) after {done:,}{of} optimiser steps; the model keeps "
                "the weights trained so far (model.training_interrupted_ is True): call train() again to go on.",
                UserWarning,
                stacklevel=3,
            )
        self.train_sets_, self.validation_sets_ = self.train_indices_, self.validation_indices_
        self._calibrate_support()  # generated zeros follow the data's (non-negative data only)
