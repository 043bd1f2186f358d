"""GDE as a patpy sample-representation method (scgde.tl._patpy.GDESampleRepresentation)."""

from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

from scgde.tl import _patpy

TINY = {"max_epochs": 20, "batches_per_epoch": 5, "sets_per_batch": 8, "cells_per_set": 32}
TINY_MODEL = {"n_latent": 4, "n_hidden": 32}


def _needs_patpy():
    return pytest.importorskip("patpy", reason='patpy is not installed (optional: pip install "scgde[patpy]")')


def _samples(n_per_group: int = 5, n_cells: int = 80, dim: int = 4, seed: int = 0) -> AnnData:
    """Samples of two distributions with the same mean: group "narrow" N(0, I), group "wide" N(0, 9 I)."""
    rng = np.random.default_rng(seed)
    xs, sample, group = [], [], []
    for g, sd in (("narrow", 1.0), ("wide", 3.0)):
        for i in range(n_per_group):
            xs.append(rng.normal(0.0, sd, (n_cells, dim)))
            sample += [f"{g}_{i}"] * n_cells
            group += [g] * n_cells
    x = np.concatenate(xs).astype(np.float32)
    obs = pd.DataFrame({"donor": sample, "group": group}, index=[f"c{i}" for i in range(len(x))])
    adata = AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(dim)]))
    adata.obsm["X_emb"] = x[:, ::-1].copy()  # another feature space, as an obsm embedding
    adata.layers["scaled"] = 2 * x
    return adata


@pytest.fixture(scope="module")
def fitted():
    _needs_patpy()
    import scvi

    scvi.settings.verbosity = 30
    adata = _samples()
    before = (adata.X.copy(), list(adata.obs.columns), set(adata.layers), set(adata.obsm))
    gde = _patpy.GDESampleRepresentation(
        "donor", "group", model_kwargs=TINY_MODEL, train_kwargs={**TINY, "enable_progress_bar": False}
    )
    gde.prepare_anndata(adata)
    return adata, gde, before


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(_patpy, "_CLASS", None)
    monkeypatch.setitem(sys.modules, "patpy.tl", None)  # as if patpy were not installed
    with pytest.raises(ImportError, match=r'pip install "scgde\[patpy\]"'):
        _patpy.GDESampleRepresentation  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute"):
        _patpy.Nothing  # noqa: B018


def test_is_a_patpy_method():
    patpy = _needs_patpy()
    cls = _patpy.GDESampleRepresentation
    assert issubclass(cls, patpy.tl.SampleRepresentationMethod)
    assert cls is _patpy.GDESampleRepresentation  # built once
    from scgde.tl._patpy import GDESampleRepresentation

    assert GDESampleRepresentation is cls


def test_distance_matrix(fitted):
    adata, gde, _ = fitted
    d = gde.calculate_distance_matrix()
    n = adata.obs["donor"].nunique()
    assert d.shape == (n, n)
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert (d[~np.eye(n, dtype=bool)] > 0).all()
    assert list(gde.samples) == list(pd.unique(adata.obs["donor"]))
    assert list(gde.sample_representation.index) == list(gde.samples)
    # the latent L2 distances of the stored representation, cached where patpy's methods keep theirs
    emb = gde.sample_representation.to_numpy(np.float64)
    np.testing.assert_allclose(d[0, 1], np.linalg.norm(emb[0] - emb[1]), rtol=1e-6)
    assert adata.uns["X_gde_distances"] is d
    assert gde.calculate_distance_matrix() is d
    cos = gde.calculate_distance_matrix(dist="cosine")
    assert not np.allclose(cos, d)


def test_same_distribution_closer(fitted):
    adata, gde, _ = fitted
    d = gde.calculate_distance_matrix(force=True)
    group = np.array([s.split("_")[0] for s in gde.samples])
    same = group[:, None] == group[None, :]
    off = ~np.eye(len(group), dtype=bool)
    assert d[same & off].mean() < d[~same].mean()
    # patpy's own evaluation on the matrix: positive silhouette of the two distributions
    result = gde.evaluate_representation(target="group", method="silhouette")
    assert result["metric"] == "silhouette"
    assert result["score"] > 0


def test_user_adata_unchanged(fitted):
    adata, _, (x, cols, layers, obsm) = fitted
    np.testing.assert_array_equal(adata.X, x)
    assert list(adata.obs.columns) == cols
    assert set(adata.layers) == layers and set(adata.obsm) == obsm


def test_unseen_samples_by_forward_pass(fitted):
    adata, gde, _ = fitted
    sample = gde.samples[3]
    cells = adata[adata.obs["donor"] == sample].copy()
    cells = cells[np.random.default_rng(1).permutation(cells.n_obs)].copy()  # another cell order
    cells.obs["donor"] = "renamed"
    new = gde.embed_new(cells)
    assert list(new.index) == ["renamed"]
    np.testing.assert_allclose(new.to_numpy()[0], gde.sample_representation.loc[sample].to_numpy(), atol=1e-5)
    d = gde.new_sample_distances(cells)
    assert d.shape == (1, len(gde.samples))
    assert d.columns[np.argmin(d.to_numpy()[0])] == sample
    # an unseen sample: cells of a fresh "wide" donor are closer to the wide donors than to the narrow ones
    fresh = _samples(n_per_group=1, seed=7)
    fresh = fresh[fresh.obs["group"] == "wide"].copy()
    fresh.obs["patient"] = "new_wide"
    d = gde.new_sample_distances(fresh, sample_key="patient").iloc[0]
    assert (
        d[[s for s in gde.samples if s.startswith("wide")]].mean()
        < d[[s for s in gde.samples if s.startswith("narrow")]].mean()
    )
    # its forward-pass embedding is the one it gets when the same model embeds it among all samples
    fresh.obs["donor"] = "new_wide"
    fresh.obs_names = [f"new_{i}" for i in range(fresh.n_obs)]
    joint = _patpy.GDESampleRepresentation("donor", model=gde.model)
    joint.prepare_anndata(ad.concat([adata, fresh]))
    assert list(joint.samples) == [*gde.samples, "new_wide"]
    np.testing.assert_allclose(
        gde.embed_new(fresh).loc["new_wide"].to_numpy(),
        joint.sample_representation.loc["new_wide"].to_numpy(),
        atol=1e-5,
    )


def test_embed_new_order_and_gene_matching(fitted):
    adata, gde, _ = fitted
    shuffled = adata[np.random.default_rng(2).permutation(adata.n_obs)].copy()
    new = gde.embed_new(shuffled)
    order = list(pd.unique(shuffled.obs["donor"]))
    assert order != list(gde.samples)  # the shuffle changed the order of first appearance...
    assert list(new.index) == order  # ...and the rows follow it, each with its own sample's vector
    np.testing.assert_allclose(new.to_numpy(), gde.sample_representation.loc[order].to_numpy(), atol=1e-5)
    # genes are matched by name: reversed order and an extra gene give the same embeddings
    extra = AnnData(
        np.hstack([np.ones((adata.n_obs, 1), np.float32), adata.X[:, ::-1]]),
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=["extra", *adata.var_names[::-1]]),
    )
    np.testing.assert_allclose(gde.embed_new(extra).to_numpy(), gde.sample_representation.to_numpy(), atol=1e-5)


def test_given_model_is_not_retrained(fitted):
    adata, gde, _ = fitted
    before = {k: v.detach().clone() for k, v in gde.model.module.named_parameters()}
    other = _patpy.GDESampleRepresentation("donor", model=gde.model)
    other.prepare_anndata(adata.copy())
    assert other.model is gde.model
    after = dict(gde.model.module.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # no training step ran
    np.testing.assert_allclose(other.sample_representation.to_numpy(), gde.sample_representation.to_numpy())


@pytest.mark.parametrize("layer", ["X_emb", "scaled"])
def test_layer_from_obsm_or_layers(layer):
    _needs_patpy()
    adata = _samples(n_per_group=2, n_cells=30)
    gde = _patpy.GDESampleRepresentation(
        "donor",
        layer=layer,
        model_kwargs=TINY_MODEL,
        train_kwargs={"max_epochs": 1, "batches_per_epoch": 2, "enable_progress_bar": False},
    )
    gde.prepare_anndata(adata)
    expected = [f"X_emb_{i}" for i in range(4)] if layer == "X_emb" else list(adata.var_names)
    assert list(gde.model.adata.var_names) == expected
    assert gde.calculate_distance_matrix().shape == (4, 4)
    np.testing.assert_allclose(gde.embed_new(adata).to_numpy(), gde.sample_representation.to_numpy(), atol=1e-5)
    wrong = adata.copy()
    wrong.obsm["X_emb"] = wrong.obsm["X_emb"][:, :2]
    if layer == "X_emb":
        with pytest.raises(ValueError, match="differ from the fitted"):
            gde.embed_new(wrong)


def test_errors():
    _needs_patpy()
    cls = _patpy.GDESampleRepresentation
    adata = _samples(n_per_group=1, n_cells=10)
    with pytest.raises(ValueError, match="sample_key='patient' is not a column"):
        cls("patient").prepare_anndata(adata)
    with pytest.raises(ValueError, match="layer='nope'"):
        cls("donor", layer="nope").prepare_anndata(adata)
    one = adata[adata.obs["donor"] == "wide_0"].copy()
    with pytest.raises(ValueError, match="at least 2"):
        cls("donor").prepare_anndata(one)
    holes = adata.copy()
    holes.obs["donor"] = holes.obs["donor"].astype(object)
    holes.obs.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="have no sample"):
        cls("donor").prepare_anndata(holes)
    with pytest.raises(TypeError, match="scgde.model.GDE"):
        cls("donor", model="a model")
    with pytest.raises(TypeError, match="train_kwargs must be a dict"):
        cls("donor", train_kwargs=5)
    with pytest.raises(TypeError, match="sample_key must be"):
        cls(["donor"])
    with pytest.raises(RuntimeError, match="not fitted"):
        cls("donor").embed_new(adata)
    with pytest.raises(TypeError, match="adata must be an AnnData"):
        cls("donor").prepare_anndata(adata.X)


def test_errors_after_fit(fitted):
    adata, gde, _ = fitted
    with pytest.raises(ValueError, match="dist='minkowski'"):
        gde.calculate_distance_matrix(dist="minkowski")
    with pytest.raises(ValueError, match="sample_key='patient' is not a column of adata_new.obs"):
        gde.embed_new(adata, sample_key="patient")
    with pytest.raises(ValueError, match="missing"):
        gde.embed_new(adata[:, :2].copy())
    model = _patpy.GDESampleRepresentation("donor", model=gde.model)
    with pytest.raises(ValueError, match="model= is an already trained GDE"):
        _patpy.GDESampleRepresentation("donor", model=gde.model, train_kwargs={"max_epochs": 1})
    assert model.model is gde.model
