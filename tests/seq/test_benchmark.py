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


def test_seq_promoters_quick():
    from benchmarks import seq_promoters

    result = seq_promoters.main(["--quick", "--seed", "0"])
    assert {"untrained encoder", "mean 4-mer spectrum"} <= set(result["ordering"].index)
    assert "real promoters of each bin (ceiling)" in result["generation"].index
    assert all(math.isfinite(v) for v in result["metrics"].values())


def test_seq_methylation_quick():
    from benchmarks import seq_methylation

    result = seq_methylation.main(["--quick", "--seed", "0"])
    table = result["table"]
    assert table.loc["region only (chance)", "ROC-AUC"] == 0.5  # the region alone carries no sample information
    assert table["ROC-AUC"].between(0, 1).all()
