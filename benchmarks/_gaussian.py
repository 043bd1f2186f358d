"""Settings, sizes and helpers shared by the synthetic Gaussian benchmarks (the paper's Tables 5, 2 and Figs. 4, 10).

Every generated set goes through the same pipeline as the baselines: draw ``n_gen`` points, take their sample moments
(or fit a GMM), compare with the truth. "untrained" is a GDE with the same arguments and the same initial weights.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

import scgde
from benchmarks import _common

#: Table 5 (5-D MVN, scale 1): generator -> encoder -> ‖Δμ‖ + Bures². "direct" is the paper's Sliced-W2 row.
PAPER_TABLE5 = {
    "direct": {"mean": 0.029406, "kme": 0.042248, "resnet": 0.028232, "attention": 0.043769},
    "cvae": {"mean": 0.159110, "kme": 0.162073, "resnet": 0.152493, "attention": 0.172604},
    "ddpm": {"mean": 0.031682, "kme": 0.035308, "resnet": 0.020520, "attention": 0.073925},
}

#: 5-D settings of Table 5. "paper": inverse-Wishart(df = 10 * (5 - 1), scale 1), E[Sigma] ~ 0.029 I, W2 is all
#: means; "covariance": means explain ~60% of W2^2 between sets, so set means alone fail
MVN5 = {
    "paper": {"mean_range": (0.0, 5.0), "df": 40.0, "scale": 1.0},
    "covariance": {"mean_range": (0.0, 1.0), "df": 10.0, "scale": 1.0},
}
#: 2-D settings of Figs. 4 and 10 and of gaussian_w2. "paper": means dominate W2; "covariance": they explain part
MVN2 = {
    "paper": {"mean_range": (0.0, 5.0), "df": 10.0},
    "covariance": {"mean_range": (0.0, 1.0), "df": 5.0},
}
#: component prior of the paper's GMM *evaluation* sets (df = 10, not scaled by dim - 1)
GMM5_TEST = {"mean_range": (0.0, 5.0), "df": 10.0, "scale": 1.0}
GMM2 = {"mean_range": (0.0, 5.0), "df": 10.0, "scale": 1.0}  # 2-D: df0 * (d - 1) = 10 in training and test


@dataclass
class Size:
    """Data and training sizes of one experiment."""

    n_train: int  # training sets
    train_set_size: int  # points per training set
    steps: int  # optimiser steps
    sets_per_batch: int
    cells_per_set: int
    n_latent: int
    n_hidden: int
    n_test: int  # held-out sets
    test_set_size: int  # points per held-out set (all of them are encoded)
    n_gen: int  # points generated per held-out set
    n_untrained: int = 8  # held-out sets on which the untrained model is evaluated
    n_untrained_gen: int = 500
    epochs: int = 5
    lr: float = 1e-3


SIZES = {
    "table5": {
        "full": Size(5000, 64, 1000, 32, 64, 32, 128, 30, 10_000, 2000),
        "quick": Size(300, 64, 150, 16, 32, 8, 32, 6, 500, 300, n_untrained=4, n_untrained_gen=300, epochs=1),
    },
    "distances": {
        "full": Size(2000, 500, 1500, 32, 100, 16, 64, 200, 500, 0),
        "quick": Size(300, 200, 300, 16, 50, 8, 32, 40, 200, 0, epochs=1),
    },
    "interpolation": {
        "full": Size(2000, 500, 1500, 32, 100, 16, 64, 40, 20_000, 10_000, n_untrained_gen=2000),
        "quick": Size(300, 200, 150, 16, 50, 8, 32, 20, 2000, 1000, n_untrained_gen=500, epochs=1),
    },
}
SIZES["table2"] = SIZES["table5"]


def size_of(experiment: str, quick: bool, steps: int | None = None) -> Size:
    """The sizes of ``experiment`` (a copy), with ``steps`` overridden when given."""
    size = replace(SIZES[experiment]["quick" if quick else "full"])
    return size if steps is None else replace(size, steps=steps)


@dataclass
class Fitted:
    """A trained GDE, its untrained twin (same arguments, same initial weights) and the training time."""

    model: scgde.model.GDE
    untrained: scgde.model.GDE
    train_s: float
    encoder: str
    generator: str

    @property
    def name(self) -> str:
        return f"{self.encoder} + {self.generator}"


def fit_pair(adata, encoder: str, generator: str, size: Size, seed: int, mixer: dict | None = None) -> Fitted:
    """Train one GDE for ``size.steps`` steps (cosine learning-rate decay, no validation split) beside its twin."""
    arch = {"generator": generator, "encoder": encoder, "n_latent": size.n_latent, "n_hidden": size.n_hidden}
    untrained = _common.make_model(adata, seed=seed, **arch)
    epochs, per_epoch = _common.budget(size.steps, epochs=size.epochs)
    model, train_s, *_ = _common.fit(
        adata,
        set_key=None,  # registered by make_model above
        seed=seed,
        epochs=epochs,
        batches_per_epoch=per_epoch,
        sets_per_batch=size.sets_per_batch,
        cells_per_set=size.cells_per_set,
        train_size=1.0,
        lr=size.lr,
        lr_schedule="cosine",
        mixer=mixer,
        **arch,
    )
    return Fitted(model, untrained, train_s, encoder, generator)


def chunk_for(adata) -> int:
    """A chunk size giving at most 4 chunks (so no progress bar), at most 200,000 rows."""
    return int(min(200_000, max(16_384, math.ceil(adata.n_obs / 4))))


def embed(model, adata) -> np.ndarray:
    """Set vectors of every set of ``adata``, in ``uns["synthetic"]["sets"]`` order (at most 4 chunks)."""
    return _common.embed(model, adata, chunk_size=chunk_for(adata))


def set_arrays(adata) -> np.ndarray:
    """The points of every set of a synthetic AnnData, ``(n_sets, set_size, d)`` in ``uns["synthetic"]["sets"]`` order."""
    codes = adata.obs["set"].cat.codes.to_numpy()
    order = np.argsort(codes, kind="stable")
    n_sets = len(adata.obs["set"].cat.categories)
    x = np.asarray(adata.X, dtype=np.float64)[order]
    if len(x) % n_sets or np.any(np.bincount(codes, minlength=n_sets) != len(x) // n_sets):
        raise ValueError("sets of unequal size")
    return x.reshape(n_sets, len(x) // n_sets, -1)


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample means ``(S, d)`` and unbiased covariances ``(S, d, d)`` of ``x (S, n, d)``."""
    mean = x.mean(1)
    xc = x - mean[:, None]
    return mean, np.einsum("snd,sne->sde", xc, xc) / (x.shape[1] - 1)


def sample_gaussians(means: np.ndarray, covs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points from each Gaussian, ``(S, n, d)``."""
    chol = np.linalg.cholesky(covs + 1e-12 * np.eye(covs.shape[-1]))
    eps = rng.standard_normal((len(means), n, means.shape[-1]))
    return means[:, None] + eps @ np.swapaxes(chol, 1, 2)


def generate(model: scgde.model.GDE, test, n_sets: int, n_gen: int) -> np.ndarray:
    """Encode the first ``n_sets`` held-out sets from all their points and generate ``n_gen`` points each."""
    names = list(test.uns["synthetic"]["sets"][:n_sets])
    z = model.get_set_representation(test, sets=names, chunk_size=chunk_for(test))
    out = model.generate(z, n_cells=n_gen)
    return np.asarray(out.X, dtype=np.float64).reshape(n_sets, n_gen, -1)


def training_moments(train) -> tuple[np.ndarray, np.ndarray]:
    """Average sample mean and average (unbiased) sample covariance of the training sets."""
    m, c = moments(set_arrays(train))
    return m.mean(0), c.mean(0)


def gaussian_baselines(test_x: np.ndarray, train_mean, train_cov, truth_means, truth_covs) -> dict:
    """Parameters ``(means, covs)`` of the trivial Gaussian baselines for each held-out set."""
    n = len(test_x)
    m_in, c_in = moments(test_x)
    avg_cov = np.broadcast_to(train_cov, c_in.shape)
    return {
        "oracle: true parameters (Monte-Carlo floor)": (truth_means, truth_covs),
        "plug-in Gaussian (input set moments)": (m_in, c_in),
        "set means alone (+ avg training cov)": (m_in, avg_cov),
        "training mean (one average Gaussian)": (np.broadcast_to(train_mean, (n, len(train_mean))), avg_cov),
    }


def sem(values: np.ndarray) -> float:
    """Standard error of the mean (NaN for a single value)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def untrained_key(row: dict) -> str | None:
    """The row's "untrained ..." column, if it has one."""
    return next((k for k in row if k.startswith("untrained")), None)


def header(title: str, size: Size, notes: str) -> str:
    """The markdown heading, notes and sizes printed above a table."""
    return (
        f"### {title}\n\n{notes}\n\nsizes: {size.n_train} training sets x {size.train_set_size} points; "
        f"{size.steps} steps of {size.sets_per_batch} sets x {size.cells_per_set} points (Adam, lr {size.lr}, "
        f"cosine decay); L = {size.n_latent}, H = {size.n_hidden}; {size.n_test} held-out sets x "
        f"{size.test_set_size} points" + (f", {size.n_gen} generated per set" if size.n_gen else "") + "."
    )


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every Gaussian benchmark has: ``--quick``, ``--seed``, ``--steps``, ``--threads``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes; asserts finiteness and trained > untrained")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS threads (default 1: on a shared 2-core machine more threads were 10-30x slower)",
    )
    return p


def report(args: argparse.Namespace, run: Callable[[], dict]) -> dict:
    """Run one benchmark quietly on ``args.threads`` threads, print its table with the wall time; return its result."""
    with _common.quiet(), _common.pinned_threads(args.threads):
        start = time.perf_counter()
        result = run()
        result["wall_s"] = time.perf_counter() - start
    print(
        f"\n{result['table']}\n\nwall time {result['wall_s']:.0f} s; {_common.machine()}; "
        f"{args.threads} torch/BLAS thread(s)\n"
    )
    return result
