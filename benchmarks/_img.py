"""The command line shared by the image benchmarks (``img_digits``, ``img_screen``, ``img_nuclei``)."""

from __future__ import annotations

import argparse


def parser(doc: str, steps: int, quick_steps: int) -> argparse.ArgumentParser:
    """``--quick --seed --generator --steps --threads``; the generator defaults to ImageGDE's (flow)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and sanity assertions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", default="flow", choices=["ddpm", "flow"])
    p.add_argument(
        "--steps", type=int, default=None, help=f"optimiser steps (default: {steps:,}; quick: {quick_steps})"
    )
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads during the run")
    return p
