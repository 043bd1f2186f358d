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
    # through the public API only: the control rows come from the registered matrix, not GDE internals
    pred = PerturbationPredictor(_PublicOnly(model), "pert", control="ctrl", features="coexpression", n_pcs=5)
    assert pred.features.shape == (12, 5) and list(pred.features.index) == genes
    pred.fit()
    assert pred.predict_embedding("G7").shape == (1, 2)  # an unmeasured gene, from its features
    assert pred.predict_embedding("G1+G7").shape == (1, 2)  # a combination: sum of the parts


def test_baselines_recover_a_known_linear_response():
    adata, feats = simulate(cells=80)
    out = scgde.tl.perturbation_baselines(
        adata, [("C", "g7")], perturbation_key="pert", control="ctrl", context_key="ctx", features=feats
    )
    assert set(out) == {"no change", "training mean", "non-control mean", "perturbation mean", "ridge"}
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


# ---------------------------------------------------------------------------------------------
# the design object, shared by the predictor, the baselines and the report


def test_design_labels_combinations_and_errors():
    from scgde.data import PerturbationDesign

    design = PerturbationDesign("pert", control="ctrl", context_key="ctx")
    assert design.label("K562", "A+B") == "K562|A+B"
    assert design.parse_label("K562|A+B") == ("K562", "A+B")
    assert design.parts("A+B") == ["A", "B"] and design.is_combination("A+B") and not design.is_combination("A")
    assert design.is_control(["ctrl", "A", "ctrl+A"]).tolist() == [True, False, False]
    assert design.targets([("C", "g7"), "B|g1"]) == [("C", "g7"), ("B", "g1")]
    assert PerturbationDesign.from_dict(design.to_dict()) == design
    no_context = PerturbationDesign("pert", "ctrl", combination_sep="_")
    assert no_context.label("all", "A_B") == "A_B" and no_context.parts("A_B") == ["A", "B"]
    assert no_context.keys == ["pert"] and design.keys == ["ctx", "pert"]
    with pytest.raises(ValueError, match="combination_sep"):
        design.parts("A+")
    with pytest.raises(ValueError, match="combination_sep"):
        PerturbationDesign("pert", "ctrl", combination_sep="")
    with pytest.raises(TypeError, match="perturbation_key"):
        PerturbationDesign(None, "ctrl")
    with pytest.raises(ValueError, match="context_key and perturbation_key"):
        PerturbationDesign("pert", "ctrl", context_key="pert")
    adata, _ = simulate(cells=2, dim=2)
    with pytest.raises(KeyError, match="context_key='donor'"):
        PerturbationDesign("pert", "ctrl", context_key="donor").check(adata.obs)
    with pytest.raises(ValueError, match="control='DMSO'"):
        PerturbationDesign("pert", "DMSO").check(adata.obs)
    with pytest.raises(ValueError, match="control disagree"):
        PerturbationDesign.resolve(design, control="DMSO")
    with pytest.raises(TypeError, match="Pass control="):
        PerturbationDesign.resolve(None, "pert")


def test_design_and_keywords_give_the_same_predictions(fitted):
    from scgde.data import PerturbationDesign

    adata, feats, model = fitted
    design = PerturbationDesign("pert", control="ctrl", context_key="ctx")
    by_keywords = PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats).fit()
    by_design = PerturbationPredictor(model, design, features=feats).fit()
    a, b = by_keywords.predict_embedding("g7", context="C"), by_design.predict_embedding("g7", context="C")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.index) == ["C|g7"]  # the design's label format
    base = scgde.tl.perturbation_baselines(adata, ["C|g7"], design)
    assert set(base["ridge"].obs["ctx"]) == {"C"} and set(base["ridge"].obs["pert"]) == {"g7"}


class _PublicOnly:
    """A GDE seen through its public API only: any private attribute access fails."""

    def __init__(self, model):
        object.__setattr__(self, "_wrapped", model)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AssertionError(f"PerturbationPredictor used the private GDE attribute {name!r}")
        return getattr(object.__getattribute__(self, "_wrapped"), name)


def test_predictor_uses_only_public_gde_api(fitted):
    _, feats, model = fitted
    public = _PublicOnly(model)
    pred = PerturbationPredictor(public, "pert", control="ctrl", context_key="ctx", features=feats)
    assert pred.fit().predict_embedding("g7", context="C").shape == (1, 8)
    assert pred.predict("g7", context="C", n_cells=5).n_obs == 5


@pytest.mark.parametrize("method", ["ridge", "mean_shift"])
def test_save_load_round_trip(fitted, tmp_path, method):
    import scvi

    _, feats, model = fitted
    pred = PerturbationPredictor(model, "pert", control="ctrl", context_key="ctx", features=feats, method=method)
    pred.fit().save(tmp_path / "pred")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pred.save(tmp_path / "pred")
    loaded = PerturbationPredictor.load(tmp_path / "pred", model)
    assert loaded.design == pred.design and loaded.method == method
    pd.testing.assert_frame_equal(loaded.features, pred.features)
    pd.testing.assert_frame_equal(
        loaded.predict_embedding(["g7", "g1"], "C"), pred.predict_embedding(["g7", "g1"], "C")
    )
    cells = []
    for p in (pred, loaded):
        scvi.settings.seed = 3
        cells.append(p.predict("g7", context="C", n_cells=50))
    np.testing.assert_array_equal(cells[0].X, cells[1].X)
    with pytest.raises(FileNotFoundError, match="save a fitted predictor"):
        PerturbationPredictor.load(tmp_path / "nothing", model)


# ---------------------------------------------------------------------------------------------
# baselines: bounded memory and Systema's baselines


def test_baselines_never_densify_the_whole_sparse_matrix(monkeypatch):
    import scipy.sparse as sp

    adata, feats = simulate(cells=61, dim=5)
    adata.X = sp.csr_matrix(adata.X)
    dense = adata.copy()
    dense.X = dense.X.toarray()
    n_obs = adata.n_obs
    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array):
        original = cls.toarray

        def guarded(self, *args, _original=original, **kwargs):
            if self.shape[0] >= n_obs:
                raise AssertionError("the whole matrix was densified")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", guarded)
    kwargs = {"perturbation_key": "pert", "control": "ctrl", "context_key": "ctx", "features": feats}
    out = scgde.tl.perturbation_baselines(adata, [("C", "g7"), ("A", "g1")], max_cells=20, **kwargs)
    ref = scgde.tl.perturbation_baselines(dense, [("C", "g7"), ("A", "g1")], max_cells=None, **kwargs)
    assert set(out) == set(ref)
    for name, cells in out.items():
        assert cells.n_obs == 2 * 20  # at most max_cells control cells per target
        for ctx, pert in (("C", "g7"), ("A", "g1")):
            sel = (cells.obs["ctx"] == ctx).to_numpy() & (cells.obs["pert"] == pert).to_numpy()
            full = (ref[name].obs["ctx"] == ctx).to_numpy() & (ref[name].obs["pert"] == pert).to_numpy()
            # the subsample is moved to the full control mean: the predicted mean does not depend on max_cells
            np.testing.assert_allclose(cells.X[sel].mean(0), ref[name].X[full].mean(0), atol=1e-4)


def test_systema_baselines_on_constant_groups():
    """Identical cells per group make every baseline's mean a hand-computable number."""
    groups = {"ctrl": (10, 0.0), "A": (10, [1, 0, 0]), "B": (30, [0, 2, 0]), "C": (10, [0, 0, 4])}
    groups["A+C"], groups["A+B"] = (10, [1, 0, 4]), (10, [1, 2, 0])
    x = np.concatenate(
        [np.tile(5.0 + np.asarray(v, dtype=float), (n, 1)) * np.ones((n, 3)) for n, v in groups.values()]
    )
    labels = np.repeat(list(groups), [n for n, _ in groups.values()])
    adata = ad.AnnData(x, obs=pd.DataFrame({"pert": labels}, index=[str(i) for i in range(len(x))]))
    out = scgde.tl.perturbation_baselines(adata, ["A+B"], perturbation_key="pert", control="ctrl")
    means = {k: v.X.mean(0) - 5.0 for k, v in out.items()}  # changes from the control value 5
    # the mean of all 60 perturbed training cells: (10 A + 30 B + 10 C + 10 A+C) / 60
    np.testing.assert_allclose(means["non-control mean"], [1 / 3, 1, 4 / 3], atol=1e-5)
    # parts A (groups A and A+C) and B (group B): ((A + A+C) / 2 + B) / 2
    np.testing.assert_allclose(means["matching mean"], [0.5, 1, 1], atol=1e-5)
    np.testing.assert_allclose(means["training mean"], [0.5, 0.5, 2], atol=1e-5)
    np.testing.assert_allclose(means["additive"], [1, 2, 0], atol=1e-5)
    np.testing.assert_allclose(means["no change"], [0, 0, 0], atol=1e-5)
    with pytest.raises(KeyError, match="layer='counts'"):
        scgde.tl.perturbation_baselines(adata, ["A+B"], perturbation_key="pert", control="ctrl", layer="counts")


def test_baselines_read_a_backed_file_block_by_block(tmp_path):
    import scipy.sparse as sp

    adata, feats = simulate(cells=30, dim=4)
    adata.X = sp.csr_matrix(adata.X)
    adata.write_h5ad(tmp_path / "screen.h5ad")
    backed = ad.read_h5ad(tmp_path / "screen.h5ad", backed="r")
    kwargs = {"perturbation_key": "pert", "control": "ctrl", "context_key": "ctx", "features": feats}
    from_disk = scgde.tl.perturbation_baselines(backed, [("C", "g7")], **kwargs)
    in_memory = scgde.tl.perturbation_baselines(adata, [("C", "g7")], **kwargs)
    assert set(from_disk) == set(in_memory)
    for name, cells in in_memory.items():
        np.testing.assert_allclose(from_disk[name].X, cells.X, atol=1e-5)
    backed.file.close()
