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


# ---------------------------------------------------------------------------------------------------------------------
# raw-count validation over every row, empty inputs, support statistics
# ---------------------------------------------------------------------------------------------------------------------

BAD_ROWS = [7, 4321, 19990]  # rows a 2,000-row sample of 20,000 would mostly miss


def _counts_with_bad_rows(rng) -> np.ndarray:
    X = rng.poisson(0.3, size=(20000, 4)).astype(np.float32)
    X[BAD_ROWS[0], 1] = -1.0
    X[BAD_ROWS[1], 0] = 0.5
    X[BAD_ROWS[2], 3] = 2.25
    return X


def _all_formats(X: np.ndarray, tmp_path):
    """The same matrix as dense, scipy CSR / CSC / COO, backed dense (h5py), backed CSR and backed CSC."""
    ad.AnnData(X).write_h5ad(tmp_path / "dense.h5ad")
    ad.AnnData(sp.csr_matrix(X)).write_h5ad(tmp_path / "csr.h5ad")
    ad.AnnData(sp.csc_matrix(X)).write_h5ad(tmp_path / "csc.h5ad")
    backed = {f: ad.read_h5ad(tmp_path / f"{f}.h5ad", backed="r").X for f in ("dense", "csr", "csc")}
    return {
        "dense": X,
        "csr": sp.csr_matrix(X),
        "csc": sp.csc_matrix(X),
        "coo": sp.coo_matrix(X),
        "backed dense": backed["dense"],
        "backed csr": backed["csr"],
        "backed csc": backed["csc"],
    }


@pytest.mark.filterwarnings("ignore:.*backed CSC")
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_check_counts_reads_every_row(tmp_path, rng, chunk_size):
    for fmt, X in _all_formats(_counts_with_bad_rows(rng), tmp_path).items():
        fetcher = RowFetcher(X, "adata.layers['raw']")
        with pytest.raises(ValueError, match=r"adata\.layers\['raw'\]") as err:
            fetcher.check_counts() if chunk_size is None else fetcher.check_counts(chunk_size=chunk_size)
        message = str(err.value)
        assert f"rows {BAD_ROWS}" in message, (fmt, message)
        assert "and more" not in message
        assert "layer='counts'" in message and "likelihood='gaussian'" in message


@pytest.mark.filterwarnings("ignore:.*backed CSC")
def test_check_counts_accepts_counts_and_quotes_a_few_rows(tmp_path, rng):
    X = rng.poisson(2.0, size=(300, 5)).astype(np.float32)
    for X_ in _all_formats(X, tmp_path).values():
        RowFetcher(X_).check_counts(chunk_size=11)  # no error
    RowFetcher(X.astype(np.int64)).check_counts()
    X[::10, 2] = 1.5  # 30 offending rows
    with pytest.raises(ValueError, match=r"rows \[0, 10, 20, 30, 40\] and more"):
        RowFetcher(sp.csr_matrix(X)).check_counts(chunk_size=13)
    X[0, 0] = np.nan  # NaN is not a count either
    with pytest.raises(ValueError, match=r"rows \[0, 10"):
        RowFetcher(X).check_counts()


def test_check_counts_does_not_densify_sparse(monkeypatch, rng):
    X = sp.random(5000, 3000, density=0.001, format="csr", random_state=0, data_rvs=lambda n: np.ones(n))
    X.data[-1] = -2.0
    bad_row = int(np.searchsorted(X.indptr, X.nnz - 1, side="right") - 1)
    fetcher = RowFetcher(X)
    monkeypatch.setattr(fetcher, "rows", None)  # no densifying row reads
    monkeypatch.setattr(sp.csr_matrix, "toarray", None)
    with pytest.raises(ValueError, match=rf"rows \[{bad_row}\]"):
        fetcher.check_counts()


@pytest.mark.filterwarnings("ignore:.*backed CSC")
def test_counts_flag_checks_every_block_read(tmp_path, rng):
    X = _counts_with_bad_rows(rng)
    for X_ in _all_formats(X, tmp_path).values():
        fetcher = RowFetcher(X_, "adata.X", counts=True)
        np.testing.assert_array_equal(fetcher.rows(np.array([3, 0, 3])), X[[3, 0, 3]])
        np.testing.assert_array_equal(fetcher.slice(0, 7), X[:7])
        with pytest.raises(ValueError, match=r"adata\.X has negative or non-integer values in rows \[4321\]"):
            fetcher.rows(np.array([5, 4321, 4321, 2]))
        with pytest.raises(ValueError, match=r"rows \[7\]"):
            fetcher.slice(5, 10)
        RowFetcher(X_).slice(5, 10)  # without the flag only NaN and inf are checked


def test_empty_inputs_say_empty():
    with pytest.raises(ValueError, match="empty"):
        set_labels(pd.DataFrame({"clone": pd.Categorical([])}), "clone")
    with pytest.raises(ValueError, match="adata.X has 0 cells"):
        RowFetcher(np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"adata.layers\['counts'\] has 0 genes"):
        RowFetcher(sp.csr_matrix((5, 0)), "adata.layers['counts']")


def test_support_and_negative_fraction():
    X = np.array([[0.0, 3.0, 0.0], [0.5, -1.0, 0.0], [2.0, 0.25, 0.0], [0.0, -2.0, 0.0]])
    for X_ in (X, sp.csr_matrix(X)):
        fetcher = RowFetcher(X_)
        nonneg, min_positive = fetcher.support()
        assert nonneg is False
        np.testing.assert_allclose(min_positive, [0.5, 0.25, np.inf])
        np.testing.assert_allclose(fetcher.negative_fraction(), [0.0, 0.5, 0.0])
    nonneg, min_positive = RowFetcher(np.abs(X)).support()
    assert nonneg is True and min_positive[1] == 0.25


def test_support_uses_the_moments_pass(monkeypatch, rng):
    """support() reuses the row sample (and the single pass) of moments()."""
    X = rng.poisson(1.0, size=(5000, 3)).astype(np.float32)
    fetcher = RowFetcher(X)
    reads = []
    original = fetcher.rows
    monkeypatch.setattr(fetcher, "rows", lambda idx: reads.append(np.asarray(idx).copy()) or original(idx))
    mean, std = fetcher.moments(n_rows=1000, seed=3)
    n_reads = len(reads)
    nonneg, min_positive = fetcher.support(n_rows=1000, seed=3)
    assert len(reads) == n_reads  # no second pass
    sample = np.concatenate(reads)
    assert len(sample) == 1000 and len(np.unique(sample)) == 1000
    np.testing.assert_allclose(mean, X[sample].mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, X[sample].std(0), rtol=1e-5)
    sampled = X[sample]
    expected_min = np.where(sampled > 0, sampled, np.inf).min(0)
    assert nonneg and np.array_equal(min_positive, expected_min)
