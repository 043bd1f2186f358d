"""The tutorials honour the quick mode CI executes them in, and the CI runner fails when a cell raises.

The tutorials themselves are executed by ``ci/run_tutorials.py`` (called from ``.ci/run``), not here.
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
QUICK_LINE = 'QUICK = os.environ.get("SCGDE_TUTORIAL_QUICK") == "1"'


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_tutorials_are_found():
    assert len(TUTORIALS) >= 7, TUTORIALS


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_reads_quick_mode_first(path):
    first, *rest = _code_cells(path)
    assert QUICK_LINE in first, f"{path.name}: the first code cell must set {QUICK_LINE}"
    assert any("QUICK" in source for source in rest), f"{path.name}: QUICK is never used"


def _runner():
    spec = importlib.util.spec_from_file_location("run_tutorials", ROOT / "ci" / "run_tutorials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path: Path, *sources: str) -> Path:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_runner_executes_copies_in_quick_mode_and_fails_on_error(tmp_path, capsys):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    run_tutorials = _runner()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "data.txt").write_text("beside the notebook")
    good = _notebook(
        notebooks / "good.ipynb",
        'import os\nassert os.environ["SCGDE_TUTORIAL_QUICK"] == "1"',
        'print(open("data.txt").read())',  # run in the notebook's folder: relative paths resolve
    )
    bad = _notebook(notebooks / "bad.ipynb", "1 + 1", 'raise ValueError("tutorial cell failed")', "2 + 2")
    committed = {p: p.read_text() for p in (good, bad)}
    out = tmp_path / "out"

    assert run_tutorials.main([str(good), str(bad), "--out", str(out), "--timeout", "120"]) == 1
    assert "ValueError: tutorial cell failed" in capsys.readouterr().err
    assert {p: p.read_text() for p in (good, bad)} == committed  # never overwritten
    executed = json.loads((out / "good.ipynb").read_text())["cells"]
    assert "".join(executed[1]["outputs"][0]["text"]) == "beside the notebook\n"
    assert (out / "bad.ipynb").exists()  # kept for inspection

    assert run_tutorials.main([str(good), "--out", str(out)]) == 0
    with pytest.raises(SystemExit):
        run_tutorials.main([str(good), "--out", str(notebooks)])
