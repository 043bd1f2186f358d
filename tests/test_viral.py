"""SARS-CoV-2 spike sets: the GISAID reader (synthetic file), the Nextstrain loader and the sampled variants."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scgde.datasets import _viral
from scgde.datasets._downloads import DOWNLOADS, REGISTRY
from scgde.datasets._viral import nextstrain_spike_sets, read_gisaid_spike, spike_variant_sets


@pytest.fixture
def offline(server, tmp_path, monkeypatch):
    """No registered file is cached (an empty cache folder) nor downloadable (every URL answers 404)."""
    monkeypatch.setenv("SCGDE_DATA_DIR", str(tmp_path / "empty_cache"))
    for name in DOWNLOADS.urls:
        monkeypatch.setitem(DOWNLOADS.urls, name, server.url + "absent/" + name)
    return server


def _serve_registered(server, monkeypatch, dataset: str, files: dict[str, bytes]) -> None:
    """Serve ``files`` (file key -> content) as the registered files of ``dataset``, with their checksums."""
    import pooch

    for key, content in files.items():
        name = f"{dataset}/{REGISTRY[dataset][key]['fname']}"
        (server.root / key).write_bytes(content)
        monkeypatch.setitem(DOWNLOADS.urls, name, server.url + key)
        monkeypatch.setitem(DOWNLOADS.registry, name, "sha256:" + pooch.file_hash(str(server.root / key)))


# ---------------------------------------------------------------------------------------------------------------------
# GISAID spikeprot FASTA (synthetic, in GISAID's header style)
# ---------------------------------------------------------------------------------------------------------------------

PROTEIN = "MFVFLVLLPLVSSQCVNLTTRTQLPPAYTN"  # 30 aa


def _gisaid_record(i: int, date: str, country: str = "Australia", last: str | None = None, seq: str = PROTEIN) -> str:
    last = country if last is None else last
    header = (
        f"Spike|hCoV-19/{country}/LAB{i}/2020|{date}|EPI_ISL_{400000 + i}|Original|hCoV-19^^{country}|Human|"
        f"Lab A|Lab B|Submitter|{last}"
    )
    return f">{header}\n{seq[:12]}\n{seq[12:]}*\n"  # wrapped over two lines, trailing stop


#: (date, country in the virus name, last field); expected fate with set_size=3 noted per line
GISAID_RECORDS = [
    ("2020-03-25", "Australia", "Australia"),  # 0 kept (2020-03|Australia)
    ("2020-03-00", "Australia", "Australia"),  # 1 malformed: day 00
    ("2020-03-02", "Australia", "Australia"),  # 2 kept
    ("2020-03", "Australia", "Australia"),  # 3 malformed: no day
    ("2020-04-10", "Australia", "Australia"),  # 4 2020-04|Australia: only 2 records -> dropped
    ("2020-03-31", "Australia", "Northern Territory"),  # 5 last field differs from the name's country
    ("2020-03-07", "Australia", "Australia"),  # 6 kept (3rd of its set)
    ("2020-03-09", "Australia", "Australia"),  # 7 beyond set_size
    ("2020-04-11", "Australia", "Australia"),  # 8 2020-04|Australia, 2nd record
    ("2020-02-30", "Australia", "Australia"),  # 9 malformed: no such day
    ("2019-11-20", "Australia", "Australia"),  # 10 before 2019-12-01
    ("2020-00-12", "Australia", "Australia"),  # 11 malformed: month 00
    ("2020-03-15", "USA", "USA"),  # 12 2020-03|USA
    ("2020-03-16", "USA", "USA"),  # 13
    ("2020-03-17", "USA", "USA"),  # 14 -> 2020-03|USA complete
]


def _write_gisaid(path: Path, compress: bool = False) -> Path:
    text = "".join(_gisaid_record(i, d, c, last) for i, (d, c, last) in enumerate(GISAID_RECORDS))
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def test_gisaid_protocol(tmp_path, caplog):
    path = _write_gisaid(tmp_path / "spikeprot0101.fasta")
    with caplog.at_level(logging.INFO, logger="scgde.datasets._viral"):
        adata = read_gisaid_spike(path, set_size=3, max_length=20)
    expected = [0, 2, 6, 12, 13, 14]
    assert adata.obs_names.tolist() == [f"EPI_ISL_{400000 + i}" for i in expected]  # file order
    assert adata.obs["accession"].tolist() == adata.obs_names.tolist()
    assert adata.obs["date"].tolist() == [GISAID_RECORDS[i][0] for i in expected]
    assert adata.obs["strain"].iloc[0] == "hCoV-19/Australia/LAB0/2020"
    assert adata.obs["set"].astype(str).tolist() == ["2020-03|Australia"] * 3 + ["2020-03|USA"] * 3
    assert isinstance(adata.obs["set"].dtype, pd.CategoricalDtype)
    assert (adata.obs["month"] == "2020-03").all()
    assert adata.obs["location"].tolist() == ["Australia"] * 3 + ["USA"] * 3
    assert adata.obs["months_since_2019_12"].dtype == np.int64
    assert adata.obs["months_since_2019_12"].tolist() == [
        (pd.Timestamp(d) - pd.Timestamp("2019-12-01")).days // 30 for d in adata.obs["date"]
    ]
    # the trailing * is stripped, then the protein truncated
    assert (adata.obs["sequence"] == PROTEIN[:20]).all()
    counts = adata.uns["read_gisaid_spike"]["counts"]
    assert counts["records"] == 15 and counts["kept"] == 6 and counts["sets"] == 2
    assert counts["malformed_date"] == 4 and counts["before_2019_12"] == 1 and counts["over_set_size"] == 1
    assert counts["in_small_sets"] == 3  # 2020-04|Australia (2) and 2020-03|Northern Territory (1)
    assert "malformed date" in caplog.text and "kept 6 in 2 sets" in caplog.text


def test_gisaid_gzip_and_no_limits(tmp_path):
    plain = read_gisaid_spike(_write_gisaid(tmp_path / "a.fasta"), set_size=3)
    zipped = read_gisaid_spike(_write_gisaid(tmp_path / "b.fasta.gz", compress=True), set_size=3)
    pd.testing.assert_frame_equal(plain.obs, zipped.obs)
    assert (plain.obs["sequence"] == PROTEIN).all()  # shorter than max_length=1000: whole, without the *
    everything = read_gisaid_spike(tmp_path / "b.fasta.gz", set_size=None, max_length=None)
    assert everything.n_obs == 15 - 5  # every record with a good date
    assert everything.obs["set"].nunique() == 4
    assert (everything.obs["sequence"] == PROTEIN).all()


def test_gisaid_location_from_last_field_or_name(tmp_path):
    path = _write_gisaid(tmp_path / "spikeprot.fasta")
    last = read_gisaid_spike(path, set_size=None)
    name = read_gisaid_spike(path, location="country", set_size=None)
    assert "Northern Territory" in set(last.obs["location"]) and "Northern Territory" not in set(name.obs["location"])
    assert last.obs.loc["EPI_ISL_400005", "set"] == "2020-03|Northern Territory"
    assert name.obs.loc["EPI_ISL_400005", "set"] == "2020-03|Australia"
    # by the name's country, the record joins 2020-03|Australia, which then has 5 records
    capped = read_gisaid_spike(path, location="country", set_size=5)
    assert capped.obs_names.tolist() == [f"EPI_ISL_{400000 + i}" for i in (0, 2, 5, 6, 7)]


def test_gisaid_argument_errors(tmp_path):
    path = _write_gisaid(tmp_path / "spikeprot.fasta")
    with pytest.raises(ValueError, match="location"):
        read_gisaid_spike(path, location="city")
    with pytest.raises(ValueError, match="set_size"):
        read_gisaid_spike(path, set_size=0)
    with pytest.raises(ValueError, match="max_length"):
        read_gisaid_spike(path, max_length=2.5)
    with pytest.raises(FileNotFoundError, match="fasta"):
        read_gisaid_spike(tmp_path / "absent.fasta")
    with pytest.raises(ValueError, match="fasta"):
        read_gisaid_spike(3)
    (tmp_path / "bad.fasta").write_text("MFVF\n>x\nAA\n")
    with pytest.raises(ValueError, match="not a FASTA"):
        read_gisaid_spike(tmp_path / "bad.fasta")


# ---------------------------------------------------------------------------------------------------------------------
# Nextstrain genomes
# ---------------------------------------------------------------------------------------------------------------------

_CODON = {
    "A": "GCT", "R": "CGT", "N": "AAT", "D": "GAT", "C": "TGT", "Q": "CAA", "E": "GAA", "G": "GGT", "H": "CAT",
    "I": "ATT", "L": "CTT", "K": "AAA", "M": "ATG", "F": "TTT", "P": "CCT", "S": "TCT", "T": "ACT", "W": "TGG",
    "Y": "TAT", "V": "GTT",
}  # fmt: skip


def _genome(rng, protein: str, start: int, length: int = 23_000) -> str:
    cds = "".join(_CODON[a] for a in protein) + "TAA"
    genome = "".join(rng.choice(list("ACGT"), size=length))
    return genome[:start] + cds + genome[start + len(cds) :]


def test_nextstrain_synthetic_genomes(tmp_path, caplog):
    rng = np.random.default_rng(0)
    spike = PROTEIN + "DKVFRSSVLHSTQ"
    l5f = spike[:4] + "F" + spike[5:]
    genomes = {
        "A/1/2020": _genome(rng, spike, 21_562),
        "A/2/2020": _genome(rng, spike, 21_520),  # shifted like genomes with a trimmed 5' end
        "A/3/2020": _genome(rng, l5f, 21_600),  # a variant of the N-terminus
        "B/1/2020": _genome(rng, spike, 21_562),
        "B/2/2020": _genome(rng, spike, 21_562),
        "A/N/2020": _genome(rng, spike, 21_562),  # an N in the S gene
        "A/none/2020": "ACGT" * 5000,  # no S gene
        "A/nometa/2020": _genome(rng, spike, 21_562),
        "A/baddate/2020": _genome(rng, spike, 21_562),
    }
    g = genomes["A/N/2020"]
    genomes["A/N/2020"] = g[: 21_562 + 60] + "N" + g[21_562 + 61 :]
    g = genomes["B/2/2020"]
    genomes["B/2/2020"] = g[: 21_562 + 45] + "R" + g[21_562 + 46 :]  # ambiguity code: X
    fasta = tmp_path / "genomes.fasta.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write("".join(f">{k}\n{v}\n" for k, v in genomes.items()))
    meta = pd.DataFrame(
        {
            "strain": [k for k in genomes if k != "A/nometa/2020"],
            "date": ["2020-03-05", "2020-03-20", "2020-03-31", "2020-04-01", "2020-04-02", "2020-03-01",
                     "2020-03-01", "2020-03-XX"],
            "country": ["Alpha", "Alpha", "Alpha", "Beta", "Beta", "Alpha", "Alpha", "Alpha"],
            "genbank_accession": [f"MT{i}" for i in range(8)],
        }
    )  # fmt: skip
    meta.to_csv(tmp_path / "meta.tsv", sep="\t", index=False)
    with caplog.at_level(logging.INFO, logger="scgde.datasets._viral"):
        adata = nextstrain_spike_sets(fasta, tmp_path / "meta.tsv")
    assert adata.obs_names.tolist() == ["A/1/2020", "A/2/2020", "A/3/2020", "B/1/2020", "B/2/2020"]
    assert adata.obs["sequence"].tolist()[:4] == [spike, spike, l5f, spike]
    assert adata.obs["sequence"].iloc[4] == spike[:15] + "X" + spike[16:]
    assert adata.obs["spike_start"].tolist() == [21_562, 21_520, 21_600, 21_562, 21_562]
    assert adata.obs["set"].astype(str).tolist() == ["2020-03|Alpha"] * 3 + ["2020-04|Beta"] * 2
    assert adata.obs["location"].tolist() == ["Alpha"] * 3 + ["Beta"] * 2
    assert adata.obs["accession"].tolist() == ["MT0", "MT1", "MT2", "MT3", "MT4"]
    assert adata.obs["months_since_2019_12"].tolist() == [3, 3, 4, 4, 4]
    counts = adata.uns["nextstrain_spike_sets"]["counts"]
    assert counts == {
        "genomes": 9,
        "not_in_metadata": 1,
        "malformed_date": 1,
        "no_spike": 1,
        "n_in_spike": 1,
        "in_small_sets": 0,
        "kept": 5,
    }
    assert "1 without a complete S gene" in caplog.text
    # allowing Ns keeps that genome (its codon becomes X); a larger minimum set size drops 2020-04|Beta
    relaxed = nextstrain_spike_sets(fasta, tmp_path / "meta.tsv", min_set_size=3, max_n=1)
    assert relaxed.obs_names.tolist() == ["A/1/2020", "A/2/2020", "A/3/2020", "A/N/2020"]
    assert relaxed.obs.loc["A/N/2020", "sequence"][20] == "X"


def test_nextstrain_argument_errors(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match="`fasta`"):
        nextstrain_spike_sets()
    fasta = tmp_path / "g.fasta"
    fasta.write_text(">x\nACGT\n")
    with pytest.raises(FileNotFoundError, match="`metadata`"):
        nextstrain_spike_sets(fasta)
    (tmp_path / "m.tsv").write_text("strain\tdate\nx\t2020-01-01\n")
    with pytest.raises(ValueError, match="country"):
        nextstrain_spike_sets(fasta, tmp_path / "m.tsv")
    with pytest.raises(ValueError, match="min_set_size"):
        nextstrain_spike_sets(fasta, tmp_path / "m.tsv", min_set_size=0)
    with pytest.raises(ValueError, match="max_n"):
        nextstrain_spike_sets(fasta, tmp_path / "m.tsv", max_n=-1)


def test_nextstrain_real_genomes(shared_data):
    fasta = shared_data("sarscov2_genbank_nextstrain", "example_sequences.fasta.gz")
    reference = _viral._read_reference(shared_data("spike_mutation_counts_evescape", "SPIKE_SARS2.fasta"))
    adata = nextstrain_spike_sets(fasta, shared_data("sarscov2_genbank_nextstrain", "example_metadata.tsv"))
    counts = adata.uns["nextstrain_spike_sets"]["counts"]
    assert counts["genomes"] == 418
    assert counts["kept"] + sum(v for k, v in counts.items() if k not in ("genomes", "kept")) == 418
    assert adata.n_obs > 250 and adata.obs["set"].nunique() >= 10
    seqs = adata.obs["sequence"]
    assert seqs.str.startswith("M").all()
    assert seqs.str.len().between(1265, 1273).all() and (seqs.str.len() == 1273).mean() > 0.99
    same_length = seqs[seqs.str.len() == len(reference)]
    differences = same_length.map(lambda s: sum(a != b for a, b in zip(s, reference, strict=True)))
    assert (differences == 0).sum() > 50 and (differences <= 3).mean() > 0.95
    d614g = same_length.str[613] == "G"
    assert 0.2 < d614g.mean() < 0.9  # spreading in spring 2020: in some genomes, not all
    assert (adata.obs.groupby("set", observed=True).size() >= 2).all()
    assert set(adata.obs["month"]) <= {"2019-12", "2020-01", "2020-02", "2020-03", "2020-04", "2020-05"}
    assert (adata.obs["set"].astype(str) == adata.obs["month"] + "|" + adata.obs["location"]).all()


# ---------------------------------------------------------------------------------------------------------------------
# spike variants sampled from monthly counts
# ---------------------------------------------------------------------------------------------------------------------

REFERENCE = "MAKLDSQW"  # positions 1..8


def _counts() -> pd.DataFrame:
    # 2021-01: position 5 is the most mutated (1,000): N = 1,000
    return pd.DataFrame(
        {
            "2021-01": [100, 500, 900, 1000, 300, 200, 0],
            "2021-02": [0, 50, 100, 100, 0, 0, 10],
            "2020-12": [1, 0, 0, 2, 0, 0, 0],  # too few counts: dropped with min_month_total=10
        },
        index=["A2V", "K3R", "L4F", "D5G", "S6T", "S6P", "W8Y"],
    )


def _hamming(s: str, ref: str) -> int:
    return sum(a != b for a, b in zip(s, ref, strict=True))


def test_spike_variants_rates_match_the_frequencies():
    adata = spike_variant_sets(_counts(), REFERENCE, sets_per_month=100, set_size=40, min_month_total=10, seed=3)
    obs = adata.obs
    assert sorted(obs["month"].unique()) == ["2021-01", "2021-02"]
    assert adata.uns["spike_variant_sets"]["dropped_months"] == ["2020-12"]
    assert adata.uns["spike_variant_sets"]["month_total"] == {"2021-01": 1000.0, "2021-02": 100.0}
    jan = obs[obs["month"] == "2021-01"]["sequence"]
    n = len(jan)
    assert n == 4000
    expected = {(2, "V"): 0.1, (3, "R"): 0.5, (4, "F"): 0.9, (5, "G"): 1.0, (6, "T"): 0.3, (6, "P"): 0.2, (8, "Y"): 0}
    for (position, letter), p in expected.items():
        observed = (jan.str[position - 1] == letter).mean()
        assert abs(observed - p) <= 4.5 * np.sqrt(p * (1 - p) / n) + 1e-12, (position, letter, observed)
    # independent across positions (linkage is not modelled)
    both = ((jan.str[1] == "V") & (jan.str[2] == "R")).mean()
    assert abs(both - 0.05) < 4.5 * np.sqrt(0.05 * 0.95 / n)
    # n_mutations and mutations describe the sequence
    assert (obs["n_mutations"] == obs["sequence"].map(lambda s: _hamming(s, REFERENCE))).all()
    assert (obs["n_mutations"] == obs["mutations"].map(lambda m: len(m.split(";")) if m else 0)).all()
    assert abs(obs.loc[obs["month"] == "2021-01", "n_mutations"].mean() - 3.0) < 0.1
    assert adata.uns["spike_variant_sets"]["expected_mutations"]["2021-01"] == pytest.approx(3.0)
    # February: N = 100 (positions 4 and 5), W8Y at 0.1
    feb = obs[obs["month"] == "2021-02"]["sequence"]
    assert (feb.str[4] == "G").all() and (feb.str[3] == "F").all()
    assert abs((feb.str[7] == "Y").mean() - 0.1) < 4.5 * np.sqrt(0.09 / len(feb))


def test_spike_variants_layout_and_reproducibility():
    kwargs = {"sets_per_month": 3, "set_size": 4, "min_month_total": 10}
    a = spike_variant_sets(_counts(), REFERENCE, seed=1, **kwargs)
    b = spike_variant_sets(_counts(), REFERENCE, seed=1, **kwargs)
    c = spike_variant_sets(_counts(), REFERENCE, seed=2, **kwargs)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert not a.obs["sequence"].equals(c.obs["sequence"])
    assert a.n_obs == 2 * 3 * 4 and a.n_vars == 0
    assert list(a.obs.columns) == ["month", "months_since_2019_12", "set", "n_mutations", "mutations", "sequence"]
    assert a.obs["set"].cat.categories.tolist() == [f"{m}|{k}" for m in ("2021-01", "2021-02") for k in range(3)]
    assert (a.obs.groupby("set", observed=True).size() == 4).all()
    assert a.obs_names.is_unique
    # (15 January 2021 - 1 December 2019).days // 30 = 411 // 30
    assert a.obs.groupby("month")["months_since_2019_12"].first().to_dict() == {"2021-01": 13, "2021-02": 14}
    # the substitutions may also come in a `mutation` column
    table = _counts().rename_axis("mutation").reset_index()
    d = spike_variant_sets(table, REFERENCE, seed=1, **kwargs)
    pd.testing.assert_frame_equal(a.obs, d.obs)


def test_spike_variants_month_totals_and_dropping():
    adata = spike_variant_sets(
        _counts(), REFERENCE, sets_per_month=50, set_size=40, min_month_total=10, month_totals={"2021-01": 2000}
    )
    jan = adata.obs[adata.obs["month"] == "2021-01"]["sequence"]
    assert abs((jan.str[4] == "G").mean() - 0.5) < 4.5 * np.sqrt(0.25 / len(jan))
    assert adata.uns["spike_variant_sets"]["month_total"]["2021-01"] == 2000.0
    assert spike_variant_sets(_counts(), REFERENCE, min_month_total=0, sets_per_month=1, set_size=2).n_obs == 6
    with pytest.raises(ValueError, match="min_month_total"):
        spike_variant_sets(_counts(), REFERENCE, min_month_total=10_000)


def test_spike_variants_reference_mismatches(caplog):
    counts = _counts()
    counts.loc["Q7H"] = [10, 0, 0]  # the reference has S at 6, Q at 7: fine
    counts.loc["W7Y"] = [10, 0, 0]  # position 7 is Q, not W
    counts.loc["K99E"] = [10, 0, 0]  # beyond the reference
    with caplog.at_level(logging.WARNING, logger="scgde.datasets._viral"):
        adata = spike_variant_sets(counts, REFERENCE, sets_per_month=20, set_size=50, min_month_total=10)
    info = adata.uns["spike_variant_sets"]
    assert info["n_reference_mismatches"] == 2 and sorted(info["reference_mismatches"]) == ["K99E", "W7Y"]
    assert "do not match the reference" in caplog.text
    jan = adata.obs[adata.obs["month"] == "2021-01"]["sequence"]
    assert not (jan.str[6] == "Y").any() and (jan.str[6] == "H").any()
    assert (adata.obs["sequence"].str.len() == len(REFERENCE)).all()
    with pytest.raises(ValueError, match="reference"):
        spike_variant_sets(counts, REFERENCE, on_mismatch="raise", min_month_total=10)


def test_spike_variants_reference_from_fasta(tmp_path):
    (tmp_path / "ref.fasta").write_text(f">sp|ref\n{REFERENCE[:4]}\n{REFERENCE[4:]}\n")
    a = spike_variant_sets(_counts(), tmp_path / "ref.fasta", sets_per_month=2, set_size=2, min_month_total=10)
    b = spike_variant_sets(_counts(), REFERENCE, sets_per_month=2, set_size=2, min_month_total=10)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    csv = tmp_path / "counts.csv"
    _counts().rename_axis("mutation").to_csv(csv)
    c = spike_variant_sets(csv, REFERENCE, sets_per_month=2, set_size=2, min_month_total=10)
    pd.testing.assert_frame_equal(a.obs, c.obs)


def test_spike_variants_argument_errors(tmp_path, offline):
    counts = _counts()
    for kwargs, match in [
        ({"sets_per_month": 0}, "sets_per_month"),
        ({"set_size": -1}, "set_size"),
        ({"set_size": 2.0}, "set_size"),
        ({"seed": "x"}, "seed"),
        ({"on_mismatch": "ignore"}, "on_mismatch"),
        ({"min_month_total": -1}, "min_month_total"),
        ({"month_totals": {"1999-01": 10}}, "month_totals"),
        ({"month_totals": {"2021-01": 0}}, "month_totals"),
        ({"month_totals": [1, 2]}, "month_totals"),
    ]:
        with pytest.raises(ValueError, match=match):
            spike_variant_sets(counts, REFERENCE, **kwargs)
    with pytest.raises(ValueError, match="yyyy-mm"):
        spike_variant_sets(counts.rename(columns={"2021-01": "Jan 2021"}), REFERENCE)
    with pytest.raises(ValueError, match="D614G"):
        spike_variant_sets(counts.rename(index={"A2V": "A2del"}), REFERENCE)
    with pytest.raises(ValueError, match="non-negative"):
        spike_variant_sets(counts.assign(**{"2021-01": -counts["2021-01"]}), REFERENCE)
    with pytest.raises(FileNotFoundError, match="reference"):
        spike_variant_sets(counts, "no/such/reference.fasta")
    with pytest.raises(FileNotFoundError, match="counts"):
        spike_variant_sets(tmp_path / "absent.csv", REFERENCE)
    with pytest.raises(FileNotFoundError, match="`counts`"):
        spike_variant_sets(reference=REFERENCE)
    with pytest.raises(FileNotFoundError, match="`reference`"):
        spike_variant_sets(counts)


def test_spike_variants_real_counts(shared_data):
    counts = shared_data("spike_mutation_counts_evescape", "single_mutant_count_by_month.csv")
    reference = _viral._read_reference(shared_data("spike_mutation_counts_evescape", "SPIKE_SARS2.fasta"))
    assert len(reference) == 1273 and reference.startswith(_viral.SPIKE_N_TERMINUS)
    adata = spike_variant_sets(counts, reference, sets_per_month=2, set_size=8)
    info = adata.uns["spike_variant_sets"]
    assert info["n_reference_mismatches"] == 0
    assert info["dropped_months"] == ["2020-01", "2020-02"]
    months = sorted(adata.obs["month"].unique())
    assert months[0] == "2020-03" and months[-1] == "2022-08" and len(months) == 30
    assert adata.n_obs == 30 * 16 and (adata.obs["sequence"].str.len() == 1273).all()
    by_month = adata.obs.groupby("month")["months_since_2019_12"].first()
    assert by_month.is_monotonic_increasing and by_month["2020-03"] == 3 and by_month["2022-08"] == 32
    assert (adata.obs["sequence"].str[613] == "G").mean() > 0.95  # D614G near fixation (frequency 1 by construction)
    mean = adata.obs.groupby("month")["n_mutations"].mean()
    assert mean["2020-06"] < 3 and mean["2022-03"] > 20  # Omicron


# ---------------------------------------------------------------------------------------------------------------------
# default files: the package's pooch registry, never a path outside the package
# ---------------------------------------------------------------------------------------------------------------------


def test_spike_variant_defaults_are_downloaded_into_the_cache(server, tmp_path, monkeypatch):
    # a decoy where the old loader looked (../shared/data/... beside the repository) is never read
    decoy = tmp_path / "shared" / "data" / "spike_mutation_counts_evescape"
    decoy.mkdir(parents=True)
    (decoy / "SPIKE_SARS2.fasta").write_text(">decoy\nWWWW\n")
    monkeypatch.chdir(tmp_path)
    counts = _counts().rename_axis("mutation").to_csv().encode()
    _serve_registered(server, monkeypatch, "spike_variant_sets", {"counts": counts, "reference": b">ref\nMAKL\nDSQW\n"})
    cache = tmp_path / "cache"
    adata = spike_variant_sets(sets_per_month=2, set_size=2, min_month_total=10, cache=cache)
    expected = spike_variant_sets(_counts(), REFERENCE, sets_per_month=2, set_size=2, min_month_total=10)
    pd.testing.assert_frame_equal(adata.obs, expected.obs)
    assert sorted(p.name for p in (cache / "spike_variant_sets").iterdir()) == [
        "SPIKE_SARS2.fasta",
        "single_mutant_count_by_month.csv",
    ]
    assert len(server.hits) == 2
    server.stop()  # later loads come from the cache
    again = spike_variant_sets(sets_per_month=2, set_size=2, min_month_total=10, cache=cache)
    pd.testing.assert_frame_equal(again.obs, expected.obs)
    # $SCGDE_DATA_DIR is the cache when none is passed
    monkeypatch.setenv("SCGDE_DATA_DIR", str(cache))
    assert spike_variant_sets(sets_per_month=2, set_size=2, min_month_total=10).n_obs == expected.n_obs


def test_nextstrain_defaults_are_downloaded_into_the_cache(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    spike = PROTEIN + "DKVFRSSVLHSTQ"
    genomes = {f"A/{i}/2020": _genome(rng, spike, 21_562) for i in range(3)}
    fasta = gzip.compress("".join(f">{k}\n{v}\n" for k, v in genomes.items()).encode())
    meta = pd.DataFrame({"strain": list(genomes), "date": ["2020-03-05"] * 3, "country": ["Alpha"] * 3})
    files = {"fasta": fasta, "metadata": meta.to_csv(sep="\t", index=False).encode()}
    _serve_registered(server, monkeypatch, "nextstrain_spike_sets", files)
    monkeypatch.setenv("SCGDE_DATA_DIR", str(tmp_path / "cache"))
    adata = nextstrain_spike_sets()
    assert adata.obs_names.tolist() == list(genomes) and (adata.obs["sequence"] == spike).all()
    assert (tmp_path / "cache" / "nextstrain_spike_sets" / "example_sequences.fasta.gz").is_file()


def test_offline_defaults_name_the_argument(offline):
    with pytest.raises(FileNotFoundError, match=r"`counts` was not given.*could not be downloaded.*Pass `counts=`"):
        spike_variant_sets()
    with pytest.raises(FileNotFoundError, match=r"`reference` was not given.*Pass `reference=`"):
        spike_variant_sets(_counts())
    with pytest.raises(FileNotFoundError, match=r"`fasta` was not given.*Pass `fasta=`"):
        nextstrain_spike_sets()


def test_registered_viral_files_match_the_shared_copies(shared_data):
    import pooch

    folders = {
        "spike_variant_sets": "spike_mutation_counts_evescape",
        "nextstrain_spike_sets": "sarscov2_genbank_nextstrain",
    }
    for dataset, folder in folders.items():
        for entry in REGISTRY[dataset].values():
            file = shared_data(folder, str(entry["fname"]))
            assert "sha256:" + pooch.file_hash(str(file)) == entry["known_hash"]
