"""Smoke tests of the real-data benchmarks' --quick modes (Kang 2018 and LARRY from ../shared, Table 4 on a simulator).

Their numbers are not results (two epochs); the tests check that every method of every table is scored with
finite metrics, so that a full run cannot fail at the end of an hour of training.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch


def _load(name: str):
    """The benchmark module ``benchmarks.<name>`` (the repository root is on pytest's ``pythonpath``)."""
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_perturbation_quick(shared_file, keep_threads, capsys):
    data = shared_file("kang2018_ifnb", "kang2018_valid.h5ad")
    out = _load("perturbation").main(["--quick", "--data", str(data)])
    reports = out["reports"]
    methods = set(reports["method"])
    assert {"GDE (ridge)", "GDE (latent arithmetic)", "no change", "perturbation mean", "ridge"} <= methods
    for metric in ("e_distance", "mmd", "sliced_w2", "r2_delta"):
        assert np.isfinite(reports[metric]).all(), metric
    # Pearson delta is undefined only for "no change" (its predicted delta is zero)
    scored = reports[reports["method"] != "no change"]
    assert np.isfinite(scored["pearson_delta_top20"]).all()
    assert len(out["wins_e_distance"]) == len(out["wins_top20"]) == 1
    assert "beats every baseline on E-distance" in capsys.readouterr().out


def test_lineage_quick(shared_file, keep_threads, capsys):
    shared_file("larry_cospar_subset", "test_adata_preprocessed.h5ad")
    threads = torch.get_num_threads()
    summary = _load("lineage").main(["--quick"])["summary"]
    assert torch.get_num_threads() == threads  # one thread during the run only
    assert list(summary.index) == ["GDE", "untrained encoder", "pseudobulk (PCA mean)", "cell-state composition"]
    assert np.isfinite(summary["MI (bits) (mean)"]).all()
    assert np.isfinite(summary["fate TV (mean)"]).all()
    assert ((summary["p-value (mean)"] > 0) & (summary["p-value (mean)"] <= 1)).all()
    assert "MI (bits)" in capsys.readouterr().out


def test_replogle_table4_quick(keep_threads, capsys):
    """The Table 4 pipeline on the synthetic screen, whose mean shifts are linear in the features given."""
    table = _load("replogle_table4").main(["--quick"])["table"]
    assert list(table.index) == ["Mean", "training mean", "non-control mean", "GDE", "GDE (generated cells)"]
    scores = ["R2 (squared Pearson)", "R2 (1 - SSE/SST)", "MSE", "Pearson delta (perturbed centroid)", "rank"]
    assert np.isfinite(table[scores].to_numpy()).all()
    # features carry the held-out shifts: both feature-based predictions beat the feature-blind training mean
    for method in ("Mean", "GDE"):
        assert table.loc[method, "MSE"] < table.loc["training mean", "MSE"], method
    # PerturBench's rank sees the collapse of the feature-blind baseline (one prediction for every perturbation)
    assert table.loc["training mean", "rank"] == 0.5 and table.loc["Mean", "rank"] < 0.5
    assert "R2 (squared Pearson)" in capsys.readouterr().out


def test_supervision_quick(keep_threads, capsys):
    summary = _load("supervision").main(["--quick"])["summary"]
    assert len(summary) >= 4 and "ROC-AUC" in capsys.readouterr().out


def test_defaults_quick(shared_file, keep_threads, capsys):
    """Every table of the defaults benchmark is produced, with its baselines, from the default model."""
    shared_file("kang2018_ifnb", "kang2018_valid.h5ad")
    shared_file("larry_cospar_subset", "test_adata_preprocessed.h5ad")
    out = _load("defaults").main(["--quick"])
    assert set(out) == {"a", "b", "c", "d"}
    assert np.isfinite(out["a"]["table"].to_numpy(float)).all() and "set means L2" in out["a"]["table"].index
    cells = out["b"]["cells"]
    assert (cells["negative entries"] == 0).all()  # generated log-expression stays on the data's support
    assert {"GDE (default model)", "pseudobulk (PCA mean)"} <= set(out["c"]["table"].index)
    assert "set means" in out["d"]["table"].index
    assert "beats every baseline" in capsys.readouterr().out


def test_defaults_compare_other_model_kwargs(keep_threads, monkeypatch):
    """``--model-kwargs`` trains GDE(adata, **kwargs) on the same tasks; the next run is the default model again."""
    import scgde

    seen = []
    original = scgde.model.GDE.__init__

    def spy(self, adata, **kwargs):
        seen.append(kwargs)
        original(self, adata, **kwargs)

    monkeypatch.setattr(scgde.model.GDE, "__init__", spy)
    defaults = _load("defaults")
    out = defaults.main(["--quick", "--tasks", "a", "--model-kwargs", '{"generator": "cvae"}'])
    assert np.isfinite(out["a"]["table"].to_numpy(float)).all()
    assert seen == [{"generator": "cvae"}]
    defaults.main(["--quick", "--tasks", "a"])
    assert seen[-1] == {}


def test_kang_support_quick(shared_file, keep_threads):
    """Every support handling is scored beside the baselines; only the raw flow has negative entries."""
    shared_file("kang2018_ifnb", "kang2018_valid.h5ad")
    table = _load("kang_support").main(["--quick"])["table"]
    assert table.loc["raw flow output", "negative entries"] > 0
    ours = table.loc[[i for i in table.index if not i.startswith("baseline")]]
    assert (ours.drop(index="raw flow output")["negative entries"] == 0).all()
    assert np.isfinite(table["E-distance"].to_numpy(float)).all()
    assert "baseline: perturbation mean" in table.index
