import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from anndata import AnnData
from PIL import Image

from scgde.img._io import read_crops, read_h5ad_images, write_images_zarr


def _write_tiffs(folder, images, prefix="cell"):
    names = []
    for i, image in enumerate(images):
        name = f"{prefix}{i}.tif"
        tifffile.imwrite(folder / name, image)
        names.append(name)
    return names


@pytest.fixture
def crops(tmp_path, rng):
    images = rng.integers(0, 65535, size=(7, 2, 12, 10), dtype=np.uint16)
    names = _write_tiffs(tmp_path, images)
    manifest = pd.DataFrame({"path": names, "gene": list("AABBBCC"), "plate": np.arange(7)})
    return tmp_path, images, manifest


def test_tiff_round_trip_exact(crops):
    folder, images, manifest = crops
    adata = read_crops(manifest, root=folder, progress_bar=False)
    assert adata.shape == (7, 0)
    stored = adata.obsm["image"]
    assert isinstance(stored, np.ndarray)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, images)
    assert list(adata.obs.columns) == ["gene", "plate"]
    assert adata.obs_names.tolist() == [str(i) for i in range(7)]
    assert adata.obs["gene"].tolist() == list("AABBBCC")


def test_manifest_csv_relative_to_its_folder(crops, tmp_path, monkeypatch):
    folder, images, manifest = crops
    manifest.to_csv(folder / "manifest.csv", index=False)
    manifest.to_csv(folder / "manifest.tsv", index=False, sep="\t")
    monkeypatch.chdir(tmp_path.parent)  # paths resolve against the manifest's folder, not the cwd
    for name in ("manifest.csv", "manifest.tsv"):
        adata = read_crops(folder / name, image_key="cells", chunk_size=3, progress_bar=False)
        np.testing.assert_array_equal(adata.obsm["cells"], images)
        assert adata.obs["plate"].tolist() == list(range(7))


def test_dataframe_paths_relative_to_cwd(crops, monkeypatch):
    folder, images, manifest = crops
    monkeypatch.chdir(folder)
    adata = read_crops(manifest, chunk_size=1, progress_bar=True)  # 7 chunks: with a progress bar
    np.testing.assert_array_equal(adata.obsm["image"], images)


def test_2d_and_channel_last_png(tmp_path, rng):
    gray = rng.integers(0, 255, size=(3, 9, 11), dtype=np.uint8)
    rgb = rng.integers(0, 255, size=(3, 9, 11, 3), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(gray[i]).save(tmp_path / f"g{i}.png")
        Image.fromarray(rgb[i]).save(tmp_path / f"c{i}.png")
    g = read_crops(pd.DataFrame({"path": [f"g{i}.png" for i in range(3)]}), root=tmp_path, progress_bar=False)
    assert g.obsm["image"].shape == (3, 1, 9, 11)
    np.testing.assert_array_equal(g.obsm["image"][:, 0], gray)
    c = read_crops(pd.DataFrame({"path": [f"c{i}.png" for i in range(3)]}), root=tmp_path, progress_bar=False)
    assert c.obsm["image"].shape == (3, 3, 9, 11)
    np.testing.assert_array_equal(c.obsm["image"], np.moveaxis(rgb, -1, 1))


def test_uint16_png_keeps_dtype(tmp_path, rng):
    image = rng.integers(0, 65535, size=(8, 8), dtype=np.uint16)
    Image.fromarray(image).save(tmp_path / "a.png")
    adata = read_crops(pd.DataFrame({"path": ["a.png"]}), root=tmp_path, progress_bar=False)
    assert adata.obsm["image"].dtype == np.uint16
    np.testing.assert_array_equal(adata.obsm["image"][0, 0], image)


def test_channel_axis_explicit_and_inferred(tmp_path, rng):
    # (H, W, C) with few channels last: inferred channel-last
    hwc = rng.random((2, 16, 16, 3)).astype(np.float32)
    names = _write_tiffs(tmp_path, hwc, prefix="hwc")
    inferred = read_crops(pd.DataFrame({"path": names}), root=tmp_path, progress_bar=False)
    assert inferred.obsm["image"].dtype == np.float32
    np.testing.assert_array_equal(inferred.obsm["image"], np.moveaxis(hwc, -1, 1))
    # the same files read as channel-first: 16 "channels" of 16 x 3
    first = read_crops(pd.DataFrame({"path": names}), root=tmp_path, channel_axis=0, progress_bar=False)
    assert first.obsm["image"].shape == (2, 16, 16, 3)
    # (C, H, W) with C > 4 stays channel-first
    chw = rng.integers(0, 9, size=(2, 5, 6, 7), dtype=np.uint8)
    names = _write_tiffs(tmp_path, chw, prefix="chw")
    adata = read_crops(pd.DataFrame({"path": names}), root=tmp_path, progress_bar=False)
    np.testing.assert_array_equal(adata.obsm["image"], chw)
    last = read_crops(pd.DataFrame({"path": names}), root=tmp_path, channel_axis=-1, progress_bar=False)
    np.testing.assert_array_equal(last.obsm["image"], np.moveaxis(chw, -1, 1))
    with pytest.raises(ValueError, match="channel_axis"):
        read_crops(pd.DataFrame({"path": names}), root=tmp_path, channel_axis=1, progress_bar=False)


def test_mixed_shapes_and_dtypes_error(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((2, 8, 9), np.uint16))
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"b\.tif.*\(2, 8, 9\).*\(2, 8, 8\)"):
        read_crops(pd.DataFrame({"path": ["a.tif", "b.tif"]}), root=tmp_path, progress_bar=False)
    with pytest.raises(ValueError, match=r"c\.tif.*uint8.*uint16"):
        read_crops(pd.DataFrame({"path": ["a.tif", "c.tif"]}), root=tmp_path, progress_bar=False)


def test_missing_file_and_bad_arguments(crops):
    folder, _, manifest = crops
    broken = manifest.copy()
    broken.loc[3, "path"] = "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        read_crops(broken, root=folder, progress_bar=False)
    with pytest.raises(KeyError, match="file"):
        read_crops(manifest, root=folder, path_key="file")
    (folder / "x.bmp").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported extension"):
        read_crops(pd.DataFrame({"path": ["x.bmp"]}), root=folder)


def test_zarr_store_chunkwise(crops, monkeypatch):
    folder, images, manifest = crops
    reads = []
    import scgde.img._io as io

    original = io._CropStack.__getitem__

    def spy(self, key):
        out = original(self, key)
        reads.append(len(out))
        return out

    monkeypatch.setattr(io._CropStack, "__getitem__", spy)
    store = folder / "crops.zarr"
    adata = read_crops(manifest, root=folder, store=store, chunk_size=3, progress_bar=True)
    stored = adata.obsm["image"]
    assert isinstance(stored, zarr.Array)
    assert stored.read_only
    assert stored.chunks == (3, 2, 12, 10)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored[:], images)
    # never more than chunk_size crops in memory at once
    assert reads == [3, 3, 1]
    reopened = zarr.open_array(store, mode="r")
    np.testing.assert_array_equal(reopened[:], images)
    assert adata[[1, 5]].obsm["image"].shape == (2, 2, 12, 10)
    with pytest.raises(FileExistsError, match="overwrite"):
        read_crops(manifest, root=folder, store=store)
    again = read_crops(manifest, root=folder, store=store, overwrite=True, progress_bar=False)
    np.testing.assert_array_equal(again.obsm["image"][:], images)


def test_failed_zarr_write_leaves_no_store(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 9), np.uint8))
    store = tmp_path / "bad.zarr"
    with pytest.raises(ValueError, match="same shape"):
        read_crops(pd.DataFrame({"path": ["a.tif", "b.tif"]}), root=tmp_path, store=store, chunk_size=1)
    assert not store.exists()


def test_write_images_zarr_from_h5py(tmp_path, rng):
    images = rng.random((11, 1, 5, 4)).astype(np.float32)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["images"] = images
    with h5py.File(tmp_path / "x.h5", "r") as f:
        z = write_images_zarr(f["images"], tmp_path / "x.zarr", chunk_size=4, batch_size=9)
    assert z.chunks == (4, 1, 5, 4)
    np.testing.assert_array_equal(z[:], images)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        write_images_zarr(images[:, 0], tmp_path / "y.zarr")


def test_read_h5ad_images_lazy(tmp_path, rng):
    images = rng.integers(0, 255, size=(6, 2, 8, 8), dtype=np.uint8)
    adata = AnnData(obs=pd.DataFrame({"gene": list("aabbcc")}, index=[f"c{i}" for i in range(6)]))
    adata.obsm["image"] = images
    adata.obsm["X_pca"] = rng.random((6, 3))
    adata.uns["info"] = {"channels": ["dna", "actin"]}
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)

    lazy = read_h5ad_images(path)
    stored = lazy.obsm["image"]
    assert isinstance(stored, h5py.Dataset)
    assert stored.file.mode == "r"
    np.testing.assert_array_equal(stored[:], images)
    assert isinstance(lazy.obsm["X_pca"], np.ndarray)
    np.testing.assert_allclose(lazy.obsm["X_pca"], adata.obsm["X_pca"])
    assert lazy.obs_names.tolist() == adata.obs_names.tolist()
    assert list(lazy.uns["info"]["channels"]) == ["dna", "actin"]
    np.testing.assert_array_equal(lazy[[0, 4]].obsm["image"], images[[0, 4]])
    stored.file.close()

    with pytest.raises(KeyError, match=r"X_pca"):
        read_h5ad_images(path, image_key="crops")
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        read_h5ad_images(path, image_key="X_pca")
