"""Sphinx configuration. Builds offline: set SCGDE_DOCS_OFFLINE=1 to drop intersphinx and nitpicky checks."""

from __future__ import annotations

import os
import shutil
from datetime import date
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).parent
OFFLINE = os.environ.get("SCGDE_DOCS_OFFLINE", "0") == "1"

project = "scgde"
author = "scgde developers"
copyright = f"{date.today().year}, {author}"
release = metadata.version("scgde")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
    "sphinx_copybutton",
]
autosummary_generate = True
autodoc_member_order = "groupwise"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
default_role = "literal"
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3  # links such as benchmarks.md#the-distance-matrix-job-... resolve
nb_execution_mode = "off"  # notebooks are committed with outputs
nb_output_stderr = "remove"
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "sphinx_book_theme"
html_title = "scgde"
html_theme_options = {"repository_url": "https://github.com/scverse/scgde", "use_repository_button": True}

nitpicky = not OFFLINE
intersphinx_mapping = (
    {}
    if OFFLINE
    else {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
    }
)

# the executed notebooks live in ../tutorials; copy them into the source tree
(HERE / "tutorials").mkdir(exist_ok=True)
for nb in sorted((HERE.parent / "tutorials").glob("*.ipynb")):
    shutil.copy2(nb, HERE / "tutorials" / nb.name)
