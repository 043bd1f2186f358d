"""Arc's State transition model ("ST") on the Kang 2018 held-out cell types, through State's own CLI.

Runs in State's OWN virtual environment (benchmarks/peers/state_env.sh), never in scgde's: it imports only
anndata/numpy/pandas and calls the ``state`` executable of that environment. State (arc-state, CC BY-NC-SA) is
run, not copied. Input: the folds written by ``python -m benchmarks.peers.export_folds`` (scgde's environment).
Output (the contract of ``python -m benchmarks.celleval --peers DIR``): ``OUT/<fold>.h5ad`` = the predicted
stimulated cells of the held-out type, as many as the real held-out stimulated cells, ``obs["condition"] ==
"stimulated"``, ``obs["cell_type"]`` the held-out type, the fold's genes in the fold's order, dense float32
log-normalised X.

Per fold:
1. stage ``train.h5ad`` (all cells except the held-out type's stimulated ones) with a constant ``obs["batch"]``
   and write a TOML split that puts the whole file in training: context = ``cell_type``, perturbation =
   ``condition`` (control label ``control``); the held-out type's control cells are in training, its stimulated
   cells are not;
2. ``state tx train`` with Hydra overrides: the ``state_sm`` model at half width (see SMALL below), expression
   ``X`` itself as the cell representation (``embed_key=null``, ``output_space=gene``), no wandb, no workers;
3. ``state tx infer`` on the held-out type's control cells plus as many rows labelled ``stimulated`` as there
   are real held-out stimulated cells: State fills each such row from control cells of the same type sampled
   with replacement, in sets of ``cell_set_len`` (its own set-to-set prediction), and clips to [0, 14].

Usage (State's python):
  $SCGDE_PEERS_DIR/state/bin/python benchmarks/peers/state_kang.py --folds-dir /tmp/peers_folds \
      --out /tmp/peers_pred/state [--folds NK B ...] [--max-steps 250] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from _contract import CELL_TYPES, write_prediction

PEERS_DIR = Path(os.environ.get("SCGDE_PEERS_DIR", Path.home() / ".cache" / "scgde-peers"))

# The small configuration: State's own ``state_sm`` preset (4 encoder / 4 decoder MLP layers, 4-layer
# bidirectional Llama backbone, energy loss, residual prediction) at half its width (hidden 672 -> 336,
# intermediate 2688 -> 1344, head_dim 84 -> 42), sets of 64 cells, 8 sets per step.
SMALL = {
    "hidden_dim": 336,
    "intermediate_size": 1344,
    "num_attention_heads": 8,
    "head_dim": 42,
    "num_hidden_layers": 4,
    "cell_set_len": 64,
    "batch_size": 8,
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _plain(adata: ad.AnnData) -> ad.AnnData:
    """X dense float32, categorical cell_type/condition and a constant batch column (State needs one)."""
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(adata.obs["cell_type"].astype(str).to_numpy()),
            "condition": pd.Categorical(adata.obs["condition"].astype(str).to_numpy()),
            "batch": pd.Categorical(["kang"] * adata.n_obs),
        },
        index=adata.obs_names.astype(str),
    )
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X
    genes = pd.Index(np.asarray(adata.var_names, dtype=str), name=None)
    # cell_load reads gene names from var/gene_name (or var/_index, var/feature)
    var = pd.DataFrame({"gene_name": np.asarray(genes, dtype=object)}, index=genes)
    return ad.AnnData(X=np.asarray(x, dtype=np.float32), obs=obs, var=var)


def _run(cmd: list[str], log: Path, env: dict) -> float:
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-30:]
        raise RuntimeError(
            f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); last lines of {log}:\n" + "\n".join(tail)
        )
    return elapsed


def run_fold(fold: str, args: argparse.Namespace, env: dict) -> dict:
    src = Path(args.folds_dir) / fold
    for name in ("train.h5ad", "control.h5ad", "true.h5ad"):
        if not (src / name).exists():
            raise FileNotFoundError(
                f"--folds-dir: {src / name} is missing; write the folds first with "
                "`python -m benchmarks.peers.export_folds --out {args.folds_dir}` in scgde's environment."
            )
    work = Path(args.work) / _safe(fold)
    train = ad.read_h5ad(src / "train.h5ad")
    control = ad.read_h5ad(src / "control.h5ad")
    true = ad.read_h5ad(src / "true.h5ad")
    genes = list(train.var_names)
    if list(true.var_names) != genes or list(control.var_names) != genes:
        raise ValueError(f"fold {fold}: train/control/true have different genes; re-export the folds.")
    infer_out = work / "infer_out.h5ad"
    if args.reuse and infer_out.exists():  # an earlier run's trained model and inference, converted again
        return _convert(fold, infer_out, control, true, genes, args, work, None, None)
    if work.exists():
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    _plain(train).write_h5ad(work / "data" / "kang_train.h5ad")
    toml = work / "split.toml"
    toml.write_text(f'[datasets]\nkang = "{work / "data"}"\n\n[training]\nkang = "train"\n')

    s = SMALL
    overrides = [
        f"data.kwargs.toml_config_path={toml}",
        "data.kwargs.embed_key=null",
        "data.kwargs.output_space=gene",
        "data.kwargs.pert_col=condition",
        "data.kwargs.cell_type_key=cell_type",
        "data.kwargs.batch_col=batch",
        "data.kwargs.control_pert=control",
        "data.kwargs.num_workers=0",
        "data.kwargs.pin_memory=false",
        "data.kwargs.barcode=false",
        f"training.max_steps={args.max_steps}",
        f"training.batch_size={s['batch_size']}",
        f"training.val_freq={args.max_steps + 1}",
        f"training.ckpt_every_n_steps={args.max_steps}",
        f"training.train_seed={args.seed}",
        "model=state_sm",
        "model.device=cpu",
        f"model.kwargs.cell_set_len={s['cell_set_len']}",
        f"model.kwargs.hidden_dim={s['hidden_dim']}",
        f"model.kwargs.transformer_backbone_kwargs.intermediate_size={s['intermediate_size']}",
        f"model.kwargs.transformer_backbone_kwargs.num_hidden_layers={s['num_hidden_layers']}",
        f"model.kwargs.transformer_backbone_kwargs.num_attention_heads={s['num_attention_heads']}",
        f"model.kwargs.transformer_backbone_kwargs.num_key_value_heads={s['num_attention_heads']}",
        f"model.kwargs.transformer_backbone_kwargs.head_dim={s['head_dim']}",
        "use_wandb=false",
        f"output_dir={work}",
        "name=run",
        "overwrite=true",
    ]
    state = str(Path(sys.executable).with_name("state"))
    train_s = _run([state, "tx", "train", *overrides], work / "train.log", env)
    run_dir = work / "run"
    ckpt = run_dir / "checkpoints" / "final.ckpt"
    if not ckpt.exists():
        raise RuntimeError(f"fold {fold}: State wrote no {ckpt}; see {work / 'train.log'}")

    # inference input: the held-out type's control cells + n_true rows labelled "stimulated" (State replaces
    # each of those rows by a prediction from sampled control cells of that type; their content is not used)
    n_true = true.n_obs
    ctrl = _plain(control)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(ctrl.n_obs, size=n_true, replace=True)
    stim_obs = ctrl.obs.iloc[pick].copy()
    stim_obs.index = [f"pred_{i}" for i in range(n_true)]
    stim_obs["condition"] = pd.Categorical(["stimulated"] * n_true, categories=["control", "stimulated"])
    stim = ad.AnnData(X=ctrl.X[pick].copy(), obs=stim_obs, var=ctrl.var.copy())
    ctrl.obs["condition"] = pd.Categorical(ctrl.obs["condition"].astype(str), categories=["control", "stimulated"])
    infer_in = ad.concat([ctrl, stim], axis=0)
    infer_in.obs["condition"] = pd.Categorical(infer_in.obs["condition"].astype(str))
    infer_in.write_h5ad(work / "infer_in.h5ad")
    infer_s = _run(
        [
            state, "tx", "infer",
            "--model-dir", str(run_dir),
            "--checkpoint", str(ckpt),
            "--adata", str(work / "infer_in.h5ad"),
            "--pert-col", "condition",
            "--celltype-col", "cell_type",
            "--control-pert", "control",
            "--seed", str(args.seed),
            "--output", str(infer_out),
        ],
        work / "infer.log",
        env,
    )  # fmt: skip
    return _convert(fold, infer_out, control, true, genes, args, work, train_s, infer_s)


def _convert(fold, infer_out: Path, control, true, genes, args, work: Path, train_s, infer_s) -> dict:
    """State's inference output -> ``OUT/<fold>.h5ad`` (the predicted stimulated cells) and a JSON summary."""
    n_true = true.n_obs
    out = ad.read_h5ad(infer_out)
    pred = out[(out.obs["condition"].astype(str) == "stimulated").to_numpy()]
    x = np.asarray(pred.X.toarray() if hasattr(pred.X, "toarray") else pred.X, dtype=np.float32)
    if x.shape != (n_true, len(genes)) or list(pred.var_names) != genes:
        raise RuntimeError(f"fold {fold}: State returned {x.shape} over other genes; expected ({n_true}, {len(genes)})")
    return write_prediction(
        x, fold, genes, control, true, args.out, f"state_{_safe(fold)}",
        n_params=_n_params(train_log=work / "train.log"), max_steps=args.max_steps,
        train_s=None if train_s is None else round(train_s, 1), infer_s=None if infer_s is None else round(infer_s, 1),
        reused=train_s is None,
    )  # fmt: skip


def _n_params(train_log: Path) -> int | None:
    """Trainable parameters, from Lightning's model summary in State's training log."""
    m = re.search(r"Trainable params:\s*([\d.]+)\s*([KMG]?)", train_log.read_text())
    if not m:
        return None
    return int(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds-dir", default="/tmp/peers_folds", help="output of benchmarks.peers.export_folds")
    parser.add_argument("--out", default="/tmp/peers_pred/state", help="where <fold>.h5ad predictions go")
    parser.add_argument("--work", default=str(PEERS_DIR / "state_runs"), help="State's run folders")
    parser.add_argument("--folds", nargs="+", default=CELL_TYPES, help="held-out cell types")
    parser.add_argument("--max-steps", type=int, default=250, help="training steps per fold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (OMP/MKL)")
    parser.add_argument(
        "--reuse", action="store_true", help="convert the inference output already in --work instead of training"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.folds) - set(CELL_TYPES))
    if unknown:
        parser.error(f"--folds: unknown cell type(s) {unknown}; choose from {CELL_TYPES}")
    if args.max_steps < 1:
        parser.error("--max-steps must be a positive number of steps")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    env.setdefault("WANDB_MODE", "disabled")
    env["CUDA_VISIBLE_DEVICES"] = ""
    for fold in args.folds:
        s = run_fold(fold, args, env)
        print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
