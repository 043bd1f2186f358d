"""The GDE paper's Fig. 10: Spearman between latent L2 and the true W2 (2-D MVN) or MW2 (2-D GMM) over held-out pairs.

Beside the GDE: its untrained twin, set means, and a plug-in (the Gaussian W2 of the sample moments; for GMMs, the MW2
of EM fits). The MVN settings are those of ``benchmarks/gaussian_w2.py``.

Usage: python -m benchmarks.gaussian_distances [--generator ddpm|flow|cvae|direct] [--quick] [--seed N] [--steps N]
       [--threads N]
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist
from sklearn.mixture import GaussianMixture

import scgde
from benchmarks import _common
from benchmarks._gaussian import GMM2, MVN2, Size, embed, fit_pair, header, moments, parser, report, set_arrays, size_of
from scgde.metrics import gaussian_w2, gmm_w2

#: Fig. 10 Spearman rho (recomputed from the paper's stored arrays)
PAPER_RHO = {"mvn": 0.9642, "gmm": 0.7626}
#: the GMM model of Fig. 10 is wider (paper: L = 64, H = 128, sets of 1000)
DISTANCE_GMM = {"n_latent": 32, "n_hidden": 64, "cells_per_set": 200, "train_set_size": 1000}
COLUMNS = [
    "paper",
    "GDE latent L2",
    "untrained latent L2",
    "set means L2",
    "plug-in",
    "plug-in is",
    "plug-in Gaussian W2",
    "train s",
]


def mvn_distances(setting: str, size: Size, seed: int, generator: str = "ddpm") -> dict:
    """Spearman rho of each representation's pairwise L2 against the true W2, 2-D MVN sets of ``setting``."""
    cfg = MVN2[setting]
    train = scgde.datasets.synthetic_mvn(size.n_train, size.train_set_size, dim=2, seed=seed, **cfg)
    test = scgde.datasets.synthetic_mvn(size.n_test, size.test_set_size, dim=2, seed=seed + 1000, **cfg)
    fitted = fit_pair(train, "resnet", generator, size, seed)
    truth = test.uns["synthetic"]
    w2 = _common.upper(gaussian_w2(truth["means"], truth["covs"], truth["means"], truth["covs"], paired=False))
    m, c = moments(set_arrays(test))
    rho = _common.spearman
    return {
        "setting": f"2-D MVN {setting} (mu ~ U{list(cfg['mean_range'])}^2, df={cfg['df']:g})",
        "paper": PAPER_RHO["mvn"] if setting == "paper" else None,
        "GDE latent L2": rho(pdist(embed(fitted.model, test)), w2),
        "untrained latent L2": rho(pdist(embed(fitted.untrained, test)), w2),
        "set means L2": rho(pdist(m), w2),
        "plug-in": rho(_common.upper(gaussian_w2(m, c, m, c, paired=False)), w2),
        "plug-in is": "Gaussian W2 of sample moments",
        "train s": fitted.train_s,
    }


def _pairwise_mw2(weights, means, covs) -> np.ndarray:
    n = len(weights)
    out = [
        gmm_w2(weights[i], means[i], covs[i], weights[j], means[j], covs[j]) for i in range(n) for j in range(i + 1, n)
    ]
    return np.asarray(out)


def gmm_size(size: Size) -> Size:
    """The wider GMM model's sizes (full runs only; quick sizes stay tiny)."""
    return replace(
        size,
        n_latent=DISTANCE_GMM["n_latent"] if size.n_latent >= 16 else size.n_latent,
        n_hidden=DISTANCE_GMM["n_hidden"] if size.n_hidden >= 64 else size.n_hidden,
        cells_per_set=DISTANCE_GMM["cells_per_set"] if size.cells_per_set >= 100 else size.cells_per_set,
        train_set_size=DISTANCE_GMM["train_set_size"] if size.train_set_size >= 500 else size.train_set_size,
        test_set_size=1000 if size.test_set_size >= 500 else size.test_set_size,
    )


def gmm_distances(size: Size, seed: int, generator: str = "ddpm") -> dict:
    """Spearman rho against the true MW2 of 2-D 3-component GMMs; the model is trained with the mixer."""
    gsize = gmm_size(size)
    train = scgde.datasets.synthetic_mvn(gsize.n_train, gsize.train_set_size, dim=2, seed=seed + 1, **GMM2)
    test = scgde.datasets.synthetic_gmm(
        gsize.n_test, gsize.test_set_size, dim=2, n_components=3, alpha=1.0, seed=seed + 2000, **GMM2
    )
    fitted = fit_pair(train, "resnet", generator, gsize, seed, mixer={"k": 3, "alpha": 1.0})
    truth = test.uns["synthetic"]
    mw2 = _pairwise_mw2(truth["weights"], truth["means"], truth["covs"])
    x = set_arrays(test)
    m, c = moments(x)
    fits = []
    for xi in x:
        gm = GaussianMixture(3, covariance_type="full", n_init=3, random_state=seed).fit(xi)
        fits.append((gm.weights_, gm.means_, gm.covariances_))
    em = _pairwise_mw2(*[np.stack(p) for p in zip(*fits, strict=True)])
    rho = _common.spearman
    return {
        "setting": "2-D GMM, 3 components (mixer-trained)",
        "paper": PAPER_RHO["gmm"],
        "GDE latent L2": rho(pdist(embed(fitted.model, test)), mw2),
        "untrained latent L2": rho(pdist(embed(fitted.untrained, test)), mw2),
        "set means L2": rho(pdist(m), mw2),
        "plug-in": rho(em, mw2),
        "plug-in is": "MW2 of EM fits (k-means init, 3 restarts)",
        "plug-in Gaussian W2": rho(_common.upper(gaussian_w2(m, c, m, c, paired=False)), mw2),
        "train s": fitted.train_s,
    }


def run_distances(quick: bool, seed: int, generator: str = "ddpm", steps: int | None = None) -> dict:
    """Fig. 10 for both 2-D MVN settings and the GMMs."""
    size = size_of("distances", quick, steps)
    gsize = gmm_size(size)
    rows = []
    for setting in ("paper", "covariance"):
        rows.append(mvn_distances(setting, size, seed, generator))
        print(f"  [distances] {rows[-1]['setting']}: rho {rows[-1]['GDE latent L2']:.3f}", flush=True)
    rows.append(gmm_distances(size, seed, generator))
    print(f"  [distances] gmm: rho {rows[-1]['GDE latent L2']:.3f}", flush=True)
    frame = pd.DataFrame(
        [{c: (r.get(c) if isinstance(r.get(c), str) else _common.fmt_fixed(r.get(c))) for c in COLUMNS} for r in rows],
        index=pd.Index([r["setting"] for r in rows], name="setting"),
    )
    notes = (
        "Spearman correlation between a pairwise distance and the true distance (MVN: W2 of the true parameters; "
        "GMM: MW2 = sqrt(squared mixture-W2) of the true parameters) over all pairs of held-out sets. Model: resnet + "
        f"{generator} (paper: GNN L=16 H=64 + DDPM, 50,000 sets, random pairs of training sets). The GMM model is trained "
        f"with the mixer (k=3, alpha=1) over 2-D MVN sets (df=10, mu ~ U[0,5]^2), L={gsize.n_latent}, "
        f"H={gsize.n_hidden}, {gsize.cells_per_set} points per mixture, training sets of {gsize.train_set_size}; "
        f"held-out GMMs have {gsize.test_set_size} points."
    )
    table = header("Fig. 10 latent distances", size, notes) + "\n\n" + _common.markdown_table(frame)
    for r in rows:
        for key in ("GDE latent L2", "untrained latent L2", "set means L2", "plug-in"):
            _common.check(np.isfinite(r[key]), f"{key} is not finite for {r['setting']}")
        _common.check(
            r["GDE latent L2"] > r["untrained latent L2"],
            f"{r['setting']}: trained rho {r['GDE latent L2']:.3f} <= untrained {r['untrained latent L2']:.3f}",
        )
    return {"rows": rows, "table": table}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run Fig. 10 and print its table; returns ``{"rows", "table", "wall_s"}``."""
    p = parser(__doc__)
    p.add_argument("--generator", choices=["ddpm", "flow", "cvae", "direct"], default="ddpm")
    args = p.parse_args(argv)
    return report(args, lambda: run_distances(args.quick, args.seed, args.generator, args.steps))


if __name__ == "__main__":
    main()
