import h5py
import numpy as np
import pytest
import zarr

from scgde.img._features import image_features, nucleus_masks, otsu_threshold


def _ellipse(size, a, b, centre=None, angle=0.0):
    yy, xx = np.mgrid[:size, :size].astype(float)
    cy, cx = centre if centre is not None else (size / 2, size / 2)
    y, x = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def test_otsu_separates_bimodal(rng):
    image = np.r_[rng.normal(50, 8, 4000), rng.normal(200, 10, 2000)]
    t = otsu_threshold(image)
    assert 80 < t < 170
    labels = image > t
    assert labels[:4000].mean() < 0.001 and labels[4000:].mean() > 0.999
    # separated modes give a plateau of optimal splits: the threshold sits in the middle of the gap
    assert abs(t - (image[:4000].max() + image[4000:].min()) / 2) < 3.0
    # overlapping modes have one optimum: agree with scikit-image to within a histogram bin
    from skimage.filters import threshold_otsu

    overlapping = np.r_[rng.normal(50, 25, 4000), rng.normal(150, 30, 3000)]
    bin_width = np.ptp(overlapping) / 256
    assert abs(otsu_threshold(overlapping) - threshold_otsu(overlapping)) < 1.5 * bin_width
    # two levels: the threshold lies in the gap
    assert 10 < otsu_threshold(np.r_[np.full(30, 10), np.full(70, 90)].astype(np.uint8)) < 90
    assert otsu_threshold(np.full((4, 4), 7.0)) == 7.0
    with pytest.raises(ValueError, match="non-empty"):
        otsu_threshold(np.array([]))


@pytest.mark.parametrize("radius", [6, 10, 15])
def test_disc_area_mean_and_round(radius):
    disc = _ellipse(48, radius, radius)
    image = np.stack([disc * 120.0 + 3.0, np.full((48, 48), 9.0)])[None]
    df = image_features(image, channel_names=["dna", "other"])
    assert abs(df.loc[0, "area"] - np.pi * radius**2) / (np.pi * radius**2) < 0.05
    assert df.loc[0, "mean_intensity_dna"] == 123.0
    assert df.loc[0, "mean_intensity_other"] == 9.0
    assert df.loc[0, "total_intensity_other"] == 9.0 * 48 * 48
    assert df.loc[0, "eccentricity"] < 0.15


def test_elongated_ellipse_eccentric():
    image = (_ellipse(64, 24, 6, angle=0.6) * 1000).astype(np.uint16)[None, None]
    df = image_features(image)
    expected = np.sqrt(1 - (6 / 24) ** 2)
    assert df.loc[0, "eccentricity"] > 0.9
    assert abs(df.loc[0, "eccentricity"] - expected) < 0.01
    assert abs(df.loc[0, "area"] - np.pi * 24 * 6) / (np.pi * 24 * 6) < 0.05
    assert df.loc[0, "mean_intensity_ch0"] == 1000.0


def test_masks_keep_center_or_largest_and_fill_holes():
    big = _ellipse(64, 12, 12, centre=(14, 14))
    small = _ellipse(64, 6, 6, centre=(32, 32))
    ring_hole = _ellipse(64, 1.5, 1.5, centre=(30, 31))  # a hole next to, not on, the centre pixel
    assert ring_hole.sum() > 0 and not ring_hole[32, 32]
    image = ((big | small) & ~ring_hole).astype(np.float32) * 50
    images = image[None, None]
    centre = nucleus_masks(images)[0]
    np.testing.assert_array_equal(centre, small)  # the centre component, its hole filled
    largest = nucleus_masks(images, keep="largest")[0]
    np.testing.assert_array_equal(largest, big)
    # centre is background: fall back to the largest component
    off_centre = (big.astype(np.float32) * 50)[None, None]
    np.testing.assert_array_equal(nucleus_masks(off_centre)[0], big)
    # an absolute threshold above everything: empty masks, NaN means and eccentricity
    assert not nucleus_masks(images, threshold=100.0).any()
    df = image_features(images, masks=np.zeros((1, 64, 64), bool))
    assert df.loc[0, "area"] == 0 and np.isnan(df.loc[0, "mean_intensity_ch0"]) and np.isnan(df.loc[0, "eccentricity"])
    with pytest.raises(ValueError, match="keep"):
        nucleus_masks(images, keep="biggest")
    with pytest.raises(ValueError, match="channel=3"):
        nucleus_masks(images, channel=3)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        nucleus_masks(image)


def test_batched_stack_matches_one_by_one(rng):
    # many images labelled in one call must not leak components between images
    radii = rng.integers(3, 12, size=9)
    stack = np.stack([_ellipse(32, r, r * 0.7, centre=(16 + rng.integers(-3, 4), 16)) for r in radii])
    stack = stack * rng.uniform(50, 200, size=(9, 1, 1)) + rng.uniform(0, 10, size=(9, 32, 32))
    stack[4] = 0.0  # an empty image in the middle
    images = stack[:, None]
    together = nucleus_masks(images)
    apart = np.concatenate([nucleus_masks(images[i : i + 1]) for i in range(9)])
    np.testing.assert_array_equal(together, apart)
    assert not together[4].any()
    assert (together.sum(axis=(1, 2))[[0, 1, 2, 3, 5]] > 0).all()


def test_on_disk_inputs_in_chunks_equal_in_memory(tmp_path, rng):
    radii = rng.integers(4, 10, size=10)
    dna = np.stack([_ellipse(24, r, r) * 200 for r in radii]).astype(np.uint16)
    other = rng.integers(0, 50, size=(10, 24, 24)).astype(np.uint16)
    images = np.stack([dna, other], axis=1)
    expected = image_features(images, channel_names=["dna", "x"])
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["images"] = images
    with h5py.File(tmp_path / "x.h5", "r") as f:
        from_h5 = image_features(f["images"], channel_names=["dna", "x"], chunk_size=3)
    z = zarr.create_array(tmp_path / "x.zarr", shape=images.shape, chunks=(4, 2, 24, 24), dtype=images.dtype)
    z[:] = images
    from_zarr = image_features(z, channel_names=["dna", "x"], chunk_size=4)
    assert expected.shape == (10, 6)
    for df in (from_h5, from_zarr):
        np.testing.assert_allclose(df.to_numpy(), expected.to_numpy())
    np.testing.assert_allclose(expected["area"], [np.sum(_ellipse(24, r, r)) for r in radii])
    np.testing.assert_allclose(expected["total_intensity_x"], other.sum(axis=(1, 2)))
    scaled = image_features(images, value_range=(0, 65535))
    np.testing.assert_allclose(scaled["mean_intensity_ch0"], expected["mean_intensity_dna"] / 65535)
    np.testing.assert_allclose(scaled["area"], expected["area"])
    with pytest.raises(ValueError, match="channel_names"):
        image_features(images, channel_names=["a"])
    with pytest.raises(ValueError, match="masks"):
        image_features(images, masks=np.zeros((10, 5, 5), bool))
    with pytest.raises(ValueError, match="value_range"):
        image_features(images, value_range=(1, 1))


def test_one_channel_images_without_a_channel_axis():
    from scgde.img import image_features

    yy, xx = np.mgrid[:21, :21]
    disc = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 36).astype(np.float32)
    images = np.stack([disc, 0.5 * disc])
    np.testing.assert_allclose(
        image_features(images).to_numpy(), image_features(images[:, None]).to_numpy(), equal_nan=True
    )
