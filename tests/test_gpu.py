"""Device placement and mixed precision on a GPU: every code path runs on CUDA and agrees with the CPU.

Skipped without a CUDA device (CI has none); run on a GPU machine with ``pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import scgde

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


@pytest.fixture(scope="module")
def gpu_model():
    adata = scgde.datasets.synthetic_mvn(n_sets=12, set_size=60, dim=5, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=4, n_hidden=32)
    model.train(max_epochs=2, batches_per_epoch=5, accelerator="gpu", devices=1, enable_progress_bar=False)
    return model


def test_training_leaves_the_model_on_the_gpu(gpu_model):
    assert next(gpu_model.module.parameters()).is_cuda


def test_streaming_embedding_on_gpu_equals_cpu(gpu_model):
    adata = gpu_model.adata
    on_gpu = gpu_model.get_set_representation(chunk_size=100, progress_bar=False)
    csr = adata.copy()
    csr.X = sp.csr_matrix(csr.X)
    on_gpu_sparse = gpu_model.get_set_representation(csr, chunk_size=100, progress_bar=False)
    gpu_model.to_device("cpu")
    try:
        on_cpu = gpu_model.get_set_representation(chunk_size=100, progress_bar=False)
    finally:
        gpu_model.to_device("cuda:0")
    np.testing.assert_allclose(on_gpu.to_numpy(), on_cpu.to_numpy(), atol=1e-4)
    np.testing.assert_allclose(on_gpu_sparse.to_numpy(), on_cpu.to_numpy(), atol=1e-4)


def test_generate_and_interpolate_on_gpu(gpu_model):
    sets = list(gpu_model.get_set_representation(progress_bar=False).index[:2])
    cells = gpu_model.generate(sets, n_cells=50)
    assert cells.shape == (100, gpu_model.adata.n_vars) and np.isfinite(cells.X).all()
    path = gpu_model.interpolate(sets[0], sets[1], n_steps=3, n_cells=20)
    assert path.n_obs == 60 and np.isfinite(path.X).all()


@pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()), reason="needs a GPU with bfloat16"
)
def test_bf16_mixed_training_on_gpu():
    adata = scgde.datasets.synthetic_mvn(n_sets=12, set_size=60, dim=5, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=4, n_hidden=32)
    model.train(
        max_epochs=2,
        batches_per_epoch=5,
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        enable_progress_bar=False,
    )
    loss = model.history["train_loss"].to_numpy()
    assert np.isfinite(loss).all()
    assert np.isfinite(model.get_set_representation(progress_bar=False).to_numpy()).all()
