"""The --quick modes of the image benchmarks run end to end and report their baselines beside ImageGDE."""

import math

import pytest


def test_img_digits_quick(capsys):
    from benchmarks import img_digits

    result = img_digits.main(["--quick"])
    m = result["metrics"]
    assert all(math.isfinite(v) for v in m.values())
    assert {"untrained", "set means", "PCA-mean"} <= set(m)
    # the average-composition baseline is exactly computable: mean TV of (1/3, 1/3, 1/3) to the 55 grid points
    assert m["TV average composition"] == pytest.approx(0.339, abs=0.002)
    assert m["classifier accuracy"] > 0.95
    assert "python -m benchmarks.img_digits --quick --seed 0" in capsys.readouterr().out


def test_img_screen_quick():
    from benchmarks import img_screen

    table = img_screen.main(["--quick"])["table"]
    assert {"no change (controls)", "nearest training gene", "training mean"} <= set(table.index)
    assert "ridge: gene features -> readout mean" in table.index


def test_img_nuclei_quick():
    pytest.importorskip("stardist")
    from benchmarks import img_nuclei

    result = img_nuclei.main(["--quick"])
    assert {"untrained conv encoder", "mean image of the neighbourhood (10 PCs)"} <= set(result["metrics"]["r2"])
    assert all(v >= 0 for values in result["metrics"]["w1"].values() for v in sum(values.values(), []))
