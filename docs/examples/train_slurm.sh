#!/usr/bin/env bash
# Train a GDE on 2 nodes x 4 GPUs with Lightning DDP: SLURM starts one task per GPU, each runs the
# same `scgde train` command; Lightning reads the ranks from SLURM's environment.
#SBATCH --job-name=scgde-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --mem=128G
#SBATCH --time=04:00:00
#SBATCH --output=scgde-%j.log
set -euo pipefail

DATA="${DATA:-atlas.h5ad}"       # cells x genes, log-normalised in X (or --layer counts --likelihood nb)
OUT="${OUT:-runs/atlas-$SLURM_JOB_ID}"

srun scgde train "$DATA" --set-key donor \
    --out "$OUT" \
    --accelerator gpu --devices 4 --num-nodes "$SLURM_JOB_NUM_NODES" \
    --strategy ddp --precision bf16-mixed
# only the global-zero process writes: $OUT/model, sets.h5ad, set_embeddings.csv, history.csv
