"""The distance ablation's quick mode runs every requested configuration and the supervised probe (numbers: docs)."""

from __future__ import annotations

import numpy as np
from benchmarks import distance_ablation


def test_family_sets_carry_their_parameters():
    sets, means, covs, theta = distance_ablation.family_sets(6, 50, seed=3)
    assert sets.shape == (6, 50, distance_ablation.DIM) and theta.shape == (6, 4)
    # theta_0 and theta_1 are the coordinates of the mean on its plane: the means are linear in them
    coef, residual, *_ = np.linalg.lstsq(theta[:, :2], means, rcond=None)
    assert np.allclose(theta[:, :2] @ coef, means, atol=1e-10)


def test_quick_ablation_reports_spearman_r2_and_probe():
    result = distance_ablation.main(["--quick", "--configs", "default", "cvae_quadratic_film", "--probe"])
    table, probe = result["table"], result["probe"]
    assert list(table.index) == ["default", "cvae_quadratic_film", "baseline: set means"]
    assert np.isfinite(table["Spearman(latent L2, W2)"]).all()
    assert np.isfinite(table.loc["default", [f"R^2 theta_{j}" for j in range(4)]].astype(float)).all()
    assert probe.shape == (2, 4)
