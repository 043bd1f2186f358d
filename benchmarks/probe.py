"""What does a set vector know? Held-out ridge probes and W2 ranking on Gaussian families with known moments.

For a trained model and sets with known parameters: the held-out ridge R^2 of the sets' means and of their
vectorised covariances (upper triangle) from the set vector, beside the same probe on the set means and on the
untrained encoder of the same architecture; and the Spearman correlation of latent L2 with the closed-form W2
over all held-out pairs, beside the set means' L2, the plug-in Gaussian W2 of the sample moments, and the
best a Euclidean embedding of the latent's dimension does on the true W2 itself (classical MDS of the held-out
sets' true distances: in the ``rotated`` family W2 is far from Euclidean in few dimensions).

Usage::

    python -m benchmarks.probe --dims 2 10 30 50 [--kind rotated|plane] [--model-kwargs '{"generator": "cvae"}']
        [--train-kwargs '{"max_epochs": 10}'] [--quick]

Every model is ``GDE(adata, **model_kwargs)`` with ``train(**train_kwargs)``: the defaults when both are empty.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist, squareform
from sklearn.linear_model import RidgeCV

from benchmarks import _common
from benchmarks._families import baselines, family, pairwise_w2, sample_moments, spearman

#: sets and samples per set of the probe's families
N_TRAIN, N_QUERY, SET_SIZE = 400, 150, 300


def ridge_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out R^2 of a ridge (alpha by cross-validation) from ``x`` to ``y``, pooled over the targets."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    ridge = RidgeCV(alphas=np.logspace(-4, 3, 15)).fit((x_train - mu) / sd, y_train)
    pred = ridge.predict((x_test - mu) / sd)
    return float(1 - ((pred - y_test) ** 2).sum() / ((y_test - y_train.mean(0)) ** 2).sum())


def euclidean_reference(true_w2: np.ndarray, k: int) -> float:
    """Spearman with the true W2 of a ``k``-dimensional Euclidean embedding of that W2 (classical MDS).

    Fitted to the held-out sets' own true distances, so no encoder of a ``k``-dimensional latent that only
    sees samples can be expected to do better: a reference for what latent L2 in ``k`` dimensions can reach.
    """
    dist = squareform(true_w2)
    n = len(dist)
    centring = np.eye(n) - 1.0 / n
    gram = -0.5 * centring @ (dist**2) @ centring
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:k]
    coords = vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))
    return spearman(pdist(coords), true_w2)


def _vec_cov(covs: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(covs.shape[1])
    return covs[:, i, j]


def probe_rows(features: dict[str, tuple[np.ndarray, np.ndarray]], truth_train: dict, truth_test: dict) -> pd.DataFrame:
    """Ridge R^2 of every target in ``truth_*`` from every representation in ``features`` (name: (train, test))."""
    rows = {}
    for name, (f_train, f_test) in features.items():
        rows[name] = {
            f"R^2 {target}": ridge_r2(f_train, truth_train[target], f_test, truth_test[target])
            for target in truth_train
        }
    return pd.DataFrame(rows).T


def run_dim(dim: int, kind: str, model_kwargs: dict, train_kwargs: dict, quick: bool, seed: int) -> pd.DataFrame:
    """One dimension: train on ``N_TRAIN`` sets, probe and rank on ``N_QUERY`` held-out sets."""
    import scvi

    import scgde

    n_train, n_query = (60, 40) if quick else (N_TRAIN, N_QUERY)
    train, m_train, c_train = family(kind, n_train, SET_SIZE, dim, seed + 1)
    query, m_query, c_query = family(kind, n_query, SET_SIZE, dim, seed)
    true_w2 = pairwise_w2(m_query, c_query)
    scvi.settings.seed = seed
    scgde.model.GDE.setup_anndata(train, set_key="set")
    model = scgde.model.GDE(train, **model_kwargs)
    untrained = _embed(model, [train, query])
    start = time.perf_counter()
    model.train(enable_progress_bar=False, **({"max_epochs": 2, "batches_per_epoch": 5} if quick else train_kwargs))
    train_s = time.perf_counter() - start
    z_train, z_query = _embed(model, [train, query])
    means_train, _ = sample_moments(train)
    means_query, _ = sample_moments(query)
    truth_train = {"means": m_train, "covariances": _vec_cov(c_train)}
    truth_test = {"means": m_query, "covariances": _vec_cov(c_query)}
    table = probe_rows(
        {"GDE": (z_train, z_query), "set means": (means_train, means_query), "untrained encoder": tuple(untrained)},
        truth_train,
        truth_test,
    )
    ranks = {"GDE": spearman(pdist(z_query), true_w2), **baselines(query, true_w2)}
    table["Spearman(L2, W2)"] = pd.Series(ranks)
    table.loc["plug-in Gaussian W2", "Spearman(L2, W2)"] = ranks["plug-in Gaussian W2"]
    k = z_query.shape[1]
    table.loc[f"true W2, MDS in {k} dims (reference)", "Spearman(L2, W2)"] = euclidean_reference(true_w2, k)
    table["train (s)"] = np.nan
    table.loc["GDE", "train (s)"] = train_s
    table.insert(0, "dim", dim)
    return table


def _embed(model, adatas) -> list[np.ndarray]:
    out = []
    for adata in adatas:
        order = [f"s{i}" for i in range(adata.obs["set"].nunique())]
        out.append(model.get_set_representation(adata, progress_bar=False).loc[order].to_numpy())
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 10, 30, 50])
    parser.add_argument("--kind", choices=["rotated", "plane"], default="rotated")
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    parser.add_argument("--train-kwargs", type=json.loads, default={})
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(_common.machine(), flush=True)
    tables = []
    for dim in args.dims:
        table = run_dim(dim, args.kind, args.model_kwargs, args.train_kwargs, args.quick, args.seed)
        print(_common.markdown_table(table), flush=True)
        tables.append(table)
    return pd.concat(tables)


if __name__ == "__main__":
    main()
