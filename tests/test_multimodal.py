"""Multimodal sets: GDE.setup_mudata, masked modalities, exact embeddings, MuData generation and .h5mu round trips."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import scgde

mudata = pytest.importorskip("mudata")


@pytest.fixture
def mdata():
    return scgde.datasets.multimodal_sets(n_sets=10, set_size=30, n_genes=30, n_proteins=6, n_regions=12, seed=0)


def _train(model, steps: int = 3):
    model.train(max_epochs=1, batches_per_epoch=steps, sets_per_batch=6, cells_per_set=20, enable_progress_bar=False)
    return model


@pytest.fixture
def model(mdata):
    scgde.model.GDE.setup_mudata(mdata, set_key="clone")
    return _train(scgde.model.GDE(mdata, n_latent=3, n_hidden=16))


def test_setup_registers_every_modality_with_its_likelihood(model, mdata):
    assert model.modalities == {"rna": None, "prot": None, "atac": None}
    layout = model.module.layout
    assert layout.names == ("rna", "prot", "atac") and layout.kinds == ("nb", "gaussian", "bernoulli")
    assert model.module.log1p == (False, True, False)  # protein counts are modelled on log1p
    assert list(model.var_names[:2]) == ["gene0", "gene1"] and len(model.var_names) == 30 + 6 + 12
    assert "_scgde_set" in mdata.obs


def test_embeddings_exact_streamed_and_invariant(model, mdata):
    emb = model.get_set_representation(progress_bar=False)
    assert emb.shape == (10, 3) and list(emb.index) == list(mdata.uns["multimodal_sets"]["truth"].index)
    small = model.get_set_representation(chunk_size=13, progress_bar=False)
    np.testing.assert_allclose(small.to_numpy(), emb.to_numpy(), atol=1e-5)
    # the same cells in another order, every cell twice: the same set vectors
    order = np.random.default_rng(0).permutation(mdata.n_obs)
    idx = np.r_[order, order]
    names = [f"copy{i}" for i in range(len(idx))]
    mods = {m: ad.AnnData(mdata[m].X[idx], obs=pd.DataFrame(index=names), var=mdata[m].var) for m in mdata.mod}
    shuffled = mudata.MuData(mods)
    shuffled.obs["clone"] = mdata.obs["clone"].to_numpy()[idx]
    again = model.get_set_representation(shuffled, set_key="clone", progress_bar=False)
    np.testing.assert_allclose(again.loc[emb.index].to_numpy(), emb.to_numpy(), atol=1e-5)


def test_missing_modality_is_masked(mdata):
    masked = scgde.datasets.multimodal_sets(
        n_sets=10, set_size=30, n_genes=30, n_proteins=6, n_regions=12, missing_protein=0.4, seed=0
    )
    assert 0 < np.asarray(masked.obsm["prot"]).mean() < 0.8
    scgde.model.GDE.setup_mudata(masked, set_key="clone")
    model = _train(scgde.model.GDE(masked, n_latent=3, n_hidden=16))
    fetcher = model._modality_fetcher(masked)
    missing = np.flatnonzero(~np.asarray(masked.obsm["prot"]).ravel())[:5]
    rows = fetcher.rows(missing)
    prot = slice(30, 36)
    assert (rows[:, prot] == 0).all() and (rows[:, -3:] == [1, 0, 1]).all()
    # whatever a missing modality's slots hold, the encoder never sees it
    x = torch.as_tensor(rows)
    garbage = x.clone()
    garbage[:, prot] = 1e3
    module = model.module
    np.testing.assert_array_equal(module.encoder_input(x).numpy(), module.encoder_input(garbage).numpy())
    loss = module.loss({"X": x[None]}, {"z": module.embed(x[None])}, {})
    assert torch.isfinite(loss.loss)
    assert np.isfinite(model.get_set_representation(progress_bar=False).to_numpy()).all()


def test_bad_inputs(mdata):
    with pytest.raises(TypeError, match="setup_mudata needs a MuData"):
        scgde.model.GDE.setup_mudata(mdata["rna"], set_key="clone")
    with pytest.raises(KeyError, match="'nope', which is not in mdata.mod"):
        scgde.model.GDE.setup_mudata(mdata, set_key="clone", modalities={"rna_layer": "nope"})
    with pytest.raises(KeyError, match="set_key='donor'"):
        scgde.model.GDE.setup_mudata(mdata, set_key="donor")
    with pytest.raises(KeyError, match="rna_layer='counts'"):
        scgde.model.GDE.setup_mudata(mdata, set_key="clone", rna_layer="counts")
    with pytest.raises(ValueError, match="unknown key"):
        scgde.model.GDE.setup_mudata(mdata, set_key="clone", modalities={"hto_layer": "rna"})
    partial = scgde.datasets.multimodal_sets(n_sets=4, set_size=10, n_genes=20, missing_protein=0.5, seed=0)
    with pytest.raises(ValueError, match="in none of the registered modalities"):
        scgde.model.GDE.setup_mudata(partial, set_key="clone", modalities={"protein_layer": "prot"})
    scgde.model.GDE.setup_mudata(mdata, set_key="clone")
    with pytest.raises(ValueError, match="leave generator= and likelihood= unset"):
        scgde.model.GDE(mdata, generator="flow")


def test_generate_returns_a_mudata_on_each_support(model, mdata):
    out = model.generate(["clone0", "clone3"], n_cells=25)
    assert isinstance(out, mudata.MuData) and set(out.mod) == {"rna", "prot", "atac"}
    assert out.n_obs == 50 and list(out.obs["set"].unique()) == ["clone0", "clone3"]
    for mod in out.mod:
        assert list(out[mod].var_names) == list(mdata[mod].var_names)
    rna, prot, atac = (np.asarray(out[m].X) for m in ("rna", "prot", "atac"))
    assert (rna >= 0).all() and (rna == np.round(rna)).all()  # counts
    assert (prot >= 0).all()
    assert set(np.unique(atac)) <= {0.0, 1.0}
    line = model.interpolate("clone0", "clone1", n_steps=3, n_cells=4)
    assert isinstance(line, mudata.MuData) and line.n_obs == 12 and "t" in line.obs


def test_h5mu_round_trip_and_save_load(model, mdata, tmp_path):
    emb = model.get_set_representation(progress_bar=False)
    mdata.write(tmp_path / "sets.h5mu")
    back = mudata.read_h5mu(tmp_path / "sets.h5mu")
    np.testing.assert_allclose(model.get_set_representation(back, progress_bar=False).to_numpy(), emb, atol=1e-6)
    model.save(tmp_path / "model", save_anndata=True)
    loaded = scgde.model.GDE.load(tmp_path / "model")
    assert isinstance(loaded.adata, mudata.MuData)
    np.testing.assert_allclose(loaded.get_set_representation(progress_bar=False).to_numpy(), emb, atol=1e-6)
    onto = scgde.model.GDE.load(tmp_path / "model", adata=back)
    np.testing.assert_allclose(onto.get_set_representation(progress_bar=False).to_numpy(), emb, atol=1e-6)


def test_set_object_from_a_mudata(model, mdata):
    scgde.tl.embed_sets(model)
    assert mdata.obsm["X_gde"].shape == (mdata.n_obs, 3) and "gde" in mdata.uns
    sets = scgde.tl.set_adata(mdata)
    assert sets.n_obs == 10 and sets.obsm["X_gde"].shape == (10, 3)
    assert (sets.obs["n_cells"] == 30).all()


def test_one_modality_alone_and_a_query_with_other_features(mdata):
    scgde.model.GDE.setup_mudata(mdata, set_key="clone", modalities={"atac_layer": "atac"})
    model = _train(scgde.model.GDE(mdata, n_latent=2, n_hidden=8))
    assert model.module.layout.names == ("atac",)
    other = mdata.copy()
    other.mod["atac"] = other.mod["atac"][:, :6].copy()
    other.update()
    with pytest.raises(ValueError, match="other features than the model's"):
        model.get_set_representation(other, progress_bar=False)


def test_each_modality_informs_its_own_parameter():
    """Joint training recovers the accessibility parameter that the RNA alone cannot see."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV

    data = scgde.datasets.multimodal_sets(n_sets=40, set_size=60, n_genes=30, n_proteins=6, n_regions=40, seed=1)
    truth = data.uns["multimodal_sets"]["truth"]
    scores = {}
    for name, mods in (("rna", {"rna_layer": "rna"}), ("joint", None)):
        scgde.model.GDE.setup_mudata(data, set_key="clone", modalities=mods)
        model = scgde.model.GDE(data, n_latent=6, n_hidden=32)
        model.train(max_epochs=10, batches_per_epoch=20, sets_per_batch=16, cells_per_set=40, enable_progress_bar=False)
        emb = model.get_set_representation(progress_bar=False).loc[truth.index].to_numpy()
        fit = RidgeCV(alphas=np.logspace(-3, 3, 7)).fit(emb[:28], truth["atac"][:28])
        scores[name] = spearmanr(fit.predict(emb[28:]), truth["atac"][28:]).statistic
    assert scores["joint"] > 0.7 and scores["joint"] > scores["rna"] + 0.3, scores


def test_query_cells_outside_the_model_modalities_are_not_elements():
    data = scgde.datasets.multimodal_sets(n_sets=6, set_size=30, n_genes=20, n_proteins=5, missing_protein=0.4, seed=2)
    measured = np.asarray(data.obsm["prot"]).ravel()
    with_prot = data[measured].copy()
    scgde.model.GDE.setup_mudata(with_prot, set_key="clone", modalities={"protein_layer": "prot"})
    model = _train(scgde.model.GDE(with_prot, n_latent=2, n_hidden=8))
    own = model.get_set_representation(progress_bar=False)
    every = model.get_set_representation(data, set_key="clone", progress_bar=False)  # cells without protein too
    np.testing.assert_allclose(every.loc[own.index].to_numpy(), own.to_numpy(), atol=1e-5)


def test_duplicate_modality_mapping_and_unsupported_arguments(mdata):
    with pytest.raises(ValueError, match="several arguments to modality 'rna'"):
        scgde.model.GDE.setup_mudata(mdata, set_key="clone", modalities={"rna_layer": "rna", "protein_layer": "rna"})
    with pytest.raises(TypeError, match="batch_key"):
        scgde.model.GDE.setup_mudata(mdata, set_key="clone", batch_key="clone")


def test_load_keeps_the_likelihoods_and_checks_the_features(model, mdata, tmp_path):
    model.save(tmp_path / "m")
    emb = model.get_set_representation(progress_bar=False)
    # log1p-scaled protein: a query that is no longer counts is refused, not re-interpreted
    other = mdata.copy()
    other.mod["prot"].X = np.log1p(other.mod["prot"].X)
    with pytest.raises(ValueError, match="count"):
        model.get_set_representation(other, progress_bar=False)
    # the same features in another order: a clear error on load
    shuffled = mdata.copy()
    shuffled.mod["rna"] = shuffled.mod["rna"][:, ::-1].copy()
    shuffled.update()
    with pytest.raises(ValueError, match="other features"):
        scgde.model.GDE.load(tmp_path / "m", adata=shuffled)
    loaded = scgde.model.GDE.load(tmp_path / "m", adata=mdata)
    assert loaded.module.layout.kinds == model.module.layout.kinds and loaded.module.log1p == model.module.log1p
    np.testing.assert_allclose(loaded.get_set_representation(progress_bar=False).to_numpy(), emb, atol=1e-6)


# ---------------------------------------------------------------- MultimodalGDE, the MuData model class
def test_multimodal_gde_directly(mdata):
    scgde.model.MultimodalGDE.setup_mudata(mdata, set_key="clone")
    model = _train(scgde.model.MultimodalGDE(mdata, n_latent=3, n_hidden=16))
    assert type(model) is scgde.model.MultimodalGDE and model._multimodal
    assert model.module.layout.kinds == ("nb", "gaussian", "bernoulli")
    assert model.get_set_representation(progress_bar=False).shape == (10, 3)
    assert isinstance(model.generate(["clone0"], n_cells=5), mudata.MuData)
    # registered for MultimodalGDE: the class GDE(mdata) builds
    assert type(scgde.model.GDE(mdata, n_latent=3, n_hidden=16)) is scgde.model.MultimodalGDE


def test_gde_of_a_mudata_is_a_multimodal_gde(model, mdata):
    assert type(model) is scgde.model.MultimodalGDE
    assert not isinstance(model, scgde.model.GDE)  # GDE is the AnnData model
    assert model.registry_["model_name"] == "MultimodalGDE"  # GDE.setup_mudata registers for MultimodalGDE
    direct = scgde.model.MultimodalGDE(mdata, n_latent=3, n_hidden=16)
    assert direct.init_params_ == scgde.model.GDE(mdata, n_latent=3, n_hidden=16).init_params_


def test_gde_load_of_a_multimodal_model_is_a_multimodal_gde(model, mdata, tmp_path):
    emb = model.get_set_representation(progress_bar=False)
    model.save(tmp_path / "m", save_anndata=True)
    for loader in (scgde.model.GDE, scgde.model.MultimodalGDE):
        loaded = loader.load(tmp_path / "m")
        assert type(loaded) is scgde.model.MultimodalGDE
        np.testing.assert_allclose(loaded.get_set_representation(progress_bar=False).to_numpy(), emb, atol=1e-6)
    adata = scgde.datasets.synthetic_mvn(n_sets=4, set_size=10, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    scgde.model.GDE(adata, n_latent=2, n_hidden=8).save(tmp_path / "a")
    with pytest.raises(TypeError, match="GDE.load"):
        scgde.model.MultimodalGDE.load(tmp_path / "a")


def test_a_multimodal_gde_saved_before_the_class_loads(model, mdata, tmp_path):
    """A folder written by GDE(mdata) before MultimodalGDE existed: registered as "GDE", with GDE's init arguments."""
    emb = model.get_set_representation(progress_bar=False)
    model.save(tmp_path / "m")
    saved = torch.load(tmp_path / "m" / "model.pt", weights_only=False)
    saved["attr_dict"]["registry_"]["model_name"] = "GDE"
    saved["attr_dict"]["registry_"]["setup_args"]["unsupported"] = []
    saved["attr_dict"]["init_params_"]["non_kwargs"].update(generator=None, likelihood=None, output_support="auto")
    torch.save(saved, tmp_path / "m" / "model.pt")
    loaded = scgde.model.GDE.load(tmp_path / "m", adata=mdata)
    assert type(loaded) is scgde.model.MultimodalGDE
    np.testing.assert_allclose(loaded.get_set_representation(progress_bar=False).to_numpy(), emb, atol=1e-6)


def test_multimodal_gde_refuses_an_anndata_and_gde_has_no_mudata_path(mdata):
    adata = scgde.datasets.synthetic_mvn(n_sets=4, set_size=10, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    with pytest.raises(TypeError, match=r"scgde\.model\.GDE"):
        scgde.model.MultimodalGDE(adata)
    with pytest.raises(TypeError, match=r"GDE\.setup_anndata"):
        scgde.model.MultimodalGDE.setup_anndata(adata, set_key="set")
    with pytest.raises(TypeError, match="setup_mudata needs a MuData"):
        scgde.model.MultimodalGDE.setup_mudata(adata, set_key="set")
    # GDE is the AnnData model: the MuData helpers live on MultimodalGDE only
    for name in ("_modality_fetcher", "modalities", "_init_module", "_modality_specs"):
        assert name not in dir(scgde.model.GDE) and name in dir(scgde.model.MultimodalGDE)
    assert type(scgde.model.GDE(adata, n_latent=2, n_hidden=8)) is scgde.model.GDE
    scgde.model.GDE.setup_mudata(mdata, set_key="clone")
    with pytest.raises(ValueError, match="output_support"):
        scgde.model.GDE(mdata, output_support="real")
