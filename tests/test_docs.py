"""Shared parameter documentation (scgde._docs): rendered docstrings are complete numpydoc."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import scgde
from scgde._docs import PARAMS, inject_docs
from scgde.data import SetDataSplitter
from scgde.img import ImageGDE
from scgde.model import GDE
from scgde.seq import SeqGDE

#: every public callable whose docstring uses shared blocks
DECORATED = [
    GDE.train,
    GDE.get_set_representation,
    GDE.get_latent_representation,
    GDE.set_distances,
    GDE.predict_set_labels,
    GDE.generate,
    GDE.interpolate,
    SeqGDE,
    SeqGDE.load,
    SeqGDE.train,
    SeqGDE.generate,
    SeqGDE.interpolate,
    ImageGDE,
    ImageGDE.train,
    ImageGDE.generate,
    ImageGDE.interpolate,
    SetDataSplitter,
    scgde.tl.embed_sets,
    scgde.tl.embed_niches,
]


def _documented(doc: str) -> list[str]:
    """Parameter names of the numpydoc ``Parameters`` section (``a, b`` lines give both)."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    names = []
    for line in lines[start:]:
        if not line.strip():
            continue
        if re.fullmatch(r"-{3,}", line.strip()):  # the next section's underline: its title was the last "name"
            names.pop()
            break
        if not line.startswith(" "):
            names += [n.strip() for n in line.split(":")[0].split(",")]
    return names


def _signature(obj) -> list[str]:
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    params = inspect.signature(obj).parameters.values()
    return [stars.get(p.kind, "") + p.name for p in params if p.name not in ("self", "cls")]


@pytest.mark.parametrize("obj", DECORATED, ids=lambda o: o.__qualname__)
def test_rendered_docstrings(obj):
    doc = inspect.getdoc(obj)
    assert "%(" not in doc and "$" not in doc
    assert sorted(_documented(doc)) == sorted(_signature(obj))  # every parameter, once


@pytest.mark.parametrize("obj", DECORATED, ids=lambda o: o.__qualname__)
def test_numpydoc_reads_them(obj):
    docscrape = pytest.importorskip("numpydoc.docscrape")
    parsed = (docscrape.ClassDoc if inspect.isclass(obj) else docscrape.FunctionDoc)(obj)
    assert sorted(n.strip() for p in parsed["Parameters"] for n in p.name.split(",")) == sorted(_signature(obj))


def test_every_block_is_used():
    sources = "".join(p.read_text() for p in Path(scgde.__file__).parent.rglob("*.py"))
    unused = [k for k in PARAMS if f"%({k})s" not in sources]
    assert set(unused) <= {"n_hidden"}  # n_hidden: for GDE's own docstring


def test_blocks_are_indented_where_they_stand():
    @inject_docs(elements="sequences")
    def f(n_samples, copy=False):
        """Do.

        Parameters
        ----------
        %(n_samples_per_set)s
        %(copy)s
            More about copy.
        """

    assert inspect.getdoc(f).splitlines()[4:] == [
        "n_samples",
        "    Sequences per set.",
        "copy",
        "    Return a modified copy instead of writing in place.",
        "    More about copy.",
    ]


def test_mistakes_fail_at_import():
    with pytest.raises(KeyError, match="unknown shared documentation"):
        inject_docs(type("C", (), {"__doc__": "Parameters\n----------\n%(nope)s\n"}))
    with pytest.raises(KeyError, match="encoder_class"):
        inject_docs(type("C", (), {"__doc__": "%(conv_encoder)s"}))
    with pytest.raises(ValueError, match="stand alone"):
        inject_docs(type("C", (), {"__doc__": "see %(copy)s"}))
