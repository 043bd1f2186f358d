"""The latent W2 term: the paired Gaussian W2 of subsets, and GDE(w2_weight=...) end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scgde
from scgde.nn._distances import gaussian_w2_pairs


def test_one_dimensional_pairs_are_the_closed_form():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(1.0, 2.0, (4, 300, 1)))
    y = torch.tensor(rng.normal(-1.0, 0.5, (4, 200, 1)))
    got = gaussian_w2_pairs(x, y).numpy()
    mx, my = x.mean(1)[:, 0].numpy(), y.mean(1)[:, 0].numpy()
    sx, sy = x.std(1, unbiased=False)[:, 0].numpy(), y.std(1, unbiased=False)[:, 0].numpy()
    ridge = 1e-4  # the term's ridge on each variance
    expected = np.sqrt((mx - my) ** 2 + (np.sqrt(sx**2 + ridge) - np.sqrt(sy**2 + ridge)) ** 2)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_commuting_covariances_and_weights():
    rng = np.random.default_rng(1)
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    x = torch.tensor(rng.normal(size=(1, 4000, 3)) * np.sqrt(a))
    y = torch.tensor(rng.normal(size=(1, 4000, 3)) * np.sqrt(b) + 1.0)
    truth = np.sqrt(3 * 1.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert abs(float(gaussian_w2_pairs(x, y)[0]) - truth) < 0.08
    # integer weights are duplicated rows
    w = torch.tensor(rng.integers(1, 4, (1, 4000)), dtype=torch.float64)
    dup = torch.repeat_interleave(x[0], w[0].long(), dim=0)[None]
    np.testing.assert_allclose(gaussian_w2_pairs(x, y, w, None), gaussian_w2_pairs(dup, y), rtol=1e-8)


def test_gde_with_the_latent_w2_term_trains_saves_and_loads(tmp_path):
    adata = scgde.datasets.synthetic_mvn(n_sets=12, set_size=40, dim=3, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=4, n_hidden=16, w2_weight=1.0)
    encoder_before = [p.detach().clone() for p in model.module.encoder.parameters()]
    model.train(max_epochs=2, batches_per_epoch=3, sets_per_batch=6, cells_per_set=20, enable_progress_bar=False)
    assert "w2_loss_train" in model.history and np.isfinite(model.history["w2_loss_train"].to_numpy(dtype=float)).all()
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, model.module.encoder.parameters(), strict=True))
    emb = model.get_set_representation(progress_bar=False)
    model.save(tmp_path / "m")
    loaded = scgde.model.GDE.load(tmp_path / "m", adata=adata)
    assert loaded.module.w2_weight == 1.0
    np.testing.assert_allclose(loaded.get_set_representation(progress_bar=False), emb, atol=1e-5)


def test_negative_weight_is_refused():
    adata = scgde.datasets.synthetic_mvn(n_sets=4, set_size=10, dim=2, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    with pytest.raises(ValueError, match="w2_weight"):
        scgde.model.GDE(adata, w2_weight=-1.0)
