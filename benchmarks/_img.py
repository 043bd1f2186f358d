"""The command line shared by the image benchmarks (``img_digits``, ``img_screen``, ``img_nuclei``)."""

from __future__ import annotations

import argparse


def parser(doc: str, steps: int, quick_steps: int) -> argparse.ArgumentParser:
    """``--quick --seed --generator --steps --threads``; the generator defaults to ImageGDE's (flow)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and sanity assertions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", default="flow", choices=["ddpm", "flow"])
    p.add_argument(
        "--steps", type=int, default=None, help=f"optimiser steps (default: {steps:,}; quick: {quick_steps})"
    )
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads during the run")
    return p


def fit(
    adata,
    args: argparse.Namespace,
    steps: int,
    sets_per_batch: int,
    cells_per_set: int,
    *,
    setup: dict,
    n_latent: int,
    before_train=None,
    **train_kwargs,
):
    """An ImageGDE (``args.generator``; torch seeded with ``args.seed`` after the setup) trained for about ``steps``
    steps (50 per epoch, lr 1e-3 constant, no validation split): :func:`benchmarks._common.fit_model`'s ``Fit``."""
    import scgde
    from benchmarks import _common

    epochs, per_epoch = _common.budget(steps, batches_per_epoch=50)
    budget = {"epochs": epochs, "batches_per_epoch": per_epoch, "sets_per_batch": sets_per_batch}
    budget |= {"cells_per_set": cells_per_set, "train_size": 1.0, "lr": 1e-3, "lr_schedule": "constant"}
    return _common.fit_model(
        scgde.img.ImageGDE,
        adata,
        setup=setup,
        model={"n_latent": n_latent, "generator": args.generator},
        train={**budget, **train_kwargs},
        seed=args.seed,
        seed_with="torch",
        before_train=before_train,
    )
