"""Clone-level information and fate prediction, on known ground truth and on the LARRY subset."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scgde


def synthetic_clones(n_clones=120, dependent=True, seed=0):
    """Each clone has a latent fate f; early cells sit near f (or near a random point), late cells near 2f."""
    rng = np.random.default_rng(seed)
    rows, obs = [], []
    for c in range(n_clones):
        f = rng.normal(size=2)
        early_centre = f if dependent else rng.normal(size=2)
        for t, centre in (("d2", early_centre), ("d6", 2 * f)):
            rows.append(centre + 0.2 * rng.normal(size=(6, 2)))
            state = np.where(rows[-1][:, 0] > 0, "Neu", "Mono")
            obs += [(f"clone{c}", t, s) for s in state]
    obs = pd.DataFrame(obs, columns=["clone", "time", "state"], index=[str(i) for i in range(len(obs))])
    adata = ad.AnnData(np.concatenate(rows).astype(np.float32), obs=obs)
    adata.obsm["X_pca"] = adata.X.copy()
    return adata


def test_information_detects_dependence_and_its_absence():
    dep = scgde.tl.clone_information(synthetic_clones(), "clone", "time", ["d2"], ["d6"], n_permutations=30)
    ind = scgde.tl.clone_information(
        synthetic_clones(dependent=False), "clone", "time", ["d2"], ["d6"], n_permutations=30
    )
    assert dep["mi"] > 1.0 and dep["p_value"] < 0.05
    assert ind["mi"] < 0.3 and ind["p_value"] > 0.05
    assert dep["n_clones"] == 120 and len(dep["pointwise"]) == 120
    assert dep["pointwise"].mean() == pytest.approx(dep["mi"])


def test_information_is_stored_for_plotting(tmp_path):
    adata = synthetic_clones()
    adata.obs.loc[adata.obs_names[:6], "clone"] = np.nan  # clone0's early cells belong to no clone
    res = scgde.tl.clone_information(adata, "clone", "time", ["d2"], ["d6"], n_permutations=5)
    per_cell = adata.obs["clone_information_pointwise"]
    # clone0 has no early cells left, so neither its unlabelled nor its late cells get a value
    assert per_cell.iloc[:12].isna().all() and per_cell.iloc[12:].notna().all()
    assert adata.uns["clone_information"]["mi"] == res["mi"]
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["clone_information"]["pointwise"].shape == (119, 1)
    fig = scgde.pl.clone_information(back, basis="X_pca", show=False)
    assert fig is not None


def test_fate_prediction_beats_mean_when_fate_is_encoded():
    adata = synthetic_clones(n_clones=150)
    scores, pred = scgde.tl.predict_fate(adata, "clone", "time", "state", ["d2"], ["d6"], method="knn")
    assert scores["tv"].mean() < 0.6 * scores["tv_mean_baseline"].mean()
    assert pred.shape == (150, 2) and np.allclose(pred.sum(1), 1)
    comp, _ = scgde.tl.predict_fate(adata, "clone", "time", "state", ["d2"], ["d6"], representation="composition")
    assert np.isfinite(comp["tv"]).all()


def test_errors_name_the_argument():
    adata = synthetic_clones(n_clones=10)
    with pytest.raises(KeyError, match="time_key='day'"):
        scgde.tl.clone_information(adata, "clone", "day", ["d2"], ["d6"])
    with pytest.raises(ValueError, match=r"Time point\(s\) \['d9'\]"):
        scgde.tl.clone_information(adata, "clone", "time", ["d9"], ["d6"])
    with pytest.raises(ValueError, match="needs a trained GDE"):
        scgde.tl.clone_representations(adata, "clone", "time", ["d2"], representation="gde")


def test_larry_subset_end_to_end(shared_file):
    path = shared_file("larry_cospar_subset", "test_adata_preprocessed.h5ad")
    adata = ad.read_h5ad(path)
    scgde.pp.clones_from_matrix(adata, "X_clone", key_added="clone")
    adata.obs["time"] = adata.obs["time_info"].astype(str)
    adata.obs["state"] = adata.obs["state_info"].astype(str)
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy() if "highly_variable" in adata.var else adata
    adata.X = np.log1p(adata.X.toarray())
    scgde.model.GDE.setup_anndata(adata, set_key=["clone", "time"])
    model = scgde.model.GDE(adata, n_latent=8, n_hidden=32)
    model.train(max_epochs=2, sets_per_batch=16, cells_per_set=8, enable_progress_bar=False)
    res = scgde.tl.clone_information(model, "clone", "time", ["2", "4"], ["6"], n_permutations=10)
    base = scgde.tl.clone_information(adata, "clone", "time", ["2", "4"], ["6"], n_permutations=10, key_added=None)
    assert res["n_clones"] == base["n_clones"] > 20
    assert np.isfinite([res["mi"], base["mi"]]).all()


def test_fate_folds_do_not_depend_on_the_representation():
    """The same seed holds out the same clones for GDE (category order) and baselines (sorted by name)."""
    adata = synthetic_clones(n_clones=40)
    adata.obs["clone"] = pd.Categorical(adata.obs["clone"], categories=[f"clone{c}" for c in range(40)])
    scgde.model.GDE.setup_anndata(adata, set_key="clone")
    untrained = scgde.model.GDE(adata, n_latent=4, n_hidden=16)  # fold assignment needs no training
    gde, _ = scgde.tl.predict_fate(untrained, "clone", "time", "state", ["d2"], ["d6"])
    comp, _ = scgde.tl.predict_fate(adata, "clone", "time", "state", ["d2"], ["d6"], representation="composition")
    np.testing.assert_allclose(gde["tv_mean_baseline"], comp["tv_mean_baseline"])
