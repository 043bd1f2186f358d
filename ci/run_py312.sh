#!/usr/bin/env bash
# The second CI stack, called by .ci/run: Python 3.12 with the newest scvi-tools 1.5.x / anndata 0.13.x / scanpy /
# pandas 3, locked in ci/constraints-py312.txt, installed into .venv312 (a ~7 GB environment: PyPI's torch for
# Linux is the CUDA build). Runs the test suite there; warnings attributed to scgde's own modules are errors on
# both stacks (pyproject.toml's [tool.pytest.ini_options] filterwarnings).
#   bash ci/run_py312.sh [extra pytest arguments]
# SCGDE_PY312 names the interpreter when `python3.12` is not on PATH (a pyenv shim answers only where 3.12 is
# selected, so the newest pyenv 3.12.x is looked up next).
set -uo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=agg PIP_DISABLE_PIP_VERSION_CHECK=1

is_312() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }
py="${SCGDE_PY312:-python3.12}"
if ! is_312 "$py" && command -v pyenv >/dev/null 2>&1; then
  v="$(pyenv versions --bare --skip-aliases 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -n 1)"
  [ -n "$v" ] && py="$(pyenv root)/versions/$v/bin/python3.12"
fi
if ! is_312 "$py"; then
  echo "run_py312: no Python 3.12 interpreter (tried ${SCGDE_PY312:-python3.12} and pyenv); set SCGDE_PY312"
  exit 1
fi

t0=$SECONDS
"$py" -m venv .venv312 && . .venv312/bin/activate \
  && python -m pip install -q -c ci/constraints-py312.txt -e ".[test]" || { echo "run_py312: install failed"; exit 1; }
echo "run_py312: $("$py" -V) environment ready in $((SECONDS - t0)) s"

# torch says "The given NumPy array is not writable" once per process; warn_always makes every read-only array
# handed to torch from scgde's code a warning, and so (filterwarnings) an error, not only the first one.
t0=$SECONDS
python -c 'import sys, pytest, torch; torch.set_warn_always(True); sys.exit(pytest.main(sys.argv[1:]))' \
  --durations=25 "$@"
rc=$?
echo "run_py312: pytest on Python 3.12 took $((SECONDS - t0)) s (exit $rc)"
if [ "$rc" -eq 5 ]; then  # pytest: no tests collected
  echo "no tests were collected"
  rc=0
fi
exit "$rc"
