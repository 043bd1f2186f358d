"""The speed benchmark's quick mode runs and reports every ratio beside its limit (numbers: docs/benchmarks.md)."""

from __future__ import annotations

import numpy as np
from benchmarks import speed


def test_speed_quick_reports_ratios():
    result = speed.main(["--quick", "--threads", "1", "--parts", "encoder", "distances"])
    encoder, distances = result["tables"]["encoder"], result["tables"]["distances"]
    assert (encoder["cells/s"] > 0).all()
    assert "of the roofline-implied" in encoder.loc["encoder, dense input", "ratio"]
    assert list(distances.index[:4]) == [
        "scgde: embed all sets + cdist",
        "scgde, covariance configuration: embed all sets + cdist",
        "exact EMD (ot.emd2)",
        "Sinkhorn divergence (geomloss, blur 0.5)",
    ]
    assert np.isfinite(distances["time for all pairs (s)"]).all()
    # the family's closed-form W2 is the truth: the plug-in estimate from 500 samples ranks pairs almost exactly
    assert (
        distances.loc["baseline: plug-in Gaussian W2 (oracle of the family)", "Spearman (all pairs or its sample)"]
        > 0.9
    )


def test_gaussian_family_has_known_moments():
    means, covs = speed.gaussian_family(5, np.random.default_rng(1), dim=6)
    assert means.shape == (5, 6) and covs.shape == (5, 6, 6)
    np.testing.assert_allclose(covs, np.transpose(covs, (0, 2, 1)))
    assert (np.linalg.eigvalsh(covs) > 0).all()
