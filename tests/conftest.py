from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "agg")

#: small real datasets live beside the repository, not in it
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def shared_file():
    """``shared_file("folder", "file")``: a path in ../shared/data; the test is skipped when it is absent."""
    return _shared_file


@pytest.fixture(autouse=True)
def _quiet_scvi():
    import scvi

    scvi.settings.seed = 0
    scvi.settings.verbosity = 30
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def gaussian_sets():
    """40 small 3-D Gaussian sets with known parameters."""
    import scgde

    return scgde.datasets.synthetic_mvn(n_sets=40, set_size=60, dim=3, seed=0)
