"""Smoke tests of the niche and multimodal benchmarks' --quick modes (real data from ../shared).

Their numbers are not results (a few optimiser steps); the tests check that every representation of every table
is scored with finite values, so that a full run cannot fail at the end of its training.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

pytest.importorskip("squidpy")
pytest.importorskip("mudata")


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _finite(tables) -> None:
    for name, table in tables.items():
        values = table.select_dtypes("number").to_numpy(dtype=float)
        assert values.size and np.isfinite(values).all(), name


def test_niches_quick(shared_file, keep_threads):
    shared_file("spatial_bdtnp_novosparc", "dge.txt")
    shared_file("intestine_zonation_novosparc", "zones.tsv")
    out = importlib.import_module("benchmarks.niches").main(["--quick"])
    assert set(out["tables"]) == {"planted niches", "BDTNP embryo", "intestine zonation"}
    for table in out["tables"].values():
        assert {"GDE niche embedding", "own expression", "neighbourhood mean"} <= set(table.index)
    _finite(out["tables"])
    assert "python -m benchmarks.niches --quick --seed 0" in out["markdown"]


def test_niches_scale_quick(keep_threads):
    out = importlib.import_module("benchmarks.niches").main(["--quick", "--only-scale"])
    row = out["tables"]["scale"].iloc[0]
    assert row["cells"] == 20_000 and float(row["max |streamed - direct| (50 niches)"]) < 1e-4


def test_multimodal_quick(shared_file, keep_threads):
    shared_file("tcr_wu2020_scirpy", "wu2020_200_v0_6.h5ad")
    out = importlib.import_module("benchmarks.multimodal").main(["--quick"])
    simulated = out["tables"]["simulated RNA + protein + accessibility"]
    assert {"GDE, rna", "GDE, prot", "GDE, atac", "GDE, rna + prot + atac", "set means, rna + prot + atac"} <= set(
        simulated.index
    )
    _finite(out["tables"])
