"""Set-level supervision: labels registered per set, a head trained jointly, predictions on new sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from scipy.stats import spearmanr
from sklearn.metrics import balanced_accuracy_score

from scgde.data import SetBatch
from scgde.model import GDE
from scgde.module._heads import SetLabelHead

BUDGET = {"max_epochs": 8, "batches_per_epoch": 10, "sets_per_batch": 16, "cells_per_set": 24}
QUIET = {"enable_progress_bar": False, "kernel": None}


def _donors(n_sets: int, seed: int, prefix: str = "d", set_size: int = 30, n_dim: int = 4) -> AnnData:
    """Sets whose class moves their mean along dimension 0 (+-0.8), plus a numeric score = that mean."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_sets)
    centre = rng.normal(0.0, 0.5, (n_sets, n_dim))
    centre[:, 0] += np.where(y == 1, 0.8, -0.8)
    x = np.repeat(centre, set_size, axis=0) + rng.normal(0.0, 1.0, (n_sets * set_size, n_dim))
    names = np.repeat([f"{prefix}{i:03d}" for i in range(n_sets)], set_size)
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical(names),
            "status": pd.Categorical(np.repeat(np.where(y == 1, "case", "control"), set_size)),
            "score": np.repeat(100.0 * centre[:, 0] + 1000.0, set_size),
        },
        index=[f"c{i}" for i in range(len(names))],
    )
    return AnnData(x.astype(np.float32), obs=obs)


def _truth(adata: AnnData, column: str) -> pd.Series:
    return adata.obs.groupby("donor", observed=True)[column].first()


def _history(model: GDE, key: str) -> np.ndarray:
    return model.history[key][key].to_numpy(dtype=float)


def _fit(adata: AnnData, labels_key: str = "status", **train) -> GDE:
    GDE.setup_anndata(adata, set_key="donor", set_labels_key=labels_key)
    model = GDE(adata, n_latent=8, n_hidden=32, generator="flow")
    model.train(**{**BUDGET, **QUIET, **train})
    return model


def test_classification_head_predicts_held_out_sets():
    train, query = _donors(60, seed=0), _donors(30, seed=1, prefix="new")
    model = _fit(train, train_size=1.0)
    pred = model.predict_set_labels(adata=query, progress_bar=False)
    truth = _truth(query, "status")
    assert list(pred.columns) == ["case", "control", "predicted"]
    assert pred.index.equals(truth.index)  # the query's own, unseen sets
    np.testing.assert_allclose(pred[["case", "control"]].sum(1), 1.0, atol=1e-5)
    assert balanced_accuracy_score(truth.astype(str), pred["predicted"].astype(str)) > 0.8
    assert np.isfinite(_history(model, "label_loss_train")).all()
    # sets= picks and orders the rows
    some = list(truth.index[[5, 0, 3]])
    picked = model.predict_set_labels(adata=query, sets=some, progress_bar=False)
    assert list(picked.index) == some
    pd.testing.assert_frame_equal(picked, pred.loc[some], check_names=False)


def test_mostly_unlabelled_sets_still_train_the_head():
    adata = _donors(80, seed=2)
    labelled = adata.obs["donor"].cat.categories[::10]  # 8 of 80 sets keep their label
    adata.obs.loc[~adata.obs["donor"].isin(labelled), "status"] = np.nan
    model = _fit(adata, train_size=1.0, max_epochs=15)
    state = model.adata_manager.get_state_registry("set_labels")
    assert np.isfinite(state["set_values"]).sum() == len(labelled)
    loss = _history(model, "label_loss_train")
    assert np.isfinite(loss).all() and loss[-3:].mean() < loss[:3].mean()
    # the unlabelled sets are predicted from the few labelled ones
    pred = model.predict_set_labels(progress_bar=False)
    truth = _truth(_donors(80, seed=2), "status")
    unlabelled = ~pred.index.isin(labelled)
    acc = balanced_accuracy_score(truth[unlabelled].astype(str), pred.loc[unlabelled, "predicted"].astype(str))
    assert acc > 0.7


def test_inconsistent_labels_within_a_set_name_the_set():
    adata = _donors(6, seed=3)
    adata.obs["status"] = adata.obs["status"].astype(str)
    adata.obs.iloc[31, adata.obs.columns.get_loc("status")] = (
        "case" if adata.obs["status"].iloc[31] == "control" else "control"
    )
    with pytest.raises(ValueError, match=r"set_labels_key='status'.*'d001'"):
        GDE.setup_anndata(adata, set_key="donor", set_labels_key="status")


def test_missing_labels_column_and_single_class_are_clear_errors():
    adata = _donors(6, seed=3)
    with pytest.raises(KeyError, match="set_labels_key='nope'"):
        GDE.setup_anndata(adata, set_key="donor", set_labels_key="nope")
    adata.obs["one"] = pd.Categorical(["x"] * adata.n_obs)
    with pytest.raises(ValueError, match="at least 2"):
        GDE.setup_anndata(adata, set_key="donor", set_labels_key="one")


def test_regression_head_predicts_on_the_target_scale():
    train, query = _donors(60, seed=4), _donors(30, seed=5, prefix="new")
    model = _fit(train, labels_key="score", train_size=1.0, max_epochs=12)
    pred = model.predict_set_labels(adata=query, progress_bar=False)
    truth = _truth(query, "score")
    assert list(pred.columns) == ["predicted"]
    assert spearmanr(pred["predicted"], truth).statistic > 0.7
    # targets are standardised for training and mapped back: predictions are near 1000, not near 0
    assert abs(pred["predicted"].mean() - truth.mean()) < truth.std()


def test_save_load_keeps_the_head(tmp_path):
    adata, query = _donors(30, seed=6), _donors(10, seed=7, prefix="new")
    model = _fit(adata, max_epochs=2)
    before = model.predict_set_labels(adata=query, progress_bar=False)
    model.save(tmp_path / "m", save_anndata=True)
    loaded = GDE.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.predict_set_labels(adata=query, progress_bar=False), before)
    # onto a query AnnData without the label column: the head and its classes are kept
    bare = query.copy()
    del bare.obs["status"]
    on_query = GDE.load(tmp_path / "m", adata=bare)
    pd.testing.assert_frame_equal(on_query.predict_set_labels(progress_bar=False), before)


def test_without_set_labels_nothing_changes():
    adata = _donors(20, seed=8)
    GDE.setup_anndata(adata, set_key="donor")
    model = GDE(adata, n_latent=8, n_hidden=32, generator="flow")
    assert model.module.label_head is None
    assert "_scgde_set_label" not in adata.obs
    model.train(max_epochs=1, batches_per_epoch=2, **QUIET)
    assert "label_loss_train" not in model.history
    with pytest.raises(ValueError, match="set_labels_key"):
        model.predict_set_labels(progress_bar=False)


def test_supervised_only_skips_the_generator():
    adata = _donors(30, seed=9)
    model = _fit(adata, max_epochs=2, plan_kwargs={"generator_weight": 0.0})
    assert (_history(model, "generator_loss_train") == 0).all()
    assert (_history(model, "label_loss_train") > 0).all()
    with pytest.raises(ValueError, match="leave nothing to train"):
        model.train(max_epochs=1, label_weight=0.0, plan_kwargs={"generator_weight": 0.0}, **QUIET)
    with pytest.raises(ValueError, match="label_weight must be"):
        model.train(max_epochs=1, label_weight=-1.0, **QUIET)


def test_mixtures_are_unlabelled_and_warned_about():
    adata = _donors(20, seed=10)
    GDE.setup_anndata(adata, set_key="donor", set_labels_key="status")
    model = GDE(adata, n_latent=8, n_hidden=32, generator="flow")
    with pytest.warns(UserWarning, match="label head is not trained"):
        model.train(max_epochs=1, batches_per_epoch=2, mixer="dirichlet", **QUIET)
    assert (_history(model, "label_loss_train") == 0).all()


def test_datamodule_passes_labels_of_whole_sets_only():
    from scgde.data import SetDataModule

    values = np.array([1.0, np.nan, 0.0])
    dm = SetDataModule.__new__(SetDataModule)  # only tensors() is exercised
    dm.fetcher = type("F", (), {"rows": staticmethod(lambda idx: np.zeros((len(idx), 2), np.float32))})()
    dm.batch_codes, dm.set_label_values = None, values
    out = dm.tensors(SetBatch(cells=np.zeros((4, 3), dtype=np.int64), sets=np.array([0, 1, 2, -1])))
    np.testing.assert_array_equal(out["set_label"].numpy(), [1.0, np.nan, 0.0, np.nan])


def test_head_loss_ignores_unlabelled_sets():
    torch.manual_seed(0)
    head = SetLabelHead(n_latent=3, n_out=2, kind="classification", n_hidden=8)
    z = torch.randn(4, 3, requires_grad=True)
    loss, n = head.loss(z, torch.tensor([1.0, float("nan"), 0.0, float("nan")]))
    expected = torch.nn.functional.cross_entropy(head(z[[0, 2]]), torch.tensor([1, 0]))
    assert int(n) == 2 and torch.allclose(loss, expected)
    empty, n = head.loss(z, torch.full((4,), float("nan")))
    assert int(n) == 0 and empty.item() == 0.0 and empty.requires_grad


def test_no_labelled_set_warns_at_training():
    adata = _donors(10, seed=11)
    adata.obs["status"] = pd.Categorical([np.nan] * adata.n_obs, categories=["case", "control"])
    GDE.setup_anndata(adata, set_key="donor", set_labels_key="status")
    model = GDE(adata, n_latent=8, n_hidden=32, generator="flow")
    with pytest.warns(UserWarning, match="labels no set"):
        model.train(max_epochs=1, batches_per_epoch=2, **QUIET)


def test_synthetic_donors_moves_only_the_rare_population():
    from scgde.datasets import synthetic_donors

    adata = synthetic_donors(n_sets=200, set_size=100, rare_fraction=0.1, shift=4.0, n_markers=2, seed=0)
    obs = adata.obs
    assert obs.groupby("donor", observed=True)["label"].nunique().max() == 1
    assert (obs.groupby("donor", observed=True)["label"].first() == "case").sum() == 100
    assert (obs.groupby("donor", observed=True)["cell_type"].apply(lambda t: (t == "rare").mean()) == 0.1).all()
    x = pd.DataFrame(adata.X, index=obs.index)
    rare = obs["cell_type"] == "rare"
    case = obs["label"] == "case"
    # the rare cells move by `shift` on the marker genes only
    np.testing.assert_allclose(x[rare & case].mean()[:2] - x[rare & ~case].mean()[:2], 4.0, atol=0.3)
    assert np.abs(x[rare & case].mean()[2:] - x[rare & ~case].mean()[2:]).max() < 0.5
    # so a donor's pseudobulk mean moves by rare_fraction * shift = 0.4 there
    bulk = x.groupby(obs["donor"].to_numpy()).mean()
    is_case = obs.groupby("donor", observed=True)["label"].first().loc[bulk.index] == "case"
    np.testing.assert_allclose(
        bulk[is_case.to_numpy()].mean()[:2] - bulk[~is_case.to_numpy()].mean()[:2], 0.4, atol=0.15
    )
    with pytest.raises(ValueError, match="rare_fraction"):
        synthetic_donors(rare_fraction=1.5)
