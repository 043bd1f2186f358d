"""ImageGDE end to end: invariance, streaming, on-disk sources, scaling, errors, save/load, generation."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from anndata import AnnData

from scgde.data import KernelSampler, SetIndex
from scgde.img import ConditionalUNet, ConvImageEncoder, ImageGDE, ImageReader
from scgde.img._data import to_pixels

LEVELS = {"dark": 40, "mid": 120, "bright": 200}


def _squares(n_per_set: int = 60, seed: int = 0, dtype=np.uint8) -> AnnData:
    """Three sets of 8x8 images: a centred square whose brightness differs between sets."""
    rng = np.random.default_rng(seed)
    names = np.repeat(list(LEVELS), n_per_set)
    images = np.zeros((len(names), 1, 8, 8), dtype=dtype)
    for i, name in enumerate(names):
        images[i, 0, 2:6, 2:6] = np.clip(LEVELS[name] + rng.normal(0, 12), 0, 255)
    obs = pd.DataFrame({"gene": names}, index=[f"cell{i}" for i in range(len(names))])
    return AnnData(obs=obs, obsm={"image": images, "spatial": rng.normal(size=(len(names), 2))})


@pytest.fixture(scope="module")
def trained():
    """A model trained briefly on the three brightness sets (shared by the tests that need learning)."""
    import scvi

    scvi.settings.seed = 0
    adata = _squares()
    ImageGDE.setup_anndata(adata, set_key="gene")
    small = {"n_channels": 16}
    model = ImageGDE(adata, n_latent=8, generator="flow", encoder_kwargs=small, generator_kwargs=small)
    model.train(max_epochs=15, batches_per_epoch=10, cells_per_set=16, train_size=1.0, enable_progress_bar=False)
    return model


def test_encoder_is_distributionally_invariant():
    torch.manual_seed(0)
    encoder = ConvImageEncoder((2, 16, 16), n_latent=5, n_channels=8).eval()
    x = torch.randn(1, 12, 2 * 16 * 16)
    z = encoder(x)
    permuted = encoder(x[:, torch.randperm(12)])
    duplicated = encoder(torch.cat([x, x], dim=1))
    torch.testing.assert_close(permuted, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(duplicated, z, atol=1e-5, rtol=1e-5)
    # another set changes the vector (the encoder is not constant)
    assert not torch.allclose(encoder(x + 1.0), z, atol=1e-3)


def test_unet_keeps_shape_and_depends_on_condition():
    torch.manual_seed(0)
    net = ConditionalUNet((3, 12, 20), n_cond=4, n_channels=8)
    with torch.no_grad():  # residual branches and output start at zero: randomise them so the output is informative
        for p in net.parameters():
            p.normal_(0, 0.2)
    x, t = torch.randn(2, 5, 3 * 12 * 20), torch.rand(2, 5)
    out = net(x, torch.zeros(2, 5, 4), t)
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, torch.ones(2, 5, 4), t))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_scaling_round_trip(dtype):
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        images = rng.integers(0, np.iinfo(dtype).max, size=(6, 2, 4, 5), dtype=dtype, endpoint=True)
        value_range = (0.0, float(np.iinfo(dtype).max))
    else:
        images = rng.random((6, 2, 4, 5)).astype(dtype)
        value_range = (0.0, 1.0)
    flat = ImageReader(images, value_range).slice(0, 6)
    assert flat.shape == (6, 40) and flat.min() >= -1.0 and flat.max() <= 1.0
    back = to_pixels(flat, (2, 4, 5), images.dtype, value_range)
    assert back.dtype == images.dtype
    np.testing.assert_allclose(back, images, atol=1e-6 if dtype == np.float32 else 0)


def test_registered_scaling_follows_dtype():
    adata = _squares()
    ImageGDE.setup_anndata(adata, set_key="gene")
    state = ImageGDE(adata, n_latent=4).adata_manager.get_state_registry("image")
    assert (
        list(state["value_range"]) == [0.0, 255.0] and state["dtype"] == "uint8" and list(state["shape"]) == [1, 8, 8]
    )
    narrow = _squares(dtype=np.uint16)  # values up to ~240 of 65535: a warning names value_range
    with pytest.warns(UserWarning, match="value_range"):
        ImageGDE.setup_anndata(narrow, set_key="gene")
    ImageGDE.setup_anndata(narrow, set_key="gene", value_range=(0, 255))
    assert list(ImageGDE(narrow, n_latent=4).adata_manager.get_state_registry("image")["value_range"]) == [0.0, 255.0]


def test_bad_images_are_clear_errors():
    adata = _squares()
    with pytest.raises(KeyError, match="not a key of adata.obsm"):
        ImageGDE.setup_anndata(adata, set_key="gene", image_key="crops")
    adata.obsm["flat"] = np.zeros((adata.n_obs, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        ImageGDE.setup_anndata(adata, set_key="gene", image_key="flat")
    adata.obsm["mask"] = np.zeros((adata.n_obs, 1, 8, 8), dtype=bool)
    with pytest.raises(TypeError, match="integer or float"):
        ImageGDE.setup_anndata(adata, set_key="gene", image_key="mask")
    with pytest.raises(ValueError, match="value_range"):
        ImageGDE.setup_anndata(adata, set_key="gene", value_range=(1.0, 1.0))
    one = _squares()
    one.obs["gene"] = "a"
    with pytest.raises(ValueError, match="at least 2 sets"):
        ImageGDE.setup_anndata(one, set_key="gene")


def test_three_dimensional_images_are_one_channel():
    adata = _squares()
    adata.obsm["gray"] = adata.obsm["image"][:, 0]
    ImageGDE.setup_anndata(adata, set_key="gene", image_key="gray")
    model = ImageGDE(adata, n_latent=4)
    assert model.image_shape == (1, 8, 8)
    np.testing.assert_array_equal(
        model._reader(adata).slice(0, 3), ImageReader(adata.obsm["image"], (0, 255)).slice(0, 3)
    )


def test_streaming_equals_whole_and_disk_sources(tmp_path):
    adata = _squares(n_per_set=25)
    ImageGDE.setup_anndata(adata, set_key="gene")
    model = ImageGDE(adata, n_latent=6, encoder_kwargs={"n_channels": 8})
    whole = model.get_set_representation(chunk_size=10_000, progress_bar=False)
    chunked = model.get_set_representation(chunk_size=7, progress_bar=False)
    np.testing.assert_allclose(chunked.to_numpy(), whole.to_numpy(), atol=1e-5)
    # the same as encoding each set in one forward pass
    x = torch.from_numpy(ImageReader(adata.obsm["image"], (0, 255)).rows(np.flatnonzero(adata.obs["gene"] == "mid")))
    with torch.no_grad():
        direct = model.module.encoder(x[None])[0].numpy()
    np.testing.assert_allclose(whole.loc["mid"].to_numpy(), direct, atol=1e-5)
    # images on disk embed identically: h5py and zarr, read in chunks, shuffled rows included
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["image"] = adata.obsm["image"]
    store = zarr.create_array(
        tmp_path / "images.zarr", shape=adata.obsm["image"].shape, dtype="uint8", chunks=(8, 1, 8, 8)
    )
    store[:] = adata.obsm["image"]
    with h5py.File(tmp_path / "images.h5", "r") as f:
        for source in (f["image"], zarr.open_array(tmp_path / "images.zarr", mode="r")):
            query = AnnData(obs=adata.obs[["gene"]].copy(), obsm={"image": source})
            emb = model.get_set_representation(query, set_key="gene", chunk_size=9, progress_bar=False)
            np.testing.assert_allclose(emb.loc[whole.index].to_numpy(), whole.to_numpy(), atol=1e-5)
            reader = model._reader(query)
            idx = np.array([5, 2, 2, 70, 0])
            np.testing.assert_array_equal(reader.rows(idx), model._reader(adata).rows(idx))


def test_user_data_are_not_modified(trained):
    adata = trained.adata
    reference = _squares()
    np.testing.assert_array_equal(adata.obsm["image"], reference.obsm["image"])
    assert set(adata.obs.columns) - set(reference.obs.columns) == {"_scgde_set"}
    assert list(adata.obs_names) == list(reference.obs_names)


def test_embeddings_track_brightness(trained):
    emb = trained.get_set_representation(progress_bar=False)
    d = lambda a, b: np.linalg.norm(emb.loc[a] - emb.loc[b])
    assert d("dark", "bright") > d("dark", "mid") and d("dark", "bright") > d("mid", "bright")
    # an unseen set of a new brightness embeds between its neighbours: any set, any size
    unseen = _squares(n_per_set=30, seed=5)
    unseen = unseen[unseen.obs["gene"] == "mid"].copy()
    unseen.obsm["image"] = (unseen.obsm["image"].astype(int) * 160 // 120).astype(np.uint8)  # brightness ~160
    z = trained.get_set_representation(unseen, set_key="gene", progress_bar=False).to_numpy()[0]
    assert np.linalg.norm(z - emb.loc["dark"]) > np.linalg.norm(z - emb.loc["mid"])


def test_generated_images_follow_their_set(trained):
    gen = trained.generate(["dark", "bright"], n_samples=40)
    images = gen.obsm["image"]
    assert images.shape == (80, 1, 8, 8) and images.dtype == np.uint8
    assert list(gen.obs["set"].cat.categories) == ["bright", "dark"]
    centre = {s: images[gen.obs["set"].to_numpy() == s][:, 0, 2:6, 2:6].mean() for s in ("dark", "bright")}
    # the training mean is 120: a generator that ignored its set would give ~120 for both
    assert centre["dark"] < 80 < 140 < centre["bright"]
    # the border stays dark (the square is in the centre)
    assert images[:, 0, 0, :].mean() < 30
    # seeded: the same call gives the same images; fewer integration steps still works
    np.testing.assert_array_equal(trained.generate(["dark", "bright"], n_samples=40).obsm["image"], images)
    assert trained.generate("dark", n_samples=3, n_sample_steps=4).obsm["image"].shape == (3, 1, 8, 8)


def test_interpolation_moves_brightness(trained):
    path = trained.interpolate("dark", "bright", n_steps=3, n_samples=20)
    assert path.obs["t"].tolist() == sorted(path.obs["t"].tolist()) and path.n_obs == 60
    centre = [path.obsm["image"][path.obs["t"].to_numpy() == t][:, 0, 2:6, 2:6].mean() for t in (0.0, 0.5, 1.0)]
    assert centre[0] < centre[1] < centre[2]


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "model", save_anndata=True)
    loaded = ImageGDE.load(tmp_path / "model")
    np.testing.assert_allclose(
        loaded.get_set_representation(progress_bar=False).to_numpy(),
        trained.get_set_representation(progress_bar=False).to_numpy(),
        atol=1e-6,
    )
    np.testing.assert_array_equal(
        loaded.generate("mid", n_samples=4).obsm["image"], trained.generate("mid", n_samples=4).obsm["image"]
    )


def test_query_must_match_image_shape(trained):
    query = AnnData(obs=pd.DataFrame({"gene": ["a", "b"]}), obsm={"image": np.zeros((2, 1, 6, 6), dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"trained on \(1, 8, 8\)"):
        trained.get_set_representation(query, set_key="gene", progress_bar=False)


def test_ddpm_generator_and_its_options():
    adata = _squares(n_per_set=10)
    ImageGDE.setup_anndata(adata, set_key="gene")
    model = ImageGDE(adata, n_latent=4, generator="ddpm", generator_kwargs={"n_channels": 8, "n_steps": 20})
    model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    gen = model.generate(["dark", "mid"], n_samples=3, guidance=1.0, batch_size=2)
    assert gen.obsm["image"].shape == (6, 1, 8, 8)
    assert gen.obs["set"].tolist() == ["dark"] * 3 + ["mid"] * 3
    strided = model.generate("dark", n_samples=4, n_sample_steps=5)
    assert strided.obsm["image"].shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="n_steps must be in 1..20"):
        model.generate("dark", n_samples=2, n_sample_steps=50)
    with pytest.raises(ValueError, match="generator"):
        ImageGDE(adata, generator="gan")


def test_spatial_neighbourhoods_with_the_exponential_kernel():
    rng = np.random.default_rng(0)
    coords = rng.uniform(size=(200, 2))
    index = SetIndex(np.zeros(200, dtype=np.int64), pd.Index(["all"]))
    gaussian = KernelSampler(index, coords, 50, bandwidth=0.05, n_neighbors=200)
    exponential = KernelSampler(index, coords, 50, bandwidth=0.05, n_neighbors=200, kernel="exponential")
    spread = {}
    for name, sampler in (("gaussian", gaussian), ("exponential", exponential)):
        draws = [coords[sampler.sample(1, np.random.default_rng(i)).cells[0]] for i in range(100)]
        spread[name] = np.mean([np.linalg.norm(d - d.mean(0), axis=1).mean() for d in draws])
    assert spread["exponential"] > 1.2 * spread["gaussian"]  # heavier tails reach farther
    with pytest.raises(ValueError, match="kernel"):
        KernelSampler(index, coords, 5, kernel="box")
    adata = _squares(n_per_set=10)
    ImageGDE.setup_anndata(adata, set_key="gene")
    model = ImageGDE(adata, n_latent=4, generator="flow")
    model.train(
        max_epochs=1,
        batches_per_epoch=2,
        kernel={"obsm": "spatial", "kernel": "exponential", "within_set": False, "n_neighbors": 10},
        enable_progress_bar=False,
    )
    assert model.is_trained


def test_channel_last_and_query_dtype_are_refused():
    adata = _squares()
    adata.obsm["rgb"] = np.zeros((adata.n_obs, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="channel-last"):
        ImageGDE.setup_anndata(adata, set_key="gene", image_key="rgb")
    ImageGDE.setup_anndata(adata, set_key="gene")
    model = ImageGDE(adata, n_latent=4)
    query = adata.copy()
    query.obsm["image"] = query.obsm["image"].astype(np.float32) / 255  # floats would be scaled by uint8's range
    with pytest.raises(TypeError, match="trained on uint8 images"):
        model.get_set_representation(query, progress_bar=False)


def test_pixels_never_wrap_around():
    flat = np.array([[-1.0, 1.0]], dtype=np.float32)
    out = to_pixels(flat, (1, 1, 2), np.uint8, (-10.0, 300.0))  # a range wider than uint8's
    np.testing.assert_array_equal(out.ravel(), [0, 255])


@pytest.mark.parametrize("shape", [(1, 7, 9), (3, 50, 30), (1, 65, 65)])
def test_odd_image_sizes_keep_the_maps_small(shape):
    encoder, unet = ConvImageEncoder(shape, 4, n_channels=8), ConditionalUNet(shape, 4, n_channels=8)
    assert max(encoder.map_shape[1:]) <= 8
    x = torch.randn(2, 3, int(np.prod(shape)))
    assert encoder(x).shape == (2, 4)
    assert unet(x, torch.zeros(2, 3, 4), torch.rand(2, 3)).shape == x.shape
