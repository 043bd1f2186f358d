"""One read path for a registered matrix: scgde.data.layer_matrix / layer_fetcher."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

from scgde.data import MissingLayerError, RowFetcher, layer_fetcher, layer_matrix


def _adata() -> AnnData:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    return AnnData(x, layers={"counts": sp.csr_matrix(x * 2)})


def test_matrix_and_its_name():
    adata = _adata()
    x, where = layer_matrix(adata, None)
    assert x is adata.X and where == "adata.X"
    counts, where = layer_matrix(adata, "counts", name="mdata.mod['rna']")
    assert counts is adata.layers["counts"] and where == "mdata.mod['rna'].layers['counts']"


def test_missing_layer_names_argument_layers_and_fix():
    with pytest.raises(MissingLayerError) as info:
        layer_matrix(_adata(), "raw", argument="controls_layer", name="controls")
    message = str(info.value)
    assert message.startswith("controls_layer='raw' is not a layer of controls")  # no KeyError quotes
    assert "['counts']" in message and "controls_layer=None" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(KeyError, match="pass a file that has it"):
        layer_matrix(_adata(), "raw", fix="pass a file that has it")


def test_empty_x():
    adata = AnnData(obs={"a": [1, 2]}, layers={"counts": np.ones((2, 0))})
    adata.X = None
    with pytest.raises(ValueError, match=r"adata\.X is empty.*layer="):
        layer_matrix(adata, None)


def test_fetcher_reads_the_layer():
    fetcher = layer_fetcher(_adata(), "counts", counts=True)
    assert isinstance(fetcher, RowFetcher) and fetcher.name == "adata.layers['counts']" and fetcher.counts
    np.testing.assert_array_equal(fetcher.rows(np.array([1])), [[6, 8, 10]])


def test_auto_kernel_pca_computed_once(monkeypatch):
    """train() decides kernel="auto" once; its principal components also serve the support calibration."""
    import scvi

    import scgde
    from scgde.data import _datamodule
    from scgde.model import _generate

    calls = []

    def counted(fetcher, **kwargs):
        calls.append(fetcher.name)
        return _datamodule.pca_coordinates.__wrapped__(fetcher, **kwargs)

    counted.__wrapped__ = _datamodule.pca_coordinates
    monkeypatch.setattr(_datamodule, "pca_coordinates", counted)
    monkeypatch.setattr(_generate, "pca_coordinates", counted)
    scvi.settings.seed = 0
    adata = scgde.datasets.synthetic_mvn(n_sets=6, set_size=40, seed=0)
    adata.X = np.abs(adata.X)  # non-negative: the support is calibrated after training
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, batches_per_epoch=1, enable_progress_bar=False, accelerator="cpu")
    assert calls == ["adata.X"]
    assert "_train_pca" not in model.__dict__
