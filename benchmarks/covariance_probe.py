"""Does the set embedding carry the covariance, or only the mean? (2-D Gaussian sets)

Trains a GDE (resnet encoder) on 2-D Gaussian sets exactly as ``benchmarks.gaussian_interpolation``
does, then, on 40 held-out sets of 20,000 points and 40 training sets:

- probes the set vectors: R^2 of ridge and 10-NN regressions (fitted on all training sets) from the
  vector to the true mean and to the true covariance entries;
- regenerates each set (10,000 points) and splits its W2 error into mean and covariance parts
  (``‖Δμ‖`` and the W2 with the true mean put in), and reports the slope of the generated
  covariance trace against the true one (1 = covariances reproduced, 0 = one covariance for all).

Usage: python -m benchmarks.covariance_probe [--generator flow] [--steps 1500] [--setting paper] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import KNeighborsRegressor

import scgde
from benchmarks import _common
from benchmarks._gaussian import MVN2, embed, fit_pair, moments, size_of
from scgde.metrics import gaussian_w2


def _targets(means: np.ndarray, covs: np.ndarray) -> dict[str, np.ndarray]:
    """What the probes predict: the mean and the 3 free entries of each 2x2 covariance."""
    return {"mean": means, "covariance": covs[:, [0, 0, 1], [0, 1, 1]]}


def probe(generator: str, steps: int, setting: str, seed: int, quick: bool) -> pd.DataFrame:
    """Probe and regeneration scores of held-out and training sets (rows) for one trained model."""
    size = size_of("interpolation", quick, steps)
    cfg = MVN2[setting]
    train = scgde.datasets.synthetic_mvn(size.n_train, size.train_set_size, dim=2, seed=seed, **cfg)
    test = scgde.datasets.synthetic_mvn(size.n_test, size.test_set_size, dim=2, seed=seed + 1000, **cfg)
    model = fit_pair(train, "resnet", generator, size, seed).model
    z_train = embed(model, train)  # rows in uns["synthetic"]["sets"] order, like the truth
    alphas = np.logspace(-4, 3, 15)
    y_train = _targets(train.uns["synthetic"]["means"], train.uns["synthetic"]["covs"])
    regressors = {
        name: (RidgeCV(alphas=alphas).fit(z_train, y), KNeighborsRegressor(10).fit(z_train, y))
        for name, y in y_train.items()
    }
    rows = {}
    rng = np.random.default_rng(seed)
    for label, adata, z_all in [("held-out sets", test, embed(model, test)), ("training sets", train, z_train)]:
        truth = adata.uns["synthetic"]
        pick = np.sort(rng.choice(len(z_all), size=min(size.n_test, len(z_all)), replace=False))
        z, means, covs = z_all[pick], truth["means"][pick], truth["covs"][pick]
        row = {}
        for name, y in _targets(means, covs).items():
            ridge, knn = regressors[name]
            row[f"R^2 z -> {name} (ridge)"] = ridge.score(z, y)
            row[f"R^2 z -> {name} (10-NN)"] = knn.score(z, y)
        generated = model.generate(z, n_cells=size.n_gen).X
        m, c = moments(np.asarray(generated, dtype=np.float64).reshape(len(pick), size.n_gen, -1))
        row["mean error ‖Δμ‖"] = float(np.linalg.norm(m - means, axis=1).mean())
        row["W2, covariance part"] = float(gaussian_w2(means, c, means, covs).mean())
        row["W2"] = float(gaussian_w2(m, c, means, covs).mean())
        true_trace, gen_trace = np.trace(covs, axis1=1, axis2=2), np.trace(c, axis1=1, axis2=2)
        row["slope gen. vs true trace"] = float(np.polyfit(true_trace, gen_trace, 1)[0])
        rows[label] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = f"{setting}, resnet + {generator}, {steps} steps"
    return frame


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Command line: train, probe and print the scores; returns them (one row per set group)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=["ddpm", "flow", "cvae", "direct"], default="flow")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--setting", choices=sorted(MVN2), default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with _common.quiet(), _common.pinned_threads(1):
        frame = probe(args.generator, args.steps, args.setting, args.seed, args.quick)
    print(_common.markdown_table(frame.T))
    print(f"\nwall time {time.perf_counter() - start:.0f} s; {_common.machine()}; 1 torch thread")
    return frame


if __name__ == "__main__":
    main()
