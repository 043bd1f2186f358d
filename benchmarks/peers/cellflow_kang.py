"""CellFlow (cellflow-tools, JAX flow matching) on the Kang 2018 held-out cell types, through its own API.

Runs in CellFlow's OWN virtual environment (benchmarks/peers/cellflow_env.sh), never in scgde's. CellFlow
(cellflow-tools) is run, not copied. Input: the folds written by ``python -m benchmarks.peers.export_folds``.
Output (the contract of ``python -m benchmarks.celleval --peers DIR``): ``OUT/<fold>.h5ad`` = the predicted
stimulated cells of the held-out type, as many as the real held-out stimulated cells, ``obs["condition"] ==
"stimulated"``, ``obs["cell_type"]`` the held-out type, the fold's genes in the fold's order, dense float32
log-normalised X.

Per fold, following CellFlow's documented workflow:
1. ``cellflow.pp.centered_pca`` of the training cells (all cells except the held-out type's stimulated ones),
   ``n_comps`` components; CellFlow learns flows in that space;
2. ``CellFlow.prepare_data``: controls = ``condition == "control"``, perturbation = a boolean IFN-beta
   covariate, sample covariate = cell type with, as its representation, the mean PCA coordinates of that
   type's CONTROL cells (so the held-out type has an informative representation without any of its stimulated
   cells), ``split_covariates=["cell_type"]`` (each type's stimulated cells are transported from its own
   controls; CellFlow requires every control population to have a target, so the held-out type's controls
   are not among the training pairs);
3. ``prepare_model`` with small MLPs (see SMALL) and ``train``;
4. ``predict`` from as many of the held-out type's control cells (sampled with replacement) as there are real
   held-out stimulated cells, ``cellflow.pp.reconstruct_pca`` back to the genes, clipped below at 0 (the
   log-normalised scale's floor; State clips the same way to [0, 14]).

Usage (CellFlow's python):
  $SCGDE_PEERS_DIR/cellflow/bin/python benchmarks/peers/cellflow_kang.py --folds-dir /tmp/peers_folds \
      --out /tmp/peers_pred/cellflow [--folds NK B ...] [--iterations 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _contract import CELL_TYPES, write_prediction

# CellFlow's defaults are sized for GPUs (2048/4096-wide MLPs, Adam 5e-5 with 20-step gradient accumulation,
# tens of thousands of iterations); the small CPU configuration used here:
SMALL = {
    "n_comps": 50,
    "hidden_dims": (256, 256, 256),
    "decoder_dims": (256, 256, 256),
    "time_encoder_dims": (256, 256),
    "time_freqs": 128,
    "condition_embedding_dim": 64,
    "lr": 1e-4,
    "batch_size": 256,
}


def run_fold(fold: str, args: argparse.Namespace) -> dict:
    import anndata as ad
    import cellflow
    import jax
    import numpy as np
    import optax
    import pandas as pd

    src = Path(args.folds_dir) / fold
    for name in ("train.h5ad", "control.h5ad", "true.h5ad"):
        if not (src / name).exists():
            raise FileNotFoundError(
                f"--folds-dir: {src / name} is missing; write the folds first with "
                f"`python -m benchmarks.peers.export_folds --out {args.folds_dir}` in scgde's environment."
            )
    train = ad.read_h5ad(src / "train.h5ad")
    control = ad.read_h5ad(src / "control.h5ad")
    true = ad.read_h5ad(src / "true.h5ad")
    genes = list(train.var_names)
    s = SMALL

    adata = ad.AnnData(X=np.asarray(train.X, dtype=np.float32), obs=train.obs[["cell_type", "condition"]].copy())
    adata.var_names = genes
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).astype("category")
    adata.obs["control"] = (adata.obs["condition"].astype(str) == "control").to_numpy()
    adata.obs["ifnb"] = ~adata.obs["control"].to_numpy()
    cellflow.pp.centered_pca(adata, n_comps=s["n_comps"])
    is_ctrl = adata.obs["control"].to_numpy()
    types = adata.obs["cell_type"].astype(str).to_numpy()
    adata.uns["cell_type_emb"] = {
        t: np.asarray(adata.obsm["X_pca"][is_ctrl & (types == t)].mean(0), dtype=np.float32) for t in sorted(set(types))
    }
    if fold not in adata.uns["cell_type_emb"]:
        raise ValueError(f"fold {fold}: no control cells of the held-out type in train.h5ad")

    # CellFlow refuses a control population without a target population under split_covariates, so the
    # held-out type's control cells are left out of the flow's training pairs (they still shape the PCA and
    # give the held-out type its representation above, and they are the source cells at prediction)
    fit = adata[~(is_ctrl & (types == fold))].copy()
    start = time.perf_counter()
    cf = cellflow.model.CellFlow(fit, solver="otfm")
    cf.prepare_data(
        sample_rep="X_pca",
        control_key="control",
        perturbation_covariates={"ifnb": ("ifnb",)},
        sample_covariates=["cell_type"],
        sample_covariate_reps={"cell_type": "cell_type_emb"},
        split_covariates=["cell_type"],
    )
    cf.prepare_model(
        hidden_dims=s["hidden_dims"],
        decoder_dims=s["decoder_dims"],
        time_encoder_dims=s["time_encoder_dims"],
        time_freqs=s["time_freqs"],
        condition_embedding_dim=s["condition_embedding_dim"],
        optimizer=optax.adam(s["lr"]),
        seed=args.seed,
    )
    cf.train(num_iterations=args.iterations, batch_size=s["batch_size"], valid_freq=args.iterations + 1)
    train_s = time.perf_counter() - start
    params = cf.solver.vf_state.params
    n_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))

    # prediction: n_true control cells of the held-out type (with replacement), projected on the training PCs
    n_true = true.n_obs
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(control.n_obs, size=n_true, replace=True)
    query = ad.AnnData(X=np.asarray(control.X, dtype=np.float32)[pick])
    query.var_names = genes
    query.obs_names = [f"src_{i}" for i in range(n_true)]
    query.obs["control"] = True
    query.obs["cell_type"] = pd.Categorical([fold] * n_true)
    query.uns["cell_type_emb"] = adata.uns["cell_type_emb"]  # CellFlow reads covariate representations here
    cellflow.pp.project_pca(query, ref_adata=adata)
    covariates = pd.DataFrame({"ifnb": [True], "cell_type": [fold], "control": [False], "condition_id": ["stim"]})
    covariates["cell_type"] = covariates["cell_type"].astype("category")
    start = time.perf_counter()
    out = cf.predict(adata=query, covariate_data=covariates, sample_rep="X_pca", condition_id_key="condition_id")
    infer_s = time.perf_counter() - start
    pred_pca = np.asarray(next(iter(out.values())), dtype=np.float32)
    if pred_pca.shape[0] != n_true:
        raise RuntimeError(f"fold {fold}: CellFlow returned {pred_pca.shape[0]} cells, expected {n_true}")
    recon = ad.AnnData(X=np.zeros((n_true, len(genes)), dtype=np.float32))
    recon.obsm["X_pca"] = pred_pca
    cellflow.pp.reconstruct_pca(recon, use_rep="X_pca", ref_adata=adata)
    x = np.clip(np.asarray(recon.layers["X_recon"], dtype=np.float32), 0.0, None)

    return write_prediction(
        x, fold, genes, control, true, args.out, f"cellflow_{fold}",
        n_params=n_params, iterations=args.iterations, train_s=round(train_s, 1), infer_s=round(infer_s, 1),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds-dir", default="/tmp/peers_folds", help="output of benchmarks.peers.export_folds")
    parser.add_argument("--out", default="/tmp/peers_pred/cellflow", help="where <fold>.h5ad predictions go")
    parser.add_argument("--folds", nargs="+", default=CELL_TYPES, help="held-out cell types")
    parser.add_argument("--iterations", type=int, default=2000, help="training iterations per fold")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.folds) - set(CELL_TYPES))
    if unknown:
        parser.error(f"--folds: unknown cell type(s) {unknown}; choose from {CELL_TYPES}")
    if args.iterations < 1:
        parser.error("--iterations must be a positive number of iterations")
    # one CPU thread for XLA (set before jax is imported in run_fold)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    for fold in args.folds:
        print(json.dumps(run_fold(fold, args)), flush=True)


if __name__ == "__main__":
    main()
