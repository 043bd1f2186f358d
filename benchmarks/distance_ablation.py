"""Which model makes latent distances track W2 on covariance-heavy 50-D Gaussian sets?

The sets of the speed benchmark's distance-matrix job (``speed.gaussian_family``: means on a plane,
log-spectra along two directions; 4 parameters theta in [-1, 1]). For each configuration: train on
200 sets x 2,000 cells (seed 1), embed 200 other sets (seed 0) and report

- Spearman(latent L2, true W2) over all 19,900 pairs;
- R^2 of a ridge from the set vector to each family parameter (fitted on the training sets, scored on the
  query sets): theta_0, theta_1 move the mean, theta_2, theta_3 the covariance;

and, with ``--probe``, the same encoder architecture trained *supervised* to regress theta (is the
information representable at all, or does the generator's loss ignore it?).

Usage: python -m benchmarks.distance_ablation [--configs default cvae_quadratic_film ...] [--probe] [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV

import scgde
from benchmarks import _common
from benchmarks.speed import _draw, _sets_adata, family_moments, fit_and_embed

QUADRATIC = {"encoder_kwargs": {"quadratic": True}}
FILM = {"generator_kwargs": {"conditioning": "film"}}
CONFIGS: dict[str, tuple[dict, dict]] = {  # name: (GDE kwargs, train kwargs)
    "default": ({}, {}),
    "cells_per_set_500": ({}, {"cells_per_set": 500}),
    "flow_film": (FILM, {}),
    "ddpm_film": ({"generator": "ddpm", **FILM}, {}),
    "flow_quadratic": (QUADRATIC, {}),
    "flow_quadratic_film": ({**QUADRATIC, **FILM}, {}),
    "cvae": ({"generator": "cvae"}, {}),
    "cvae_film": ({"generator": "cvae", **FILM}, {}),
    "cvae_quadratic": ({"generator": "cvae", **QUADRATIC}, {}),
    "cvae_quadratic_film": ({"generator": "cvae", **QUADRATIC, **FILM}, {}),
    "cvae_quadratic_film_5000_steps": ({"generator": "cvae", **QUADRATIC, **FILM}, {"max_epochs": 88}),
}
DIM = 50


def family_sets(n_sets: int, size: int, seed: int):
    """Sets of the family with their parameters theta (the draws of ``speed.gaussian_family`` with this seed)."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, size=(n_sets, 4))
    means, covs = family_moments(theta, DIM)
    return _draw(means, covs, size, rng).astype(np.float32), means, covs, theta


def _r2(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    return [float(1 - ((pred[:, j] - truth[:, j]) ** 2).mean() / truth[:, j].var()) for j in range(truth.shape[1])]


def run_config(name: str, data: dict, quick: bool) -> dict:
    model_kwargs, train_kwargs = CONFIGS[name]
    train = _sets_adata(data["train"].reshape(-1, DIM), len(data["train"]))
    query = _sets_adata(data["query"].reshape(-1, DIM), len(data["query"]))
    (z, z_train), train_s, _ = fit_and_embed(train, [query, train], model_kwargs, train_kwargs, quick)
    ridge = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(z_train, data["theta_train"])
    r2 = _r2(ridge.predict(z), data["theta_query"])
    row = {"Spearman(latent L2, W2)": float(spearmanr(pdist(z), data["w2"]).statistic)}
    row.update({f"R^2 theta_{j}": value for j, value in enumerate(r2)})
    row["train (s)"] = train_s
    return row


def supervised_probe(data: dict, quick: bool) -> pd.DataFrame:
    """The default encoder architecture trained to regress theta directly (no generator)."""
    import torch

    x_train = torch.from_numpy(data["train"])
    scale = x_train.reshape(-1, DIM).std(0)
    target = torch.as_tensor(data["theta_train"], dtype=torch.float32)
    rows = {}
    for quadratic in (False, True):
        torch.manual_seed(0)
        encoder = scgde.nn.build_encoder("resnet", DIM, 16, n_hidden=64, quadratic=quadratic)
        head = torch.nn.Linear(16, 4)
        opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
        for _ in range(20 if quick else 1500):
            sets = torch.randint(0, len(x_train), (64,))
            cells = torch.randint(0, x_train.shape[1], (64, 100))
            loss = (head(encoder(x_train[sets[:, None], cells] / scale)) - target[sets]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        encoder.eval()
        with torch.no_grad():
            pred = head(encoder(torch.from_numpy(data["query"]) / scale)).numpy()
        r2 = _r2(pred, data["theta_query"])
        rows[f"supervised resnet encoder (quadratic={quadratic})"] = {f"R^2 theta_{j}": v for j, v in enumerate(r2)}
    return pd.DataFrame(rows).T


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--probe", action="store_true", help="also train the encoder supervised on theta")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and trainings (a smoke test, not a result)")
    args = parser.parse_args(argv)
    n_sets, size = (20, 200) if args.quick else (200, 2000)
    train, _, _, theta_train = family_sets(n_sets, size, seed=1)
    query, means, covs, theta_query = family_sets(n_sets, size, seed=0)
    w2 = scgde.metrics.gaussian_w2(means, covs, means, covs, paired=False)[np.triu_indices(n_sets, 1)]
    data = {"train": train, "query": query, "theta_train": theta_train, "theta_query": theta_query, "w2": w2}
    with _common.quiet():
        table = pd.DataFrame({name: run_config(name, data, args.quick) for name in args.configs}).T
        table.loc["baseline: set means", "Spearman(latent L2, W2)"] = spearmanr(pdist(query.mean(1)), w2).statistic
        probe = supervised_probe(data, args.quick) if args.probe else None
    print(_common.markdown_table(table))
    if probe is not None:
        print("\n" + _common.markdown_table(probe))
    print(f"\nMachine: {_common.machine()}")
    return {"table": table, "probe": probe}


if __name__ == "__main__":
    main()
