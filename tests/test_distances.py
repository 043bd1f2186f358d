"""Distribution distances against closed forms and their defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scgde.nn import energy_distance, mmd, sinkhorn_divergence, sliced_wasserstein


def test_sliced_w2_in_1d_is_exact_w2():
    x, y = torch.randn(500, 1), 2 + 3 * torch.randn(500, 1)
    exact = (torch.sort(x[:, 0]).values - torch.sort(y[:, 0]).values).pow(2).mean().sqrt()
    assert sliced_wasserstein(x, y, n_projections=4).item() == pytest.approx(exact.item(), rel=1e-4)


def test_sliced_w2_weighted_equals_duplicated_and_handles_unequal_sizes():
    torch.manual_seed(0)
    x, y = torch.randn(10, 3), torch.randn(7, 3)
    w = torch.tensor([1, 2, 3, 1, 1, 2, 1, 1, 4, 1.0])
    dup = x.repeat_interleave(w.long(), dim=0)
    g = torch.Generator().manual_seed(3)
    a = sliced_wasserstein(x, y, w, None, n_projections=64, generator=g)
    g = torch.Generator().manual_seed(3)
    b = sliced_wasserstein(dup, y, n_projections=64, generator=g)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_sliced_w2_of_a_shift():
    """SW2^2 of a shift by a equals |a|^2 / d averaged over directions."""
    torch.manual_seed(0)
    x = torch.randn(2000, 2)
    shift = torch.tensor([3.0, 0.0])
    sw2 = sliced_wasserstein(x, x + shift, n_projections=2000, squared=True).item()
    assert sw2 == pytest.approx(9.0 / 2, rel=0.05)


@pytest.mark.parametrize("fn", [mmd, energy_distance, sliced_wasserstein])
def test_zero_for_identical_and_positive_otherwise(fn):
    torch.manual_seed(0)
    x = torch.randn(3, 50, 2)
    assert torch.allclose(fn(x, x), torch.zeros(3), atol=1e-4)
    assert (fn(x, x + 1.0) > 1e-2).all()


def test_energy_distance_weighted_equals_duplicated():
    x, y = torch.randn(6, 2), torch.randn(5, 2)
    w = torch.tensor([1, 1, 2, 3, 1, 2.0])
    a = energy_distance(x, y, w)
    b = energy_distance(x.repeat_interleave(w.long(), 0), y)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_sinkhorn_divergence_approaches_half_w2_squared():
    torch.manual_seed(0)
    x = torch.randn(800, 2)
    shift = torch.tensor([2.0, 1.0])
    val = sinkhorn_divergence(x, x + shift, blur=0.01).item()
    assert val == pytest.approx(0.5 * 5.0, rel=0.05)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(B, n, D\)"):
        mmd(torch.randn(2, 5, 3), torch.randn(3, 5, 3))
    assert np.isfinite(mmd(torch.randn(5, 3), torch.randn(4, 3), bandwidth=1.0).item())
