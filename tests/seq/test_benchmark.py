"""The --quick mode of ``benchmarks.seq_simplex`` runs end to end and prints its baselines beside GDE."""

import math

from benchmarks import seq_simplex


def test_seq_simplex_quick(capsys):
    result = seq_simplex.main(["--quick", "--seed", "0"])
    m = result["metrics"]
    assert all(math.isfinite(v) for v in m.values())
    assert -1 <= m["GDE_r"] <= 1 and 0 <= m["valid"] <= 1
    out = capsys.readouterr().out
    assert "Command: `python -m benchmarks.seq_simplex --quick --seed 0`" in out
    for name in ("untrained encoder", "mean 3-mer spectrum", "training mean (1/3 each)", "0.9467"):
        assert name in out
