"""Helpers shared by the discrete / count benchmarks (the paper's Figs. 2, 3, 5/11, Table 1 and a digits analogue).

``--quick`` runs tiny sizes and asserts only that the metrics are finite and that the trained model beats an untrained
model of the same architecture (the same initial weights); it raises AssertionError otherwise. Every baseline is
measured in the same run on the same evaluation sets. Training uses one torch thread by default (``--threads``): on a
2-core machine shared with other jobs, two intra-op threads made a training step ~30x slower (1.3 s instead of 0.04 s).
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial.distance import squareform
from scipy.stats import pearsonr

import scgde
from benchmarks import _common
from scgde.metrics import multinomial_w2

BATCHES_PER_EPOCH = 50
SETS_PER_BATCH = 64
CELLS_PER_SET = 100
N_LATENT, N_HIDDEN = 16, 64
GENERATORS = ["ddpm", "flow", "cvae", "direct"]


def make_model(adata: AnnData, encoder: str, generator: str, seed: int, **model_kwargs):
    """A GDE (L=16, H=64) whose initial weights depend only on ``seed``; ``adata`` must be set up already."""
    return _common.make_model(
        adata,
        generator=generator,
        encoder=encoder,
        n_latent=N_LATENT,
        n_hidden=N_HIDDEN,
        seed=seed,
        set_key=None,
        **model_kwargs,
    )


def train(model, steps: int) -> float:
    """Train for about ``steps`` optimiser steps of 64 sets x 100 (cosine LR decay, no validation split); seconds."""
    epochs, per_epoch = _common.budget(steps, batches_per_epoch=BATCHES_PER_EPOCH)
    return _common.train(
        model,
        epochs=epochs,
        batches_per_epoch=per_epoch,
        sets_per_batch=SETS_PER_BATCH,
        cells_per_set=CELLS_PER_SET,
        train_size=1.0,
        lr=1e-3,
        lr_schedule="cosine",
    )


def set_means(adata: AnnData) -> np.ndarray:
    """Per-set sample means, in the order of ``uns["synthetic"]["sets"]``."""
    frame = pd.DataFrame(np.asarray(adata.X), index=adata.obs["set"].to_numpy())
    return frame.groupby(level=0, sort=False).mean().loc[list(adata.uns["synthetic"]["sets"])].to_numpy()


def full_matrix_pearson(dist: np.ndarray, truth: np.ndarray) -> float:
    """The paper's convention: all entries of the square matrices, diagonal zeros included."""
    return float(pearsonr(squareform(dist).ravel(), squareform(truth).ravel()).statistic)


def grid_truth() -> tuple[np.ndarray, np.ndarray]:
    """The 55-point simplex grid and the condensed Gaussian-approximate W2 between its points."""
    grid = scgde.datasets.simplex_grid(3, 9)
    w2 = multinomial_w2(grid, grid, paired=False)
    return grid, squareform(w2, checks=False)


def parser(doc: str, generator: str = "ddpm", n_trials: bool = True) -> argparse.ArgumentParser:
    """The options of every discrete benchmark (``--n-trials`` only where multinomial sets are drawn)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and sanity assertions (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", default="resnet", choices=["resnet", "deepsets", "attention", "mean"])
    p.add_argument("--generator", default=generator, choices=GENERATORS)
    if n_trials:
        p.add_argument("--n-trials", type=int, default=20, help="multinomial trials, training and evaluation")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads during the run")
    return p


def _options(p: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command-line options that reproduce ``args`` (every one that differs from its default)."""
    defaults = vars(p.parse_args([]))
    flags = " --quick" if args.quick else ""
    for key, value in vars(args).items():
        if key not in ("quick", "mode", "seed") and value != defaults[key]:
            flags += f" --{key.replace('_', '-')} {value}"
    return f"{flags} --seed {args.seed}"


def run_one(
    module: str,
    title: str,
    p: argparse.ArgumentParser,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace], dict],
) -> dict:
    """Parse ``argv``, run the experiment quietly, print its markdown (table, notes, command, machine); return it."""
    args = p.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    with _common.quiet(), _common.pinned_threads(args.threads):
        start = time.perf_counter()
        result = run(args)
        result["wall_s"] = time.perf_counter() - start
    result["command"] = f"python -m benchmarks.{module}{_options(p, args)}"
    result["markdown"] = "\n".join(
        [
            f"### {title}",
            "",
            _common.markdown_table(result["table"]),
            "",
            *[f"- {note}" for note in result["notes"]],
            f"- Command: `{result['command']}`; machine: {_common.machine()}; "
            f"{datetime.date.today().isoformat()}; wall time {result['wall_s']:.0f} s.",
        ]
    )
    print(result["markdown"] + "\n", flush=True)
    return result
