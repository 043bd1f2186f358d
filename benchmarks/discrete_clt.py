"""The GDE paper's Fig. 2 (CLT): spread of the embeddings and per-set losses of one fixed distribution vs set size m.

m in {10, 100, 1000, 10000} (paper: the spread shrinks by ~sqrt(10) per decade; the mean loss is stable), beside the
mean loss of an untrained model with the same initial weights.

Usage: python -m benchmarks.discrete_clt [--quick] [--seed 0] [--encoder resnet] [--generator ddpm] [--n-trials 20]
       [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

import scgde
from benchmarks import _common
from benchmarks._discrete import make_model, parser, run_one, train

TITLE = "CLT (Fig. 2): spread of embeddings and per-set losses of one distribution P vs set size m"
SIZES = {
    "quick": {"n_train": 300, "steps": 120, "sizes": (10, 100, 1000), "n_sets": 60, "n_ref": 1000},
    "full": {"n_train": 2000, "steps": 1500, "sizes": (10, 100, 1000, 10000), "n_sets": 300, "n_ref": 5000},
}
#: gde_method.md §5.5, Fig. 2: m -> (mean loss, std loss, std PC1, std PC2)
PAPER = {
    10: (0.009155, 0.003684, 0.550, 0.483),
    100: (0.009304, 0.001182, 0.187, 0.163),
    1000: (0.009274, 0.000388, 0.059, 0.051),
    10000: (0.009280, 0.000117, 0.0186, 0.0159),
}
COLUMNS = [
    "std PC1, PC2 of z",
    "PC1 ratio",
    "mean loss",
    "std loss",
    "loss ratio",
    "std ref. loss (CRN)",
    "ref. ratio",
    "untrained mean loss",
    "paper std PC1, PC2",
    "paper loss mean ± std",
]


@torch.inference_mode()
def per_set_losses(model, x: np.ndarray, z: np.ndarray, seed: int, max_elements: int = 200_000) -> np.ndarray:
    """Generator loss of every set ``x (B, m, D)`` under its own embedding ``z (B, L)`` (model in eval mode)."""
    module = model.module
    module.eval()
    torch.manual_seed(seed)
    out = []
    step = max(1, max_elements // x.shape[1])
    for start in range(0, len(x), step):
        xb = module.generator_input(torch.as_tensor(x[start : start + step], dtype=torch.float32))
        zb = torch.as_tensor(z[start : start + step], dtype=torch.float32)
        out.append(module.generator.loss(xb, zb).numpy())
    return np.concatenate(out)


@torch.inference_mode()
def reference_losses(model, x_ref: np.ndarray, z: np.ndarray, seed: int) -> np.ndarray:
    """Loss of ONE fixed large sample of P under each embedding, with common random numbers (same t and noise).

    This is l(P, G(phi(P_m))) of Theorem 2(b, c): its spread comes from the embedding alone.
    """
    module = model.module
    module.eval()
    xb = module.generator_input(torch.as_tensor(x_ref[None], dtype=torch.float32))
    out = np.empty(len(z))
    for i, zi in enumerate(torch.as_tensor(z, dtype=torch.float32)):
        torch.manual_seed(seed)
        out[i] = float(module.generator.loss(xb, zi[None]))
    return out


def _row(cur: dict, prev: dict | None, paper) -> list[str]:
    fmt = _common.fmt_sig

    def ratio(key: str) -> float:
        return prev[key] / cur[key] if prev else float("nan")

    return [
        f"{cur['pc1_std']:.4g}, {cur['pc2_std']:.4g}",
        fmt(ratio("pc1_std")),
        fmt(cur["loss_mean"], 4),
        fmt(cur["loss_std"]),
        fmt(ratio("loss_std")),
        fmt(cur["ref_loss_std"]),
        fmt(ratio("ref_loss_std")),
        fmt(cur["untrained_loss_mean"], 4),
        f"{paper[2]}, {paper[3]}" if paper else "–",
        f"{paper[0]} ± {paper[1]}" if paper else "–",
    ]


def run_clt(args: argparse.Namespace) -> dict:
    """Fig. 2; ``{"table", "metrics", "notes", "info"}``."""
    size = SIZES[args.mode]
    seed = args.seed
    p0 = np.array([0.5, 0.3, 0.2])
    train_data = scgde.datasets.synthetic_multinomial(
        n_sets=size["n_train"], set_size=100, n_trials=args.n_trials, seed=seed
    )
    scgde.model.GDE.setup_anndata(train_data, set_key="set")
    model = make_model(train_data, args.encoder, args.generator, seed)
    untrained = make_model(train_data, args.encoder, args.generator, seed)
    train_s = train(model, size["steps"])
    n_sets, sizes = size["n_sets"], size["sizes"]
    ref = scgde.datasets.synthetic_multinomial(
        set_size=size["n_ref"], n_trials=args.n_trials, probabilities=p0[None], seed=seed + 5000
    )
    x_ref = np.asarray(ref.X)
    z_by_m, loss_by_m, ref_by_m, untrained_loss = {}, {}, {}, {}
    for i, m in enumerate(sizes):
        sets = scgde.datasets.synthetic_multinomial(
            set_size=m, n_trials=args.n_trials, probabilities=np.tile(p0, (n_sets, 1)), seed=seed + 100 + i
        )
        z = _common.embed(model, sets)
        x = np.asarray(sets.X).reshape(n_sets, m, -1)  # the datasets store sets contiguously, in order
        z_by_m[m] = z
        loss_by_m[m] = per_set_losses(model, x, z, seed)
        ref_by_m[m] = reference_losses(model, x_ref, z, seed)
        untrained_loss[m] = float(per_set_losses(untrained, x, _common.embed(untrained, sets), seed).mean())
    # principal axes of all embeddings together; the spread per m along PC1 and PC2
    z_all = np.concatenate(list(z_by_m.values()))
    _, _, vt = np.linalg.svd(z_all - z_all.mean(0), full_matrices=False)
    rows, metrics, prev = [], {}, None
    for m in sizes:
        sd = ((z_by_m[m] - z_all.mean(0)) @ vt[:2].T).std(0, ddof=1)
        cur = {
            "pc1_std": float(sd[0]),
            "pc2_std": float(sd[1]),
            "loss_mean": float(loss_by_m[m].mean()),
            "loss_std": float(loss_by_m[m].std(ddof=1)),
            "ref_loss_mean": float(ref_by_m[m].mean()),
            "ref_loss_std": float(ref_by_m[m].std(ddof=1)),
            "untrained_loss_mean": untrained_loss[m],
        }
        rows.append(_row(cur, prev, PAPER.get(m)))
        metrics[m] = prev = cur
    table = pd.DataFrame(rows, index=pd.Index([str(m) for m in sizes], name="m"), columns=COLUMNS)
    notes = [
        f"Model: {args.encoder} + {args.generator}, L=16, H=64, trained {size['steps']} steps ({train_s:.0f} s) on "
        f"{size['n_train']} Multinomial({args.n_trials}, p ~ Dirichlet(1,1,1)) sets x 100. P = Multinomial("
        f"{args.n_trials}, {tuple(p0.tolist())}); {n_sets} independent sets per m; embeddings from all m samples.",
        "'loss' = the generator's own per-set loss on the set's m samples (fresh diffusion/flow noise per element, "
        "as in training; what the paper plots). 'ref. loss (CRN)' = the loss of one fixed sample of "
        f"{size['n_ref']} draws from P under each set's embedding with common random numbers, i.e. "
        "l(P, G(phi(P_m))) of Theorem 2(c); its spread comes from the embedding alone.",
        "Ratios are std(m/10) / std(m); sqrt(10) = 3.16. Paper: Fig. 2 (MNIST-multinomial model, P = digit-1 "
        "images, 1200 sets per m); its loss scale is not comparable to ours.",
    ]
    if args.quick:
        _common.check(all(_common.finite(*v.values()) for v in metrics.values()), f"non-finite CLT metrics: {metrics}")
        for m in sizes:
            trained, untrained_mean = metrics[m]["loss_mean"], metrics[m]["untrained_loss_mean"]
            _common.check(
                trained < untrained_mean, f"m={m}: trained loss {trained:.4f} >= untrained {untrained_mean:.4f}"
            )
    return {"table": table, "metrics": metrics, "notes": notes, "info": {"train_s": train_s}}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run Fig. 2 and print it; returns the result (with ``markdown``, ``command``, ``wall_s``)."""
    return run_one("discrete_clt", TITLE, parser(__doc__), argv, run_clt)


if __name__ == "__main__":
    main()
