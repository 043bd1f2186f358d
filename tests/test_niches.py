"""Spatial niches: squidpy-graph niche weights, niche models, exact streamed niche embeddings, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.neighbors import NearestNeighbors

import scgde
from scgde.data import NicheSampler, NicheSets

pytest.importorskip("squidpy")


@pytest.fixture
def tissue():
    return scgde.datasets.niche_tissue(n_cells=300, n_genes=8, seed=0)


@pytest.fixture
def niche_model(tissue):
    scgde.tl.niche_sets(tissue, n_neighbors=10)
    scgde.model.GDE.setup_anndata(tissue, niche_key="gde_niches")
    model = scgde.model.GDE(tissue, n_latent=3, n_hidden=16)
    model.train(max_epochs=2, batches_per_epoch=3, sets_per_batch=8, cells_per_set=16, enable_progress_bar=False)
    return model


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_niche_weights_are_the_kernel_on_the_knn_graph(tissue, kernel):
    x_before = tissue.X.copy()
    scgde.tl.niche_sets(tissue, n_neighbors=6, kernel=kernel, bandwidth=0.05)
    w = tissue.obsp["gde_niches"]
    assert sp.issparse(w) and w.shape == (300, 300)
    xy = tissue.obsm["spatial"]
    dist, nbrs = NearestNeighbors(n_neighbors=7).fit(xy).kneighbors(xy)
    dist, nbrs = dist[:, 1:], nbrs[:, 1:]  # the 6 neighbours, not the cell itself
    for i in (0, 17, 299):
        scaled = dist[i] / 0.05
        expected = np.exp(-scaled) if kernel == "exponential" else np.exp(-0.5 * scaled**2)
        row = w[i].toarray().ravel()
        assert set(np.flatnonzero(row)) == set(nbrs[i])
        np.testing.assert_allclose(row[nbrs[i]], expected, rtol=1e-5)
    # the same pattern as squidpy's own graph
    assert ((w > 0) != (tissue.obsp["spatial_connectivities"] > 0)).nnz == 0
    assert tissue.uns["gde_niches"]["params"]["kernel"] == kernel
    scgde.tl.niche_sets(tissue, n_neighbors=6, kernel=kernel, bandwidth=0.05, include_self=True, key_added="with")
    np.testing.assert_allclose(tissue.obsp["with"].diagonal(), 1.0)
    np.testing.assert_allclose((tissue.obsp["with"] - sp.eye(300)).toarray(), w.toarray(), rtol=1e-6)
    assert "spatial_connectivities" in tissue.obsp  # squidpy's own graph, for its own tools
    np.testing.assert_array_equal(tissue.X, x_before)


def test_default_bandwidth_and_radius(tissue):
    scgde.tl.niche_sets(tissue, radius=0.15)
    w = tissue.obsp["gde_niches"]
    xy = tissue.obsm["spatial"]
    within = (np.linalg.norm(xy[:, None] - xy[None], axis=-1) <= 0.15).sum(1) - 1
    np.testing.assert_array_equal(np.diff(w.indptr), within)  # everyone else within the radius
    assert tissue.uns["gde_niches"]["params"]["bandwidth"] > 0


def test_niche_sets_bad_inputs(tissue):
    with pytest.raises(KeyError, match="spatial_key='xy'"):
        scgde.tl.niche_sets(tissue, spatial_key="xy")
    with pytest.raises(ValueError, match="radius=0.001 leaves"):
        scgde.tl.niche_sets(tissue, radius=0.001)
    with pytest.raises(ValueError, match="kernel must be"):
        scgde.tl.niche_sets(tissue, kernel="box")
    with pytest.raises(ValueError, match="n_neighbors"):
        scgde.tl.niche_sets(tissue, n_neighbors=300)


def test_setup_needs_exactly_one_kind_of_set(tissue):
    with pytest.raises(ValueError, match="exactly one of set_key= .* and niche_key="):
        scgde.model.GDE.setup_anndata(tissue)
    with pytest.raises(ValueError, match="exactly one"):
        scgde.model.GDE.setup_anndata(tissue, set_key="domain", niche_key="gde_niches")
    with pytest.raises(KeyError, match="niche_sets"):
        scgde.model.GDE.setup_anndata(tissue, niche_key="gde_niches")
    tissue.obsp["bad"] = sp.csr_matrix((tissue.n_obs, tissue.n_obs))
    with pytest.raises(ValueError, match="no weight"):
        scgde.model.GDE.setup_anndata(tissue, niche_key="bad")


def test_niche_sampler_draws_members_by_weight():
    w = sp.csr_matrix(np.array([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8], [1.0, 0.0, 0.0]]))
    niches = NicheSets(w, np.array(["a", "b", "c"]))
    batch = NicheSampler(niches, cells_per_set=4000).sample_sets(np.array([1, 2]), np.random.default_rng(0))
    assert set(batch.cells[0]) == {1, 2} and set(batch.cells[1]) == {0}
    assert abs((batch.cells[0] == 2).mean() - 0.8) < 0.03


def test_niche_embeddings_exact_streamed_and_in_obs_order(niche_model, tissue):
    emb = niche_model.get_set_representation(progress_bar=False)
    assert list(emb.index) == list(tissue.obs_names) and emb.shape == (300, 3)
    small = niche_model.get_set_representation(chunk_size=7, progress_bar=False)
    np.testing.assert_allclose(small.to_numpy(), emb.to_numpy(), atol=1e-5)
    # each row is exactly the encoder on the weighted set of the niche's cells
    w = tissue.obsp["gde_niches"]
    module = niche_model.module
    for i in (0, 123):
        members = w[i].indices
        x = torch.as_tensor(tissue.X[members])
        z = module.embed(x[None], torch.as_tensor(w[i].data, dtype=torch.float32)[None])[0]
        np.testing.assert_allclose(z.detach().numpy(), emb.iloc[i].to_numpy(), atol=1e-5)
    some = niche_model.get_set_representation(sets=["cell5", "cell2"], progress_bar=False)
    np.testing.assert_allclose(some.to_numpy(), emb.loc[["cell5", "cell2"]].to_numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="set_key= and return_std"):
        niche_model.get_set_representation(return_std=True)


def test_embed_niches_and_a_reordered_query(niche_model, tissue):
    scgde.tl.embed_niches(niche_model)
    z = tissue.obsm["X_gde_niche"]
    np.testing.assert_allclose(z, niche_model.get_set_representation(progress_bar=False).to_numpy(), atol=1e-6)
    # the same tissue in another cell order, with its own niches: every cell keeps its niche vector
    order = np.random.default_rng(1).permutation(tissue.n_obs)
    query = tissue[order].copy()
    del query.obsp["gde_niches"]
    with pytest.raises(KeyError, match="niche_sets"):
        niche_model.get_set_representation(query)
    scgde.tl.niche_sets(query, n_neighbors=10)
    scgde.tl.embed_niches(niche_model, query, key_added="X_q")
    np.testing.assert_allclose(query.obsm["X_q"], z[order], atol=1e-5)
    with pytest.raises(ValueError, match="embed_niches"):
        scgde.tl.embed_sets(niche_model)


def test_niche_model_generates_and_saves(niche_model, tissue, tmp_path):
    out = niche_model.generate(["cell0", "cell1"], n_cells=7)
    assert out.shape == (14, tissue.n_vars) and list(out.obs["set"].cat.categories) == ["cell0", "cell1"]
    niche_model.save(tmp_path / "m", save_anndata=True)
    loaded = scgde.model.GDE.load(tmp_path / "m")
    np.testing.assert_allclose(
        loaded.get_set_representation(progress_bar=False).to_numpy(),
        niche_model.get_set_representation(progress_bar=False).to_numpy(),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="do not apply"):
        niche_model.train(max_epochs=1, mixer="dirichlet")


def test_planted_niches_are_found_where_means_fail():
    """Domains with equal mean expression but different cell-type mixtures: niche vectors separate them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    adata = scgde.datasets.niche_tissue(n_cells=900, n_genes=10, seed=0)
    scgde.tl.niche_sets(adata, n_neighbors=30)
    scgde.model.GDE.setup_anndata(adata, niche_key="gde_niches")
    model = scgde.model.GDE(adata, n_latent=8, n_hidden=32)
    model.train(max_epochs=10, batches_per_epoch=30, sets_per_batch=32, cells_per_set=50, enable_progress_bar=False)
    scgde.tl.embed_niches(model, progress_bar=False)
    domain = adata.obs["domain"].to_numpy()
    w = adata.obsp["gde_niches"]
    mean = np.asarray(sp.diags(1.0 / np.asarray(w.sum(1)).ravel()) @ w @ adata.X)

    def accuracy(features):
        return cross_val_score(LogisticRegression(max_iter=2000), features, domain, cv=5).mean()

    gde, baseline = accuracy(adata.obsm["X_gde_niche"]), accuracy(mean)
    assert baseline < 0.5  # chance is 1/3: the means carry no domain signal
    assert gde > baseline + 0.2, (gde, baseline)


def test_squidpy_tools_run_on_niche_domains(niche_model, tissue):
    import squidpy as sq
    from sklearn.cluster import KMeans

    scgde.tl.embed_niches(niche_model)
    labels = KMeans(3, n_init=3, random_state=0).fit_predict(tissue.obsm["X_gde_niche"])
    tissue.obs["niche_domain"] = np.asarray(labels).astype(str)
    tissue.obs["niche_domain"] = tissue.obs["niche_domain"].astype("category")
    sq.gr.nhood_enrichment(tissue, cluster_key="niche_domain", n_perms=20, seed=0, show_progress_bar=False)
    assert tissue.uns["niche_domain_nhood_enrichment"]["zscore"].shape == (3, 3)


def test_failed_niche_sets_leaves_the_graph_as_it_was(tissue):
    scgde.tl.niche_sets(tissue, n_neighbors=5)
    before = tissue.obsp["spatial_connectivities"].copy()
    with pytest.raises(ValueError, match="radius"):
        scgde.tl.niche_sets(tissue, radius=0.001)
    assert (tissue.obsp["spatial_connectivities"] != before).nnz == 0


def test_embed_niches_needs_a_niche_model(tissue):
    scgde.model.GDE.setup_anndata(tissue, set_key="domain")
    model = scgde.model.GDE(tissue, n_latent=2, n_hidden=8)
    with pytest.raises(ValueError, match="embed_sets"):
        scgde.tl.embed_niches(model)
