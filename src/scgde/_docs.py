"""Parameter documentation shared by several callables, written once and put into their docstrings.

A docstring names a shared block on a line of its own, ``%(key)s``, where the block belongs (usually
in ``Parameters``); :func:`inject_docs` replaces that line by ``PARAMS[key]``, indented as the
line was, so the rendered docstring is ordinary numpydoc. A block may name the kind of element
(``$elements``, ``$Elements``: ``cells`` by default, ``sequences`` for :class:`~scgde.seq.SeqGDE`,
...) and other ``$name`` fields, filled from the decorator's keywords::

    @inject_docs(elements="images")
    def generate(self, sets, n_samples=64):
        '''Generate images.

Parameters
----------
        %(generate_sets)s
        %(n_samples_per_set)s
        '''
"""

from __future__ import annotations

import re
import textwrap
from string import Template

__all__ = ["PARAMS", "inject_docs"]

#: key -> numpydoc block (parameter line, then its description indented by four spaces)
PARAMS: dict[str, str] = {
    # ------------------------------------------------------------------ models
    "model_adata_elements": """\
adata
    AnnData registered with :meth:`setup_anndata` (it may have no variables).""",
    "n_latent": """\
n_latent
    Dimension of the set embedding.""",
    "n_hidden": """\
n_hidden
    Hidden width of encoder and generator.""",
    "conv_encoder": """\
encoder
    ``"conv"``: the convolutional set encoder (:class:`$encoder_class`).""",
    "load_dir_path": """\
dir_path
    Folder written by :meth:`save`.""",
    "load_adata": """\
adata
    AnnData to attach (default: the one saved with ``save_anndata=True``).""",
    # ------------------------------------------------------------------ training
    "sets_per_batch": """\
sets_per_batch
    Sets per minibatch ``B``.""",
    "cells_per_set": """\
cells_per_set
    Cells drawn per set ``m`` (with replacement from sets smaller than ``m``).""",
    "elements_per_set": """\
cells_per_set
    $Elements drawn per set (the encoder sees all of them; the generator's loss uses up to
    ``generator_kwargs["max_loss_elements"]`` of them, 8 by default).""",
    "min_set_size": """\
min_set_size
    Sets with fewer cells are skipped (with a warning that counts them).""",
    "train_size": """\
train_size
    Fraction of sets used for training (default 0.9); the rest are validation sets.""",
    "element_train_kwargs": """\
**kwargs
    As for :meth:`scgde.model.GDE.train` (``lr``, ``mixer``, ``kernel``, ``train_size``,
    ``early_stopping``, ``enable_progress_bar``, ...).""",
    # ------------------------------------------------------------------ generation
    "generate_sets": """\
sets
    Set names of the training AnnData, a DataFrame of embeddings (as returned by
    :meth:`get_set_representation`, e.g. of unseen sets) or an array ``(n, n_latent)``.""",
    "n_samples_per_set": """\
n_samples
    $Elements per set.""",
    "batch_size_elements": """\
batch_size
    $Elements generated per network call (memory).""",
    "n_cells_alias": """\
n_cells
    Alias of ``n_samples`` (its former name); pass one of the two.""",
    "line_ends": """\
set_a, set_b
    Set names or embeddings ``(n_latent,)``.""",
    "line_steps": """\
n_steps
    Points ``t = 0, ..., 1`` on the line.""",
    "n_samples_per_point": """\
n_samples
    $Elements per point.""",
    "line_returns": """\
AnnData as :meth:`generate`, with ``obs["t"]`` (position on the line, 0 to 1).""",
    # ------------------------------------------------------------------ embedding
    "query_adata": """\
adata
    AnnData with the model's genes (default: the training AnnData).""",
    "set_key": """\
set_key
    Column(s) of ``adata.obs`` defining the sets (default: the registered ``set_key``).""",
    "sets_subset": """\
sets
    Only these sets (in this order).""",
    "n_bootstrap": """\
n_bootstrap
    Bootstrap replicates for ``return_std`` (each costs one encoding of the data).""",
    "progress_bar": """\
progress_bar
    Show progress bars on long passes.""",
    # ------------------------------------------------------------------ tools
    "copy": """\
copy
    Return a modified copy instead of writing in place.""",
}

#: a line that is only a placeholder, ``%(key)s``, with its indentation
_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<key>\w+)\)s[ \t]*$", re.MULTILINE)
#: the element nouns blocks may name, and their defaults
_ELEMENTS = {"elements": "cells"}


def _render(doc: str, values: dict[str, str], where: str) -> str:
    def block(match: re.Match) -> str:
        key = match["key"]
        if key not in PARAMS:
            raise KeyError(f"{where}: unknown shared documentation %({key})s; the keys are {sorted(PARAMS)}.")
        try:
            text = Template(PARAMS[key]).substitute(values)
        except KeyError as missing:
            raise KeyError(f"{where}: %({key})s needs {missing}= passed to inject_docs.") from None
        return textwrap.indent(text, match["indent"])

    out = _PLACEHOLDER.sub(block, doc)
    if "%(" in out:
        raise ValueError(f"{where}: a %(key)s placeholder must stand alone on its line.")
    return out


def inject_docs(obj=None, /, **values: str):
    """Put the shared blocks named in a docstring (``%(key)s`` lines) into it.

    Use as ``@inject_docs`` or ``@inject_docs(elements="sequences", ...)`` on a function, method
    or class; ``values`` fill the ``$name`` fields of the blocks (``$Elements`` is ``elements``
    capitalised). An unknown key or field is an error at import time, never a broken docstring.
    """

    def apply(target):
        if target.__doc__:  # None under python -OO
            filled = {**_ELEMENTS, **values}
            filled["Elements"] = filled["elements"].capitalize()
            target.__doc__ = _render(target.__doc__, filled, getattr(target, "__qualname__", repr(target)))
        return target

    return apply if obj is None else apply(obj)
