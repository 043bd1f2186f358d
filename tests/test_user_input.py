"""What a new user hits through the API (issue 28): wrong-range queries, silent drops, stray files, Ctrl-C, noise."""

from __future__ import annotations

import logging
import os
import signal
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData
from lightning.pytorch.callbacks import Callback

import scgde.model._generate as generate_module
from scgde.model import GDE

FAST = {"max_epochs": 1, "batches_per_epoch": 2, "sets_per_batch": 4, "cells_per_set": 8}
N_SETS, SET_SIZE, N_GENES = 10, 20, 20


def _counts(seed: int = 0, n_sets: int = N_SETS, size: int = SET_SIZE, sparse: bool = False) -> AnnData:
    """Raw counts: about 1,000 counts per cell over 20 genes (values up to ~100)."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 25.0, size=(n_sets, N_GENES)).repeat(size, axis=0)
    x = rng.poisson(means).astype(np.float32)
    obs = pd.DataFrame({"set": np.repeat([f"s{i}" for i in range(n_sets)], size)})
    obs.index = obs.index.astype(str)
    adata = AnnData(sp.csr_matrix(x) if sparse else x, obs=obs)
    adata.var_names = [f"g{i}" for i in range(N_GENES)]
    return adata


def _log_normalised(adata: AnnData) -> AnnData:
    """``sc.pp.normalize_total(target_sum=1e4)`` then ``sc.pp.log1p``, by hand."""
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    out = adata.copy()
    out.X = np.log1p(1e4 * x / x.sum(1, keepdims=True)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def log_model():
    """A model trained (briefly) on log-normalised data."""
    adata = _log_normalised(_counts())
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    model.train(**FAST, enable_progress_bar=False)
    return model, adata


@pytest.fixture
def process_state():
    """Undo what a 1-process DDP training leaves behind (a process group, MASTER_ADDR/LOCAL_RANK variables)."""
    env = dict(os.environ)
    yield
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)


# ---------------------------------------------------------------- 1. values outside the training range
@pytest.mark.parametrize("sparse", [False, True])
def test_raw_counts_query_to_a_log_data_model_is_refused(log_model, sparse):
    model, _ = log_model
    counts = _counts(seed=1, sparse=sparse)
    with pytest.raises(ValueError, match=r"raw counts.*normalize_total.*log1p"):
        model.get_set_representation(counts, progress_bar=False)
    with pytest.raises(ValueError, match="raw counts"):
        model.validate_query(counts)
    # log-normalised data of the same kind, also from deeper cells, embed as before
    query = _log_normalised(_counts(seed=2, sparse=sparse))
    model.validate_query(query)
    assert model.get_set_representation(query, progress_bar=False).shape == (N_SETS, 4)


def test_values_far_beyond_the_training_range_are_refused(log_model):
    model, adata = log_model
    scaled = adata.copy()
    scaled.X = scaled.X * 1000.0  # e.g. normalised but not logged: not integers, far too large
    with pytest.raises(ValueError, match="far outside the training range"):
        model.get_set_representation(scaled, progress_bar=False)


def test_the_training_range_survives_save_and_load(log_model, tmp_path):
    model, adata = log_model
    model.save(tmp_path / "m", overwrite=True)
    counts = _counts(seed=1)
    # loaded onto the training data: a raw-count query is refused
    loaded = GDE.load(tmp_path / "m", adata=adata.copy())
    assert loaded.data_range_ == model.data_range_
    with pytest.raises(ValueError, match="raw counts"):
        loaded.get_set_representation(counts, progress_bar=False)
    # loaded onto raw counts (the CLI's `embed` with the wrong file as training data): refused too
    with pytest.warns(UserWarning, match="looks like raw counts"):
        loaded = GDE.load(tmp_path / "m", adata=counts.copy())
    with pytest.raises(ValueError, match="raw counts"):
        loaded.get_set_representation(progress_bar=False)


def test_gaussian_model_of_raw_counts_warns():
    counts = _counts()
    GDE.setup_anndata(counts, set_key="set")
    with pytest.warns(UserWarning, match=r"looks like raw counts.*normalize_total.*likelihood='nb'"):
        GDE(counts, n_latent=4, n_hidden=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counts with the count likelihood: nothing to say
        GDE(counts, n_latent=4, n_hidden=16, likelihood="nb")
    logged = _log_normalised(counts)
    GDE.setup_anndata(logged, set_key="set")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GDE(logged, n_latent=4, n_hidden=16)


# ---------------------------------------------------------------- 2. cells and sets dropped silently
def test_cells_without_a_set_label_are_counted():
    adata = _log_normalised(_counts())
    labels = adata.obs["set"].astype(object).to_numpy(copy=True)
    labels[np.random.default_rng(0).choice(adata.n_obs, 20, replace=False)] = np.nan
    adata.obs["set"] = labels
    with pytest.warns(UserWarning, match=r"20 of 200 cells have a missing value.*set_key='set'"):
        GDE.setup_anndata(adata, set_key="set")


def test_tiny_sets_are_counted():
    adata = _log_normalised(_counts())
    adata.obs["set"] = adata.obs["set"].astype(str)
    adata.obs.iloc[0, adata.obs.columns.get_loc("set")] = "lonely"
    adata.obs.iloc[1:4, adata.obs.columns.get_loc("set")] = "trio"
    with pytest.warns(UserWarning, match=r"2 of 12 sets have fewer than 5 cells.*'lonely': 1 cell\b"):
        GDE.setup_anndata(adata, set_key="set")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whole, labelled sets: nothing to say
        GDE.setup_anndata(_log_normalised(_counts()), set_key="set")


# ---------------------------------------------------------------- 3. nothing written where the user did not ask
@pytest.mark.parametrize("strategy", [None, "ddp"])
def test_training_writes_nothing_in_the_working_directory(tmp_path, monkeypatch, process_state, strategy):
    monkeypatch.chdir(tmp_path)
    adata = _log_normalised(_counts())
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    # one DDP process (no spawning) takes scvi-tools' DDP path, which keeps the loss history on disk
    ddp = {} if strategy is None else {"strategy": strategy, "devices": 1, "accelerator": "cpu"}
    model.train(**FAST, enable_progress_bar=False, **ddp)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert "train_loss" in model.history


# ---------------------------------------------------------------- 4. Ctrl-C
class _CtrlC(Callback):
    """Raises KeyboardInterrupt after ``after`` optimiser steps, as Ctrl-C would."""

    def __init__(self, after: int):
        self.after = after

    def on_train_batch_end(self, trainer, *args, **kwargs):
        if trainer.global_step >= self.after:
            raise KeyboardInterrupt


def test_ctrl_c_stops_training_cleanly(capsys):
    adata = _log_normalised(_counts())
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    handler = signal.getsignal(signal.SIGINT)
    options = {**FAST, "max_epochs": 3, "batches_per_epoch": 4}
    with pytest.warns(UserWarning, match=r"interrupted \(KeyboardInterrupt\) after 2 of 12 optimiser steps") as rec:
        model.train(**options, enable_progress_bar=False, callbacks=[_CtrlC(after=2)])
    assert sum("interrupted" in str(w.message) for w in rec) == 1
    assert "Exception raised during training" not in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's "ignore Ctrl-C" is undone
    assert model.is_trained_ and model.training_interrupted_
    assert not model.module.training
    after = model.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the steps trained are kept
    assert len(model.train_sets_) > 0
    assert model.get_set_representation(progress_bar=False).shape == (N_SETS, 4)
    # a later training runs to its end
    model.train(**FAST, enable_progress_bar=False)
    assert not model.training_interrupted_


# ---------------------------------------------------------------- 5. huge generate
def test_generating_more_than_memory_holds_is_refused(log_model, monkeypatch):
    model, _ = log_model
    monkeypatch.setattr(generate_module, "available_memory", lambda: 2**30)  # 1 GiB free
    with pytest.raises(ValueError, match=r"n_cells=100,000,000.*Lower n_cells"):
        model.generate(["s0", "s1"], n_cells=100_000_000)
    emb = model.get_set_representation(sets=["s0"], progress_bar=False)
    with pytest.raises(ValueError, match="n_cells"):
        model.generate(emb, n_cells=100_000_000)
    assert model.generate(["s0", "s1"], n_cells=10).shape == (20, N_GENES)


# ---------------------------------------------------------------- 6. console noise
NOISE = (
    "GPU available",
    "TPU available",
    "litlogger",
    "Tip:",
    "LeafSpec",
    "`Trainer.fit` stopped",
    "log_every_n_steps",
)


def test_default_training_is_quiet(capsys, caplog):
    adata = _log_normalised(_counts())
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    levels = {name: logging.getLogger(name).level for name in ("lightning.pytorch", "lightning.fabric")}
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.train(**FAST)  # with the progress bar
    captured = capsys.readouterr()
    shown = captured.out + captured.err + caplog.text + "\n".join(str(w.message) for w in caught)
    assert [line for line in NOISE if line in shown] == []
    assert "Epoch 1/1" in captured.out + captured.err  # the progress bar is kept
    assert {name: logging.getLogger(name).level for name in levels} == levels  # no lasting change
