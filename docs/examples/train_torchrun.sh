#!/usr/bin/env bash
# One machine, 4 GPUs (or CPU processes with --accelerator cpu): torchrun starts the 4 processes.
set -euo pipefail
torchrun --standalone --nproc-per-node 4 -m scgde train "${DATA:-atlas.h5ad}" --set-key donor \
    --out "${OUT:-runs/atlas}" --accelerator gpu --devices 4 --strategy ddp
