"""scgde: Generative Distribution Embeddings for sets of cells, an scverse package."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scgde")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["data", "datasets", "img", "metrics", "model", "module", "nn", "pl", "pp", "seq", "tl"]


def __getattr__(name: str):
    # subpackages load on first use (PEP 562), so `import scgde` and `scgde --help` stay free of torch
    if name in __all__:
        submodule = import_module(f"{__name__}.{name}")
        globals()[name] = submodule
        return submodule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
