"""Smoke tests of ``benchmarks.celleval --quick``: predictions scored by cell-eval / cell-eval2 themselves.

The numbers are not results (two epochs of training); the tests check that every method reaches the evaluator and
comes back with finite scores, that the trivial rows behave as they must (no change has no predicted response, the
ceiling is above it, real held-out cells given as a peer score as the truth), and that saved predictions rescore to
the same numbers.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

pytest.importorskip("cell_eval", reason="benchmarks.celleval needs cell-eval (pip install cell-eval)")


def _celleval():
    return importlib.import_module("benchmarks.celleval")


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


KANG_LOG = {
    "scgde default (ridge)",
    "scgde default (latent mean shift)",
    "no change",
    "cell-eval mean baseline",
    "perturbation mean shift (gene space)",
    "nearest training context",
    "ridge on pseudobulk mean change",
    "data ceiling",
}
KANG_COUNTS = {"scgde counts (NB, ridge)", "no change", "nearest training context", "data ceiling"}


def test_kang_quick(shared_data, keep_threads, tmp_path, capsys):
    pytest.importorskip("cell_eval2", reason="the vcc2026 preset needs cell-eval2 (pip install cell-eval2)")
    data = shared_data("kang2018_ifnb", "kang2018_valid.h5ad")
    out = _celleval().main(
        ["--setting", "kang", "--fold", "NK", "--quick", "--data", str(data), "--out", str(tmp_path)]
    )
    log, counts = out["log"], out["counts"]
    assert set(log.index) == KANG_LOG
    assert set(counts.index) == KANG_COUNTS
    assert set(log["fold"]) == {"NK"}
    methods = log.drop(index="data ceiling")
    for metric in ("pearson_delta", "mae", "mse", "overlap_at_N", "pr_auc"):
        assert np.isfinite(methods[metric].to_numpy(float)).all(), metric
    # no change predicts no response: its delta is noise around zero and it calls no DE gene
    assert abs(log.loc["no change", "pearson_delta"]) < 0.2
    assert log.loc["no change", "overlap_at_N"] == 0
    assert log.loc["data ceiling", "pearson_delta"] > log.loc["no change", "pearson_delta"] + 0.3
    assert counts.loc["data ceiling", "pearson_delta"] > counts.loc["no change", "pearson_delta"] + 0.3
    # with one perturbation, discrimination is 1 for every method (the table says so)
    assert (methods["discrimination_score_l1"] == 1).all()
    assert (log.loc[["scgde default (ridge)", "scgde default (latent mean shift)"], "wall_s"] > 0).all()
    # counts: the NB model's cells are integer counts, described beside the real held-out cells
    stats = out["count_stats"]
    assert bool(stats.loc["scgde counts (NB, ridge)", "integer"])
    assert stats.loc["real held-out cells", "mean_pearson_log1p"] == pytest.approx(1.0)
    assert (stats["lib_median"] > 0).all()
    assert set(out["vcc2026"].index) == KANG_COUNTS - {"data ceiling"}
    assert np.isfinite(out["vcc2026"]["de_wilcoxon_sig_jaccard"].to_numpy(float)).all()
    for name in ("kang_NK_log.csv", "kang_NK_counts.csv", "kang_NK_count_stats.csv", "kang_mean_log.csv"):
        assert (tmp_path / name).exists(), name
    printed = capsys.readouterr().out
    assert "discrimination is 1 by construction" in printed
    assert "worst non-trivial method on pearson_delta" in printed

    # the saved predictions rescore to the same numbers, and a peer folder is scored beside them: the real
    # held-out cells given as a peer reproduce the real response exactly
    fold = importlib.import_module("benchmarks._kang").fold(
        importlib.import_module("benchmarks._kang").load(str(data)), "NK", n_genes=300
    )
    (tmp_path / "peers" / "oracle").mkdir(parents=True)
    fold.true.write_h5ad(tmp_path / "peers" / "oracle" / "NK.h5ad")
    again = _celleval().main(
        ["--setting", "kang", "--fold", "NK", "--quick", "--data", str(data), "--out", str(tmp_path), "--rescore",
         "--no-celleval2", "--peers", str(tmp_path / "peers")]
    )  # fmt: skip
    rows = again["log"]
    assert set(rows.index) == KANG_LOG | {"peer: oracle"}
    assert rows.loc["peer: oracle", "pearson_delta"] == pytest.approx(1.0)
    assert rows.loc["peer: oracle", "mae"] == pytest.approx(0.0, abs=1e-6)
    same = ["pearson_delta", "mae", "overlap_at_N"]
    np.testing.assert_allclose(rows.loc[log.index, same].to_numpy(float), log[same].to_numpy(float), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:.*library sizes outside.*:UserWarning")  # two epochs of training
def test_synthetic_quick(keep_threads, tmp_path):
    out = _celleval().main(["--setting", "synthetic", "--quick", "--out", str(tmp_path), "--no-celleval2"])
    log = out["log"]
    assert set(log.index) == {
        "scgde default (ridge)",
        "no change",
        "ridge on pseudobulk (features -> mean change)",
        "training mean change",
        "nearest training perturbation (features)",
        "cell-eval mean baseline",
        "data ceiling",
    }
    assert len(out["held_out"]) == 4  # 20% of 20 perturbations
    methods = log.drop(index="data ceiling")
    for metric in ("pearson_delta", "mae", "overlap_at_N", "discrimination_score_l1"):
        assert np.isfinite(methods[metric].to_numpy(float)).all(), metric
    # several perturbations: discrimination is no longer 1 by construction; the truth is linear in the features
    assert log.loc["no change", "overlap_at_N"] == 0
    assert log.loc["ridge on pseudobulk (features -> mean change)", "pearson_delta"] > 0.5
    assert log.loc["data ceiling", "pearson_delta"] > log.loc["no change", "pearson_delta"]
    assert bool(out["count_stats"].loc["scgde counts (NB, ridge)", "integer"])
    assert (tmp_path / "synthetic_log.csv").exists()


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _celleval().main(["--setting", "kang", "--fold", "NKT", "--out", str(tmp_path)])
    assert "not a Kang cell type" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _celleval().main(["--setting", "kang", "--peers", str(tmp_path / "absent"), "--out", str(tmp_path)])
    assert "not a folder" in capsys.readouterr().err
