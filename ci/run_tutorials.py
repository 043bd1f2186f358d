"""Execute the tutorials in quick mode and fail when a cell raises.

Every notebook in ``tutorials/`` reads ``SCGDE_TUTORIAL_QUICK`` in its first code cell; with ``1`` it trains for a
few steps on fewer sets, so that all of them run in minutes on a CPU. The notebooks are executed with nbclient on
copies, in their own folder (relative data paths such as ``../../shared/data`` resolve as for a reader), and the
executed copies are written to ``--out``; the committed notebooks are never modified.

Usage::

    python ci/run_tutorials.py                          # every tutorial, quick mode
    python ci/run_tutorials.py tutorials/lineage.ipynb  # one of them
    python ci/run_tutorials.py --full --timeout 3600    # as committed (long)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of IPython's tracebacks


def _cell_seconds(cell) -> float | None:
    """Wall time of one executed cell, from the timestamps nbclient records in its metadata."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def run_notebook(path: Path, out: Path, timeout: int) -> tuple[float, str | None]:
    """Execute one notebook in its folder; write the executed copy to ``out``; return (seconds, error or None)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    error = None
    start = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        error = ANSI.sub("", f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / path.name)
    timed = [(t, i) for i, c in enumerate(nb.cells) if c.cell_type == "code" and (t := _cell_seconds(c)) is not None]
    slowest = ", ".join(f"cell {i}: {t:.0f} s" for t, i in sorted(timed, reverse=True)[:3])
    print(f"{'FAILED' if error else 'ok':6s} {path.name:28s} {seconds:6.0f} s   (slowest: {slowest})", flush=True)
    return seconds, error


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks; return 1 when any of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every tutorials/*.ipynb")
    parser.add_argument("--out", type=Path, help="folder for the executed copies (default: a new temporary folder)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may run (default 900)")
    parser.add_argument("--full", action="store_true", help="run the full tutorials, not the quick mode")
    args = parser.parse_args(argv)

    notebooks = [p.resolve() for p in args.notebooks] or sorted(TUTORIALS.glob("*.ipynb"))
    out = args.out or Path(tempfile.mkdtemp(prefix="scgde-tutorials-"))
    out.mkdir(parents=True, exist_ok=True)
    if any(out.resolve() == p.parent for p in notebooks):
        parser.error("--out must not be a folder of the notebooks: the committed copies are never overwritten")

    # the kernel inherits this environment
    os.environ["SCGDE_TUTORIAL_QUICK"] = "0" if args.full else "1"
    os.environ.pop("MPLBACKEND", None)  # figures as a reader sees them (inline), not CI's `agg`
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # no debugger warning in the kernel's stderr

    print(f"executing {len(notebooks)} notebook(s), {'full' if args.full else 'quick'} mode; copies in {out}")
    failures, total = {}, 0.0
    for path in notebooks:
        seconds, error = run_notebook(path, out, args.timeout)
        total += seconds
        if error:
            failures[path.name] = error
    print(f"{len(notebooks) - len(failures)} of {len(notebooks)} notebooks ran in {total:.0f} s")
    for name, error in failures.items():
        print(f"\n===== {name} failed =====\n{error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
