"""Synthetic Perturb-seq ground truth, and the local Kang 2018 loader (skipped when the file is absent)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scgde.datasets import kang2018, synthetic_perturbseq, synthetic_perturbseq_truth

KANG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kang2018_ifnb" / "kang2018_valid.h5ad"


@pytest.fixture(scope="module")
def sim():
    return synthetic_perturbseq(seed=0)


def _group(adata, cell_type, perturbation):
    obs = adata.obs
    mask = (obs["cell_type"] == cell_type).to_numpy() & (obs["perturbation"] == perturbation).to_numpy()
    return np.asarray(adata.X[mask], dtype=np.float64)


def _empirical_shifts(adata, cell_type):
    ctrl = _group(adata, cell_type, "control").mean(0)
    perts = list(adata.uns["perturbation_features"].index)
    return np.stack([_group(adata, cell_type, p).mean(0) - ctrl for p in perts])


# ---------------------------------------------------------------------------------------------------------------------
# synthetic_perturbseq
# ---------------------------------------------------------------------------------------------------------------------


def test_layout(sim):
    assert sim.shape == (3 * 31 * 100, 50)
    assert sim.X.dtype == np.float32
    assert list(sim.obs["perturbation"].cat.categories[:1]) == ["control"]
    assert sim.obs["perturbation"].cat.categories.size == 31
    assert list(sim.obs["cell_type"].cat.categories) == ["type_0", "type_1", "type_2"]
    assert sim.obs.groupby(["cell_type", "perturbation"], observed=True).size().eq(100).all()
    feats = sim.uns["perturbation_features"]
    assert isinstance(feats, pd.DataFrame) and feats.shape == (30, 5)
    assert list(feats.index) == list(sim.obs["perturbation"].cat.categories[1:])
    # the features are the target genes' rows of the gene feature table
    np.testing.assert_array_equal(feats.to_numpy(), sim.uns["gene_features"].loc[feats.index].to_numpy())
    assert sim.var["perturbed"].sum() == 30
    effects = sim.uns["true_effects"]
    assert effects.shape == (90, 50) and effects.index[0] == f"type_0|{feats.index[0]}"
    assert not sim.obs.loc[sim.obs["perturbation"] == "control", "responder"].any()


def test_reproducible_with_seed():
    a = synthetic_perturbseq(n_genes=12, n_perturbations=5, n_cell_types=2, cells_per_group=20, seed=3)
    b = synthetic_perturbseq(n_genes=12, n_perturbations=5, n_cell_types=2, cells_per_group=20, seed=3)
    c = synthetic_perturbseq(n_genes=12, n_perturbations=5, n_cell_types=2, cells_per_group=20, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.uns["true_effects"], b.uns["true_effects"])
    assert not np.allclose(a.X, c.X)


def test_mean_shift_matches_true_effect(sim):
    """Control-vs-perturbed mean differences equal the documented shifts up to their standard errors."""
    effects = sim.uns["true_effects"]
    control_means = sim.uns["perturbseq"]["control_means"]
    perts = list(sim.uns["perturbation_features"].index)
    z_diff, z_group, diffs, truths = [], [], [], []
    for ct in sim.obs["cell_type"].cat.categories:
        ctrl = _group(sim, ct, "control")
        mu = control_means.loc[ct].to_numpy()
        z_group.append((ctrl.mean(0) - mu) / (ctrl.std(0, ddof=1) / np.sqrt(len(ctrl))))
        for p in perts:
            pert = _group(sim, ct, p)
            true = effects.loc[f"{ct}|{p}"].to_numpy()
            diff = pert.mean(0) - ctrl.mean(0)
            se = np.sqrt(pert.var(0, ddof=1) / len(pert) + ctrl.var(0, ddof=1) / len(ctrl))
            z_diff.append((diff - true) / se)
            z_group.append((pert.mean(0) - mu - true) / (pert.std(0, ddof=1) / np.sqrt(len(pert))))
            diffs.append(diff)
            truths.append(true)
    diffs, truths = np.concatenate(diffs), np.concatenate(truths)
    assert 1 - ((diffs - truths) ** 2).sum() / ((truths - truths.mean()) ** 2).sum() > 0.97
    assert np.abs(np.concatenate(z_diff)).max() < 6
    # calibrated against the true group means: z-scores of mean 0 and variance 1 (correlated across genes)
    z = np.concatenate(z_group)
    assert np.abs(z).max() < 6
    assert 0.75 < np.mean(z**2) < 1.35
    assert abs(z.mean()) < 0.1


def test_features_predict_unseen_perturbations(sim):
    """Ridge from features to mean shift, fitted on half the perturbations, predicts the other half."""
    from sklearn.linear_model import Ridge

    feats = sim.uns["perturbation_features"].to_numpy()
    rng = np.random.default_rng(1)
    order = rng.permutation(len(feats))
    train, test = order[: len(feats) // 2], order[len(feats) // 2 :]
    for ct in sim.obs["cell_type"].cat.categories:
        shifts = _empirical_shifts(sim, ct)
        pred = Ridge(alpha=1.0).fit(feats[train], shifts[train]).predict(feats[test])
        resid = ((shifts[test] - pred) ** 2).sum()
        total = ((shifts[test] - shifts[test].mean(0)) ** 2).sum()
        assert 1 - resid / total > 0.8, ct
        # the information is in the features: shuffled features predict nothing
        shuffled = feats[rng.permutation(len(feats))]
        pred0 = Ridge(alpha=1.0).fit(shuffled[train], shifts[train]).predict(shuffled[test])
        assert 1 - ((shifts[test] - pred0) ** 2).sum() / total < 0.5


def test_responder_fraction(sim):
    table = sim.uns["perturbseq"]["perturbations"]
    pi = table["responder_fraction"].to_numpy()
    assert pi.min() >= 0.3 and pi.max() <= 1.0
    assert pi.max() - pi.min() > 0.3  # some perturbations split the cells, others barely
    obs = sim.obs[sim.obs["perturbation"] != "control"]
    observed = obs.groupby("perturbation", observed=True)["responder"].mean().loc[table.index].to_numpy()
    n = 300  # 100 cells in each of 3 cell types
    assert np.all(np.abs(observed - pi) < 4 * np.sqrt(pi * (1 - pi) / n) + 1e-9)
    assert np.mean(np.abs(observed - pi)) < 0.03
    # responders carry the whole shift, scaled by 1 / pi; non-responders look like controls
    effects = sim.uns["true_effects"]
    ct, p = "type_1", table.index[int(np.argmin(pi))]
    mask = (sim.obs["cell_type"] == ct).to_numpy() & (sim.obs["perturbation"] == p).to_numpy()
    resp = sim.obs["responder"].to_numpy()
    ctrl = _group(sim, ct, "control").mean(0)
    shift_resp = np.asarray(sim.X[mask & resp]).mean(0) - ctrl
    shift_non = np.asarray(sim.X[mask & ~resp]).mean(0) - ctrl
    expected = effects.loc[f"{ct}|{p}"].to_numpy() / pi[int(np.argmin(pi))]
    assert np.corrcoef(shift_resp, expected)[0, 1] > 0.95
    assert np.abs(shift_non).mean() < 0.25 * np.abs(expected).mean()


def test_all_respond_is_a_pure_mean_shift():
    a = synthetic_perturbseq(
        n_genes=10, n_perturbations=4, n_cell_types=2, cells_per_group=30, responder_fraction=(1, 1)
    )
    assert a.obs.loc[a.obs["perturbation"] != "control", "responder"].all()
    np.testing.assert_allclose(a.uns["perturbseq"]["perturbations"]["responder_fraction"], 1.0)


def test_truth_distribution_matches_samples():
    a = synthetic_perturbseq(
        n_genes=6, n_perturbations=2, n_cell_types=2, cells_per_group=4000, n_control_cells=4000, seed=2
    )
    p = a.uns["perturbation_features"].index[0]
    for pert in ("control", p):
        truth = synthetic_perturbseq_truth(a, "type_1", pert)
        w, mu, cov = truth["weights"], truth["means"], truth["covs"]
        assert np.isclose(w.sum(), 1.0) and mu.shape == (len(w), 6) and cov.shape == (len(w), 6, 6)
        mean = w @ mu
        second = sum(wi * (ci + np.outer(mi, mi)) for wi, mi, ci in zip(w, mu, cov, strict=True))
        full_cov = second - np.outer(mean, mean)
        x = _group(a, "type_1", pert)
        np.testing.assert_allclose(x.mean(0), mean, atol=0.1)
        assert np.linalg.norm(np.cov(x.T) - full_cov) / np.linalg.norm(full_cov) < 0.1
        control_mean = a.uns["perturbseq"]["control_means"].loc["type_1"].to_numpy()
        np.testing.assert_allclose(mean - control_mean, truth["mean_shift"], atol=1e-12)
    with pytest.raises(ValueError, match="cell_type"):
        synthetic_perturbseq_truth(a, "type_9", p)
    with pytest.raises(ValueError, match="perturbation"):
        synthetic_perturbseq_truth(a, "type_0", "nope")


def test_knockdown_and_cell_type_scale():
    kw = {"n_genes": 10, "n_perturbations": 3, "n_cell_types": 2, "cells_per_group": 5, "seed": 5}
    plain = synthetic_perturbseq(**kw).uns["true_effects"]
    knocked = synthetic_perturbseq(**kw, knockdown=2.0)
    diff = knocked.uns["true_effects"] - plain
    for ct in ("type_0", "type_1"):
        for p in knocked.uns["perturbation_features"].index:
            row = diff.loc[f"{ct}|{p}"]
            assert row[p] == pytest.approx(-2.0) and np.allclose(row.drop(p), 0.0)
    same = synthetic_perturbseq(**kw, cell_type_scale=(1.0, 1.0)).uns["true_effects"]
    np.testing.assert_allclose(same.iloc[:3].to_numpy(), same.iloc[3:].to_numpy())


def test_counts_layer():
    a = synthetic_perturbseq(n_genes=8, n_perturbations=3, n_cell_types=1, cells_per_group=2000, counts=True, seed=1)
    counts = a.layers["counts"]
    assert counts.shape == a.shape and np.all(counts >= 0) and np.all(counts == np.round(counts))
    expected = np.exp(np.asarray(a.X, dtype=np.float64)).mean(0)
    np.testing.assert_allclose(counts.mean(0), expected, rtol=0.05)


def test_writes_h5ad(tmp_path):
    a = synthetic_perturbseq(n_genes=6, n_perturbations=2, n_cell_types=2, cells_per_group=5, counts=True)
    a.write_h5ad(tmp_path / "sim.h5ad")
    b = ad.read_h5ad(tmp_path / "sim.h5ad")
    pd.testing.assert_frame_equal(a.uns["true_effects"], b.uns["true_effects"])
    np.testing.assert_array_equal(a.uns["perturbseq"]["noise_loadings"], b.uns["perturbseq"]["noise_loadings"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_genes": 5, "n_perturbations": 6}, "n_perturbations"),
        ({"cells_per_group": 0}, "cells_per_group"),
        ({"n_programs": 2.5}, "n_programs"),
        ({"responder_fraction": (0.0, 1.0)}, "responder_fraction"),
        ({"responder_fraction": (0.5, 1.2)}, "responder_fraction"),
        ({"cell_type_scale": (2.0, 1.0)}, "cell_type_scale"),
        ({"noise_sd": -1.0}, "noise_sd"),
        ({"dispersion": 0.0}, "dispersion"),
        ({"counts": "yes"}, "counts"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_argument_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        synthetic_perturbseq(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# kang2018 (local file)
# ---------------------------------------------------------------------------------------------------------------------


def _kang_file() -> Path:
    if not KANG.is_file():
        pytest.skip(f"{KANG} is not available")
    return KANG


def test_kang2018_layout():
    adata = kang2018(_kang_file())  # explicit: the default location downloads (tests never do)
    assert adata.shape == (1975, 6998)
    assert list(adata.obs["condition"].cat.categories) == ["control", "stimulated"]
    assert adata.obs["condition"].value_counts().to_dict() == {"stimulated": 1039, "control": 936}
    assert set(adata.obs["cell_type"].cat.categories) == {
        "CD4T",
        "CD14+Mono",
        "B",
        "CD8T",
        "NK",
        "FCGR3A+Mono",
        "Dendritic",
    }
    # every cell type has both conditions (the held-out cell type task)
    assert adata.obs.groupby(["cell_type", "condition"], observed=True).size().shape[0] == 14


def test_kang2018_explicit_paths(tmp_path):
    file = _kang_file()
    assert kang2018(file).n_obs == 1975
    assert kang2018(file.parent).n_obs == 1975
    with pytest.raises(FileNotFoundError, match="GSE96583"):
        kang2018(tmp_path)


def test_kang2018_normalises_labels(tmp_path):
    obs = pd.DataFrame(
        {"label": ["ctrl", "stim", "ctrl", "stim"], "cell": ["B", "B", "NK", "NK"]}, index=[f"c{i}" for i in range(4)]
    )
    a = ad.AnnData(np.zeros((4, 2), dtype=np.float32), obs=obs)
    a.write_h5ad(tmp_path / "kang2018_valid.h5ad")
    b = kang2018(tmp_path)
    assert list(b.obs["condition"]) == ["control", "stimulated", "control", "stimulated"]
    assert list(b.obs["cell_type"].cat.categories) == ["B", "NK"]
    a.obs["label"] = ["ctrl", "weird", "ctrl", "stim"]
    a.write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(ValueError, match="weird"):
        kang2018(tmp_path / "bad.h5ad")


def test_kang2018_counts_layer():
    adata = kang2018(_kang_file())
    counts = adata.layers["counts"]
    assert counts.shape == adata.shape and counts.nnz == adata.X.nnz
    assert np.all(counts.data >= 1) and np.all(counts.data == np.round(counts.data))
    # X is log1p of the counts times one factor per cell: expm1(X) / counts is constant within each cell
    x = adata.X[:200].toarray().astype(np.float64)
    c = counts[:200].toarray()
    ratio = np.where(c > 0, np.expm1(x) / np.where(c > 0, c, 1), np.nan)
    spread = np.nanmax(ratio, axis=1) / np.nanmin(ratio, axis=1)
    assert np.all(spread < 1 + 1e-3)
    # the counts follow the sequencing depths the file records (n_counts, before gene filtering)
    assert np.corrcoef(np.asarray(counts.sum(1)).ravel(), adata.obs["n_counts"])[0, 1] > 0.9


def test_counts_recovered_from_normalised_log_data(tmp_path):
    """scanpy's normalize_total + log1p of known counts: the loader's reconstruction returns those counts."""
    import scanpy as sc
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(2, 0.3, size=(50, 300)).astype(np.float32)
    counts[:, 0] = 1  # every cell has a gene counted once (as every real cell with thousands of genes does)
    obs = pd.DataFrame(
        {"condition": ["control", "stimulated"] * 25, "cell_type": "B"}, index=[f"c{i}" for i in range(50)]
    )
    a = ad.AnnData(sp.csr_matrix(counts), obs=obs)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a.write_h5ad(tmp_path / "kang2018_valid.h5ad")
    np.testing.assert_array_equal(kang2018(tmp_path).layers["counts"].toarray(), counts)
    a.X = a.X * 1.37  # not log1p of scaled counts: no counts layer is made up
    a.write_h5ad(tmp_path / "kang2018_valid.h5ad")
    assert "counts" not in kang2018(tmp_path).layers
