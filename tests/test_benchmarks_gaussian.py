"""Smoke tests of the synthetic Gaussian benchmarks: every module's --quick mode runs and passes its own checks.

The --quick modes assert that every metric is finite and that each trained model beats an untrained
GDE of the same architecture (raising AssertionError otherwise); their numbers are not results.
Also: the shared helpers of ``benchmarks._common`` leave no global state behind.
"""

from __future__ import annotations

import logging
import runpy
import sys
import warnings

import numpy as np
import pytest
import scvi
import torch
from benchmarks import (
    _common,
    _gaussian,
    covariance_probe,
    gaussian_distances,
    gaussian_interpolation,
    gaussian_table2,
    gaussian_table5,
    gaussian_w2,
)


def test_table5_quick(capsys):
    out = gaussian_table5.main(["--quick", "--seed", "0"])
    assert set(out) >= {"paper", "covariance", "table", "wall_s"}
    rows = out["paper"]["rows"]
    models = [r["model"] for r in rows]
    assert "resnet + ddpm" in models and any(m.startswith("plug-in Gaussian") for m in models)
    for r in rows:
        assert np.isfinite(r["ours ‖Δμ‖+B²"]) and np.isfinite(r["ours W2"])
    # the oracle (true parameters) is the Monte-Carlo floor: no baseline through the same pipeline beats it by much
    by_name = {r["model"]: r for r in rows}
    oracle = next(v for k, v in by_name.items() if k.startswith("oracle"))
    train_mean = next(v for k, v in by_name.items() if k.startswith("training mean"))
    assert oracle["ours W2"] < train_mean["ours W2"]
    printed = capsys.readouterr().out
    assert "| model |" in printed and "paper ‖Δμ‖+B²" in printed and "1 torch/BLAS thread(s)" in printed


def test_table2_quick():
    out = gaussian_table2.main(["--quick"])
    gmm = {r["model"]: r for r in out["gmm"]["rows"]}
    assert "resnet + ddpm" in gmm and all(np.isfinite(r["MW2^2"]) for r in gmm.values())
    assert "| GDE (resnet + ddpm) |" in out["table"]


def test_distances_quick():
    out = gaussian_distances.main(["--quick"])
    assert len(out["rows"]) == 3
    for r in out["rows"]:
        assert -1 <= r["GDE latent L2"] <= 1 and r["GDE latent L2"] > r["untrained latent L2"]


def test_interpolation_quick():
    out = gaussian_interpolation.main(["--quick"])
    for block in out["blocks"].values():
        paths = block["paths"]
        assert len(paths["GDE latent line (W2 to OT_t)"]) == 11
        # closed-form baselines vanish at the endpoints
        assert paths["moment interpolation (linear mu, Sigma)"][0] == pytest.approx(0, abs=1e-9)


def test_quick_raises_when_training_does_not_help(monkeypatch):
    """The trained-vs-untrained check is real: swapping the two models must make it fail."""
    fit = gaussian_table5.fit_pair

    def swapped(*args, **kwargs):
        f = fit(*args, **kwargs)
        return _gaussian.Fitted(f.untrained, f.model, f.train_s, f.encoder, f.generator)

    monkeypatch.setattr(gaussian_table5, "fit_pair", swapped)
    monkeypatch.setitem(gaussian_table5.GRID_QUICK, "paper", [("mean", "direct")])
    with pytest.raises(AssertionError, match="untrained"):
        gaussian_table5.main(["--quick", "--variant", "paper"])


def test_steps_option_overrides_the_budget_of_one_run_only():
    size = _gaussian.size_of("table5", quick=True, steps=7)
    assert size.steps == 7
    assert _gaussian.SIZES["table5"]["quick"].steps == 150  # the table of sizes is not mutated


def test_covariance_probe_quick():
    frame = covariance_probe.main(["--quick", "--steps", "30"])
    assert list(frame.index) == ["held-out sets", "training sets"]
    assert np.isfinite(frame.to_numpy()).all()
    # even barely trained, a set vector determines its set's mean
    assert (frame["R^2 z -> mean (ridge)"] > 0.9).all()


def test_gaussian_w2_quick(capsys):
    (row,) = gaussian_w2.main(["--quick", "--setting", "covariance"])
    for key in ("GDE latent L2", "set means L2", "plug-in Gaussian W2"):
        assert -1 <= row[key] <= 1, key
    # the plug-in Gaussian W2 of the sample moments is nearly exact for Gaussian sets of 200 points
    assert row["plug-in Gaussian W2"] > 0.9
    assert "| covariance | resnet+ddpm |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name",
    [
        "gaussian_table5",
        "gaussian_table2",
        "gaussian_distances",
        "gaussian_interpolation",
        "gaussian_w2",
        "covariance_probe",
        "encode_speed",
        "lineage",
    ],
)
def test_runs_as_a_module(name, monkeypatch, capsys):
    """``python -m benchmarks.<name> --help`` (what runpy does for ``-m``) reaches the module's own parser."""
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module may be imported already
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(f"benchmarks.{name}", run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out
    assert f"python -m benchmarks.{name}" in out  # the docstring's usage line names the module


# ---------------------------------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------------------------------


def test_quiet_restores_logging_warnings_and_verbosity():
    logger = logging.getLogger("lightning.pytorch")
    logger.setLevel(logging.DEBUG)
    scvi.settings.verbosity = logging.INFO
    filters = list(warnings.filters)
    message = "Initializing zero-element tensors is a no-op"
    with _common.quiet():
        assert logger.level == logging.ERROR and scvi.settings.verbosity == logging.ERROR
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn(message, UserWarning, stacklevel=1)
        assert not caught  # silenced inside
    assert logger.level == logging.DEBUG
    assert scvi.settings.verbosity == logging.INFO
    assert warnings.filters == filters
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn(message, UserWarning, stacklevel=1)
    assert caught  # and shown again after
    logger.setLevel(logging.NOTSET)


def test_quiet_and_pinned_threads_restore_state_after_an_error():
    threads = torch.get_num_threads()
    other = 1 if threads != 1 else 2
    torch.set_num_threads(other)
    try:
        with pytest.raises(RuntimeError, match="boom"), _common.quiet(), _common.pinned_threads(3):
            assert torch.get_num_threads() == 3
            raise RuntimeError("boom")
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(threads)


def test_budget_splits_steps_into_epochs():
    assert _common.budget(1000, epochs=5) == (5, 200)
    assert _common.budget(150, epochs=1) == (1, 150)
    assert _common.budget(2000, batches_per_epoch=50) == (40, 50)
    assert _common.budget(30, batches_per_epoch=50) == (1, 30)  # fewer steps than one epoch
    assert _common.budget(120, batches_per_epoch=50) == (3, 50)  # rounded up
    with pytest.raises(ValueError, match="exactly one of epochs= or batches_per_epoch="):
        _common.budget(100)


def test_markdown_table_formats_floats_and_keeps_strings():
    import pandas as pd

    frame = pd.DataFrame({"a": [0.12345, 2.0], "b": ["x", "–"]}, index=pd.Index(["r1", "r2"], name="row"))
    assert _common.markdown_table(frame, digits=2).splitlines() == [
        "| row | a | b |",
        "|---|---|---|",
        "| r1 | 0.12 | x |",
        "| r2 | 2.00 | – |",
    ]
