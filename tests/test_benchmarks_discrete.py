"""The --quick modes of the discrete benchmarks (``benchmarks.discrete_*``): every experiment runs end to end, its
metrics are finite, and the trained model beats its own untrained initialisation (AssertionError otherwise)."""

from __future__ import annotations

import math
import runpy
import sys
import warnings

import numpy as np
import pytest
import torch
from benchmarks import discrete_clt, discrete_digits, discrete_poisson, discrete_simplex, discrete_stretching


def _run(module, name: str) -> dict:
    threads = torch.get_num_threads()
    result = module.main(["--quick", "--seed", "0"])
    assert torch.get_num_threads() == threads  # the script restores global torch state
    assert result["markdown"].startswith("### ")
    assert "paper" in result["markdown"]
    # the printed command reproduces the run
    assert f"Command: `python -m benchmarks.{name} --quick --seed 0`" in result["markdown"]
    assert result["wall_s"] > 0
    return result


def test_simplex_quick(capsys):
    result = _run(discrete_simplex, "discrete_simplex")
    r = result["metrics"]
    assert set(r) >= {"GDE", "untrained", "set means", "KME", "KME untrained"}
    assert all(math.isfinite(v) and -1 <= v <= 1 for v in r.values())
    assert r["GDE"] > r["untrained"]
    out = capsys.readouterr().out
    assert "Encoding sets" not in out  # no progress bars inside the printed table
    assert "0.952" in out  # the paper's number is printed beside ours


def test_stretching_quick():
    result = _run(discrete_stretching, "discrete_stretching")
    assert sorted(result["metrics"]) == [2.0**-5, 1.0, 2.0**5]
    assert isinstance(result["info"]["shape_reproduced"], bool)
    assert all(math.isfinite(v) for r in result["metrics"].values() for v in r.values())
    assert result["metrics"][1.0]["GDE"] > result["metrics"][1.0]["untrained"]


def test_digits_quick():
    r = _run(discrete_digits, "discrete_digits")["metrics"]
    assert set(r) >= {"GDE", "untrained", "set means", "PCA-mean", "KME"}
    assert all(math.isfinite(v) for v in r.values())
    assert r["GDE"] > r["untrained"]


def test_clt_quick():
    metrics = _run(discrete_clt, "discrete_clt")["metrics"]
    sizes = sorted(metrics)
    assert sizes == [10, 100, 1000]
    for m in sizes:
        assert metrics[m]["loss_mean"] < metrics[m]["untrained_loss_mean"]
    # the embedding spread shrinks with the set size
    assert metrics[10]["pc1_std"] > metrics[100]["pc1_std"] > metrics[1000]["pc1_std"]


def test_poisson_quick():
    metrics = _run(discrete_poisson, "discrete_poisson")["metrics"]
    assert sorted(metrics) == [10, 100, 1000]
    for v in metrics.values():
        assert np.all(np.isfinite(list(v["mse"].values())))
        assert v["mse"]["GDE"] < v["mse"]["untrained"]
        # the Bayes posterior mean under the true prior has (up to Monte Carlo noise) the smallest risk
        assert v["mse"]["Bayes"] <= v["mse"]["naive"]


def test_bayes_p0_matches_numerical_integration():
    # E[exp(-lambda) | T] under lambda ~ U(0, 10) and T ~ Poisson(n lambda), by quadrature
    lam = np.linspace(0, 10, 200_001)
    for n, total in [(10, 0), (10, 7), (100, 250)]:
        log_post = total * np.log(np.maximum(lam, 1e-300)) - n * lam
        w = np.exp(log_post - log_post.max())
        expected = float(np.sum(w * np.exp(-lam)) / np.sum(w))
        assert discrete_poisson.bayes_p0(np.array([total], dtype=float), n, 10.0)[0] == pytest.approx(
            expected, rel=1e-4
        )


def test_cli_rejects_unknown_option():
    with pytest.raises(SystemExit):
        discrete_simplex.main(["--nonsense", "--quick"])


@pytest.mark.parametrize(
    "name", ["discrete_simplex", "discrete_stretching", "discrete_digits", "discrete_clt", "discrete_poisson"]
)
def test_runs_as_a_module(name, monkeypatch, capsys):
    """``python -m benchmarks.<name> --help`` (what runpy does for ``-m``) reaches the module's own parser."""
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is already imported by this test file
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(f"benchmarks.{name}", run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--seed" in out and "--threads" in out
    assert f"python -m benchmarks.{name}" in out  # the docstring's usage line names the module
