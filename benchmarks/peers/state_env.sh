#!/usr/bin/env bash
# Create Arc's State (arc-state, CC BY-NC-SA) in its OWN virtual environment, outside the scgde tree.
# scgde never imports State; the two only exchange .h5ad files (see benchmarks/peers/README.md).
#
#   bash benchmarks/peers/state_env.sh            # -> ${SCGDE_PEERS_DIR:-$HOME/.cache/scgde-peers}/state
#
# Environment: SCGDE_PEERS_DIR (where the venvs go), PYTHON (interpreter, default python3; State needs 3.11+),
# STATE_VERSION (default 0.11.1), TORCH_SPEC (default torch==2.13.0: the CPU wheel this project's machines keep
# in their local wheel cache; elsewhere add --index-url https://download.pytorch.org/whl/cpu via PIP_INDEX_URL).
set -euo pipefail

PEERS_DIR="${SCGDE_PEERS_DIR:-$HOME/.cache/scgde-peers}"
PYTHON="${PYTHON:-python3}"
STATE_VERSION="${STATE_VERSION:-0.11.1}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VENV="$PEERS_DIR/state"

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "State needs Python >= 3.11; set PYTHON=python3.11"'
mkdir -p "$PEERS_DIR"
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# torch first, as the CPU build, so that arc-state's dependency on torch does not pull the multi-GB CUDA wheel.
"$VENV/bin/pip" install --quiet "$TORCH_SPEC"
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)' 2>/dev/null; then
  echo "warning: the torch installed in $VENV is a CUDA build (torch.version.cuda is set)" >&2
fi
"$VENV/bin/pip" install --quiet "arc-state==$STATE_VERSION"
end=$(date +%s)

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["arc-state", "torch", "lightning", "anndata", "numpy", "scanpy"]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: not installed")
PY
echo "install time: $((end - start)) s"
echo "venv size: $(du -sh "$VENV" | cut -f1)"
echo "State CLI: $VENV/bin/state"
