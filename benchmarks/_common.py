"""Helpers shared by the benchmark scripts: training with an explicit budget, embedding, quiet runs and tables.

Every training call passes its whole budget (steps, learning rate and schedule, split, batch shape) so that the
numbers in ``docs/benchmarks.md`` do not move when the library's defaults change.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

#: ``GDE.train``'s step count when ``max_epochs`` was left out, when the recorded numbers were measured
DEFAULT_STEPS = 2000
#: ``GDE.train``'s optimiser settings when the recorded numbers were measured
OPTIMISER = {"eps": 1e-8, "weight_decay": 0.0}
GRADIENT_CLIP = 10.0

_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "scvi")
_HARMLESS = (
    ".*does not have many workers.*",
    ".*GPU available.*",
    ".*TPU available.*",
    ".*Initializing zero-element tensors.*",
    ".*LeafSpec.*",
    ".*module\\(s\\) in eval mode.*",
)


class Fit(NamedTuple):
    """A trained model, its training time in seconds and what it took; ``untrained``: what ``before_train`` returned."""

    model: object
    train_s: float
    #: optimiser steps actually taken (the trainer's global step)
    steps: int | None = None
    #: epochs in the loss history (None where the history has no ``train_loss_epoch``)
    epochs: int | None = None
    untrained: object = None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No Lightning banners, scvi-tools info or known-harmless warnings inside; the previous state comes back after."""
    import scvi

    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    verbosity = scvi.settings.verbosity
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        scvi.settings.verbosity = logging.ERROR
        with warnings.catch_warnings():
            for message in _HARMLESS:
                warnings.filterwarnings("ignore", message=message)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        scvi.settings.verbosity = verbosity


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """``n`` torch and BLAS threads inside (on a shared 2-core machine more threads were 10-30x slower)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def make_model(
    adata,
    *,
    generator: str,
    encoder: str = "resnet",
    n_latent: int,
    n_hidden: int,
    seed: int | None,
    set_key: str | list[str] | None = "set",
    likelihood: Literal["gaussian", "nb"] = "gaussian",
    **model_kwargs,
):
    """A GDE whose initial weights depend only on ``seed`` (built twice, it gives its own untrained twin).

    ``set_key=None`` keeps the AnnData's current registration; ``seed=None`` continues the current random stream.
    """
    import scgde

    arch = {"n_latent": n_latent, "encoder": encoder, "generator": generator, "likelihood": likelihood}
    setup = None if set_key is None else {"set_key": set_key}
    return build(scgde.model.GDE, adata, setup=setup, model={**arch, "n_hidden": n_hidden, **model_kwargs}, seed=seed)


def build(model_cls: type, adata, *, setup: dict | None, model: dict | None, seed: int | None, seed_with: str = "scvi"):
    """A model: ``model_cls.setup_anndata(adata, **setup)`` (``setup=None`` keeps the registration), then the seed,
    then ``model_cls(adata, **model)``.

    ``seed_with="scvi"`` sets ``scvi.settings.seed`` (torch, numpy, Python and scvi-tools' data split);
    ``"torch"``: ``torch.manual_seed`` only. ``seed=None`` continues the current random streams.
    """
    import scvi
    import torch

    import scgde

    if seed_with not in ("scvi", "torch"):
        raise ValueError(f"seed_with must be 'scvi' or 'torch', got {seed_with!r}.")
    if setup is not None:
        model_cls.setup_anndata(adata, **setup)
    model = dict(model or {})
    if model_cls is scgde.model.GDE and "output_support" in inspect.signature(model_cls).parameters:
        # generated values were never clipped to the data's support when the recorded numbers were measured
        model.setdefault("output_support", "real")
    if seed is not None and seed_with == "torch":
        torch.manual_seed(seed)
    elif seed is not None:
        scvi.settings.seed = seed
    return model_cls(adata, **model)


def budget(steps: int, *, epochs: int | None = None, batches_per_epoch: int | None = None) -> tuple[int, int]:
    """``(epochs, batches_per_epoch)`` for about ``steps`` optimiser steps, given one of the two."""
    if (epochs is None) == (batches_per_epoch is None):
        raise ValueError("budget needs exactly one of epochs= or batches_per_epoch=.")
    if epochs is not None:
        return epochs, math.ceil(steps / epochs)
    per_epoch = min(batches_per_epoch, steps)
    return math.ceil(steps / per_epoch), per_epoch


def one_pass(n_train_cells: int, sets_per_batch: int, cells_per_set: int) -> int:
    """``GDE.train``'s former default ``batches_per_epoch``: about one pass over the training cells, at least 10."""
    return max(10, math.ceil(n_train_cells / (sets_per_batch * cells_per_set)))


def train(
    model,
    *,
    epochs: int,
    batches_per_epoch: int,
    sets_per_batch: int,
    cells_per_set: int,
    train_size: float,
    lr: float = 1e-3,
    lr_schedule: Literal["cosine", "constant"] = "cosine",
    mixer: dict | None = None,
    **train_kwargs,
) -> float:
    """Train ``model`` with every budget argument explicit; returns the training time in seconds."""
    # Lightning keeps the mode the module is in: after get_set_representation / generate (eval mode) it would
    # otherwise train in eval mode, which silently disables the DDPM's condition dropout
    model.module.train()
    train_kwargs.setdefault("gradient_clip_val", GRADIENT_CLIP)
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        batches_per_epoch=batches_per_epoch,
        sets_per_batch=sets_per_batch,
        cells_per_set=cells_per_set,
        train_size=train_size,
        lr=lr,
        mixer=mixer,
        plan_kwargs={"lr_schedule": lr_schedule, **OPTIMISER},
        enable_progress_bar=False,
        **train_kwargs,
    )
    return time.perf_counter() - start


_budget_train = train  # fit_model's ``train=`` argument hides the name


def fit_model(
    model_cls: type,
    adata,
    *,
    setup: dict | None,
    model: dict | None = None,
    train: dict | None = None,
    options: dict | None = None,
    quick_budget: dict | None = None,
    seed: int | None = None,
    seed_with: Literal["scvi", "torch"] = "scvi",
    before_train: Callable[[object], object] | None = None,
) -> Fit:
    """Build any of ``GDE``, ``SeqGDE``, ``ImageGDE`` (:func:`build`), train it and time the training.

    ``train``: every budget argument of :func:`train` (an explicit budget), or ``None``: the library's own default
    ``model.train()`` with ``options`` (arguments that are not the budget, e.g. ``{"window": 2}``) and, when given,
    ``quick_budget`` (the tiny budget of a --quick run, over ``options``). ``before_train(model)`` runs on the
    untrained model, between its construction and the training (untrained baselines from the same random stream);
    its result is ``Fit.untrained``.
    """
    if train is not None and (options or quick_budget):
        raise ValueError("options= and quick_budget= go with train=None (the library's default budget).")
    built = build(model_cls, adata, setup=setup, model=model, seed=seed, seed_with=seed_with)
    untrained = None if before_train is None else before_train(built)
    if train is None:
        start = time.perf_counter()
        built.train(**{**(options or {}), **(quick_budget or {})}, enable_progress_bar=False)
        train_s = time.perf_counter() - start
    else:
        train_s = _budget_train(built, **train)
    history = built.history or {}
    epochs = len(history["train_loss_epoch"]) if "train_loss_epoch" in history else None
    trainer = getattr(built, "trainer", None)
    steps = None if trainer is None else int(trainer.global_step)
    return Fit(built, train_s, steps, epochs, untrained)


def fit(
    adata,
    *,
    generator: str,
    encoder: str = "resnet",
    n_latent: int,
    n_hidden: int,
    seed: int | None,
    set_key: str | list[str] | None = "set",
    model_kwargs: dict | None = None,
    **budget_kwargs,
) -> Fit:
    """A GDE built as :func:`make_model` builds it and trained by :func:`train` (every budget argument required)."""
    import scgde

    arch = {"generator": generator, "encoder": encoder, "n_latent": n_latent, "n_hidden": n_hidden}
    setup = None if set_key is None else {"set_key": set_key}
    model = {"likelihood": "gaussian", **arch, **(model_kwargs or {})}
    return fit_model(scgde.model.GDE, adata, setup=setup, model=model, train=budget_kwargs, seed=seed)


def embed(model, adata, chunk_size: int | None = None) -> np.ndarray:
    """Embeddings of every set of a synthetic AnnData from all its cells, in ``uns["synthetic"]["sets"]`` order."""
    names = list(adata.uns["synthetic"]["sets"])
    return model.get_set_representation(adata, sets=names, chunk_size=chunk_size, progress_bar=False).to_numpy()


def upper(mat: np.ndarray) -> np.ndarray:
    """The entries above the diagonal of a square matrix (one per pair), in ``pdist`` order."""
    return mat[np.triu_indices(len(mat), k=1)]


def spearman(dist: np.ndarray, truth: np.ndarray) -> float:
    """Spearman rho between two condensed distance vectors."""
    return float(spearmanr(dist, truth).statistic)


def pearson(dist: np.ndarray, truth: np.ndarray) -> float:
    """Pearson r between two condensed distance vectors."""
    return float(pearsonr(dist, truth).statistic)


def check(condition: bool, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` (a --quick sanity check; survives ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def finite(*values) -> bool:
    """Whether every value is finite."""
    return bool(np.all(np.isfinite(np.asarray(values, dtype=float))))


def fmt_fixed(value) -> str:
    """4 decimals below 10, else 2; a dash for a missing or non-finite value."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def fmt_sig(value, digits: int = 3) -> str:
    """``digits`` significant digits; a dash for a missing or NaN value."""
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}g}"


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of a DataFrame (index included)."""
    header = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def machine() -> str:
    """A one-line description of this machine."""
    import torch

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__}"


def run_cli(doc: str, run, argv: list[str] | None, quick_help: str, add_arguments=None) -> dict:
    """A benchmark's command line (``--quick``, ``--seed``, ``--threads``, ``add_arguments``): run quietly, print."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with quiet(), pinned_threads(args.threads):
        result = run(args)
    result["wall_s"] = time.perf_counter() - start
    print(result["markdown"])
    print(f"\nWall time: {result['wall_s']:.0f} s")
    return result
