"""scgde.model.GDE end to end: setup, training, embeddings, storage, generation, save/load, errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from scipy.stats import spearmanr

import scgde
from scgde.model import GDE

FAST = {"enable_progress_bar": False}


def make_sets(n_sets=30, size=40, dim=4, seed=0):
    adata = scgde.datasets.synthetic_mvn(n_sets=n_sets, set_size=size, dim=dim, seed=seed)
    adata.obs["group"] = np.where(adata.obs["set"].cat.codes % 2 == 0, "even", "odd")
    return adata


@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    adata = make_sets()
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=6, n_hidden=32)
    model.train(max_epochs=3, sets_per_batch=8, cells_per_set=16, **FAST)
    return model


# ---------------------------------------------------------------- training
def test_training_logs_real_validation_loss(trained):
    hist = trained.history
    assert {"train_loss", "validation_loss"} <= set(hist)
    assert len(hist["validation_loss"]) == 3 and np.isfinite(hist["validation_loss"].to_numpy(float)).all()
    # validation sets are whole sets, disjoint from training sets
    assert len(trained.validation_sets_) >= 1
    assert not set(trained.train_sets_) & set(trained.validation_sets_)


@pytest.mark.parametrize(
    ("encoder", "generator"), [("attention", "ddpm"), ("deepsets", "flow"), ("kme", "direct"), ("mean", "cvae")]
)
def test_every_encoder_and_generator_trains(encoder, generator):
    adata = make_sets(n_sets=12, size=20, dim=3)
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16, encoder=encoder, generator=generator)
    model.train(max_epochs=1, sets_per_batch=4, cells_per_set=8, batches_per_epoch=2, **FAST)
    assert model.get_set_representation().shape == (12, 4)


def test_latent_recovers_mean_shift_ground_truth():
    """Sets N(mu, 1) in 2-D: latent distances must rank like |mu_a - mu_b| (Spearman > 0.9)."""
    scvi.settings.seed = 0
    rng = np.random.default_rng(0)
    mus = rng.uniform(-3, 3, size=(40, 2))
    x = np.concatenate([m + rng.standard_normal((80, 2)) for m in mus]).astype(np.float32)
    adata = ad.AnnData(x, obs=pd.DataFrame({"set": np.repeat([f"s{i:02d}" for i in range(40)], 80)}))
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=32, generator="direct")
    model.train(max_epochs=30, sets_per_batch=16, cells_per_set=32, batches_per_epoch=10, **FAST)
    z = model.get_set_representation().to_numpy()
    iu = np.triu_indices(40, 1)
    latent = np.linalg.norm(z[:, None] - z[None], axis=-1)[iu]
    truth = np.linalg.norm(mus[:, None] - mus[None], axis=-1)[iu]
    assert spearmanr(latent, truth).statistic > 0.9


def test_seed_makes_training_reproducible():
    out = []
    for _ in range(2):
        scvi.settings.seed = 7
        adata = make_sets(n_sets=10, size=20, dim=3)
        GDE.setup_anndata(adata, set_key="set")
        model = GDE(adata, n_latent=4, n_hidden=16)
        model.train(max_epochs=2, sets_per_batch=4, cells_per_set=8, **FAST)
        out.append(model.get_set_representation().to_numpy())
    np.testing.assert_array_equal(out[0], out[1])


def test_mixer_training_and_min_set_size_warning():
    adata = make_sets(n_sets=12, size=20, dim=3)
    keep = ~((adata.obs["set"] == "set_00").to_numpy() & (np.arange(adata.n_obs) % 20 > 1))
    adata = adata[keep].copy()  # set_00 now has 2 cells
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    with pytest.warns(UserWarning, match="Skipping 1 of 12 sets"):
        model.train(
            max_epochs=1, mixer={"k": 2, "alpha": 0.5}, min_set_size=5, sets_per_batch=4, cells_per_set=8, **FAST
        )


# ---------------------------------------------------------------- embeddings
def test_set_representation_uses_all_cells_exactly(trained):
    emb = trained.get_set_representation()
    assert list(emb.index) == list(trained.adata.obs["set"].cat.categories)
    # chunking does not matter
    np.testing.assert_allclose(trained.get_set_representation(chunk_size=7).to_numpy(), emb.to_numpy(), atol=1e-5)
    # equals encoding the full set directly
    cells = trained.adata[trained.adata.obs["set"] == "set_03"].X
    with torch.no_grad():
        z = trained.module.embed(torch.as_tensor(cells)[None])[0].numpy()
    np.testing.assert_allclose(emb.loc["set_03"].to_numpy(), z, atol=1e-5)


def test_embeds_unseen_sets_of_any_size(trained):
    new = scgde.datasets.synthetic_mvn(n_sets=3, set_size=5000, dim=4, seed=99)
    new.obs["set"] = new.obs["set"].cat.rename_categories(lambda s: "new_" + s)
    tiny = ad.AnnData(new.X[:1], obs=pd.DataFrame({"set": ["one_cell"]}, index=["c"]), var=new.var)
    both = ad.concat([new, tiny])
    both.obs_names_make_unique()
    emb = trained.get_set_representation(both)
    assert list(emb.index) == ["new_set_0", "new_set_1", "new_set_2", "one_cell"]
    assert np.isfinite(emb.to_numpy()).all()
    subset = trained.get_set_representation(both, sets=["one_cell", "new_set_1"])
    np.testing.assert_allclose(subset.to_numpy(), emb.loc[["one_cell", "new_set_1"]].to_numpy(), atol=1e-5)


def test_backed_and_sparse_inputs_match_dense(trained, tmp_path):
    adata = trained.adata.copy()
    dense = trained.get_set_representation(adata).to_numpy()
    sparse = ad.AnnData(sp.csr_matrix(adata.X), obs=adata.obs[["set"]], var=adata.var)
    np.testing.assert_allclose(trained.get_set_representation(sparse).to_numpy(), dense, atol=1e-5)
    sparse.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    np.testing.assert_allclose(trained.get_set_representation(backed, chunk_size=100).to_numpy(), dense, atol=1e-5)


def test_latent_representation_is_per_cell(trained):
    z = trained.get_latent_representation()
    emb = trained.get_set_representation()
    assert z.shape == (trained.adata.n_obs, 6)
    np.testing.assert_allclose(z[0], emb.loc[trained.adata.obs["set"].iloc[0]].to_numpy())


def test_embed_sets_storage_survives_h5ad(trained, tmp_path):
    adata = trained.adata.copy()
    adata.obs.loc[adata.obs_names[:3], "set"] = np.nan  # cells in no set
    scgde.tl.embed_sets(trained, adata)
    assert np.isnan(adata.obsm["X_gde"][:3]).all() and np.isfinite(adata.obsm["X_gde"][3:]).all()
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = ad.read_h5ad(tmp_path / "e.h5ad")
    pd.testing.assert_frame_equal(back.uns["gde"]["embedding"], adata.uns["gde"]["embedding"], check_names=False)
    np.testing.assert_array_equal(back.obsm["X_gde"], adata.obsm["X_gde"])
    sets = scgde.tl.set_adata(back)
    assert sets.n_obs == 30 and sets.obs["group"].isin(["even", "odd"]).all()
    assert (sets.obs["n_cells"] > 0).all()


def test_set_adata_summarises_obs_and_feeds_scanpy(trained):
    import scanpy as sc

    adata = trained.adata.copy()
    adata.obs["mixed"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 40 < 30, "a", "b"))
    adata.obs["score"] = np.arange(adata.n_obs, dtype=float)
    scgde.tl.embed_sets(trained, adata)
    sets = scgde.tl.set_adata(adata)
    np.testing.assert_allclose(sets.obs["mixed_fraction"], 0.75)
    assert (sets.obs["mixed"] == "a").all()
    assert sets.obs.loc["set_00", "score_mean"] == pytest.approx(np.arange(40).mean())
    sc.pp.neighbors(sets, use_rep="X_gde", n_neighbors=5)
    sc.tl.umap(sets)
    assert sets.obsm["X_umap"].shape == (30, 2)


def test_set_adata_without_embeddings_explains_fix():
    with pytest.raises(KeyError, match="embed_sets"):
        scgde.tl.set_adata(make_sets(n_sets=2, size=5))


# ---------------------------------------------------------------- generation
def test_generate_interpolate_distances(trained):
    gen = trained.generate(["set_00", "set_05"], n_cells=25)
    assert gen.shape == (50, 4) and list(gen.var_names) == list(trained.adata.var_names)
    assert list(gen.obs["set"].cat.categories) == ["set_00", "set_05"]
    emb = trained.get_set_representation()
    assert trained.generate(emb.iloc[:3], n_cells=2).shape == (6, 4)
    path = trained.interpolate("set_00", "set_05", n_steps=5, n_cells=10)
    assert path.n_obs == 50 and sorted(set(path.obs["t"])) == [0.0, 0.25, 0.5, 0.75, 1.0]
    d = trained.set_distances(sets=["set_00", "set_01", "set_02"])
    assert d.shape == (3, 3) and np.allclose(np.diag(d), 0) and np.allclose(d, d.T)


# ---------------------------------------------------------------- save / load
def test_save_load_roundtrip_and_new_adata(trained, tmp_path):
    emb = trained.get_set_representation()
    trained.save(tmp_path / "m", save_anndata=True)
    loaded = GDE.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.get_set_representation().to_numpy(), emb.to_numpy())
    other = make_sets(n_sets=5, seed=3)
    other.obs["set"] = other.obs["set"].cat.rename_categories(lambda s: "q_" + s)
    on_other = GDE.load(tmp_path / "m", adata=other)
    assert list(on_other.get_set_representation().index) == [f"q_set_{i}" for i in range(5)]
    np.testing.assert_allclose(
        on_other.get_set_representation().to_numpy(), trained.get_set_representation(other).to_numpy(), atol=1e-6
    )


def test_covariance_configuration_saves_and_loads(tmp_path):
    """The quadratic encoder and the FiLM decoder travel with the model's parameters."""
    adata = make_sets(n_sets=8, size=30)
    GDE.setup_anndata(adata, set_key="set")
    options = {"encoder_kwargs": {"quadratic": True}, "generator_kwargs": {"conditioning": "film"}}
    model = GDE(adata, n_latent=4, n_hidden=16, generator="cvae", **options)
    model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    assert model.module.encoder.quadratic is not None and model.module.generator.conditioning == "film"
    model.save(tmp_path / "cov")
    loaded = GDE.load(tmp_path / "cov", adata=adata)
    np.testing.assert_array_equal(loaded.get_set_representation().to_numpy(), model.get_set_representation().to_numpy())


# ---------------------------------------------------------------- data variants
def test_counts_with_nb_batch_and_multikey_sets():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(240, 12)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "cell_type": np.repeat(["T", "B", "NK"], 80),
            "condition": np.tile(np.repeat(["ctrl", "stim"], 40), 3),
            "batch": np.tile(["b1", "b2"], 120),
        }
    )
    adata = ad.AnnData(np.log1p(counts), obs=obs, layers={"counts": counts})
    GDE.setup_anndata(adata, set_key=["cell_type", "condition"], layer="counts", batch_key="batch")
    model = GDE(adata, n_latent=4, n_hidden=16, likelihood="nb")
    model.train(max_epochs=1, sets_per_batch=4, cells_per_set=10, **FAST)
    emb = model.get_set_representation()
    assert sorted(emb.index) == ["B|ctrl", "B|stim", "NK|ctrl", "NK|stim", "T|ctrl", "T|stim"]
    gen = model.generate(["T|stim"], n_cells=20, batch="b2")
    assert (gen.X >= 0).all() and np.array_equal(gen.X, np.round(gen.X)) and (gen.obs["batch"] == "b2").all()
    with pytest.raises(ValueError, match="batch="):
        model.generate(["T|stim"], n_cells=2)


def test_user_data_is_not_modified():
    adata = make_sets(n_sets=6, size=10, dim=3)
    adata.layers["raw"] = adata.X.copy()
    before_x, before_obs, before_uns = adata.X.copy(), adata.obs.copy(), set(adata.uns)
    GDE.setup_anndata(adata, set_key="set", layer="raw")
    model = GDE(adata, n_latent=3, n_hidden=8)
    model.train(max_epochs=1, sets_per_batch=3, cells_per_set=4, **FAST)
    model.get_set_representation()
    np.testing.assert_array_equal(adata.X, before_x)
    np.testing.assert_array_equal(adata.layers["raw"], before_x)
    # the only obs column added is the documented registry column of set codes
    assert list(adata.obs.columns) == [*before_obs.columns, "_scgde_set"]
    pd.testing.assert_frame_equal(adata.obs[before_obs.columns], before_obs)
    assert {k for k in adata.uns if not k.startswith("_scvi")} == before_uns


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"set_key": "clone"}, KeyError, "set_key='clone' is not a column"),
        ({"set_key": "set", "layer": "counts"}, KeyError, "layer='counts' is not in adata.layers"),
        ({"set_key": "set", "batch_key": "donor"}, KeyError, "batch_key='donor'"),
        ({"set_key": "empty"}, ValueError, "every cell has a missing value"),
        ({"set_key": "one"}, ValueError, "at least 2 sets"),
    ],
)
def test_setup_errors(kwargs, error, match):
    adata = make_sets(n_sets=4, size=5, dim=2)
    adata.obs["empty"] = np.nan
    adata.obs["one"] = "only"
    with pytest.raises(error, match=match):
        GDE.setup_anndata(adata, **kwargs)


def test_nan_in_x_is_rejected():
    adata = make_sets(n_sets=4, size=5, dim=2)
    adata.X[3, 1] = np.inf
    with pytest.raises(ValueError, match="adata.X contains NaN or infinite"):
        GDE.setup_anndata(adata, set_key="set")


def test_model_argument_errors():
    adata = make_sets(n_sets=4, size=5, dim=2)
    GDE.setup_anndata(adata, set_key="set")
    with pytest.raises(ValueError, match=r"Unknown encoder='gnn'; choose one of \['attention'"):
        GDE(adata, encoder="gnn")
    with pytest.raises(ValueError, match="Unknown generator='vae'"):
        GDE(adata, generator="vae")
    with pytest.raises(ValueError, match="need raw counts"):
        GDE(adata, likelihood="nb")
    with pytest.raises(ValueError, match="needs generator='cvae'"):
        GDE(adata, likelihood="nb", generator="ddpm")
    model = GDE(adata, n_latent=2, n_hidden=8)
    with pytest.raises(ValueError, match="cells_per_set must be >= 1"):
        model.train(cells_per_set=0)
    with pytest.raises(ValueError, match="genes differ"):
        model.get_set_representation(adata[:, 1:].copy())
    with pytest.raises(KeyError, match="Unknown set name"):
        model.generate(["nope"])
    with pytest.raises(ValueError, match="chunk_size=0 must be a positive"):
        model.get_set_representation(chunk_size=0)
