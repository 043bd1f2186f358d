"""scgde.metrics against closed forms and defining properties (never against its own outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scgde import metrics
from scgde.metrics import (
    energy_distance,
    exact_w2,
    gaussian_w2,
    gmm_w2,
    mccann_interpolation,
    mmd,
    multinomial_w2,
    mutual_information,
    mutual_information_permutation_test,
    paper_gaussian_error,
    sinkhorn_divergence,
    sliced_w2,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small torch ops run ~100x slower with 2 OpenMP threads on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_spd(rng, d, n=None):
    shape = (d, d) if n is None else (n, d, d)
    a = rng.normal(size=shape)
    return a @ np.swapaxes(a, -1, -2) / d + 0.3 * np.eye(d)


def _diag_w2_sq(m1, a, m2, b):
    """W2^2 between Gaussians with commuting (diagonal) covariances diag(a), diag(b)."""
    return np.sum((m1 - m2) ** 2, -1) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2, -1)


def test_public_api():
    expected = {
        "gaussian_w2",
        "paper_gaussian_error",
        "gmm_w2",
        "multinomial_w2",
        "exact_w2",
        "sliced_w2",
        "mmd",
        "energy_distance",
        "sinkhorn_divergence",
        "mccann_interpolation",
        "mutual_information",
        "mutual_information_permutation_test",
    }
    assert expected <= set(metrics.__all__)
    for name in metrics.__all__:
        assert getattr(metrics, name).__doc__


# --- Gaussians ---------------------------------------------------------------------------------


def test_gaussian_w2_diagonal_closed_form(rng):
    m1, m2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    a, b = rng.uniform(0.1, 3, size=(5, 3)), rng.uniform(0.1, 3, size=(5, 3))
    c1 = a[:, :, None] * np.eye(3)
    c2 = b[:, :, None] * np.eye(3)
    expected = np.sqrt(_diag_w2_sq(m1, a, m2, b))
    assert gaussian_w2(m1[0], c1[0], m2[0], c2[0]) == pytest.approx(expected[0], rel=1e-8)
    np.testing.assert_allclose(gaussian_w2(m1, c1, m2, c2), expected, rtol=1e-8)
    full = np.sqrt(_diag_w2_sq(m1[:, None], a[:, None], m2[None], b[None]))
    np.testing.assert_allclose(gaussian_w2(m1, c1, m2, c2, paired=False), full, rtol=1e-8)


def test_paper_gaussian_error_is_unsquared_mean_plus_squared_bures(rng):
    m1, m2 = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    a, b = rng.uniform(0.2, 2, size=(4, 2)), rng.uniform(0.2, 2, size=(4, 2))
    c1, c2 = a[:, :, None] * np.eye(2), b[:, :, None] * np.eye(2)
    expected = np.linalg.norm(m1 - m2, axis=1) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2, 1)
    np.testing.assert_allclose(paper_gaussian_error(m1, c1, m2, c2), expected, rtol=1e-8)
    assert paper_gaussian_error(m1[1], c1[1], m2[1], c2[1]) == pytest.approx(expected[1], rel=1e-8)

    # equal covariances: the mean term is unsquared, so it agrees with W2 = |dm| ...
    s = _random_spd(rng, 2)
    assert paper_gaussian_error([0, 0], s, [3, 4], s) == pytest.approx(5.0, abs=1e-7)
    assert gaussian_w2(np.zeros(2), s, np.array([3.0, 4.0]), s) == pytest.approx(5.0, abs=1e-7)
    # ... equal means: the Bures term is squared, so it is W2^2, not W2
    err = paper_gaussian_error(np.ones(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    assert err == pytest.approx(2.0)  # (2 - 1)^2 + (2 - 1)^2
    assert gaussian_w2(np.ones(2), np.eye(2), np.ones(2), 4 * np.eye(2)) == pytest.approx(np.sqrt(2.0))
    # both: 5 + 2 = 7 against the true W2 = sqrt(25 + 2)
    assert paper_gaussian_error(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2)) == pytest.approx(7.0)


def test_paper_gaussian_error_matches_pot_bures_for_full_covariances(rng):
    m1, m2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    c1, c2 = _random_spd(rng, 4, 3), _random_spd(rng, 4, 3)
    dm = np.linalg.norm(m1 - m2, axis=1)
    bures_sq = gaussian_w2(m1, c1, m2, c2) ** 2 - dm**2  # W2^2 = |dm|^2 + B^2
    np.testing.assert_allclose(paper_gaussian_error(m1, c1, m2, c2), dm + bures_sq, rtol=1e-7)


def test_gaussian_shape_errors():
    with pytest.raises(ValueError, match="cov1"):
        paper_gaussian_error(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="mean2"):
        paper_gaussian_error(np.zeros(2), np.eye(2), np.zeros((1, 1, 2)), np.eye(2))
    with pytest.raises(ValueError, match="paired"):
        paper_gaussian_error(np.zeros((2, 2)), np.stack([np.eye(2)] * 2), np.zeros((3, 2)), np.stack([np.eye(2)] * 3))


# --- exact empirical W2 ------------------------------------------------------------------------


def test_exact_w2_of_gaussian_samples_is_close_to_closed_form(rng):
    m1, m2 = np.array([0.0, 0.0]), np.array([2.0, 1.0])
    c1, c2 = np.array([[1.0, 0.5], [0.5, 1.0]]), np.array([[2.0, -0.3], [-0.3, 0.5]])
    # two 2-D samples of 400 points: a relative sampling error of about 4 % (sd); 4 replicates halve it
    estimates = [
        exact_w2(rng.multivariate_normal(m1, c1, size=400), rng.multivariate_normal(m2, c2, size=400)) for _ in range(4)
    ]
    assert np.mean(estimates) == pytest.approx(gaussian_w2(m1, c1, m2, c2), rel=0.07)


def test_exact_w2_of_a_shift_is_the_shift_length(rng):
    x = rng.normal(size=(150, 2))
    assert exact_w2(x, x + np.array([3.0, -4.0])) == pytest.approx(5.0, rel=1e-9)
    assert exact_w2(x, x) == pytest.approx(0.0, abs=1e-9)


def test_exact_w2_in_1d_matches_sorted_coupling_and_weights_act_as_duplication(rng):
    u, v = rng.normal(size=60), 1 + 2 * rng.normal(size=60)
    expected = np.sqrt(np.mean((np.sort(u) - np.sort(v)) ** 2))
    assert exact_w2(u, v) == pytest.approx(expected, rel=1e-9)
    assert exact_w2(u[:, None], v[:, None]) == pytest.approx(expected, rel=1e-9)

    x, y = rng.normal(size=(8, 2)), rng.normal(size=(7, 2))
    w = np.array([1, 3, 2, 1, 1, 2, 1, 4])
    assert exact_w2(x, y, x_weights=w) == pytest.approx(exact_w2(np.repeat(x, w, axis=0), y), rel=1e-9)


def test_exact_w2_shape_errors():
    with pytest.raises(ValueError, match="x and y"):
        exact_w2(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="y_weights"):
        exact_w2(np.zeros((3, 2)), np.zeros((4, 2)), y_weights=np.ones(3))


# --- Gaussian mixtures -------------------------------------------------------------------------


def _random_gmm(rng, k=3, d=2):
    return rng.dirichlet(np.ones(k)), rng.normal(scale=3, size=(k, d)), _random_spd(rng, d, k)


def test_gmm_w2_single_component_is_gaussian_w2(rng):
    m1, m2 = rng.normal(size=3), rng.normal(size=3)
    c1, c2 = _random_spd(rng, 3), _random_spd(rng, 3)
    expected = gaussian_w2(m1, c1, m2, c2)
    got = gmm_w2([1.0], m1[None], c1[None], [1.0], m2[None], c2[None])
    assert got == pytest.approx(expected, rel=1e-7)
    assert gmm_w2([1.0], m1[None], c1[None], [1.0], m2[None], c2[None], squared=True) == pytest.approx(expected**2)


def test_gmm_w2_zero_for_identical_and_permuted_mixtures(rng):
    w, m, c = _random_gmm(rng)
    assert gmm_w2(w, m, c, w, m, c) == pytest.approx(0.0, abs=1e-6)
    perm = np.array([2, 0, 1])
    assert gmm_w2(w, m, c, w[perm], m[perm], c[perm]) == pytest.approx(0.0, abs=1e-6)
    assert gmm_w2(3 * w, m, c, w, m, c) == pytest.approx(0.0, abs=1e-6)  # weights are normalised


def test_gmm_w2_of_a_shift_is_the_shift_length(rng):
    # pairing each component with its shifted copy costs |s|^2, and MW2 >= W2 >= |mean difference|
    w, m, c = _random_gmm(rng)
    shift = np.array([0.6, -0.8])
    assert gmm_w2(w, m, c, w, m + shift, c) == pytest.approx(1.0, rel=1e-6)


def test_gmm_w2_shape_errors():
    with pytest.raises(ValueError, match="weights1"):
        gmm_w2(np.ones(2), np.zeros((3, 2)), np.stack([np.eye(2)] * 3), np.ones(1), np.zeros((1, 2)), np.eye(2)[None])
    with pytest.raises(ValueError, match="covs2"):
        gmm_w2(np.ones(1), np.zeros((1, 2)), np.eye(2)[None], np.ones(1), np.zeros((1, 2)), np.eye(3)[None])


# --- multinomial (categorical) Gaussian approximation ------------------------------------------


def _helmert(k):
    """Orthonormal basis (k, k - 1) of the hyperplane sum(v) = 0."""
    basis = np.linalg.qr(np.eye(k) - 1.0 / k)[0][:, : k - 1]
    return basis


def test_multinomial_w2_matches_gaussian_w2_of_the_categorical_moments(rng):
    p = rng.dirichlet(np.ones(4), size=6)
    q = rng.dirichlet(np.ones(4), size=5)

    def moments(v):
        return v, np.diag(v) - np.outer(v, v)

    # both Gaussians live on the hyperplane sum = 1, where the covariances are full rank: W2 is
    # the W2 of the coordinates in an orthonormal basis of that plane
    u = _helmert(4)
    expected = np.empty((6, 5))
    for i in range(6):
        for j in range(5):
            (mp, cp), (mq, cq) = moments(p[i]), moments(q[j])
            expected[i, j] = gaussian_w2(u.T @ mp, u.T @ cp @ u, u.T @ mq, u.T @ cq @ u)
    # the k-D covariances are singular: the square root of a round-off eigenvalue (~1e-16) costs
    # ~1e-8 in the Bures term, so agreement is to ~1e-7, not to machine precision
    np.testing.assert_allclose(multinomial_w2(p, q, paired=False), expected, rtol=0, atol=1e-6)
    assert multinomial_w2(p[0], q[0]) == pytest.approx(expected[0, 0], abs=1e-6)
    np.testing.assert_allclose(multinomial_w2(p[:5], q), np.diag(expected[:5]), rtol=0, atol=1e-6)


def test_multinomial_w2_two_categories_closed_form():
    # k = 2: a line through (1, -1)/sqrt(2); mean gap sqrt(2)|a - b|, variance 2 a (1 - a)
    a, b = 0.3, 0.75
    expected = np.sqrt(2 * (a - b) ** 2 + (np.sqrt(2 * a * (1 - a)) - np.sqrt(2 * b * (1 - b))) ** 2)
    assert multinomial_w2([a, 1 - a], [b, 1 - b]) == pytest.approx(expected, rel=1e-7)


def test_multinomial_w2_symmetric_zero_diagonal_and_finite_on_the_simplex_boundary():
    steps = np.arange(10) / 9
    grid = np.array([[i, j, 1 - i - j] for i in steps for j in steps if i + j <= 1 + 1e-12])
    grid = np.clip(grid, 0, 1)
    assert len(grid) == 55
    dist = multinomial_w2(grid, grid, paired=False)
    assert dist.shape == (55, 55)
    assert np.all(np.isfinite(dist))
    np.testing.assert_allclose(dist, dist.T, atol=1e-7)
    np.testing.assert_allclose(np.diag(dist), 0, atol=1e-6)
    # two vertices: point masses (zero covariance) at e_i and e_j
    assert multinomial_w2([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) == pytest.approx(np.sqrt(2))


def test_multinomial_w2_errors():
    with pytest.raises(ValueError, match="q"):
        multinomial_w2([0.5, 0.5], [0.5, 0.6])
    with pytest.raises(ValueError, match="p"):
        multinomial_w2([[[0.5, 0.5]]], [0.5, 0.5])


# --- McCann interpolation ----------------------------------------------------------------------


def test_mccann_interpolation_endpoints_and_constant_speed(rng):
    m1, m2 = rng.normal(size=3), rng.normal(size=3) + 2
    c1, c2 = _random_spd(rng, 3), _random_spd(rng, 3)
    total = gaussian_w2(m1, c1, m2, c2)
    ts = np.array([0.0, 0.1, 0.35, 0.5, 0.8, 1.0])
    means, covs = mccann_interpolation(m1, c1, m2, c2, ts)
    assert means.shape == (6, 3) and covs.shape == (6, 3, 3)
    np.testing.assert_allclose(means[0], m1, atol=1e-10)
    np.testing.assert_allclose(covs[0], c1, atol=1e-8)
    np.testing.assert_allclose(means[-1], m2, atol=1e-10)
    np.testing.assert_allclose(covs[-1], c2, atol=1e-8)
    for t, m, c in zip(ts[1:-1], means[1:-1], covs[1:-1]):
        assert gaussian_w2(m1, c1, m, c) == pytest.approx(t * total, rel=1e-5)
        assert gaussian_w2(m, c, m2, c2) == pytest.approx((1 - t) * total, rel=1e-5)
    m_half, c_half = mccann_interpolation(m1, c1, m2, c2, 0.5)
    assert m_half.shape == (3,) and c_half.shape == (3, 3)
    np.testing.assert_allclose(c_half, covs[3], atol=1e-12)


def test_mccann_interpolation_commuting_case():
    # diagonal covariances: the standard deviations interpolate linearly
    m, c = mccann_interpolation(np.zeros(2), np.diag([1.0, 4.0]), np.ones(2), np.diag([9.0, 1.0]), 0.25)
    np.testing.assert_allclose(m, [0.25, 0.25])
    np.testing.assert_allclose(c, np.diag([1.5**2, 1.75**2]), atol=1e-10)


def test_mccann_interpolation_errors():
    with pytest.raises(ValueError, match="t must"):
        mccann_interpolation(np.zeros(2), np.eye(2), np.ones(2), np.eye(2), 1.5)
    with pytest.raises(ValueError, match="cov1"):
        mccann_interpolation(np.zeros(2), np.zeros((2, 2)), np.ones(2), np.eye(2), 0.5)


# --- torch-distance wrappers -------------------------------------------------------------------


def test_wrappers_accept_numpy_and_return_floats_or_arrays(rng):
    x, y = rng.normal(size=(25, 2)), rng.normal(size=(25, 2)) + 1
    for fn in (sliced_w2, mmd, energy_distance, sinkhorn_divergence):
        val = fn(x, y)
        assert isinstance(val, float) and val > 0
        assert fn(x.tolist(), y.tolist()) == pytest.approx(val, rel=1e-6)
        batched = fn(np.stack([x, x]), np.stack([y, x]))
        assert isinstance(batched, np.ndarray) and batched.shape == (2,)
        assert batched[0] == pytest.approx(val, rel=1e-5)
        assert abs(batched[1]) < 1e-4
    with pytest.raises(ValueError, match="x"):
        mmd(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="x_weights"):
        energy_distance(x, y, x_weights=np.ones(3))


def test_sliced_w2_is_seeded_and_matches_closed_forms(rng):
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert sliced_w2(x, y, seed=1) == sliced_w2(x, y, seed=1)
    assert sliced_w2(x, y, seed=1) != sliced_w2(x, y, seed=2)
    # in 1-D every direction is +-1: the exact W2 of sorted samples
    u, v = rng.normal(size=(80, 1)), 2 * rng.normal(size=(80, 1)) + 1
    expected = np.sqrt(np.mean((np.sort(u[:, 0]) - np.sort(v[:, 0])) ** 2))
    assert sliced_w2(u, v, n_projections=4) == pytest.approx(expected, rel=1e-6)
    # a shift s: SW2^2 = E (theta . s)^2 = |s|^2 / d
    z = rng.normal(size=(200, 2))
    assert sliced_w2(z, z + [3.0, 0.0], n_projections=4000, squared=True) == pytest.approx(4.5, rel=0.05)


def test_mmd_and_energy_distance_closed_forms_on_point_masses():
    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert mmd(a, b, bandwidth=5.0) == pytest.approx(2 - 2 * np.exp(-25 / 50), rel=1e-6)
    assert mmd(a, b, bandwidth=5.0, squared=False) == pytest.approx(np.sqrt(2 - 2 * np.exp(-0.5)), rel=1e-6)
    assert energy_distance(a, b) == pytest.approx(10.0, rel=1e-6)  # 2|a - b| - 0 - 0
    # weights act as duplication
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert energy_distance(x, b, x_weights=[1, 3]) == pytest.approx(energy_distance(x[[0, 1, 1, 1]], b), rel=1e-6)


def test_sinkhorn_divergence_of_a_shift_is_half_squared_length(rng):
    # cost |x - y|^2 / 2: shifting one side by s adds s.(E x - E y) + |s|^2 / 2 = |s|^2 / 2 to the
    # entropic OT cost of every coupling of two samples with equal means, so the debiased
    # divergence of a pure shift is |s|^2 / 2 for any blur (up to solver convergence)
    x = rng.normal(size=(64, 2))
    shift = np.array([1.5, 1.0])
    for blur in (0.05, 0.02):
        assert sinkhorn_divergence(x, x + shift, blur=blur) == pytest.approx(0.5 * 3.25, rel=1e-3)


# --- KSG mutual information --------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.0, 0.6, 0.9])
def test_ksg_bivariate_gaussian(r):
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.normal(size=n)
    y = r * x + np.sqrt(1 - r**2) * rng.normal(size=n)
    truth = -0.5 * np.log2(1 - r**2)
    mi, values = mutual_information(x, y, k=3, pointwise=True)
    assert isinstance(mi, float)
    assert mi == pytest.approx(truth, abs=0.08)
    assert values.shape == (n,)
    assert np.mean(values) == pytest.approx(mi, abs=1e-12)
    assert mutual_information(y, x) == pytest.approx(mi, abs=1e-9)  # symmetric


def test_ksg_multivariate_and_independent():
    rng = np.random.default_rng(2)
    n = 1500
    x = rng.normal(size=(n, 2))
    r = 0.8
    # y depends on the first coordinate of x only: I(x; y) = I(x_1; y)
    y = r * x[:, 0] + np.sqrt(1 - r**2) * rng.normal(size=n)
    assert mutual_information(x, y) == pytest.approx(-0.5 * np.log2(1 - r**2), abs=0.1)
    assert abs(mutual_information(x, rng.normal(size=(n, 2)))) < 0.05


def test_ksg_breaks_ties_in_discrete_data():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=1000).astype(float)
    y = x + rng.normal(scale=0.01, size=1000)
    mi = mutual_information(x, y)
    assert np.isfinite(mi) and mi > 1.5  # I = H(x) = 2 bits for a uniform 4-level x


def test_ksg_permutation_test():
    rng = np.random.default_rng(4)
    n = 400
    x = rng.normal(size=n)
    y_dep = 0.9 * x + np.sqrt(1 - 0.81) * rng.normal(size=n)
    mi, null, p = mutual_information_permutation_test(x, y_dep, n_permutations=40, seed=0)
    assert null.shape == (40,)
    assert mi > null.max()
    assert p == pytest.approx(1 / 41)
    _, _, p_indep = mutual_information_permutation_test(x, rng.normal(size=n), n_permutations=40, seed=0)
    assert p_indep > 0.1


def test_ksg_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        mutual_information(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="y"):
        mutual_information(np.zeros(5), np.zeros((5, 1, 1)))
    with pytest.raises(ValueError, match="k="):
        mutual_information(np.zeros(3), np.zeros(3), k=3)
