"""Checks of the ``scgde`` command line that run before torch is imported and before any matrix is read.

An ``.h5ad`` file is opened with h5py and only its names are read (obs columns, layers, the number of
cells and genes, the stored sizes of ``X`` and the layers); the obs columns that define sets are the
only values read. Everything here raises ``ValueError``/``KeyError``/``OSError`` with a message that
names the command-line flag to change.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: ``train()``'s defaults for the batch shape and ``GDE``'s ``n_latent``, checked against the model's signature by the tests
TRAIN_DEFAULTS = {"sets_per_batch": 64, "cells_per_set": 100, "n_latent": 16}
#: choices of ``GDE(encoder=, generator=)``, checked against the model's ``Literal`` types by the tests
ENCODERS = ("resnet", "attention", "deepsets", "mean", "kme")
GENERATORS = ("flow", "ddpm", "cvae", "direct")
#: generators that model raw counts (``likelihood="nb"``)
COUNT_GENERATORS = ("cvae",)
LIKELIHOODS = ("gaussian", "nb")
#: Lightning's accelerator names and precision values (``Trainer(accelerator=, precision=)``)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = (
    "32",
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64",
    "64-true",
    "16",
    "bf16",
    "transformer-engine",
    "transformer-engine-float16",
)

#: a training step holds about this many ``sets x cells x genes`` float32 arrays at once (forward values kept
#: for the backward pass, gradients); measured on the intestine zonation counts (27,998 genes): once 15 for the
#: count likelihood (CVAE, negative binomial: log1p input, logits, softmax, mean, lgamma terms) and 6 for
#: the Gaussian flow generator. Rounded up. The count likelihood now keeps about 9 (a fused negative-binomial
#: loss with its own gradients, evaluated in gene chunks: 6.2 GB instead of 11.8 GB for 64 x 100 x 27,998).
STEP_ARRAYS = {"nb": 10, "gaussian": 8}
#: and about this many ``sets x cells x n_latent`` arrays (the set vector broadcast to every cell, concatenations)
STEP_LATENT_ARRAYS = 8

#: API argument names (as they appear in the model's messages) and their command-line flags
_FLAGS = {
    "set_key": "--set-key",
    "batch_key": "--batch-key",
    "layer": "--layer",
    "n_latent": "--n-latent",
    "encoder": "--encoder",
    "generator": "--generator",
    "likelihood": "--likelihood",
    "max_epochs": "--max-epochs",
    "batches_per_epoch": "--batches-per-epoch",
    "sets_per_batch": "--sets-per-batch",
    "cells_per_set": "--cells-per-set",
    "n_cells": "--n-cells",
    "sets": "--sets",
    "batch": "--batch",
    "accelerator": "--accelerator",
    "devices": "--devices",
    "strategy": "--strategy",
    "num_nodes": "--num-nodes",
    "precision": "--precision",
}
#: names with an underscore are unambiguous as bare words; the others only in ``name=`` form
_BARE = [name for name in _FLAGS if "_" in name]


def as_flags(text: str) -> str:
    """Rewrite an API message in command-line terms: ``layer=None`` -> ``no --layer``, ``set_key='x'`` -> ``--set-key 'x'``.

    Parameters
    ----------
    text
        A message of the Python API (e.g. ``"layer='counts' is not in adata.layers; pass layer=None ..."``).

    Returns
    -------
    The message with the known argument names replaced by their flags.
    """
    names = "|".join(sorted(_FLAGS, key=len, reverse=True))
    before = r"(?<![\w.\-/\\'\"])"  # not inside a path, a longer name or a quoted value
    text = re.sub(rf"\bpass ({names})=None\b", lambda m: f"omit {_FLAGS[m.group(1)]}", text)
    text = re.sub(rf"{before}({names})=None\b", lambda m: f"no {_FLAGS[m.group(1)]}", text)
    text = re.sub(rf"{before}({names})=(?=\S)", lambda m: f"{_FLAGS[m.group(1)]} ", text)
    text = re.sub(rf"{before}({names})=", lambda m: _FLAGS[m.group(1)], text)
    bare = "|".join(sorted(_BARE, key=len, reverse=True))
    return re.sub(rf"{before}({bare})(?![\w.\-/\\'\"])", lambda m: _FLAGS[m.group(1)], text)


def size_text(n_bytes: float) -> str:
    """``1.2e12`` -> ``"1.2 TB"`` (decimal units)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{int(n_bytes)} bytes" if unit == "bytes" else f"{n_bytes:.3g} {unit}"
        n_bytes /= 1000
    return ""  # pragma: no cover


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (``None`` when unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency of the stack
        pass
    try:  # pragma: no cover
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return None  # pragma: no cover


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible (without importing torch): then training steps live in GPU memory."""
    return Path("/dev/nvidiactl").exists() and os.environ.get("CUDA_VISIBLE_DEVICES", "x") not in ("", "-1")


@dataclass
class H5adInfo:
    """What an ``.h5ad`` holds, read without its matrices."""

    path: Path
    n_obs: int
    n_vars: int
    obs_columns: list[str]
    layers: list[str]
    #: bytes that ``X`` and each layer take once read (``{"X": ..., "counts": ...}``)
    matrix_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return str(self.path)

    def check_obs_key(self, key: str, flag: str) -> None:
        """Refuse ``key`` if it is not a column of obs."""
        if key not in self.obs_columns:
            raise KeyError(
                f"{flag} {key!r} is not a column of obs in {self.where} (columns: {self.obs_columns}); "
                f"pass one of them to {flag}."
            )

    def check_layer(self, layer: str | None) -> None:
        """Refuse a ``--layer`` the file lacks."""
        if layer is not None and layer not in self.layers:
            raise KeyError(
                f"--layer {layer!r} is not a layer of {self.where} (layers: {self.layers}); "
                "pass one of them, or omit --layer to model X."
            )

    def obs_values(self, columns: list[str]) -> pd.DataFrame:
        """The given obs columns (only those are read)."""
        return read_obs(self.path, columns)


def _elem_bytes(elem) -> int:
    import h5py

    if isinstance(elem, h5py.Dataset):
        return int(elem.size) * int(elem.dtype.itemsize)
    return sum(_elem_bytes(elem[key]) for key in elem if isinstance(elem[key], h5py.Dataset))


def _length(elem) -> int:
    import h5py

    if isinstance(elem, h5py.Dataset):
        return int(elem.shape[0])
    # a dataframe group: its index, or (older files) the first column
    index = elem[elem.attrs.get("_index", "_index")]
    if isinstance(index, h5py.Group):  # anndata 0.13 with pandas 3: a string array with its mask
        index = index["values"] if "values" in index else index["codes"]
    return int(index.shape[0])


def peek_h5ad(path: str | Path, what: str = "data file") -> H5adInfo:
    """Open an ``.h5ad`` with h5py and read its names and sizes, not its matrices.

    Parameters
    ----------
    path
        The file.
    what
        How the file is named in messages (``"data file"``, ``"training data"``).

    Returns
    -------
    :class:`H5adInfo` with the number of cells and genes, the obs columns, the layers and the matrices' sizes.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    try:
        with h5py.File(path, "r") as f:
            obs, var = f["obs"], f["var"]
            if isinstance(obs, h5py.Group):
                order = obs.attrs.get("column-order", [])
                columns = [str(c) for c in np.atleast_1d(order)] if len(order) else []
            else:  # a compound dataset (files of anndata < 0.7)
                columns = [name for name in obs.dtype.names if name != "index"]
            layers = list(f["layers"].keys()) if "layers" in f else []
            matrices = {"X": _elem_bytes(f["X"])} if "X" in f else {}
            matrices.update({name: _elem_bytes(f["layers"][name]) for name in layers})
            return H5adInfo(path, _length(obs), _length(var), columns, layers, matrices)
    except Exception as err:  # h5py raises many types for a damaged or foreign file
        text = " ".join(str(err).split()) or type(err).__name__
        raise OSError(f"{what} {path} could not be read as .h5ad ({type(err).__name__}: {text}).") from err


def read_obs(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Read only the given columns of an ``.h5ad``'s obs."""
    import h5py

    try:
        from anndata.io import read_elem
    except ImportError:  # pragma: no cover - anndata < 0.11
        from anndata.experimental import read_elem

    with h5py.File(path, "r") as f:
        obs = f["obs"]
        if not isinstance(obs, h5py.Group):  # pragma: no cover - files of anndata < 0.7
            return pd.DataFrame({c: obs[c] for c in columns})
        return pd.DataFrame({c: read_elem(obs[c]) for c in columns})


def set_sizes(obs: pd.DataFrame, keys: list[str]) -> tuple[pd.Series, int]:
    """Cells per set (one set per observed combination of the ``keys`` columns) and the cells in no set.

    Returns
    -------
    The set sizes (index: set name, as the model names them) and the number of cells with a missing value.
    """
    frame = obs[keys]
    in_set = frame.notna().all(axis=1).to_numpy()
    names = frame[keys[0]][in_set].astype(str)
    for key in keys[1:]:
        names = names + "|" + frame[key][in_set].astype(str)
    return names.value_counts(), int((~in_set).sum())


def check_sets(info: H5adInfo, keys: list[str], flag: str = "--set-key") -> tuple[pd.Series, int]:
    """Refuse set keys that are not obs columns or define fewer than 2 sets; return sizes and cells in no set."""
    for key in keys:
        info.check_obs_key(key, flag)
    if info.n_obs == 0:
        raise ValueError(f"{info.where} holds no cells; pass a file with cells grouped into at least 2 sets.")
    sizes, n_missing = set_sizes(info.obs_values(keys), keys)
    shown = " ".join(keys)
    if len(sizes) < 2:
        raise ValueError(
            f"{flag} {shown} defines {len(sizes)} set{'s' if len(sizes) != 1 else ''} in {info.where}"
            f"{f' ({n_missing:,} cells have no value)' if n_missing else ''}; a GDE needs at least 2 sets: "
            f"pass an obs column that groups the cells into sets to {flag}."
        )
    return sizes, n_missing


def check_new_output(paths: list[Path], overwrite: bool, flag: str = "--out") -> None:
    """Refuse to replace results already there unless ``--overwrite`` was given."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{flag} would overwrite {shown}; pass --overwrite to replace it, or choose another {flag}."
        )


def step_bytes(sets_per_batch: int, cells_per_set: int, n_vars: int, n_latent: int, likelihood: str) -> float:
    """Rough memory of one training step: the ``sets x cells x genes`` arrays that forward and backward hold."""
    cells = float(sets_per_batch) * float(cells_per_set)
    return 4.0 * cells * (STEP_ARRAYS.get(likelihood, STEP_ARRAYS["nb"]) * n_vars + STEP_LATENT_ARRAYS * n_latent)
