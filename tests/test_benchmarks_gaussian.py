"""Smoke tests of benchmarks/synthetic_gaussian.py: every subcommand's --quick mode runs and passes its own checks.

The --quick modes assert that every metric is finite and that each trained model beats an untrained
GDE of the same architecture (raising AssertionError otherwise); their numbers are not results.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synthetic_gaussian.py"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    yield _load(SCRIPT, "synthetic_gaussian_benchmark")
    sys.modules.pop("synthetic_gaussian_benchmark", None)


def test_table5_quick(bench, capsys):
    out = bench.main(["table5", "--quick", "--seed", "0"])["table5"]
    assert set(out) >= {"paper", "covariance", "table"}
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
    assert "| model |" in printed and "paper ‖Δμ‖+B²" in printed


def test_table2_quick(bench):
    out = bench.main(["table2", "--quick"])["table2"]
    gmm = {r["model"]: r for r in out["gmm"]["rows"]}
    assert "resnet + ddpm" in gmm and all(np.isfinite(r["MW2^2"]) for r in gmm.values())
    assert "| GDE (resnet + ddpm) |" in out["table"]


def test_distances_quick(bench):
    out = bench.main(["distances", "--quick"])["distances"]
    assert len(out["rows"]) == 3
    for r in out["rows"]:
        assert -1 <= r["GDE latent L2"] <= 1 and r["GDE latent L2"] > r["untrained latent L2"]


def test_interpolation_quick(bench):
    out = bench.main(["interpolation", "--quick"])["interpolation"]
    for block in out["blocks"].values():
        paths = block["paths"]
        assert len(paths["GDE latent line (W2 to OT_t)"]) == 11
        # closed-form baselines vanish at the endpoints
        assert paths["moment interpolation (linear mu, Sigma)"][0] == pytest.approx(0, abs=1e-9)


def test_quick_raises_when_training_does_not_help(bench, monkeypatch):
    """The trained-vs-untrained check is real: swapping the two models must make it fail."""
    fit = bench.fit

    def swapped(*args, **kwargs):
        f = fit(*args, **kwargs)
        return bench.Fitted(f.untrained, f.model, f.train_s, f.encoder, f.generator)

    monkeypatch.setattr(bench, "fit", swapped)
    monkeypatch.setitem(bench.GRID_QUICK, "paper", [("mean", "direct")])
    with pytest.raises(AssertionError, match="untrained"):
        bench.main(["table5", "--quick", "--variant", "paper"])


def test_covariance_probe_quick():
    module = _load(SCRIPT.with_name("covariance_probe.py"), "covariance_probe_benchmark")
    frame = module.main(["--quick", "--steps", "30"])
    assert list(frame.index) == ["held-out sets", "training sets"]
    assert np.isfinite(frame.to_numpy()).all()
    # even barely trained, a set vector determines its set's mean
    assert (frame["R^2 z -> mean (ridge)"] > 0.9).all()
