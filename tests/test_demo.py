"""``scgde demo``: what a new user gets (quick mode), and the report's prose following its numbers."""

from __future__ import annotations

import json
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scgde import _demo
from scgde.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "results"
    main(["demo", "--quick", "--out", str(out)])
    return out


def test_demo_quick_outputs(demo_run, capsys):
    report = json.loads((demo_run / "report.json").read_text())
    assert np.isfinite(report["spearman_latent_vs_composition"])
    budget = _demo.BUDGETS["quick"]
    assert report["generator"] == "flow" and report["seed"] == 0 and report["quick"] is True
    assert report["epochs"] == budget["max_epochs"]
    assert report["optimiser_steps"] == budget["max_epochs"] * budget["batches_per_epoch"]
    assert (demo_run / "set_umap.png").stat().st_size > 1000

    sets = ad.read_h5ad(demo_run / "sets.h5ad")
    assert "X_umap" in sets.obsm and "dominant_type" in sets.obs
    assert set(sets.obs.columns) == {"n_cells", "dominant_type", "dominant_fraction"}  # set-level only

    held = ad.read_h5ad(demo_run / "held_out_sets.h5ad")
    comp = pd.read_csv(demo_run / "held_out_composition.csv", index_col=0)
    assert held.n_obs == report["n_new_sets"] == len(comp)
    assert list(comp.index) == list(held.obs_names)
    np.testing.assert_allclose(comp.sum(axis=1), 1.0)
    np.testing.assert_allclose(held.obs["dominant_fraction"], comp.max(axis=1))
    assert held.obsm["X_gde"].shape == (held.n_obs, report["n_latent"])

    # the user can recompute the report's distance correlation from the saved files
    recomputed = _demo._distance_correlation(held.obsm["X_gde"], comp.to_numpy())
    assert recomputed == pytest.approx(report["spearman_latent_vs_composition"], abs=1e-5)


def test_demo_report_prose_follows_numbers(demo_run):
    report = json.loads((demo_run / "report.json").read_text())
    text = (demo_run / "report.md").read_text()
    gde, means = report["spearman_latent_vs_composition"], report["spearman_set_means_vs_composition"]
    sentence = re.search(r"On distances, the GDE set embedding did (.+?) set means", text).group(1)
    if abs(gde - means) > 0.01:
        assert sentence == ("better than" if gde > means else "worse than")
    assert f"{report['optimiser_steps']} optimiser steps" in text and "generator='flow'" in text


def test_demo_prints_expected_time_and_writes_nothing_on_failure(tmp_path, capsys, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("no data")

    monkeypatch.setattr("scgde.datasets.pbmc_composition_sets", broken)
    with pytest.raises(RuntimeError):
        main(["demo", "--quick", "--out", str(tmp_path / "out")])
    expected = _demo.BUDGETS["quick"]["expected_seconds"]
    assert f"expected to take about {expected} s" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("gde", "means", "verdict"), [(0.8, 0.5, "better than"), (0.4, 0.6, "worse than"), (0.701, 0.7, "about as well as")]
)
def test_compare_sentence(gde, means, verdict):
    assert f"did {verdict} set means ({gde:.3f} vs {means:.3f})" in _demo._compare("distances", gde, means)


def test_fraction_colour_bar_is_labelled():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    sets = ad.AnnData(rng.normal(size=(12, 3)))
    sets.obs["dominant_type"] = pd.Categorical(rng.choice(["B", "T"], size=12))
    sets.obs["dominant_fraction"] = rng.uniform(0.4, 1.0, size=12)
    sets.obsm["X_umap"] = rng.normal(size=(12, 2))
    fig = _demo._plot_sets(sets)
    assert _demo.FRACTION_LABEL in [ax.get_ylabel() for ax in fig.axes]
    plt.close(fig)


def test_distance_correlation_ignores_float_noise_in_ties():
    rng = np.random.default_rng(0)
    truth = np.zeros((30, 6))
    for i in range(30):  # 2 of 6 types per set: many pairs share none (L1 distance exactly 2)
        truth[i, rng.choice(6, 2, replace=False)] = rng.dirichlet([1, 1])
    features = rng.normal(size=(30, 4))
    noisy = truth + rng.choice([-1, 0, 1], size=truth.shape) * 1e-16 * (truth > 0)
    assert _demo._distance_correlation(features, noisy) == pytest.approx(_demo._distance_correlation(features, truth))
