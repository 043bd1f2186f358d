"""Generated log-expression on the data's support: ways of handling zeros, on one Kang 2018 held-out cell type.

The default GDE (``GDE(train)``, ``train()`` with no arguments) is trained once without the held-out type's
stimulated cells; ``PerturbationPredictor`` predicts them. The generator's raw values for the predicted set are then
put on the support of log-expression in several ways, all from the same draw:

- raw: the flow's values as they are (negative entries included);
- floor: values below half a gene's smallest positive value set to 0;
- threshold: per gene, the lowest values set to 0 so that the zero fraction is that of the pooled training cells;
- per-set projection (the default, ``GDEModule.project_support``): per gene, the zero fraction real sets have at the
  generated mean, the other cells keeping the set's generated mean and spread.

Each is scored by ``metrics.perturbation_report`` (E-distance, top-20 Pearson delta) beside the baselines of
``tl.perturbation_baselines``, and by the realism of the cells: negative entries, per-gene zero-fraction errors and
variance ratios against the measured cells.

Usage: python -m benchmarks.kang_support [--held-out CD4T] [--quick] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch

import scgde
from benchmarks import _common
from benchmarks._defaults_tasks import KANG, realism


def dense(a) -> np.ndarray:
    return np.asarray(a.X.toarray() if hasattr(a.X, "toarray") else a.X)


def variants(model, raw: np.ndarray, pooled_zeros: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The support handlings of one raw draw ``(n_draw, G)``; the first ``n`` cells are returned."""
    floor = model.module.zero_floor.numpy()
    threshold = np.array([np.quantile(raw[:, g], q) for g, q in enumerate(pooled_zeros)])
    projected = model.module.project_support(torch.as_tensor(raw)[None])[0].numpy()
    return {
        "raw flow output": raw[:n],
        "floor: values below half the smallest positive set to 0": np.where(raw < floor, 0, raw)[:n],
        "threshold: training zero fraction per gene": np.where(raw < threshold, 0, np.maximum(raw, 2 * floor))[:n],
        "per-set projection (default)": projected[:n],
    }


def run(args: argparse.Namespace) -> dict:
    scvi.settings.seed = args.seed
    adata = scgde.datasets.kang2018(KANG)
    for key in ("cell_type", "condition"):
        adata.obs[key] = adata.obs[key].astype(str)
    target = (adata.obs["cell_type"] == args.held_out).to_numpy() & (adata.obs["condition"] == "stimulated").to_numpy()
    train = adata[~target].copy()
    sc.pp.highly_variable_genes(train, n_top_genes=300 if args.quick else 1000)
    genes = train.var_names[train.var["highly_variable"].to_numpy()]
    train, true = train[:, genes].copy(), adata[target][:, genes].copy()
    is_control = (train.obs["cell_type"] == args.held_out).to_numpy() & (train.obs["condition"] == "control").to_numpy()
    control = train[is_control]
    scgde.model.GDE.setup_anndata(train, set_key=["cell_type", "condition"])
    model = scgde.model.GDE(train)
    start = time.perf_counter()
    model.train(**({"max_epochs": 2, "batches_per_epoch": 3} if args.quick else {}), enable_progress_bar=False)
    train_s = time.perf_counter() - start
    predictor = scgde.model.PerturbationPredictor(model, "condition", "control", context_key="cell_type").fit()
    emb = predictor.predict_embedding("stimulated", context=args.held_out)
    n = true.n_obs
    raw = dense(model.generate(emb, n_cells=max(n, 200), project=False))
    pooled_zeros = (dense(train) == 0).mean(0)
    predictions = {}
    for name, x in variants(model, raw, pooled_zeros, n).items():
        cells = ad.AnnData(x.astype(np.float32), var=pd.DataFrame(index=genes))
        cells.obs["condition"], cells.obs["cell_type"] = "stimulated", args.held_out
        predictions[name] = cells
    baselines = scgde.tl.perturbation_baselines(
        train, [(args.held_out, "stimulated")], perturbation_key="condition", control="control", context_key="cell_type"
    )
    report = scgde.metrics.perturbation_report(
        true, {**predictions, **baselines}, control, perturbation_key="condition", seed=args.seed
    ).set_index("method")
    rows = {}
    for name in predictions:
        stats = realism(dense(true), dense(predictions[name]))
        rows[name] = {
            "E-distance": report.loc[name, "e_distance"],
            "top-20 Pearson delta": report.loc[name, "pearson_delta_top20"],
            **stats,
        }
    for name in baselines:
        rows[f"baseline: {name}"] = {
            "E-distance": report.loc[name, "e_distance"],
            "top-20 Pearson delta": report.loc[name, "pearson_delta_top20"],
        }
    table = pd.DataFrame(rows).T
    table.index.name = "generated cells"
    command = f"python -m benchmarks.kang_support --held-out {args.held_out}{' --quick' if args.quick else ''}"
    markdown = "\n\n".join(
        [
            f"### Support of generated log-expression: Kang 2018, held-out {args.held_out} (stimulated)",
            f"Command: `{command} --seed {args.seed}`. Machine: {_common.machine()}, {args.threads} torch "
            f"thread(s). Default GDE, training {train_s:.0f} s; {n} cells per prediction.",
            _common.markdown_table(table),
        ]
    )
    return {"markdown": markdown, "table": table, "train_s": train_s}


def main(argv: list[str] | None = None) -> dict:
    def held_out(parser):
        parser.add_argument("--held-out", default="CD4T", help="cell type whose stimulated cells are held out")

    return _common.run_cli(__doc__, run, argv, "300 genes and 6 steps, for the test suite", held_out)


if __name__ == "__main__":
    main()
