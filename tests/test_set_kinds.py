"""Set kinds as objects: each kind registers its own sampler; no import circle between them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scgde
from scgde.data import GroupSampler, NicheSampler, NicheSets, SetIndex, make_sampler, register_set_kind

DATA = Path(scgde.__file__).parent / "data"


def _relative_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level and node.module}


def test_samplers_do_not_import_set_kinds():
    assert "_niches" not in _relative_imports(DATA / "_samplers.py")
    assert "_samplers" in _relative_imports(DATA / "_niches.py")  # one direction only


def test_each_kind_gets_its_own_sampler():
    index = SetIndex(np.repeat(np.arange(3), 4), pd.Index(["a", "b", "c"]))
    assert isinstance(make_sampler(index, np.arange(3), 2), GroupSampler)
    niches = NicheSets(sp.identity(5, format="csr"), pd.Index([str(i) for i in range(5)]))
    assert isinstance(make_sampler(niches, np.arange(5), 2), NicheSampler)
    with pytest.raises(ValueError, match="niche"):
        make_sampler(niches, np.arange(5), 2, window=1)


def test_unknown_kind_and_registered_subclass():
    with pytest.raises(TypeError, match="No sampler for sets of type"):
        make_sampler(object(), np.arange(2), 2)

    class MyKind:
        pass

    class MySub(MyKind):
        pass

    marker = object()
    register_set_kind(MyKind, lambda index, sets, cells_per_set, **options: marker)
    try:
        assert make_sampler(MySub(), np.arange(2), 2) is marker
    finally:
        from scgde.data import _samplers

        del _samplers._SET_KINDS[MyKind]
