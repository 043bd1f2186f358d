"""Sparse elements: CSR chunks reach the encoder's first layer without densifying, with the same result."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import scgde
from scgde.nn import ResNetEncoder, SparseRows
from scgde.nn._layers import log_normalise
from scgde.nn._sparse import csr_tensor, sparse_log_normalise


def _csr(n=50, d=30, density=0.1, seed=0, counts=False):
    rng = np.random.default_rng(seed)
    x = sp.random(n, d, density=density, format="csr", dtype=np.float32, random_state=rng)
    if counts:
        x.data = np.ceil(10 * x.data).astype(np.float32)
    return x


def test_sparse_linear_is_the_dense_affine_linear():
    x = _csr()
    shift, scale = torch.randn(30), torch.rand(30) + 0.5
    weight, bias = torch.randn(8, 30), torch.randn(8)
    dense = (torch.from_numpy(x.toarray()) - shift) / scale
    rows = SparseRows(csr_tensor(x), shift, scale)
    torch.testing.assert_close(rows.linear(weight, bias), dense @ weight.T + bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rows.dense(), dense)


def test_sparse_log_normalise_matches_dense():
    x = _csr(counts=True)
    x[3] = 0  # an empty cell: no entries, stays empty
    x.eliminate_zeros()
    out = sparse_log_normalise(csr_tensor(x)).to_dense()
    torch.testing.assert_close(out, log_normalise(torch.from_numpy(x.toarray())))


@pytest.mark.parametrize("quadratic", [False, True])
def test_resnet_encodes_sparse_like_dense(quadratic):
    x = _csr(n=60)
    enc = ResNetEncoder(30, 5, n_hidden=16, quadratic=quadratic).eval()
    seg = torch.arange(3).repeat_interleave(20)
    with torch.no_grad():
        dense = enc.encode_segments(torch.from_numpy(x.toarray()), seg, 3)
        sparse = enc.encode_segments(SparseRows(csr_tensor(x)), seg, 3)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("likelihood", "generator", "encoder"),
    [("gaussian", "flow", "resnet"), ("nb", "cvae", "resnet"), ("gaussian", "flow", "attention")],
)
def test_embedding_of_sparse_data_equals_dense(likelihood, generator, encoder, tmp_path, monkeypatch):
    counts = scgde.datasets.synthetic_poisson(n_sets=6, set_size=40, dim=12, seed=1)
    dense = ad.AnnData(np.asarray(counts.X, dtype=np.float32), obs=counts.obs.copy())
    scgde.model.GDE.setup_anndata(dense, set_key="set")
    model = scgde.model.GDE(dense, n_latent=4, n_hidden=16, likelihood=likelihood, generator=generator, encoder=encoder)
    model.train(max_epochs=1, batches_per_epoch=2, sets_per_batch=4, cells_per_set=16, enable_progress_bar=False)
    want = model.get_set_representation(progress_bar=False)
    csr = dense.copy()
    csr.X = sp.csr_matrix(csr.X)
    csr.write_h5ad(tmp_path / "csr.h5ad")
    backed = ad.read_h5ad(tmp_path / "csr.h5ad", backed="r")
    # the sparse path is taken exactly when the encoder reads sparse elements, and never densifies a chunk
    calls = {"dense": 0}
    densify = sp.csr_matrix.toarray

    def counting(self, *args, **kwargs):
        calls["dense"] += 1
        return densify(self, *args, **kwargs)

    monkeypatch.setattr(sp.csr_matrix, "toarray", counting)
    for query in (csr, backed):
        got = model.get_set_representation(query, chunk_size=50, progress_bar=False)
        np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-4, atol=1e-5)
    assert (calls["dense"] == 0) == (encoder == "resnet")


def test_non_canonical_csr_is_summed_before_reading():
    """Duplicate entries (legal in scipy) are summed, so log-normalising stored entries stays exact."""
    x = sp.csr_matrix(
        (np.array([2.0, 3.0, 5.0], dtype=np.float32), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 3)
    )
    assert not x.has_canonical_format
    out = sparse_log_normalise(csr_tensor(x)).to_dense()
    torch.testing.assert_close(out, log_normalise(torch.from_numpy(x.toarray())))


def test_bf16_true_pooling_keeps_the_dtype():
    enc = ResNetEncoder(6, 3, n_hidden=8).to(torch.bfloat16)
    z = enc(torch.randn(2, 10, 6, dtype=torch.bfloat16))
    assert z.dtype == torch.bfloat16 and torch.isfinite(z.float()).all()
