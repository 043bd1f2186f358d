import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import zarr
from anndata import AnnData
from matplotlib.figure import Figure

from scgde.pl._images import image_grid


def _cells(rng, sets, per_set, channels, size=12):
    obs = pd.DataFrame({"set": np.repeat(sets, per_set)}, index=[f"c{i}" for i in range(len(sets) * per_set)])
    adata = AnnData(obs=obs)
    adata.obsm["image"] = rng.random((len(obs), channels, size, size)).astype(np.float32)
    return adata


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images()]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_one_channel_groups(rng):
    adata = _cells(rng, ["a", "b", "c"], 5, 1)
    fig = image_grid(adata, n=4, show=False)  # groupby defaults to "set"
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 4
    assert len(_image_axes(fig)) == 12
    shown = _image_axes(fig)[0].get_images()[0].get_array()
    assert shown.ndim == 2 and shown.min() >= 0 and shown.max() <= 1
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["a", "b", "c"]


def test_reference_rows_above(rng):
    generated = _cells(rng, ["a", "b"], 6, 2)
    real = _cells(rng, ["b", "a", "z"], 3, 2)
    fig = image_grid(generated, n=5, ncols=3, reference=real, title="real vs generated", show=False)
    # 2 groups x (real, generated) x 2 rows x 3 columns
    assert len(fig.axes) == 2 * 2 * 2 * 3
    # real blocks have 3 cells of each group, generated 5 shown
    assert len(_image_axes(fig)) == 2 * (3 + 5)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["a\nreal", "a\ngenerated", "b\nreal", "b\ngenerated"]
    rgb = _image_axes(fig)[0].get_images()[0].get_array()
    assert rgb.shape == (12, 12, 3)
    assert fig._suptitle.get_text() == "real vs generated"


def test_reference_group_missing_and_no_groupby(rng):
    generated = _cells(rng, ["a", "q"], 2, 1)
    real = _cells(rng, ["a"], 2, 1)
    fig = image_grid(generated, n=2, reference=real, groups=["q"], show=False)
    assert len(fig.axes) == 2 * 2
    assert len(_image_axes(fig)) == 2  # no real cells of "q"
    plain = AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(3)]))
    plain.obsm["image"] = rng.random((3, 1, 8, 8))
    fig = image_grid(plain, n=4, show=False)
    assert len(fig.axes) == 4 and len(_image_axes(fig)) == 3


def test_channels_limits_on_disk_and_save(rng, tmp_path):
    adata = _cells(rng, ["a"], 4, 5)
    with pytest.raises(ValueError, match="channels="):
        image_grid(adata, show=False)
    z = zarr.create_array(tmp_path / "i.zarr", shape=(4, 5, 12, 12), chunks=(2, 5, 12, 12), dtype="uint16")
    z[:] = (np.arange(4 * 5 * 144).reshape(4, 5, 12, 12) % 1000).astype(np.uint16)
    adata.obsm["image"] = z
    out = tmp_path / "grid.png"
    fig = image_grid(adata, n=4, channels=[1, 3], vmin=0, vmax=[1000, 500], save=out, show=False)
    assert out.exists() and len(fig.axes) == 4
    rgb = _image_axes(fig)[0].get_images()[0].get_array()
    first = z[0]
    # channel 1 -> magenta, channel 3 -> green, each scaled by its own vmax
    np.testing.assert_allclose(rgb[..., 0], np.clip(first[1] / 1000, 0, 1))
    np.testing.assert_allclose(rgb[..., 1], np.clip(first[3] / 500, 0, 1))
    with pytest.raises(ValueError, match="vmax"):
        image_grid(adata, channels=[1, 3], vmax=[1, 2, 3], show=False)
    with pytest.raises(KeyError, match="crops"):
        image_grid(adata, image_key="crops", show=False)
    with pytest.raises(KeyError, match="nope"):
        image_grid(adata, groups=["nope"], channels=[0], show=False)


def test_into_existing_axes(rng):
    adata = _cells(rng, ["a"], 3, 1)
    fig, (left, right) = plt.subplots(1, 2)
    out = image_grid(adata, n=3, ax=right, show=False)
    assert out is fig
    assert left in fig.axes and right not in fig.axes
    assert len(fig.axes) == 1 + 3
