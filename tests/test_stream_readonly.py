"""Read-only arrays (anndata >= 0.13's copy-on-write X, pandas 3 columns) reach torch without a warning or a shared
write, and writable ones without a copy."""

import warnings

import numpy as np
import pytest
import torch

from scgde.data._stream import SetChunks, host_tensor


@pytest.fixture
def torch_warns_always():
    """torch says "not writable" once per process; make it say so every time while the test runs."""
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield
    torch.set_warn_always(before)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flags.writeable = False
    return array


def test_a_writable_array_is_shared_and_a_read_only_one_copied(torch_warns_always):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert host_tensor(a).data_ptr() == a.ctypes.data  # the hot path copies nothing
    ro = _read_only(a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = host_tensor(ro, "cpu")
    assert t.data_ptr() != ro.ctypes.data
    t += 1  # the tensor is writable, and the read-only array stays as it was
    np.testing.assert_array_equal(ro, a)


class _Rows:
    """Rows of an in-memory matrix, handed out as views (as a slice of a copy-on-write X is)."""

    def __init__(self, X):
        self.X, self.shape = X, X.shape

    def slice(self, start, stop):
        return self.X[start:stop]

    def rows(self, idx):
        return self.X[idx]


@pytest.mark.parametrize("wanted", ["most", "few"])  # contiguous slices, or gathered rows
def test_chunks_of_a_read_only_matrix_warn_nothing(torch_warns_always, wanted):
    X = _read_only(np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32))
    codes = [0, 0, 1, 1, 1, -1, 2, 2, 2, 2] if wanted == "most" else [0, -1, -1, -1, -1, -1, -1, -1, 1, 1]
    codes = _read_only(np.array(codes))
    chunks = SetChunks(
        _Rows(X), codes, lambda t: t, "cpu", chunk_size=4, weights=lambda rows: np.ones(len(rows)), progress_bar=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = list(chunks)
    x = torch.cat([p[0] for p in parts])
    seg = torch.cat([p[1] for p in parts])
    np.testing.assert_array_equal(x.numpy(), X[codes >= 0])
    np.testing.assert_array_equal(seg.numpy(), codes[codes >= 0])
    assert all(p[2].dtype == torch.float32 for p in parts)
