"""Quantile bins and the window prior: windows draw from neighbouring ordered sets only."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi

import scgde
from scgde.data import SetIndex, WindowSampler, make_sampler


def test_quantile_bins_are_ordered_and_balanced():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(obs=pd.DataFrame({"expr": rng.normal(size=1000)}, index=[f"c{i}" for i in range(1000)]))
    adata.obs.loc["c3", "expr"] = np.nan
    bins = scgde.pp.quantile_bins(adata, "expr", n_bins=20)
    assert adata.obs["expr_bin"].cat.ordered and list(bins.cat.categories[:2]) == ["q00", "q01"]
    assert pd.isna(bins["c3"])
    counts = bins.value_counts()
    assert counts.min() >= 49 and counts.max() <= 50
    means = adata.obs.groupby("expr_bin", observed=True)["expr"].mean()
    assert means.is_monotonic_increasing
    with pytest.raises(KeyError, match="key='nope'"):
        scgde.pp.quantile_bins(adata, "nope")


def test_windows_draw_only_from_neighbouring_bins():
    codes = np.repeat(np.arange(10), 20)
    index = SetIndex(codes, pd.Index([f"q{i}" for i in range(10)]))
    sampler = WindowSampler(index, cells_per_set=200, width=2)
    batch = sampler.sample_sets(np.array([0, 5, 9]), np.random.default_rng(0))
    for centre, cells in zip([0, 5, 9], batch.cells, strict=True):
        drawn = set(codes[cells])
        assert drawn == set(range(max(0, centre - 2), min(10, centre + 3)))
    assert isinstance(make_sampler(index, np.arange(10), 5, window=1), WindowSampler)
    with pytest.raises(ValueError, match="at most one"):
        make_sampler(index, np.arange(10), 5, mixer="dirichlet", window=1)
    # training bins only: a window never reaches into held-out bins
    train = WindowSampler(index, cells_per_set=100, width=1, sets=np.array([0, 1, 2, 6, 7]))
    drawn = set(codes[train.sample_sets(np.array([2]), np.random.default_rng(1)).cells[0]])
    assert drawn == {1, 2, 6}


def test_training_on_windows():
    scvi.settings.seed = 0
    rng = np.random.default_rng(0)
    t = rng.uniform(size=600)
    adata = ad.AnnData(np.c_[t, rng.normal(size=600)].astype(np.float32), obs=pd.DataFrame({"t": t}))
    adata.obs_names = adata.obs_names.astype(str)
    scgde.pp.quantile_bins(adata, "t", n_bins=12)
    scgde.model.GDE.setup_anndata(adata, set_key="t_bin")
    model = scgde.model.GDE(adata, n_latent=2, n_hidden=16)
    model.train(max_epochs=1, batches_per_epoch=2, window=2, sets_per_batch=4, cells_per_set=16)
    assert model.get_set_representation(progress_bar=False).shape == (12, 2)
