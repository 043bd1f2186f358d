"""Bounded memory: the chunked, checkpointed likelihoods equal the plain ones; generate bounds each network call."""

from __future__ import annotations

import pytest
import torch
from scvi.distributions import NegativeBinomial

import scgde.nn._generators as generators
import scgde.nn._layers as layers
from scgde.nn import CVAEGenerator
from scgde.nn._generators import gaussian_nll, nb_log_prob, nb_softmax_nll
from scgde.nn._layers import feature_chunked_sum


def _counts(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(shape, generator=g) * 3)
    x[x < 1] = 0  # many zeros
    x[..., :3] = torch.tensor([0.0, 5000.0, 1e5])  # and large counts
    return x


def _scvi_nll(x, logits, log_theta, lib):
    return -NegativeBinomial(mu=lib * torch.softmax(logits, -1), theta=log_theta.exp()).log_prob(x).sum(-1)


def test_nb_log_prob_equals_scvi_values_and_gradients():
    x = _counts((3, 7, 50))
    mu = (torch.rand(3, 7, 50) * 100 + 1e-3).requires_grad_()
    theta = (torch.rand(50) * 10 + 1e-2).requires_grad_()
    ours, ref = nb_log_prob(x, mu, theta), NegativeBinomial(mu=mu, theta=theta).log_prob(x)
    torch.testing.assert_close(ours, ref)
    for p in (mu, theta):
        torch.testing.assert_close(*(torch.autograd.grad(v.sum(), p, retain_graph=True)[0] for v in (ours, ref)))


@pytest.mark.parametrize("max_elements", [None, 1, 97, 2000])  # None: one plain pass; otherwise gene chunks
def test_nb_softmax_nll_equals_scvi_values_and_gradients(monkeypatch, max_elements):
    if max_elements is not None:
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", max_elements)
    torch.manual_seed(0)
    x = _counts((4, 6, 203))
    logits = (3 * torch.randn(4, 6, 203)).requires_grad_()
    log_theta = torch.randn(203).requires_grad_()
    lib = x.sum(-1, keepdim=True).clamp_min(1.0)
    ours, ref = nb_softmax_nll(x, logits, log_theta, lib), _scvi_nll(x, logits, log_theta, lib)
    assert ours.shape == (4, 6) and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-3)
    w = torch.randn(4, 6)  # a non-uniform upstream gradient
    for p in (logits, log_theta):
        g_ours, g_ref = (torch.autograd.grad((v * w).sum(), p, retain_graph=True)[0] for v in (ours, ref))
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-3)


def test_feature_chunked_sum_without_gradients_and_uneven_chunks():
    x, mean, log_var = torch.randn(5, 4, 37), torch.randn(5, 4, 37), torch.randn(5, 4, 37)
    whole = gaussian_nll(x, mean, log_var)
    chunked = feature_chunked_sum(generators._gaussian_nll_sum, (x, mean, log_var), max_elements=20 * 8)
    torch.testing.assert_close(chunked, whole)


@pytest.mark.parametrize("likelihood", ["nb", "gaussian"])
def test_cvae_loss_and_gradients_same_with_chunking(monkeypatch, likelihood):
    torch.manual_seed(0)
    gen = CVAEGenerator(60, 5, n_hidden=16, likelihood=likelihood)
    x = _counts((3, 8, 60)) if likelihood == "nb" else torch.randn(3, 8, 60)
    z = torch.randn(3, 5)

    def loss_and_grads():
        torch.manual_seed(1)
        gen.zero_grad()
        loss = gen.loss(x, z)
        loss.sum().backward()
        return loss.detach(), {n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None}

    plain = loss_and_grads()
    monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 100)
    monkeypatch.setattr(generators, "CHUNK_ELEMENTS", 100)
    chunked = loss_and_grads()
    torch.testing.assert_close(chunked[0], plain[0], rtol=1e-5, atol=1e-4)
    assert chunked[1].keys() == plain[1].keys()
    for name in plain[1]:
        torch.testing.assert_close(chunked[1][name], plain[1][name], rtol=1e-4, atol=1e-4, msg=name)


@pytest.fixture(scope="module")
def nonneg_model():
    """A GDE on non-negative (log-normalised) data, so that generated sets are projected on the support."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scvi

    from scgde.model import GDE

    scvi.settings.seed = 0
    rng = np.random.default_rng(0)
    rates = np.repeat(rng.gamma(2.0, 1.0, size=(6, 10)), 40, axis=0)
    x = np.log1p(rng.poisson(rates)).astype(np.float32)
    adata = ad.AnnData(x, obs=pd.DataFrame({"set": np.repeat([f"s{i}" for i in range(6)], 40)}))
    GDE.setup_anndata(adata, set_key="set")
    model = GDE(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=2, sets_per_batch=6, cells_per_set=20, enable_progress_bar=False)
    assert model.module.projects_support
    return model


@pytest.mark.parametrize(("n_samples", "project"), [(700, True), (700, False), (150, True)])
def test_generate_bounds_cells_per_call_within_a_set(nonneg_model, monkeypatch, n_samples, project):
    import numpy as np

    model, sets = nonneg_model, ["s0", "s3"]
    emb = model.get_set_representation(sets=sets, progress_bar=False)
    torch.manual_seed(0)
    whole = model.generate(emb, n_samples=n_samples, project=project).X
    calls, sample = [], model.module.generator.sample

    def spy(z, n, *args, **kwargs):
        calls.append(len(z) * n)
        return sample(z, n, *args, **kwargs)

    monkeypatch.setattr(model.module.generator, "sample", spy)
    torch.manual_seed(1)
    pieces = model.generate(emb, n_samples=n_samples, batch_size=64, project=project).X
    assert calls and max(calls) <= 64
    assert sum(calls) == len(sets) * (max(n_samples, 200) if project else n_samples)
    assert pieces.shape == whole.shape == (len(sets) * n_samples, 10) and np.isfinite(pieces).all()
    if project:
        assert (pieces >= 0).all()
    for i in range(len(sets)):  # per set and gene: the same distribution
        rows = slice(i * n_samples, (i + 1) * n_samples)
        a, b = whole[rows], pieces[rows]
        tol = 0.3 * a.std(0) + 0.05
        assert (np.abs(a.mean(0) - b.mean(0)) < tol).all()
        if project:
            p = (a == 0).mean(0)
            assert (np.abs(p - (b == 0).mean(0)) < 4 * np.sqrt(2 * p * (1 - p) / n_samples) + 0.02).all()
