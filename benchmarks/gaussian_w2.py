"""Do latent distances track W2? Sets of 2-D Gaussians, held-out sets, against set-mean and plug-in baselines.

Without ``--max-epochs`` it trains for about 2,000 steps of about one pass over the training cells each epoch.

Usage: python -m benchmarks.gaussian_w2 [--setting paper|covariance|both] [--generator ddpm] [--max-epochs N]
       [--lr-schedule cosine|constant] [--quick]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy.spatial.distance import pdist

import scgde
from benchmarks import _common
from benchmarks._gaussian import MVN2
from scgde.metrics import gaussian_w2

TRAIN_SIZE = 0.9  # sets held out for the validation loss


def run(
    setting: str,
    quick: bool,
    encoder: str,
    generator: str,
    max_epochs: int | None = None,
    n_latent: int = 16,
    cells_per_set: int = 100,
    n_hidden: int = 64,
    n_train: int = 2000,
    set_size: int = 500,
    lr_schedule: str = "cosine",
    seed: int = 0,
    sets_per_batch: int = 64,
) -> dict:
    """Train on 2-D MVN sets of ``setting``; Spearman of each pairwise distance against the true W2."""
    cfg = MVN2[setting]
    n_train, n_test, size = (300, 100, 200) if quick else (n_train, 300, set_size)
    train = scgde.datasets.synthetic_mvn(n_sets=n_train, set_size=size, dim=2, seed=seed, **cfg)
    test = scgde.datasets.synthetic_mvn(n_sets=n_test, set_size=size, dim=2, seed=seed + 1000, **cfg)
    # the split GDE.train makes: round(0.9 n) sets, at least one held out
    n_train_sets = min(max(1, round(TRAIN_SIZE * n_train)), n_train - 1)
    per_epoch = _common.one_pass(n_train_sets * size, sets_per_batch, cells_per_set)
    epochs = 3 if quick else (max_epochs or max(1, math.ceil(_common.DEFAULT_STEPS / per_epoch)))
    model, train_s, *_ = _common.fit(
        train,
        generator=generator,
        encoder=encoder,
        n_latent=n_latent,
        n_hidden=n_hidden,
        seed=seed,
        epochs=epochs,
        batches_per_epoch=per_epoch,
        sets_per_batch=sets_per_batch,
        cells_per_set=cells_per_set,
        train_size=TRAIN_SIZE,
        lr_schedule=lr_schedule,
    )
    truth = test.uns["synthetic"]
    w2 = _common.upper(gaussian_w2(truth["means"], truth["covs"], truth["means"], truth["covs"], paired=False))
    z = _common.embed(model, test)
    groups = test.obs["set"].cat.codes.to_numpy()
    x = test.X
    means = np.stack([x[groups == i].mean(0) for i in range(n_test)])
    covs = np.stack([np.cov(x[groups == i].T) for i in range(n_test)])
    plug_in = _common.upper(gaussian_w2(means, covs, means, covs, paired=False))
    rho = _common.spearman
    return {
        "setting": setting,
        "encoder": encoder,
        "generator": generator,
        "GDE latent L2": rho(pdist(z), w2),
        "set means L2": rho(pdist(means), w2),
        "plug-in Gaussian W2": rho(plug_in, w2),
        "train_s": train_s,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Command line: run one or both settings and print the table; returns one result dict per setting."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=[*MVN2, "both"], default="both")
    parser.add_argument("--encoder", default="resnet")
    parser.add_argument("--generator", default="ddpm")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--n-latent", type=int, default=16)
    parser.add_argument("--cells-per-set", type=int, default=100)
    parser.add_argument("--n-hidden", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--set-size", type=int, default=500)
    parser.add_argument("--lr-schedule", default="cosine", choices=["cosine", "constant"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 epochs (a smoke test)")
    args = parser.parse_args(argv)
    settings = list(MVN2) if args.setting == "both" else [args.setting]
    options = {
        k: getattr(args, k)
        for k in ("max_epochs", "n_latent", "cells_per_set", "n_hidden", "n_train", "set_size", "lr_schedule", "seed")
    }
    with _common.quiet(), _common.pinned_threads(args.threads):
        rows = [run(s, args.quick, args.encoder, args.generator, **options) for s in settings]
    print("\nSpearman correlation with true W2 over pairs of held-out sets")
    print("| setting | encoder+generator | GDE latent L2 | set means L2 | plug-in Gaussian W2 | train (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['encoder']}+{r['generator']} | {r['GDE latent L2']:.3f} | {r['set means L2']:.3f} "
            f"| {r['plug-in Gaussian W2']:.3f} | {r['train_s']:.0f} |"
        )
    return rows


if __name__ == "__main__":
    main()
