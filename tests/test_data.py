"""Set construction, samplers, splitting and row access."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scgde.data import DirichletMixer, GroupSampler, RowFetcher, SetIndex, set_labels, split_sets


def test_set_labels_single_and_multi_key():
    obs = pd.DataFrame({"ct": ["a", "b", None, "a", "b"], "cond": ["x", "x", "y", None, "y"]})
    codes, names = set_labels(obs, "ct")
    assert list(names) == ["a", "b"] and list(codes) == [0, 1, -1, 0, 1]
    codes, names = set_labels(obs, ["ct", "cond"])
    assert list(names) == ["a|x", "b|x", "b|y"]
    assert list(codes) == [0, 1, -1, -1, 2]


def test_set_label_errors():
    obs = pd.DataFrame({"clone": [np.nan, np.nan]})
    with pytest.raises(KeyError, match="set_key='donor'"):
        set_labels(obs, "donor")
    with pytest.raises(ValueError, match="missing value"):
        set_labels(obs, "clone")


def test_group_sampler_with_and_without_replacement(rng):
    index = SetIndex(np.repeat([0, 1], [3, 50]), pd.Index(["small", "big"]))
    batch = GroupSampler(index, cells_per_set=10).sample_sets(np.array([0, 1]), rng)
    assert set(batch.cells[0]) <= {0, 1, 2}  # small set: drawn with replacement
    assert len(set(batch.cells[1])) == 10 and batch.cells[1].min() >= 3  # big: distinct members


def test_dirichlet_mixer_bookkeeping(rng):
    codes = np.repeat(np.arange(6), 100)
    index = SetIndex(codes, pd.Index([f"s{i}" for i in range(6)]))
    mixer = DirichletMixer(index, cells_per_set=4000, k=3, alpha=1.0)
    batch = mixer.sample(5, rng)
    assert batch.sources.shape == (5, 3) and batch.mixture_weights.shape == (5, 3)
    for cells, src, w in zip(batch.cells, batch.sources, batch.mixture_weights, strict=True):
        assert len(set(src)) == 3  # distinct sources
        assert np.isclose(w.sum(), 1.0)
        observed = np.array([(codes[cells] == s).mean() for s in src])
        assert set(codes[cells]) <= set(src)
        np.testing.assert_allclose(observed, w, atol=0.03)  # weights line up with their sources


def test_mixer_rejects_bad_k():
    index = SetIndex(np.repeat([0, 1], 5), pd.Index(["a", "b"]))
    with pytest.raises(ValueError, match="k=3"):
        DirichletMixer(index, 10, k=3)


def test_split_is_by_set(rng):
    train, val = split_sets(np.arange(10), 0.8, rng)
    assert len(train) == 8 and len(val) == 2 and not set(train) & set(val)
    train, val = split_sets(np.arange(2), 0.99, rng)
    assert len(train) == 1 and len(val) == 1


def test_row_fetcher_formats_agree(tmp_path, rng):
    dense = rng.poisson(1.0, size=(30, 7)).astype(np.float32)
    idx = np.array([5, 2, 2, 29, 0])
    expected = dense[idx]
    a = ad.AnnData(sp.csr_matrix(dense))
    a.write_h5ad(tmp_path / "csr.h5ad")
    ad.AnnData(dense).write_h5ad(tmp_path / "dense.h5ad")
    backed_sparse = ad.read_h5ad(tmp_path / "csr.h5ad", backed="r")
    backed_dense = ad.read_h5ad(tmp_path / "dense.h5ad", backed="r")
    for X in (dense, sp.csr_matrix(dense), sp.csc_matrix(dense), backed_sparse.X, backed_dense.X):
        fetcher = RowFetcher(X)
        np.testing.assert_array_equal(fetcher.rows(idx), expected)
        np.testing.assert_array_equal(fetcher.slice(3, 9), dense[3:9])


def test_row_fetcher_rejects_nan():
    X = np.ones((4, 2))
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        RowFetcher(X).check_finite()
    with pytest.raises(ValueError, match="NaN or infinite"):
        RowFetcher(X).rows(np.array([1]))
