"""``train()`` with no arguments on every public model class: the default path runs end to end.

The Lightning run itself is shortened (one epoch of two batches) by wrapping scvi-tools' ``train``;
everything before it (the step policy, the kernel decision, the data splitter) and after it (support
calibration, the recorded splits) is the default path a user gets. The wrapper records the epochs the
default chose, so each model's step policy is checked too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scvi.model.base import UnsupervisedTrainingMixin

import scgde


@pytest.fixture
def recorded(monkeypatch):
    """Record what the default ``train()`` asks scvi-tools for, then run it for one short epoch."""
    calls = []
    real = UnsupervisedTrainingMixin.train

    def short(self, max_epochs=None, datasplitter_kwargs=None, **kwargs):
        calls.append({"max_epochs": max_epochs, **(datasplitter_kwargs or {})})
        datasplitter_kwargs = {**datasplitter_kwargs, "batches_per_epoch": 2}
        kwargs["enable_progress_bar"] = False
        return real(self, max_epochs=1, datasplitter_kwargs=datasplitter_kwargs, **kwargs)

    monkeypatch.setattr(UnsupervisedTrainingMixin, "train", short)
    return calls


def _check_default(model, calls, min_steps):
    model.train()
    (call,) = calls
    steps = call["max_epochs"] * call["batches_per_epoch"]
    assert steps >= min_steps, f"{type(model).__name__}: the default plans {steps} steps"
    assert len(model.train_sets_) > 0
    return call


def _gaussian_sets(n_sets=12, n_cells=20, n_genes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(i / n_sets, 1.0, (n_cells, n_genes)) for i in range(n_sets)]).astype(np.float32)
    obs = pd.DataFrame({"set": np.repeat([f"s{i}" for i in range(n_sets)], n_cells)})
    obs.index = obs.index.astype(str)
    return AnnData(x, obs=obs)


def test_gde_on_sets(recorded):
    adata = _gaussian_sets()
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    call = _check_default(scgde.model.GDE(adata, n_hidden=16), recorded, min_steps=1000)
    assert (
        call["kernel"]["n_neighbors"] == 100
    )  # few sets: train() chose neighbourhoods in principal components  # few sets: neighbourhoods decided by the data splitter


def test_gde_on_niches(recorded):
    pytest.importorskip("squidpy")
    tissue = scgde.datasets.niche_tissue(n_cells=200, n_genes=6, seed=0)
    scgde.tl.niche_sets(tissue, n_neighbors=8)
    scgde.model.GDE.setup_anndata(tissue, niche_key="gde_niches")
    call = _check_default(scgde.model.GDE(tissue, n_hidden=16), recorded, min_steps=1000)
    assert call["kernel"] is None


def test_gde_on_mudata(recorded):
    mdata = scgde.datasets.multimodal_sets(n_sets=8, set_size=20, n_genes=30, n_proteins=6, n_regions=12, seed=0)
    scgde.model.GDE.setup_mudata(mdata, set_key="clone")
    _check_default(scgde.model.GDE(mdata, n_hidden=16), recorded, min_steps=1000)


def test_multimodal_gde(recorded):
    mdata = scgde.datasets.multimodal_sets(n_sets=8, set_size=20, n_genes=30, n_proteins=6, n_regions=12, seed=0)
    scgde.model.MultimodalGDE.setup_mudata(mdata, set_key="clone")
    call = _check_default(scgde.model.MultimodalGDE(mdata, n_hidden=16), recorded, min_steps=1000)
    assert call["kernel"] is None  # no neighbourhood sets for multimodal cells


def test_seqgde(recorded):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 10)) for _ in range(60)]
    adata = scgde.seq.sequences_to_adata(seqs, obs=pd.DataFrame({"window": np.repeat(["a", "b", "c"], 20)}))
    scgde.seq.SeqGDE.setup_anndata(adata, set_key="window")
    model = scgde.seq.SeqGDE(adata, n_latent=4, encoder_kwargs={"n_channels": 8, "n_hidden": 16})
    _check_default(model, recorded, min_steps=1)


def test_imagegde(recorded):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (60, 1, 8, 8), dtype=np.uint8)
    adata = AnnData(obs=pd.DataFrame({"gene": np.repeat(["a", "b", "c"], 20)}, index=[f"c{i}" for i in range(60)]))
    adata.obsm["image"] = images
    scgde.img.ImageGDE.setup_anndata(adata, set_key="gene")
    small = {"n_channels": 8}
    model = scgde.img.ImageGDE(adata, n_latent=4, encoder_kwargs=small, generator_kwargs=small)
    _check_default(model, recorded, min_steps=1)
