"""The --quick modes of the sequence benchmarks run end to end (the real-data ones skip without ../shared)."""

import math

import pytest
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


def test_seq_promoters_quick(shared_data):
    from benchmarks import seq_promoters

    path = shared_data("yeast_promoters_dream", "demo_train.txt")
    result = seq_promoters.main(["--quick", "--seed", "0", "--path", str(path)])
    assert {"untrained encoder", "mean 4-mer spectrum"} <= set(result["ordering"].index)
    generation = result["generation"]
    assert "real promoters of each bin (ceiling; motifs: the other half)" in generation.index
    assert "real promoters of all bins pooled (no conditioning)" in generation.index
    assert "GDE generator without the set vector (null condition)" in generation.index
    assert generation["TV of hit-count histograms, mean over bins"].between(0, 1).all()
    assert all(math.isfinite(v) for v in result["metrics"].values())


def test_seq_methylation_quick(shared_data):
    from benchmarks import seq_methylation

    folder = shared_data("methylation_reads_methylbert")
    result = seq_methylation.main(["--quick", "--seed", "0", "--data", str(folder)])
    table = result["table"]
    assert table.loc["region only (chance)", "ROC-AUC"] == 0.5  # the region alone carries no sample information
    assert table["ROC-AUC"].between(0, 1).all()


def test_seq_spike_quick(shared_data):
    from benchmarks import seq_spike

    shared_data("spike_mutation_counts_evescape")
    folder = shared_data("sarscov2_genbank_nextstrain").parent
    result = seq_spike.main(["--quick", "--seed", "0", "--data", str(folder)])
    monthly, countries = result["monthly"], result["countries"]
    assert {"mean one-hot (full proteins)", "training mean / majority class"} <= set(monthly.index)
    assert (monthly["month MAE (months)"] > 0).all() and countries["country accuracy"].between(0, 1).all()
    # the majority class is a real baseline: its accuracy is the share of the most common country
    assert 0.2 < countries.loc["training mean / majority class", "country accuracy"] < 1


def test_fit_model_counts_the_steps_taken_and_builds_the_twin_before_training():
    from benchmarks import _common, _seq

    import scgde

    adata = scgde.datasets.synthetic_dna_simplex(n_sets=8, set_size=10, seed=0)
    fitted = _seq.fit_default(adata, {"set_key": "set"}, quick=True, seed=0)
    budget = _seq.QUICK_BUDGET
    assert fitted.steps == budget["max_epochs"] * budget["batches_per_epoch"]
    assert fitted.model.is_trained_ and fitted.train_s > 0
    twin = fitted.untrained  # built between the model and its training: untrained, its own initial weights
    assert isinstance(twin, scgde.seq.SeqGDE) and not twin.is_trained_ and twin is not fitted.model
    with pytest.raises(ValueError, match="train=None"):
        _common.fit_model(scgde.seq.SeqGDE, adata, setup=None, train={"epochs": 1}, options={"window": 2})
    with pytest.raises(ValueError, match="seed_with"):
        _common.build(scgde.seq.SeqGDE, adata, setup=None, model=None, seed=0, seed_with="numpy")
