from __future__ import annotations

import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "agg")

#: small real datasets live beside the repository, not in it (a fresh clone has none): ``<repo>/../shared/data``
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """The path ``../shared/data/<parts>`` beside the repository; the calling test is skipped when it is absent.

    ``shared_data("yeast_promoters_dream")`` is a dataset's folder, ``shared_data("kang2018_ifnb",
    "kang2018_valid.h5ad")`` one of its files. Tests pass this path to the code they test explicitly: package code
    never looks for ``../shared``.
    """
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"needs ../shared/data/{'/'.join(parts)} (the small real datasets beside the repository; "
            f"{SHARED_DATA} does not exist or lacks it, as in a fresh clone)"
        )
    return path


@pytest.fixture(name="shared_data")
def shared_data_fixture():
    """``shared_data("folder")`` or ``shared_data("folder", "file")``: see :func:`shared_data`."""
    return shared_data


@pytest.fixture
def shared_file():
    """``shared_file("folder", "file")``: a path in ../shared/data; the test is skipped when it is absent."""
    return shared_data


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


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local test servers never go through a proxy (and tests never reach the internet)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "remote"``; ``hits`` lists the requested paths."""
    root = tmp_path / "remote"
    root.mkdir()
    hits: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state = {"running": True}

    def stop():
        if state["running"]:
            httpd.shutdown()
            httpd.server_close()
            state["running"] = False

    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}/", hits=hits, stop=stop)
    stop()
