"""PerturbationPredictor and the perturbation baselines on data with a known linear response."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scgde
from scgde.model import GDE, PerturbationPredictor

FAST = {"enable_progress_bar": False}
CONTEXTS = ["A", "B", "C"]
PERTS = [f"g{i}" for i in range(8)]


def simulate(seed=0, cells=60, dim=6):
    """Control cells per context; perturbation p shifts cells by features(p) @ W (known, linear)."""
    rng = np.random.default_rng(seed)
    feats = pd.DataFrame(rng.normal(size=(len(PERTS), 3)), index=PERTS)
    w = rng.normal(size=(3, dim))
    base = {c: rng.normal(scale=2.0, size=dim) for c in CONTEXTS}
    blocks, obs = [], []
    for c in CONTEXTS:
        for p in ["ctrl", *PERTS]:
            shift = 0 if p == "ctrl" else feats.loc[p].to_numpy() @ w
            blocks.append(base[c] + shift + 0.5 * rng.normal(size=(cells, dim)))
            obs += [(c, p)] * cells
    obs = pd.DataFrame(obs, columns=["ctx", "pert"])
    obs.index = obs.index.astype(str)
    return ad.AnnData(np.concatenate(blocks).astype(np.float32), obs=obs), feats


@pytest.fixture(scope="module")
def fitted():
    import scvi

    scvi.settings.seed = 0
    adata, feats = simulate()
    held_out = (adata.obs["ctx"] == "C") & (adata.obs["pert"] == "g7")
    train = adata[~held_out.to_numpy()].copy()
    GDE.setup_anndata(train, set_key=["ctx", "pert"])
    model = GDE(train, n_latent=8, n_hidden=32, generator="direct")
    model.train(max_epochs=30, sets_per_batch=12, cells_per_set=32, batches_per_epoch=10, **FAST)
    return adata, feats, model


def test_predicts_unseen_pair_better_than_no_change(fitted):
    adata, feats, model = fitted
    pred = PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats).fit()
    z_true = model.get_set_representation(adata, set_key=["ctx", "pert"]).loc["C|g7"].to_numpy()
    z_pred = pred.predict_embedding("g7", context="C").iloc[0].to_numpy()
    z_ctrl = pred.control_embeddings_.loc["C"].to_numpy()
    assert np.linalg.norm(z_pred - z_true) < 0.5 * np.linalg.norm(z_ctrl - z_true)
    cells = pred.predict(["g7"], context="C", n_cells=200)
    assert cells.shape == (200, adata.n_vars)
    assert set(cells.obs["pert"]) == {"g7"} and set(cells.obs["ctx"]) == {"C"}
    truth = adata[(adata.obs["ctx"] == "C").to_numpy() & (adata.obs["pert"] == "g7").to_numpy()].X.mean(0)
    ctrl = adata[(adata.obs["ctx"] == "C").to_numpy() & (adata.obs["pert"] == "ctrl").to_numpy()].X.mean(0)
    delta_true, delta_pred = truth - ctrl, cells.X.mean(0) - ctrl
    assert np.corrcoef(delta_true, delta_pred)[0, 1] > 0.8


def test_mean_shift_and_one_hot_need_measured_perturbations(fitted):
    adata, feats, model = fitted
    arithmetic = PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", method="mean_shift").fit()
    assert arithmetic.predict_embedding("g7", context="C").shape == (1, 8)  # g7 measured in A and B
    with pytest.raises(ValueError, match="cannot predict unmeasured"):
        arithmetic.predict_embedding("g99", context="C")
    one_hot = PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx").fit()
    with pytest.raises(ValueError, match="never measured and no features"):
        one_hot.predict_embedding("g99", context="A")


def test_predictor_errors(fitted):
    _, feats, model = fitted
    with pytest.raises(ValueError, match="control='DMSO' is not a value"):
        PerturbationPredictor(model, "pert", control="DMSO")
    with pytest.raises(KeyError, match="context_key='donor'"):
        PerturbationPredictor(model, "pert", control="ctrl", context_key="donor")
    pred = PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats.iloc[:4]).fit
    with pytest.raises(ValueError, match="No features for perturbation"):
        pred()
    with pytest.raises(ValueError, match="have no control cells"):
        PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats).fit().predict("g1", "Z")
    with pytest.raises(ValueError, match="Pass context="):
        PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats).fit().predict("g1")


def test_context_without_control_is_an_error():
    adata, feats = simulate(cells=20, dim=3)
    adata = adata[~((adata.obs["ctx"] == "B") & (adata.obs["pert"] == "ctrl")).to_numpy()].copy()
    GDE.setup_anndata(adata, set_key=["ctx", "pert"])
    model = GDE(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, sets_per_batch=4, cells_per_set=4, batches_per_epoch=1, **FAST)
    with pytest.raises(ValueError, match=r"Context\(s\) \['B'\] have no control cells"):
        PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats).fit()


def test_coexpression_features_are_gene_loadings():
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(12)]
    x = rng.normal(size=(300, 12)).astype(np.float32)
    obs = pd.DataFrame({"pert": np.repeat(["ctrl", "G1", "G2"], 100)}, index=[str(i) for i in range(300)])
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=genes))
    GDE.setup_anndata(adata, set_key="pert")
    model = GDE(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, sets_per_batch=3, cells_per_set=8, batches_per_epoch=1, **FAST)
    pred = PerturbationPredictor(model, "pert", control="ctrl", features="coexpression", n_pcs=5)
    assert pred.features.shape == (12, 5) and list(pred.features.index) == genes
    pred.fit()
    assert pred.predict_embedding("G7").shape == (1, 2)  # an unmeasured gene, from its features
    assert pred.predict_embedding("G1+G7").shape == (1, 2)  # a combination: sum of the parts


def test_baselines_recover_a_known_linear_response():
    adata, feats = simulate(cells=80)
    out = scgde.tl.perturbation_baselines(
        adata, [("C", "g7")], perturbation_key="pert", control="ctrl", context_key="ctx", features=feats
    )
    assert set(out) == {"no change", "training mean", "perturbation mean", "ridge"}
    sel = (adata.obs["ctx"] == "C").to_numpy()
    truth = adata[sel & (adata.obs["pert"] == "g7").to_numpy()].X.mean(0)
    ctrl = adata[sel & (adata.obs["pert"] == "ctrl").to_numpy()].X.mean(0)
    err = {k: np.abs(v.X.mean(0) - truth).mean() for k, v in out.items()}
    noise = 0.5 / np.sqrt(80) * 3  # a few standard errors of a group mean
    assert err["ridge"] < noise < err["no change"]  # the response is linear in the features
    np.testing.assert_allclose(out["no change"].X.mean(0), ctrl, atol=1e-5)
    assert (out["ridge"].obs["ctx"] == "C").all()


def test_additive_baseline_for_combinations():
    rng = np.random.default_rng(1)
    blocks, obs = [], []
    shifts = {"ctrl": 0.0, "A": np.array([1.0, 0, 0]), "B": np.array([0, 2.0, 0])}
    shifts["A+B"] = shifts["A"] + shifts["B"]
    for p, s in shifts.items():
        blocks.append(s + 0.1 * rng.normal(size=(50, 3)))
        obs += [p] * 50
    adata = ad.AnnData(np.concatenate(blocks), obs=pd.DataFrame({"pert": obs}, index=[str(i) for i in range(200)]))
    out = scgde.tl.perturbation_baselines(adata, ["A+B"], perturbation_key="pert", control="ctrl")
    np.testing.assert_allclose(out["additive"].X.mean(0), [1, 2, 0], atol=0.1)
