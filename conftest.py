"""Pytest set-up shared by the tests and the docstring examples (``--doctest-modules`` over ``src/``)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "agg")


def pytest_configure(config):
    """One torch thread per test process.

    torch's default (one per core) oversubscribes a shared machine, and the tests' tiny models gain
    nothing from more threads.
    """
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _doctest_namespace(doctest_namespace, request):
    """Names the docstring examples may use: the usual imports and, when doctests run, a small trained ``model``."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    import scgde

    doctest_namespace.update({"np": np, "pd": pd, "ad": ad, "sc": sc, "scgde": scgde})
    if any(type(item).__name__ == "DoctestItem" for item in request.session.items):
        import scvi

        scvi.settings.seed = 0
        adata = scgde.datasets.synthetic_mvn(n_sets=12, set_size=30, dim=3, seed=0)
        scgde.model.GDE.setup_anndata(adata, set_key="set")
        model = scgde.model.GDE(adata, n_latent=4, n_hidden=16)
        model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
        doctest_namespace.update({"adata": adata, "model": model})
