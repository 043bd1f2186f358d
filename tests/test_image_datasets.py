"""Image datasets with ground truth: digit image sets, real nuclei crops and the pooled-screen simulator."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scgde.datasets._digits import digits_mixtures
from scgde.datasets._images import digit_image_sets, nuclei_crops, pooled_screen

# ---------------------------------------------------------------------------------------------------------------------
# digit image sets
# ---------------------------------------------------------------------------------------------------------------------


def test_digit_image_sets_match_digits_mixtures_and_sklearn():
    from sklearn.datasets import load_digits

    kwargs = {"n_sets": 8, "set_size": 30, "classes": (3, 5, 7), "alpha": 0.5, "split": "test", "seed": 3}
    adata = digit_image_sets(**kwargs)
    flat = digits_mixtures(**kwargs)
    images = adata.obsm["image"]
    assert adata.shape == (240, 0)
    assert images.shape == (240, 1, 8, 8) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.9
    np.testing.assert_array_equal(images.reshape(240, 64), flat.X)
    pd.testing.assert_frame_equal(adata.obs, flat.obs)
    np.testing.assert_array_equal(adata.uns["synthetic"]["proportions"], flat.uns["synthetic"]["proportions"])
    # independently: each image is the 8x8 sklearn image named in obs["image"], in row-major order
    data = load_digits()
    np.testing.assert_allclose(images[:, 0], data.images[adata.obs["image"].to_numpy()] / 16.0, rtol=1e-6)
    assert (data.target[adata.obs["image"].to_numpy()] == adata.obs["digit"].to_numpy()).all()


def test_digit_image_sets_seeded():
    a, b, c = (digit_image_sets(n_sets=4, set_size=20, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.obsm["image"], b.obsm["image"])
    assert not np.array_equal(a.obsm["image"], c.obsm["image"])
    grid = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    given = digit_image_sets(set_size=10, proportions=grid, seed=0)
    assert given.n_obs == 20 and set(given.obs["digit"][:10]) == {0}


# ---------------------------------------------------------------------------------------------------------------------
# real nuclei crops
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nuclei_source():
    pytest.importorskip("skimage")
    data = pytest.importorskip("stardist.data")
    img, labels = data.test_image_nuclei_2d(return_mask=True)
    return np.asarray(img), np.asarray(labels).astype(np.int64)


def test_nuclei_crops_match_the_mask(nuclei_source):
    img, labels = nuclei_source
    size = 32
    adata = nuclei_crops(crop_size=size, min_area=30)
    counts = np.bincount(labels.ravel())
    expected = np.flatnonzero(counts >= 30)
    expected = expected[expected > 0]
    n = len(expected)
    assert adata.shape == (n, 0) and n > 50
    assert adata.obsm["image"].shape == (n, 1, size, size) and adata.obsm["image"].dtype == np.uint16
    assert adata.obsm["mask"].shape == (n, size, size) and adata.obsm["mask"].dtype == bool
    assert adata.obsm["spatial"].shape == (n, 2)
    obs = adata.obs
    np.testing.assert_array_equal(np.sort(obs["label"]), expected)
    assert list(adata.obs_names) == [f"nucleus_{lab}" for lab in obs["label"]]
    np.testing.assert_array_equal(obs["area"], counts[obs["label"]])
    assert adata.uns["nuclei"]["image_shape"] == [512, 512] and adata.uns["nuclei"]["crop_size"] == size

    centre = size // 2
    n_unclipped = 0
    for i, lab in enumerate(obs["label"]):
        mask, crop = adata.obsm["mask"][i], adata.obsm["image"][i, 0]
        pixels = np.argwhere(labels == lab)
        np.testing.assert_allclose(adata.obsm["spatial"][i], pixels.mean(0), atol=1e-9)
        assert obs["mean_intensity"].iloc[i] == pytest.approx(img[labels == lab].mean())
        assert 0.0 <= obs["eccentricity"].iloc[i] < 1.0
        # the mask is this nucleus' pixels only, and the crop shows the image under them
        assert mask.sum() <= counts[lab]
        assert bool(obs["crop_clipped"].iloc[i]) == (mask.sum() < counts[lab])
        if not obs["crop_clipped"].iloc[i]:
            n_unclipped += 1
            np.testing.assert_array_equal(np.sort(crop[mask]), np.sort(img[labels == lab]))
            assert np.abs(np.argwhere(mask).mean(0) - centre).max() <= 1.0
    assert n_unclipped > n // 2


def test_nuclei_crops_rescaled_and_small_crops(nuclei_source):
    _, labels = nuclei_source
    adata = nuclei_crops(crop_size=16, scale=0.5, min_area=100)
    counts = np.bincount(labels.ravel())
    assert adata.uns["nuclei"]["image_shape"] == [256, 256]
    assert adata.obsm["image"].shape[1:] == (1, 16, 16) and adata.obsm["image"].dtype == np.uint16
    assert (adata.obs["area"] >= 100).all()
    assert set(adata.obs["label"]) <= set(np.flatnonzero(counts >= 100))
    # half the size: a nucleus covers about a quarter of its original pixels
    inside = adata.obsm["mask"].sum((1, 2))[~adata.obs["crop_clipped"].to_numpy()]
    ratio = inside / adata.obs["area"].to_numpy()[~adata.obs["crop_clipped"].to_numpy()]
    assert 0.15 < np.median(ratio) < 0.35
    assert adata.obsm["image"].max() > 100


# ---------------------------------------------------------------------------------------------------------------------
# pooled screen simulator
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def screen():
    return pooled_screen(n_genes=40, cells_per_gene=60, n_control=120, seed=0)


def _pixel_stats(images: np.ndarray) -> pd.DataFrame:
    """Per-cell statistics measured from the pixels alone."""
    dapi = images[:, 0].reshape(len(images), -1).astype(float)
    gfp = images[:, 1].reshape(len(images), -1).astype(float)
    n_nucleus = (dapi > dapi.max(1, keepdims=True) / 2).sum(1)
    bright = gfp > gfp.max(1, keepdims=True) / 2
    return pd.DataFrame(
        {
            "log_area": np.log(n_nucleus),
            "log_dapi": np.log(np.percentile(dapi, 99, axis=1)),
            "log_gfp": np.log((gfp * bright).sum(1) / bright.sum(1)),
        }
    )


def test_pooled_screen_layout(screen):
    n = 40 * 60 + 120
    images = screen.obsm["image"]
    assert screen.shape == (n, 0)
    assert images.shape == (n, 2, 32, 32) and images.dtype == np.uint8
    assert screen.uns["channels"] == ["DAPI", "GFP"]
    genes = screen.obs["gene"]
    assert genes.cat.categories[0] == "nontargeting" and len(genes.cat.categories) == 41
    assert (genes.value_counts()["nontargeting"] == 120) and (genes.value_counts().drop("nontargeting") == 60).all()
    features, effects = screen.uns["gene_features"], screen.uns["gene_effects"]
    assert features.shape == (40, 16) and list(features.index[:2]) == ["G000", "G001"]
    assert effects.shape == (41, 5) and list(effects.index) == list(genes.cat.categories)
    assert (effects.loc["nontargeting"] == 0).all() and (effects.drop("nontargeting").abs().sum(1) > 0).all()
    # spread changes only for some genes
    assert 0 < (effects["log_radius_sd"] != 0).sum() < 40
    for column in ("nucleus_area", "dapi_intensity", "gfp_intensity", "elongation"):
        assert np.isfinite(screen.obs[column]).all() and (screen.obs[column] > 0).all()
    assert (screen.obs["elongation"] >= 1).all()
    # the nucleus and cytoplasm stay inside the image: the border is background
    border = np.concatenate([images[:, :, 0, :], images[:, :, -1, :]], axis=-1)
    assert border.mean() < 30


def test_pooled_screen_pixels_recover_the_truth(screen):
    stats = _pixel_stats(screen.obsm["image"])
    obs = screen.obs.reset_index(drop=True)
    # per cell: the half-max DAPI area tracks the rendered nucleus area
    assert np.corrcoef(stats["log_area"], np.log(obs["nucleus_area"]))[0, 1] > 0.9
    # per gene: medians of pixel statistics follow the planted effects (medians ignore the spread effect)
    per_gene = stats.groupby(obs["gene"].to_numpy()).median().loc[screen.uns["gene_effects"].index]
    effects = screen.uns["gene_effects"]
    for stat, effect in [("log_area", "log_radius"), ("log_dapi", "log_dapi"), ("log_gfp", "log_gfp")]:
        assert np.corrcoef(per_gene[stat], effects[effect])[0, 1] > 0.9, stat
    # the spread effect shows in the cell-to-cell SD of the nucleus area
    spread = stats["log_area"].groupby(obs["gene"].to_numpy()).std().loc[effects.index]
    assert np.corrcoef(spread, effects["log_radius_sd"])[0, 1] > 0.7
    # effects are functions of the gene features: linear in them for size and shape, mildly non-linear for the
    # intensities (a linear fit explains most, not all) and the spread
    x = np.column_stack([screen.uns["gene_features"].to_numpy(), np.ones(40)])
    r2 = {}
    for effect in effects.columns:
        y = effects[effect].drop("nontargeting").to_numpy()
        resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        r2[effect] = 1 - resid.var() / y.var()
    assert r2["log_radius"] > 0.999 and r2["log_elongation"] > 0.999
    assert 0.6 < r2["log_dapi"] < 0.995 and 0.6 < r2["log_gfp"] < 0.995 and r2["log_radius_sd"] < 0.95


def test_pooled_screen_controls_and_zero_effect():
    flat = pooled_screen(n_genes=3, cells_per_gene=150, n_control=150, effect_scale=0.0, seed=2)
    assert (flat.uns["gene_effects"].to_numpy() == 0).all()
    stats = _pixel_stats(flat.obsm["image"])
    medians = stats.groupby(flat.obs["gene"].to_numpy()).median()
    # without effects every gene looks like the controls
    assert (medians.max() - medians.min() < 0.1).all()
    strong = pooled_screen(n_genes=3, cells_per_gene=150, n_control=150, effect_scale=3.0, seed=2)
    strong_medians = _pixel_stats(strong.obsm["image"]).groupby(strong.obs["gene"].to_numpy()).median()
    assert (strong_medians.max() - strong_medians.min()).max() > 0.2


def test_pooled_screen_seeded_and_writable(tmp_path):
    a, b, c = (pooled_screen(n_genes=3, cells_per_gene=10, n_control=5, seed=s) for s in (4, 4, 5))
    np.testing.assert_array_equal(a.obsm["image"], b.obsm["image"])
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert not np.array_equal(a.obsm["image"], c.obsm["image"])
    path = tmp_path / "screen.h5ad"
    a.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["image"], a.obsm["image"])
    assert back.obsm["image"].dtype == np.uint8
    assert list(back.obs["gene"].cat.categories) == list(a.obs["gene"].cat.categories)
    pd.testing.assert_frame_equal(back.uns["gene_effects"], a.uns["gene_effects"])
    assert back.uns["pooled_screen"]["seed"] == 4 and list(back.uns["channels"]) == ["DAPI", "GFP"]


def test_pooled_screen_other_sizes():
    big = pooled_screen(n_genes=2, cells_per_gene=20, n_control=0, image_size=48, n_features=4, seed=0)
    assert big.obsm["image"].shape == (40, 2, 48, 48) and big.uns["gene_features"].shape == (2, 4)
    assert list(big.obs["gene"].cat.categories) == ["nontargeting", "G000", "G001"]
    small = pooled_screen(n_genes=2, cells_per_gene=20, n_control=0, image_size=16, seed=0)
    # cells scale with the image: a similar fraction of pixels is nucleus
    frac = [_pixel_stats(x.obsm["image"])["log_area"].median() - 2 * np.log(s) for x, s in ((big, 48), (small, 16))]
    assert abs(frac[0] - frac[1]) < 0.35


# ---------------------------------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_genes": 0}, "n_genes"),
        ({"cells_per_gene": 0}, "cells_per_gene"),
        ({"n_control": -1}, "n_control"),
        ({"image_size": 15}, "image_size"),
        ({"n_features": 0}, "n_features"),
        ({"effect_scale": -1.0}, "effect_scale"),
        ({"noise": float("nan")}, "noise"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_pooled_screen_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        pooled_screen(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"crop_size": 7}, "crop_size"), ({"scale": 0}, "scale"), ({"min_area": -1}, "min_area")]
)
def test_nuclei_crops_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        nuclei_crops(**kwargs)


def test_digit_image_sets_bad_arguments():
    with pytest.raises(ValueError, match="`set_size`"):
        digit_image_sets(set_size=0)
    with pytest.raises(ValueError, match="`split`"):
        digit_image_sets(split="val")
