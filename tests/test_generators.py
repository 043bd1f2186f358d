"""Generators: the shared protocol, and that each one learns a known distribution."""

from __future__ import annotations

import pytest
import torch

from scgde.nn import GENERATORS, CVAEGenerator, DDPMGenerator, build_generator


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_protocol_shapes_and_gradients(name):
    torch.manual_seed(0)
    gen = build_generator(name, 5, 8)
    x, z = torch.randn(4, 30, 5), torch.randn(4, 8, requires_grad=True)
    loss = gen.loss(x, z)
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # the set vector is actually used
    gen.eval()
    assert gen.sample(z.detach(), 11).shape == (4, 11, 5)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_zero_weight_elements_do_not_count(name):
    torch.manual_seed(0)
    gen = build_generator(name, 3, 4).eval()
    x, z = torch.randn(2, 20, 3), torch.randn(2, 4)
    junk = torch.cat([x, 50 + torch.randn(2, 5, 3)], dim=1)
    w = torch.cat([torch.ones(2, 20), torch.zeros(2, 5)], dim=1)
    torch.manual_seed(1)
    padded = gen.loss(junk, z, w)
    # a loss that counted the junk elements would be orders of magnitude larger
    torch.manual_seed(1)
    clean = gen.loss(x, z)
    assert padded.max() < 10 * clean.max() + 1.0


def fit_two_sets(gen, z, draw, steps: int, lr: float = 3e-3) -> None:
    """Train ``gen`` on fresh draws ``draw() -> (2, m, D)`` of two sets with set vectors ``z``; leave it in eval mode."""
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    for _ in range(steps):
        loss = gen.loss(draw(), z).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    gen.eval()


@pytest.mark.parametrize(
    ("name", "kwargs", "steps"),
    [
        ("cvae", {}, 600),
        ("ddpm", {"n_steps": 100}, 800),
        ("flow", {}, 600),
        ("direct", {}, 1000),  # sliced-W2 gradients move the mean slowly
    ],
)
def test_learns_two_conditional_gaussians(name, kwargs, steps):
    """z = +1 -> N(3, 0.5^2), z = -1 -> N(-2, 1); samples must match both."""
    torch.manual_seed(0)
    gen = build_generator(name, 1, 1, n_hidden=64, **kwargs)
    z = torch.tensor([[1.0], [-1.0]])
    fit_two_sets(gen, z, lambda: torch.stack([3 + 0.5 * torch.randn(64, 1), -2 + torch.randn(64, 1)]), steps)
    s = gen.sample(z, 4000)
    assert s[0].mean().item() == pytest.approx(3.0, abs=0.25)
    assert s[1].mean().item() == pytest.approx(-2.0, abs=0.25)
    assert s[0].std().item() == pytest.approx(0.5, rel=0.4)
    assert s[1].std().item() == pytest.approx(1.0, rel=0.4)


def test_cvae_samples_include_likelihood_noise():
    torch.manual_seed(0)
    gen = CVAEGenerator(3, 2).eval()
    z = torch.zeros(1, 2)
    torch.manual_seed(5)
    noisy = gen.sample(z, 200)
    torch.manual_seed(5)
    means = gen.sample(z, 200, noise=False)
    assert not torch.allclose(noisy, means)


def test_cvae_negative_binomial_counts():
    torch.manual_seed(0)
    gen = CVAEGenerator(6, 2, likelihood="nb")
    x = torch.poisson(torch.full((3, 20, 6), 4.0))
    assert torch.isfinite(gen.loss(x, torch.randn(3, 2))).all()
    s = gen.eval().sample(torch.randn(3, 2), 50)
    assert (s >= 0).all() and torch.equal(s, s.round())


def test_classifier_free_guidance_drops_the_condition():
    torch.manual_seed(0)
    gen = DDPMGenerator(2, 3, p_uncond=0.5)
    cond = torch.ones(4, 1000, 3)
    dropped = gen._drop_condition(cond)
    frac = (dropped == gen.null_cond).all(-1).float().mean().item()
    assert frac == pytest.approx(0.5, abs=0.05)
    gen.eval()
    assert torch.equal(gen._drop_condition(cond), cond)
    s = gen.sample(torch.randn(2, 3), 5, guidance=2.0)
    assert s.shape == (2, 5, 2) and torch.isfinite(s).all()


def test_unknown_generator_lists_valid_names():
    with pytest.raises(ValueError, match="ddpm"):
        build_generator("gan", 3, 3)


class _GaussianOracle(torch.nn.Module):
    """The exact noise predictor of data ``N(mu, s^2)`` under a DDPM schedule: E[eps | x_t]."""

    def __init__(self, alpha_bars, mu: float, s: float):
        super().__init__()
        self.alpha_bars, self.mu, self.s = alpha_bars, mu, s

    def forward(self, x_t, cond, t):
        step = (t * len(self.alpha_bars)).round().long() - 1
        ab = self.alpha_bars[step][..., None]
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * self.mu) / (ab * self.s**2 + 1 - ab)


def test_ddpm_sampling_with_an_exact_denoiser_recovers_the_data():
    """Ancestral sampling draws from the data when the denoiser is exact; strided sampling keeps the mean and
    loses spread as the jumps grow (the point estimate of x0 ignores its uncertainty)."""
    gen = DDPMGenerator(1, 2, n_steps=400)
    gen.net, gen.time = _GaussianOracle(gen.alpha_bars, mu=2.0, s=0.5), None
    sd = {}
    for n_steps in (None, 400, 100, 25):
        torch.manual_seed(0)
        x = gen.sample(torch.zeros(1, 2), 20000, n_steps=n_steps)
        assert abs(x.mean().item() - 2.0) < 0.02
        sd[n_steps] = x.std().item()
    assert abs(sd[None] - 0.5) < 0.01 and sd[400] == pytest.approx(sd[None], abs=0.01)
    assert 0.5 > sd[100] > 0.45 and sd[100] > sd[25] > 0.35
    with pytest.raises(ValueError, match="n_steps"):
        gen.sample(torch.zeros(1, 2), 2, n_steps=401)


@pytest.mark.parametrize("name", ["flow", "ddpm", "cvae"])
def test_film_conditioning_learns_covariances_that_depend_on_the_condition(name):
    """Same mean, opposite correlations and different spreads in 6-D: the condition must reshape the samples."""
    torch.manual_seed(0)
    dim, rho = 6, 0.8
    covs = []
    for sign, spread in ((1.0, 1.0), (-1.0, 0.5)):
        cov = torch.eye(dim)
        cov[0, 1] = cov[1, 0] = sign * rho
        covs.append(spread**2 * cov)
    chol = torch.stack([torch.linalg.cholesky(c) for c in covs])
    kwargs = {"n_steps": 100} if name == "ddpm" else {}
    gen = build_generator(name, dim, 1, n_hidden=64, conditioning="film", **kwargs)
    z = torch.tensor([[1.0], [-1.0]])
    fit_two_sets(gen, z, lambda: torch.randn(2, 128, dim) @ chol.transpose(1, 2), 800)
    samples = gen.sample(z, 4000)
    for s, cov in zip(samples, covs):
        sample_cov = torch.cov(s.T)
        assert torch.allclose(sample_cov, cov, atol=0.35 * cov[0, 0].item()), (sample_cov, cov)


@pytest.mark.parametrize("name", ["flow", "ddpm", "cvae"])
def test_unknown_conditioning_names_the_choices(name):
    with pytest.raises(ValueError, match="conditioning='sum'.*'film' or 'concat'"):
        build_generator(name, 3, 2, conditioning="sum")


def test_film_conditioning_refuses_a_custom_network():
    with pytest.raises(ValueError, match="custom network= conditions itself"):
        build_generator("flow", 3, 2, network=torch.nn.Identity(), conditioning="film")
