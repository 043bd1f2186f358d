"""Embedding collections: several (backed) AnnData, an AnnCollection, a lazy (dask) AnnData, and CLI shards."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import scgde


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    adata = scgde.datasets.synthetic_mvn(n_sets=6, set_size=60, dim=4, seed=3)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=3, n_hidden=16)
    model.train(max_epochs=1, batches_per_epoch=2, sets_per_batch=4, cells_per_set=16, enable_progress_bar=False)
    return model, adata, root


def _parts(adata, root, sparse=False):
    """Three files splitting every set's cells (a set spans several files), read backed."""
    order = np.random.default_rng(0).permutation(adata.n_obs)
    paths = []
    for i, rows in enumerate(np.array_split(order, 3)):
        part = adata[np.sort(rows)].copy()
        if sparse:
            part.X = sp.csr_matrix(part.X)
        paths.append(root / f"part{i}{'_csr' if sparse else ''}.h5ad")
        part.write_h5ad(paths[-1])
    return paths


@pytest.mark.parametrize("sparse", [False, True])
def test_sets_spanning_backed_files_embed_as_one_anndata(trained, sparse):
    model, adata, root = trained
    whole = model.get_set_representation(progress_bar=False)
    parts = [ad.read_h5ad(p, backed="r") for p in _parts(adata, root, sparse)]
    got = model.get_set_representation(parts, chunk_size=25, progress_bar=False)
    assert set(got.index) == set(whole.index)
    np.testing.assert_allclose(got.loc[whole.index].to_numpy(), whole.to_numpy(), atol=1e-5)
    wanted = list(whole.index[[4, 1]])
    some = model.get_set_representation(parts, sets=wanted, progress_bar=False)
    assert list(some.index) == wanted
    np.testing.assert_allclose(some.to_numpy(), whole.loc[wanted].to_numpy(), atol=1e-5)
    with pytest.raises(KeyError, match="no part of the collection"):
        model.get_set_representation(parts, sets=["nope"], progress_bar=False)
    with pytest.raises(ValueError, match="return_std"):
        model.get_set_representation(parts, return_std=True, progress_bar=False)


def test_ann_collection(trained):
    from anndata.experimental import AnnCollection

    model, adata, root = trained
    parts = [ad.read_h5ad(p) for p in _parts(adata, root)]
    collection = AnnCollection(parts, join_vars="inner")
    got = model.get_set_representation(collection, progress_bar=False)
    whole = model.get_set_representation(progress_bar=False)
    np.testing.assert_allclose(got.loc[whole.index].to_numpy(), whole.to_numpy(), atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_lazy_anndata(trained, sparse):
    from anndata.experimental import read_lazy

    model, adata, root = trained
    data = adata.copy()
    if sparse:
        data.X = sp.csr_matrix(data.X)
    path = root / f"lazy_{sparse}.h5ad"
    data.write_h5ad(path)
    lazy = read_lazy(path)
    got = model.get_set_representation(lazy, chunk_size=50, progress_bar=False)
    whole = model.get_set_representation(progress_bar=False)
    np.testing.assert_allclose(got.loc[whole.index].to_numpy(), whole.to_numpy(), atol=1e-5)
