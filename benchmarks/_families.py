"""Gaussian families of sets with closed-form W2, at any dimension (the engine's acceptance families).

Two kinds, both with known means and covariances per set:

- ``rotated``: every set has its own random rotation and a log-normal spectrum,
  ``Sigma = R diag(exp(sigma * g)) R^T`` (``R`` Haar-random, ``g ~ N(0, I)``) and a mean
  ``mu ~ N(0, mean_scale^2 I)``, ``mean_scale`` = 0.2 so that the set means alone rank the pairs' W2
  only moderately (Spearman ~0.5 at d = 2, 10, 30, 50; the plug-in Gaussian W2 of 300 samples ~0.92-0.94).
- ``plane``: the speed benchmark's distance-matrix family (means on a plane, log-spectra along two
  directions of a fixed random basis; 4 parameters), at any dimension.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy.spatial.distance import pdist
from scipy.stats import ortho_group, spearmanr

from scgde.metrics import gaussian_w2

#: spread of the log-spectrum of the ``rotated`` family
SPECTRUM_SIGMA = 0.5
#: spread of the means of the ``rotated`` family: the set means alone reach Spearman ~0.5 with W2 at d = 2 to 50
MEAN_SCALE = 0.2


def rotated_moments(n_sets: int, dim: int, rng: np.random.Generator, mean_scale: float | None = None):
    """Means ``(n, d)`` and covariances ``(n, d, d)`` of the ``rotated`` family."""
    if mean_scale is None:
        mean_scale = MEAN_SCALE
    means = rng.normal(0.0, mean_scale, size=(n_sets, dim))
    spectra = np.exp(SPECTRUM_SIGMA * rng.normal(size=(n_sets, dim)))
    if dim == 1:
        return means, spectra[:, :, None]
    rot = ortho_group.rvs(dim, size=n_sets, random_state=rng).reshape(n_sets, dim, dim)
    covs = np.einsum("nij,nj,nkj->nik", rot, spectra, rot)
    return means, covs


def plane_moments(n_sets: int, dim: int, rng: np.random.Generator):
    """Means and covariances of the ``plane`` family (the distance-matrix job's, at dimension ``dim``)."""
    from benchmarks.speed import family_moments

    return family_moments(rng.uniform(-1, 1, size=(n_sets, 4)), dim)


def draw_sets(means: np.ndarray, covs: np.ndarray, size: int, rng: np.random.Generator) -> AnnData:
    """An AnnData of ``size`` samples per set, ``obs["set"]`` = ``s0, s1, ...`` in the order of ``means``."""
    chol = np.linalg.cholesky(covs)
    x = means[:, None, :] + np.einsum("nij,nsj->nsi", chol, rng.standard_normal((len(means), size, means.shape[1])))
    names = [f"s{i}" for i in range(len(means))]
    adata = AnnData(x.reshape(-1, means.shape[1]).astype(np.float32))
    adata.obs["set"] = np.repeat(names, size)
    adata.obs["set"] = adata.obs["set"].astype("category")
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"x{j}" for j in range(adata.n_vars)]
    return adata


def family(kind: str, n_sets: int, size: int, dim: int, seed: int):
    """``(adata, means, covs)`` of one family draw."""
    rng = np.random.default_rng(seed)
    if kind == "rotated":
        means, covs = rotated_moments(n_sets, dim, rng)
    elif kind == "plane":
        means, covs = plane_moments(n_sets, dim, rng)
    else:
        raise ValueError(f"Unknown family kind={kind!r}; choose 'rotated' or 'plane'.")
    return draw_sets(means, covs, size, rng), means, covs


def pairwise_w2(means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """Condensed vector (as ``pdist``) of the closed-form W2 between all pairs."""
    i, j = np.triu_indices(len(means), 1)
    return np.asarray(gaussian_w2(means[i], covs[i], means[j], covs[j]))


def sample_moments(adata: AnnData) -> tuple[np.ndarray, np.ndarray]:
    """Per-set sample means and covariances, sets in the order ``s0, s1, ...``."""
    n = adata.obs["set"].nunique()
    x = adata.X.reshape(n, -1, adata.n_vars).astype(np.float64)
    centred = x - x.mean(1, keepdims=True)
    return x.mean(1), np.einsum("nsi,nsj->nij", centred, centred) / (x.shape[1] - 1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic)


def baselines(adata: AnnData, true_w2: np.ndarray) -> dict[str, float]:
    """Spearman with the true W2 of the set means' L2 and of the plug-in Gaussian W2 of the sample moments."""
    m, c = sample_moments(adata)
    return {"set means": spearman(pdist(m), true_w2), "plug-in Gaussian W2": spearman(pairwise_w2(m, c), true_w2)}
