"""GDE engine behaviour added with the registry-driven data path: train mode, gene order, count priors,
support of generated values, bootstrap standard errors, default training length."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
from lightning.pytorch.callbacks import Callback

import scgde
from scgde.model import GDE
from scgde.model._train import default_steps

FAST = {"enable_progress_bar": False}


def small_sets(n_sets=12, size=30, dim=4, seed=0):
    return scgde.datasets.synthetic_mvn(n_sets=n_sets, set_size=size, dim=dim, seed=seed)


class _ModeRecorder(Callback):
    def __init__(self):
        self.modes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.modes.append(pl_module.module.training)


def test_second_train_runs_in_train_mode():
    adata = small_sets()
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16, generator="ddpm")
    model.train(max_epochs=1, batches_per_epoch=2, sets_per_batch=4, cells_per_set=8, **FAST)
    model.get_set_representation(progress_bar=False)  # leaves the module in eval mode
    assert not model.module.training
    recorder = _ModeRecorder()
    model.train(max_epochs=2, batches_per_epoch=3, sets_per_batch=4, cells_per_set=8, callbacks=[recorder], **FAST)
    assert len(recorder.modes) == 6 and all(recorder.modes)
    assert not model.module.training  # and back in eval mode afterwards


def test_setup_registers_sets_through_the_registry():
    adata = small_sets(n_sets=5, size=10)
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=3, n_hidden=8)
    codes = np.asarray(model.adata_manager.get_from_registry("set")).ravel()
    np.testing.assert_array_equal(codes, adata.obs["set"].cat.codes.to_numpy())
    assert model.summary_stats["n_sets"] == 5
    assert isinstance(model._data_splitter_cls(model.adata_manager), scgde.data.SetDataSplitter)


def test_seed_comes_from_scvi_settings():
    def split(seed):
        scvi.settings.seed = seed
        np.random.seed(123)  # the global numpy state must not matter
        adata = small_sets(n_sets=20, size=10)
        GDE.setup_anndata(adata, set_key="set")
        model = GDE(adata, n_latent=3, n_hidden=8)
        model.train(max_epochs=1, batches_per_epoch=1, sets_per_batch=4, cells_per_set=4, **FAST)
        return sorted(model.validation_sets_)

    assert split(3) == split(3)
    assert split(3) != split(4) or split(3) != split(5)


@pytest.fixture(scope="module")
def model_and_data():
    scvi.settings.seed = 0
    adata = small_sets(n_sets=16, size=40, dim=5)
    adata.var_names = [f"g{i}" for i in range(adata.n_vars)]
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=2, batches_per_epoch=4, sets_per_batch=8, cells_per_set=16, **FAST)
    return model, adata


def test_reordered_genes_are_matched_by_name(model_and_data, tmp_path):
    model, adata = model_and_data
    ref = model.get_set_representation(progress_bar=False)
    shuffled = adata[:, adata.var_names[::-1]].copy()
    np.testing.assert_allclose(model.get_set_representation(shuffled, progress_bar=False), ref, atol=1e-5)
    model.save(tmp_path / "m", overwrite=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*var_names")  # no scvi-tools var_names warning left
        warnings.filterwarnings("error", module="scgde")  # nor any of scgde's own (third-party ones are not errors)
        warnings.filterwarnings("error", module=__name__)
        loaded = GDE.load(tmp_path / "m", adata=shuffled.copy())
    assert list(loaded.var_names) == list(adata.var_names)
    np.testing.assert_allclose(loaded.get_set_representation(progress_bar=False), ref, atol=1e-5)
    gen = loaded.generate(["set_00"], n_cells=5)
    assert list(gen.var_names) == list(adata.var_names)


def test_renamed_genes_are_refused(model_and_data, tmp_path):
    model, adata = model_and_data
    renamed = adata.copy()
    renamed.var_names = [f"other{i}" for i in range(adata.n_vars)]
    with pytest.raises(ValueError, match="genes differ"):
        model.get_set_representation(renamed)
    model.save(tmp_path / "m2", overwrite=True)
    with pytest.raises(ValueError, match=r"model\.var_names"):
        GDE.load(tmp_path / "m2", adata=renamed)


def test_load_is_quiet(model_and_data, tmp_path, caplog):
    model, adata = model_and_data
    model.save(tmp_path / "m3", overwrite=True)
    scvi.settings.verbosity = 20  # INFO
    with caplog.at_level(20):
        GDE.load(tmp_path / "m3", adata=adata.copy())
    assert "already downloaded" not in caplog.text


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved model"):
        GDE.load(tmp_path / "nothing")


def _counts(seed=0, n_sets=8, size=60, n_genes=30):
    rng = np.random.default_rng(seed)
    depth = rng.lognormal(np.log(2500), 0.5, size=n_sets * size)
    p = rng.dirichlet(np.ones(n_genes), size=n_sets).repeat(size, axis=0)
    x = rng.poisson(depth[:, None] * p).astype(np.float32)
    obs = pd.DataFrame({"set": np.repeat([f"s{i}" for i in range(n_sets)], size)})
    return ad.AnnData(sp.csr_matrix(x), obs=obs)


def test_nb_generation_has_plausible_depths_after_one_epoch():
    scvi.settings.seed = 0
    adata = _counts()
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16, generator="cvae", likelihood="nb")
    model.train(max_epochs=1, batches_per_epoch=2, sets_per_batch=4, cells_per_set=16, **FAST)
    with warnings.catch_warnings():  # scgde's own warnings are errors (third-party ones, e.g. pandas', are not)
        warnings.filterwarnings("error", module="scgde")  # raised in scgde's code
        warnings.filterwarnings("error", module=__name__)  # or pointing at this call
        gen = model.generate(["s0", "s1"], n_cells=200)
    depth = np.asarray(gen.X.sum(1)).ravel()
    real = np.asarray(adata.X.sum(1)).ravel()
    assert np.median(depth) == pytest.approx(np.median(real), rel=0.5)
    assert depth.max() < 20 * real.max()


def test_nb_query_with_log_normalised_data_is_refused():
    scvi.settings.seed = 0
    adata = _counts()
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16, generator="cvae", likelihood="nb")
    query = adata.copy()
    query.X = sp.csr_matrix(np.log1p(query.X.toarray()))
    with pytest.raises(ValueError, match="raw counts|counts"):
        model.get_set_representation(query)


def test_generated_log_expression_stays_on_the_data_support():
    """Log-normalised data are 0 or >= a gene's smallest positive value: so are generated cells."""
    scvi.settings.seed = 0
    adata = _counts(n_genes=20)
    adata.X = sp.csr_matrix(np.log1p(1e4 * adata.X.toarray() / adata.X.toarray().sum(1, keepdims=True)))
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=1, batches_per_epoch=2, sets_per_batch=4, cells_per_set=16, **FAST)
    gen = np.asarray(model.generate(["s0"], n_cells=300).X)
    assert (gen >= 0).all()
    x = adata.X.toarray()
    floor = np.where(x > 0, x, np.inf).min(0) / 2
    assert not ((gen > 0) & (gen < floor)).any()
    # generated zero fractions follow the data's at the generated means (curves fitted after training)
    sparse = _counts(n_genes=200, seed=1)
    thinned = np.random.default_rng(1).binomial(sparse.X.toarray().astype(int), 0.02)  # mostly zeros
    sparse.X = sp.csr_matrix(np.log1p(thinned).astype(np.float32))
    GDE.setup_anndata(sparse, set_key="set")
    model = GDE(sparse, n_latent=4, n_hidden=16)
    model.train(max_epochs=5, batches_per_epoch=10, sets_per_batch=4, cells_per_set=16, **FAST)
    gen = np.asarray(model.generate([f"s{i}" for i in range(8)], n_cells=100).X)
    real_zeros, gen_zeros = (sparse.X.toarray() == 0).mean(0), (gen == 0).mean(0)
    assert real_zeros.mean() > 0.3
    assert np.median(np.abs(gen_zeros - real_zeros)) < 0.04  # 0.032 here; 0.095 with the support floor alone
    few = np.asarray(model.generate(["s0"], n_cells=3).X)  # small requests are projected from a larger draw
    assert few.shape == (3, 200) and (few >= 0).all()
    x = sparse.X.toarray()
    ratio = gen.var(0)[x.var(0) > 0] / x.var(0)[x.var(0) > 0]
    assert 0.67 < np.median(ratio) < 1.5  # expressed values keep the data's spread
    # real-valued data are left alone
    real = small_sets()
    GDE.setup_anndata(real, set_key="set")
    model = GDE(real, n_latent=4, n_hidden=16)
    assert (np.asarray(model.generate(["set_00"], n_cells=200).X) < 0).any()


def test_bootstrap_standard_error_is_calibrated_and_shrinks():
    """Predicted SEs match the spread of embeddings over repeated draws of one distribution."""
    scvi.settings.seed = 0
    rng = np.random.default_rng(0)
    train = small_sets(n_sets=20, size=50, dim=3)
    GDE.setup_anndata(train, set_key="set")
    model = GDE(train, n_latent=4, n_hidden=16)
    model.train(max_epochs=2, batches_per_epoch=5, sets_per_batch=8, cells_per_set=16, **FAST)
    cov = np.diag([1.0, 0.5, 2.0])
    spread, predicted = {}, {}
    for n in (40, 160):
        n_rep = 80
        x = rng.multivariate_normal(np.zeros(3), cov, size=n * n_rep).astype(np.float32)
        query = ad.AnnData(x, obs=pd.DataFrame({"set": np.repeat([f"r{i}" for i in range(n_rep)], n)}))
        query.var_names = train.var_names
        emb, se = model.get_set_representation(query, return_std=True, n_bootstrap=30, progress_bar=False)
        spread[n] = emb.std(ddof=1).to_numpy()  # the true sampling spread of the embedding
        predicted[n] = se.mean().to_numpy()
        ratio = np.median(predicted[n] / spread[n])
        assert 0.8 < ratio < 1.2, (n, ratio)
    shrink = np.median(predicted[160] / predicted[40])
    assert 0.4 < shrink < 0.6  # 1/sqrt(4) = 0.5
    # one-cell sets have no spread to resample
    one = ad.AnnData(x[:2], obs=pd.DataFrame({"set": ["a", "b"]}), var=pd.DataFrame(index=train.var_names))
    assert np.isnan(model.get_set_representation(one, return_std=True, progress_bar=False)[1].to_numpy()).all()


def test_set_distance_standard_errors(model_and_data):
    model, _ = model_and_data
    dist, se = model.set_distances(
        sets=["set_00", "set_01", "set_02"], return_std=True, n_bootstrap=5, progress_bar=False
    )
    assert dist.shape == se.shape == (3, 3)
    assert (np.diag(se.to_numpy()) == 0).all() and (se.to_numpy()[np.triu_indices(3, 1)] > 0).all()


def test_default_training_length_follows_the_data():
    assert default_steps(1_000, 32, 100) == 2500  # small data: the floor
    assert default_steps(900_000, 32, 100) == 8000  # large data: the cap
    assert default_steps(200_000, 32, 100) == 40 * 63  # in between: 40 passes over the cells
    assert default_steps(1_000, 32, 100, few_sets=True) == 1000  # a few groups as kernel neighbourhoods
    assert default_steps(200_000, 32, 100, few_sets=True) == 40 * 63
