#!/usr/bin/env bash
# Create CellFlow (cellflow-tools, JAX) in its OWN virtual environment, outside the scgde tree.
# scgde never imports CellFlow; the two only exchange .h5ad files (see benchmarks/peers/README.md).
#
#   bash benchmarks/peers/cellflow_env.sh        # -> ${SCGDE_PEERS_DIR:-$HOME/.cache/scgde-peers}/cellflow
#
# Environment: SCGDE_PEERS_DIR, PYTHON (default python3, 3.11 tested), CELLFLOW_VERSION (default 0.0.9).
# JAX is the CPU build (plain `jax`, no CUDA extra).
set -euo pipefail

PEERS_DIR="${SCGDE_PEERS_DIR:-$HOME/.cache/scgde-peers}"
PYTHON="${PYTHON:-python3}"
CELLFLOW_VERSION="${CELLFLOW_VERSION:-0.0.9}"
VENV="$PEERS_DIR/cellflow"

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "CellFlow needs Python >= 3.11; set PYTHON=python3.11"'
mkdir -p "$PEERS_DIR"
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# requests: imported by cellflow.preprocessing but missing from cellflow-tools 0.0.9's declared dependencies
"$VENV/bin/pip" install --quiet "cellflow-tools==$CELLFLOW_VERSION" requests
end=$(date +%s)

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["cellflow-tools", "jax", "jaxlib", "flax", "optax", "ott-jax", "anndata", "numpy", "scanpy"]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: not installed")
PY
echo "install time: $((end - start)) s"
echo "venv size: $(du -sh "$VENV" | cut -f1)"
