"""Does the set embedding carry the covariance, or only the mean? (2-D Gaussian sets)

Trains a GDE (resnet encoder) on 2-D Gaussian sets exactly as ``synthetic_gaussian.py interpolation``
does, then, on 40 held-out sets of 20,000 points and 40 training sets:

- probes the set vectors: R^2 of ridge and 10-NN regressions (fitted on all training sets) from the
  vector to the true mean and to the true covariance entries;
- regenerates each set (10,000 points) and splits its W2 error into mean and covariance parts
  (``‖Δμ‖`` and the W2 with the true mean put in), and reports the slope of the generated
  covariance trace against the true one (1 = covariances reproduced, 0 = one covariance for all).

Usage: python benchmarks/covariance_probe.py [--generator flow] [--steps 1500] [--setting paper] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import KNeighborsRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic_gaussian as sg
from _common import machine, markdown_table

import scgde
from scgde.metrics import gaussian_w2

TRIU = ([0, 0, 1], [0, 1, 1])  # the 3 free entries of a 2x2 covariance


def probe(generator: str, steps: int, setting: str, seed: int, quick: bool) -> pd.DataFrame:
    size = replace(sg.SIZES["interpolation"]["quick" if quick else "full"], steps=steps)
    cfg = sg.W2_SETTINGS[setting]
    train = scgde.datasets.synthetic_mvn(size.n_train, size.train_set_size, dim=2, seed=seed, **cfg)
    test = scgde.datasets.synthetic_mvn(size.n_test, size.test_set_size, dim=2, seed=seed + 1000, **cfg)
    fitted = sg.fit(train, "resnet", generator, size, seed)
    model = fitted.model
    z_train = model.get_set_representation(train).to_numpy()
    truth_train = train.uns["synthetic"]
    alphas = np.logspace(-4, 3, 15)
    targets = {"mean": lambda t: t["means"], "covariance": lambda t: t["covs"][:, TRIU[0], TRIU[1]]}
    regressors = {
        name: (
            RidgeCV(alphas=alphas).fit(z_train, f(truth_train)),
            KNeighborsRegressor(10).fit(z_train, f(truth_train)),
        )
        for name, f in targets.items()
    }
    rows = {}
    rng = np.random.default_rng(seed)
    for label, adata in [("held-out sets", test), ("training sets", train)]:
        truth = adata.uns["synthetic"]
        names = list(truth["sets"])
        pick = np.sort(rng.choice(len(names), size=min(size.n_test, len(names)), replace=False))
        names = [names[i] for i in pick]
        z = model.get_set_representation(adata, sets=names).to_numpy()
        means, covs = truth["means"][pick], truth["covs"][pick]
        row = {}
        for name, (ridge, knn) in regressors.items():
            y = targets[name]({"means": means, "covs": covs})
            row[f"R^2 z -> {name} (ridge)"] = ridge.score(z, y)
            row[f"R^2 z -> {name} (10-NN)"] = knn.score(z, y)
        generated = model.generate(z, n_cells=size.n_gen).X
        m, c = sg.moments(np.asarray(generated, dtype=np.float64).reshape(len(names), size.n_gen, -1))
        row["mean error ‖Δμ‖"] = float(np.linalg.norm(m - means, axis=1).mean())
        row["W2, covariance part"] = float(gaussian_w2(means, c, means, covs).mean())
        row["W2"] = float(gaussian_w2(m, c, means, covs).mean())
        true_trace, gen_trace = np.trace(covs, axis1=1, axis2=2), np.trace(c, axis1=1, axis2=2)
        row["slope gen. vs true trace"] = float(np.polyfit(true_trace, gen_trace, 1)[0])
        rows[label] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = f"{setting}, resnet + {generator}, {steps} steps"
    return frame


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=["ddpm", "flow", "cvae", "direct"], default="flow")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--setting", choices=sorted(sg.W2_SETTINGS), default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args(argv)
    sg._quiet()
    torch.set_num_threads(1)
    start = time.perf_counter()
    frame = probe(args.generator, args.steps, args.setting, args.seed, args.quick)
    print(markdown_table(frame.T))
    print(f"\nwall time {time.perf_counter() - start:.0f} s; {machine()}; 1 torch thread")
    return frame


if __name__ == "__main__":
    main()
