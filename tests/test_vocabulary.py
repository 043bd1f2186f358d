"""One vocabulary across the models: ``n_samples`` and ``batch_size`` on GDE, with the former names as aliases."""

from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch

import scgde
from scgde.model import GDE


@pytest.fixture(scope="module")
def model():
    scvi.settings.seed = 0
    adata = scgde.datasets.synthetic_mvn(n_sets=8, set_size=20, dim=3, seed=0)
    GDE.setup_anndata(adata, set_key="set")
    gde = GDE(adata, n_latent=4, n_hidden=16)
    gde.train(max_epochs=1, sets_per_batch=4, cells_per_set=8, enable_progress_bar=False)
    return gde


def _generate(model, *args, **kwargs):
    torch.manual_seed(0)
    return np.asarray(model.generate(["set_0", "set_1"], *args, **kwargs).X)


def test_n_samples_and_its_alias_n_cells_agree(model):
    new = _generate(model, n_samples=7)
    assert new.shape == (14, 3)
    np.testing.assert_array_equal(new, _generate(model, n_cells=7))
    np.testing.assert_array_equal(new, _generate(model, 7))  # positional, as before
    assert _generate(model).shape == (200, 3)  # default: 100 per set


def test_batch_size_and_its_alias_max_cells_per_call_agree(model):
    new = _generate(model, n_samples=5, batch_size=5)  # one set per network call
    np.testing.assert_array_equal(new, _generate(model, n_samples=5, max_cells_per_call=5))
    np.testing.assert_array_equal(new, _generate(model, n_cells=5, max_cells_per_call=5))


def test_interpolate_accepts_both_names(model):
    torch.manual_seed(0)
    new = model.interpolate("set_0", "set_1", n_steps=3, n_samples=4, batch_size=4)
    torch.manual_seed(0)
    old = model.interpolate("set_0", "set_1", n_steps=3, n_cells=4, max_cells_per_call=4)
    assert new.n_obs == 12
    np.testing.assert_array_equal(np.asarray(new.X), np.asarray(old.X))
    np.testing.assert_array_equal(new.obs["t"], old.obs["t"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 3, "n_cells": 3}, "n_samples= or its alias n_cells="),
        ({"batch_size": 8, "max_cells_per_call": 8}, "batch_size= or its alias max_cells_per_call="),
    ],
)
def test_both_names_is_an_error(model, kwargs, match):
    with pytest.raises(TypeError, match=match):
        model.generate(["set_0"], **kwargs)


def test_interpolate_both_names_is_an_error(model):
    with pytest.raises(TypeError, match="n_samples= or its alias n_cells="):
        model.interpolate("set_0", "set_1", n_samples=3, n_cells=3)


def test_errors_name_the_option_passed(model):
    with pytest.raises(ValueError, match="n_cells must be >= 1"):
        model.generate(["set_0"], n_cells=0)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        model.generate(["set_0"], n_samples=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.generate(["set_0"], batch_size=0)
