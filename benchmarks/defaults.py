"""The out-of-the-box model: ``GDE(adata)`` with ``train()`` and no arguments, on four tasks, beside baselines.

(a) covariance-heavy 2-D Gaussian sets: Spearman(latent L2, true W2) on held-out sets, vs set means and the
    plug-in Gaussian W2;
(b) Kang 2018 held-out cell types: the stimulated distribution of each type predicted from its control cells
    (ridge on the embedding shift), E-distance and top-20 Pearson delta vs no change, training mean, perturbation
    mean and ridge; realism of the generated cells (negative entries, per-gene zero fractions and variances);
(c) LARRY clone subset: early -> late mutual information (KSG bits) and fate prediction vs pseudobulk,
    composition and an untrained encoder;
(d) the ``scgde demo`` composition sets: Spearman(latent distance, composition distance) on new sets vs set means.

Usage: python -m benchmarks.defaults [--tasks a b c d] [--kang-types CD4T B ...] [--model-kwargs JSON] [--quick]
(``--model-kwargs '{"generator": "cvae"}'`` trains ``GDE(adata, **kwargs)`` instead of the default model, still
with ``train()`` and no arguments.)
"""

from __future__ import annotations

import argparse
import json
import time

import scvi

import scgde
from benchmarks import _common
from benchmarks import _defaults_tasks as tasks

TASKS = {"a": tasks.covariance_sets, "b": tasks.kang_held_out, "c": tasks.larry_clones, "d": tasks.demo_sets}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kang-types", nargs="+", default=None, help="held-out cell types of (b) (default: all 7)")
    parser.add_argument("--quick", action="store_true", help="tiny data and training (a smoke test, not a result)")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="GDE(adata, **kwargs), as JSON")
    args = parser.parse_args(argv)
    tasks.MODEL_KWARGS.clear()
    tasks.MODEL_KWARGS.update(args.model_kwargs)
    out = {}
    print(f"machine: {_common.machine()}; scgde {scgde.__version__}; seed {args.seed}; GDE kwargs {args.model_kwargs}")
    for name in args.tasks:
        scvi.settings.seed = args.seed
        start = time.perf_counter()
        with _common.quiet():
            options = {"types": args.kang_types} if name == "b" else {}
            result = TASKS[name](quick=args.quick, seed=args.seed, **options)
        result["wall_s"] = time.perf_counter() - start
        out[name] = result
        print(
            f"\n## ({name}) {result['title']}  [wall {result['wall_s']:.0f} s, GDE training {result['train_s']:.0f} s]"
        )
        print(_common.markdown_table(result["table"]))
        for line in result.get("notes", []):
            print(line)
    return out


if __name__ == "__main__":
    main()
