"""Tests of PWM motif scanning (scgde.seq._motifs): scores against a plain loop, planted sites, motif files."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pandas as pd
import pytest

from scgde.seq import _motifs
from scgde.seq._motifs import (
    jaspar_motifs,
    motif_counts,
    motif_hits_per_set,
    motif_scores,
    pwm_log_odds,
    read_motifs,
)

COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


# --------------------------------------------------------------------------------------------------------------------
# Reference implementations, written independently of the module
# --------------------------------------------------------------------------------------------------------------------


def _slow_log_odds(counts, background=(0.25, 0.25, 0.25, 0.25), pseudocount=0.5):
    out = np.zeros((len(counts), 4))
    for i, row in enumerate(counts):
        total = sum(row) + 4 * pseudocount
        for b in range(4):
            out[i, b] = np.log2((row[b] + pseudocount) / total / background[b])
    return out


def _slow_scores(seq: str, pwm: np.ndarray) -> list[float]:
    """Score of each window: the log-odds of its A/C/G/T letters (anything else adds 0)."""
    index = {"A": 0, "C": 1, "G": 2, "T": 3, "U": 3}
    scores = []
    for start in range(len(seq) - len(pwm) + 1):
        total = 0.0
        for j in range(len(pwm)):
            letter = seq[start + j].upper()
            if letter in index:
                total += pwm[j, index[letter]]
        scores.append(total)
    return scores


def _revcomp(seq: str) -> str:
    return "".join(COMPLEMENT.get(ch, "N") for ch in reversed(seq.upper().replace("U", "T")))


def _slow_reverse_scores(seq: str, pwm: np.ndarray) -> list[float]:
    """Window s of the reverse strand: the reverse complement of seq[s : s + L]."""
    return [_slow_scores(_revcomp(seq[s : s + len(pwm)]), pwm)[0] for s in range(len(seq) - len(pwm) + 1)]


def _random_seqs(rng, n, low, high, alphabet="ACGTacgtNN-é"):
    letters = list(alphabet)
    return ["".join(rng.choice(letters, rng.integers(low, high + 1))) for _ in range(n)]


def _random_pfm(rng, length):
    counts = rng.integers(0, 30, size=(length, 4)).astype(float)
    counts[rng.random((length, 4)) < 0.3] = 0  # zeros exercise the pseudocount
    counts[counts.sum(axis=1) == 0, 0] = 1
    return counts


def _onehot_pfm(consensus: str, n: float = 20) -> np.ndarray:
    pfm = np.zeros((len(consensus), 4))
    pfm[np.arange(len(consensus)), ["ACGT".index(c) for c in consensus]] = n
    return pfm


def _background_without(rng, consensus, length, n):
    """Random ACGT sequences that contain neither the consensus nor its reverse complement."""
    out = []
    while len(out) < n:
        s = "".join(rng.choice(list("ACGT"), length))
        if consensus not in s and _revcomp(consensus) not in s:
            out.append(s)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Log-odds
# --------------------------------------------------------------------------------------------------------------------


def test_log_odds_matches_formula(rng):
    counts = _random_pfm(rng, 7)
    np.testing.assert_allclose(pwm_log_odds(counts), _slow_log_odds(counts))
    bg = (0.3, 0.2, 0.2, 0.3)
    np.testing.assert_allclose(pwm_log_odds(counts, background=bg, pseudocount=1), _slow_log_odds(counts, bg, 1))
    # the background is rescaled to sum to 1
    np.testing.assert_allclose(pwm_log_odds(counts, background=[3, 2, 2, 3]), _slow_log_odds(counts, bg))


def test_log_odds_probabilities_are_counts_of_20_sites(rng):
    counts = _random_pfm(rng, 5)
    probs = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pwm_log_odds(probs), _slow_log_odds(probs * 20))
    no_zero = probs + 0.1
    no_zero /= no_zero.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pwm_log_odds(no_zero, pseudocount=0), np.log2(no_zero / 0.25))


@pytest.mark.parametrize(
    ("pfm", "kwargs", "match"),
    [
        (np.ones((5, 3)), {}, r"shape \(length, 4\)"),
        (np.ones((4, 7)), {}, r"transpose"),
        (np.ones(4), {}, r"shape \(length, 4\)"),
        (np.ones((0, 4)), {}, r"length >= 1"),
        (np.array([[1, 2, -1, 0]]), {}, r"non-negative"),
        (np.array([[1, 2, np.nan, 0]]), {}, r"finite"),
        (np.array([["a", "b", "c", "d"]]), {}, r"numeric"),
        (np.array([[1, 2, 0, 1]]), {"pseudocount": 0}, r"pseudocount > 0"),
        (np.array([[1, 2, 3, 1]]), {"pseudocount": -1}, r"non-negative number"),
        (np.array([[1, 2, 3, 1]]), {"background": [0.5, 0.5]}, r"`background` must be 4 positive"),
        (np.array([[1, 2, 3, 1]]), {"background": [0.5, 0.5, 0, 0]}, r"`background` must be 4 positive"),
    ],
)
def test_log_odds_bad_input(pfm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pwm_log_odds(pfm, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Scores and counts against the plain loop
# --------------------------------------------------------------------------------------------------------------------


def _check_scores(seqs, pfm, **kwargs):
    pwm = pwm_log_odds(pfm, **kwargs)
    for strand, slow in (("+", _slow_scores), ("-", _slow_reverse_scores)):
        got = motif_scores(seqs, pfm, strand=strand, **kwargs)
        assert got.shape == (len(seqs), max(0, max(map(len, seqs)) - len(pfm) + 1))
        for i, seq in enumerate(seqs):
            expected = slow(seq, pwm)
            np.testing.assert_allclose(got[i, : len(expected)], expected, rtol=0, atol=1e-9)
            assert np.isnan(got[i, len(expected) :]).all()


def test_scores_match_loop(rng):
    seqs = _random_seqs(rng, 40, 0, 60) + ["N" * 12, "acgu", ""]
    for length in (1, 3, 8, 15):
        _check_scores(seqs, _random_pfm(rng, length))
    _check_scores(seqs, _random_pfm(rng, 6), background=(0.35, 0.15, 0.15, 0.35), pseudocount=0.1)


def test_scores_across_tiles_of_a_long_sequence(rng):
    # longer than one tile: windows that straddle a tile boundary must be scored like the others
    seqs = _random_seqs(rng, 1, 2 * _motifs._TILE + 50, 2 * _motifs._TILE + 50, "ACGTN") + ["ACGTACGT"]
    _check_scores(seqs, _random_pfm(rng, 9))


@pytest.mark.parametrize("both_strands", [False, True])
@pytest.mark.parametrize(("threshold", "relative"), [(2.0, False), (-1.0, False), (0.7, True), (0.0, True)])
def test_counts_match_loop(rng, threshold, relative, both_strands):
    seqs = _random_seqs(rng, 60, 0, 50)
    # lengths 2..20: several length groups, scored with different window lengths
    motifs = {f"m{k}": _random_pfm(rng, length) for k, length in enumerate([2, 3, 5, 6, 8, 11, 14, 20, 7])}
    got = motif_counts(seqs, motifs, threshold, relative=relative, both_strands=both_strands)
    assert list(got.columns) == list(motifs) and got.index.equals(pd.RangeIndex(len(seqs)))
    for name, pfm in motifs.items():
        pwm = pwm_log_odds(pfm)
        cut = threshold
        if relative:
            low, high = pwm.min(axis=1).sum(), pwm.max(axis=1).sum()
            cut = low + threshold * (high - low)
        for i, seq in enumerate(seqs):
            scores = _slow_scores(seq, pwm) + (_slow_reverse_scores(seq, pwm) if both_strands else [])
            if relative and threshold == 0:
                expected = len(scores)  # every window reaches the lowest possible score (N adds 0 >= row minima)
            else:
                assert all(abs(x - cut) > 1e-7 for x in scores)  # no case that rounding could flip
                expected = sum(x >= cut if relative else x > cut for x in scores)
            assert got.loc[i, name] == expected, (name, i)


def test_counts_do_not_depend_on_chunking(rng, monkeypatch):
    seqs = _random_seqs(rng, 200, 0, 120) + _random_seqs(rng, 2, 9000, 9000)
    motifs = {f"m{k}": _random_pfm(rng, length) for k, length in enumerate([4, 6, 10, 16])}
    expected = motif_counts(seqs, motifs, 1.0, both_strands=True)
    monkeypatch.setattr(_motifs, "_CHUNK_BYTES", 20_000)  # many small chunks, some of a single tile
    pd.testing.assert_frame_equal(motif_counts(seqs, motifs, 1.0, both_strands=True), expected)


# --------------------------------------------------------------------------------------------------------------------
# Planted sites
# --------------------------------------------------------------------------------------------------------------------

CONSENSUS = "TTACCCGGA"  # not its own reverse complement
STRICT = 15.0  # the consensus scores 9 * 1.90 = 17.1; any mismatch costs 5.4


def _plant(seq: str, site: str, at: int) -> str:
    return seq[:at] + site + seq[at + len(site) :]


def test_planted_site_counted_once_and_background_zero(rng):
    motifs = {"site": _onehot_pfm(CONSENSUS)}
    background = _background_without(rng, CONSENSUS, 110, 50)
    assert motif_counts(background, motifs, STRICT, both_strands=True)["site"].eq(0).all()

    once = [_plant(s, CONSENSUS, at) for s, at in zip(background, rng.integers(0, 101, 50), strict=True)]
    assert motif_counts(once, motifs, STRICT)["site"].eq(1).all()
    assert motif_counts(once, motifs)["site"].ge(1).all()  # the paper's rule: score > 5

    thrice = [_plant(_plant(_plant(s, CONSENSUS, 3), CONSENSUS, 40), CONSENSUS, 101) for s in background]
    assert motif_counts(thrice, motifs, STRICT)["site"].eq(3).all()


def test_planted_site_lowercase_n_and_tile_boundary(rng):
    motifs = {"site": _onehot_pfm(CONSENSUS)}
    (seq,) = _background_without(rng, CONSENSUS, 3 * _motifs._TILE, 1)
    for at in (0, _motifs._TILE - 4, 2 * _motifs._TILE - 1, len(seq) - len(CONSENSUS)):  # across tile edges
        seq = _plant(seq, CONSENSUS, at)
    seqs = [seq, CONSENSUS.lower(), "NN" + CONSENSUS + "NN", CONSENSUS[:-1], "", "N" * 30]
    assert motif_counts(seqs, motifs, STRICT)["site"].tolist() == [4, 1, 1, 0, 0, 0]


def test_reverse_complement_only_with_both_strands(rng):
    motifs = {"site": _onehot_pfm(CONSENSUS)}
    seqs = [_plant(s, _revcomp(CONSENSUS), 50) for s in _background_without(rng, CONSENSUS, 110, 10)]
    assert motif_counts(seqs, motifs, STRICT)["site"].eq(0).all()
    assert motif_counts(seqs, motifs, STRICT, both_strands=True)["site"].eq(1).all()


def test_palindromic_site_counts_on_both_strands():
    motifs = {"EcoRI": _onehot_pfm("GAATTC")}
    assert motif_counts(["CCCGAATTCCCC"], motifs, 10.0, both_strands=True).loc[0, "EcoRI"] == 2  # documented
    assert motif_counts(["CCCGAATTCCCC"], motifs, 10.0).loc[0, "EcoRI"] == 1


def test_relative_threshold_one_only_hits_consensus(rng):
    pfm = rng.integers(1, 50, size=(8, 4)).astype(float)
    pfm[np.arange(8), rng.integers(0, 4, 8)] += 100  # a unique best letter at every position
    consensus = "".join("ACGT"[b] for b in pfm.argmax(axis=1))
    mutants = [consensus[:j] + b + consensus[j + 1 :] for j in range(8) for b in "ACGT" if b != consensus[j]]
    seqs = [consensus, *mutants, "GG" + consensus.lower() + "T"]
    counts = motif_counts(seqs, {"m": pfm}, 1.0, relative=True)["m"].to_numpy()
    np.testing.assert_array_equal(counts, [1] + [0] * len(mutants) + [1])
    # threshold 0: every window that fits in its sequence reaches the lowest possible score
    counts = motif_counts(["ACGTACGTACGT", "ACG"], {"m": pfm}, 0.0, relative=True)["m"].tolist()
    assert counts == [12 - 8 + 1, 0]


# --------------------------------------------------------------------------------------------------------------------
# Inputs and outputs of motif_counts
# --------------------------------------------------------------------------------------------------------------------


def test_counts_inputs_and_index():
    pfm = _onehot_pfm("ACGT")
    series = pd.Series(["ACGTACGT", "TTTT", "acgtn"], index=["a", "b", "c"])
    counts = motif_counts(series, {"x": pfm, "y": pfm[::-1]}, 5.0)
    assert counts.index.tolist() == ["a", "b", "c"] and counts.columns.tolist() == ["x", "y"]
    assert counts["x"].tolist() == [2, 0, 1] and counts.dtypes.eq(np.int64).all()
    assert motif_counts("ACGT", pfm).to_dict() == {"motif": {0: 1}}  # a single sequence, a single array
    assert motif_counts(np.array(["ACGT", "A"]), pfm)["motif"].tolist() == [1, 0]
    assert motif_counts((s for s in ["ACGT"]), pfm)["motif"].tolist() == [1]
    empty = motif_counts([], {"x": pfm})
    assert empty.shape == (0, 1) and list(empty.columns) == ["x"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"motifs": {}}, ValueError, r"`motifs` is empty"),
        ({"motifs": {"bad": np.ones((3, 5))}}, ValueError, r"motifs\['bad'\].*shape \(length, 4\)"),
        ({"threshold": 1.5, "relative": True}, ValueError, r"fraction .* \[0, 1\]"),
        ({"threshold": float("nan")}, ValueError, r"`threshold` must be a finite number"),
        ({"sequences": ["ACGT", None]}, TypeError, r"element 1 is NoneType"),
    ],
)
def test_counts_bad_input(kwargs, error, match):
    args = {"sequences": ["ACGT"], "motifs": {"m": _onehot_pfm("AC")}, **kwargs}
    with pytest.raises(error, match=match):
        motif_counts(**args)


def test_scores_bad_strand():
    with pytest.raises(ValueError, match=r"`strand` must be '\+' or '-'"):
        motif_scores(["ACGT"], _onehot_pfm("AC"), strand="both")


def test_scores_match_biopython_pssm(rng):
    """The vectorised scanner's log2-odds scores equal Bio.motifs' own PSSM scores, on both strands."""
    bio_motifs = pytest.importorskip("Bio.motifs")
    from Bio.Seq import Seq

    background = (0.3, 0.2, 0.2, 0.3)
    seqs = ["".join(rng.choice(list("ACGT"), size=n)) for n in (8, 40, 300, 5000)]  # the last spans two tiles
    for length in (1, 6, 13):
        counts = rng.integers(0, 30, size=(length, 4)).astype(float)
        motif = bio_motifs.Motif(alphabet="ACGT", counts={b: counts[:, k].tolist() for k, b in enumerate("ACGT")})
        motif.pseudocounts = 0.5
        motif.background = dict(zip("ACGT", background, strict=True))
        pssm = motif.pssm
        np.testing.assert_allclose(pwm_log_odds(counts, background), np.array([pssm[b] for b in "ACGT"]).T, atol=1e-12)
        for strand, bio_pssm in (("+", pssm), ("-", pssm.reverse_complement())):
            ours = motif_scores(seqs, counts, strand=strand, background=background)
            for i, seq in enumerate(seqs):
                if len(seq) < length:  # no window: Bio refuses, the scanner gives NaN
                    assert np.isnan(ours[i]).all()
                    continue
                expected = np.asarray(bio_pssm.calculate(Seq(seq)), dtype=np.float64).reshape(-1)
                got = ours[i, : len(seq) - length + 1]
                np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=f"length {length}, strand {strand}")
        # and motif_counts agrees with counting Bio's scores above the threshold
        cut = float(np.median(np.asarray(pssm.calculate(Seq(seqs[-1])))))
        hits = motif_counts(seqs, {"m": counts}, cut + 1e-3, background=background)["m"].tolist()
        expected = [
            int((np.asarray(pssm.calculate(Seq(s))) > cut + 1e-3).sum()) if len(s) >= length else 0 for s in seqs
        ]
        assert hits == expected


def test_read_motifs_matches_biopython(tmp_path):
    """read_motifs returns the matrices Bio.motifs reads from standard JASPAR, MEME and TRANSFAC files."""
    bio_motifs = pytest.importorskip("Bio.motifs")
    motifs = {"MA0001.1 AGL3": M1, "MA9999.2 FAKE1": M2}
    for fmt, bio_format, text in [
        ("jaspar", "jaspar", _jaspar(motifs)),
        ("meme", "minimal", _meme(motifs)),
        ("transfac", "transfac", _transfac(motifs)),
    ]:
        path = tmp_path / f"motifs.{fmt}"
        path.write_text(text)
        ours = read_motifs(path)
        with open(path) as handle:
            theirs = list(bio_motifs.parse(handle, bio_format))
        assert len(theirs) == len(ours)
        for got, motif in zip(ours.values(), theirs, strict=True):
            expected = np.array([motif.counts[b] for b in "ACGT"]).T
            if fmt == "meme":  # Bio rounds the probabilities x nsites (20) to whole counts
                np.testing.assert_allclose(got * 20, expected, atol=0.5 + 1e-9)
            else:
                np.testing.assert_array_equal(got, expected)


def test_hits_per_set():
    counts = pd.DataFrame({"m": [0, 2, 1, 3]}, index=["a", "b", "c", "d"])
    out = motif_hits_per_set(counts, ["x", "x", "y", "y"])
    assert out["m"].to_dict() == {"x": 1.0, "y": 2.0}
    shuffled = pd.Series(["y", "x", "x", "y"], index=["d", "a", "b", "c"])  # aligned on the index
    pd.testing.assert_frame_equal(motif_hits_per_set(counts, shuffled), out)
    with pytest.raises(ValueError, match=r"one label per row"):
        motif_hits_per_set(counts, ["x", "y"])


# --------------------------------------------------------------------------------------------------------------------
# Motif files
# --------------------------------------------------------------------------------------------------------------------

M1 = np.array([[0, 94, 1, 2], [3, 75, 0, 19], [79, 4, 3, 11]], dtype=float)  # (length, 4), A C G T
M2 = np.array([[10.5, 0, 0, 9.5], [1, 2, 3, 14], [5, 5, 5, 5], [0, 0, 20, 0]])


def _jaspar(motifs):
    lines = []
    for name, m in motifs.items():
        lines.append(f">{name}")
        lines += [f"{b}  [ {' '.join(f'{v:g}' for v in m[:, k])} ]" for k, b in enumerate("ACGT")]
    return "\n".join(lines) + "\n"


def _meme(motifs):
    lines = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", ""]
    lines += ["Background letter frequencies", "A 0.25 C 0.25 G 0.25 T 0.25", ""]
    for name, m in motifs.items():
        p = m / m.sum(axis=1, keepdims=True)
        lines += [f"MOTIF {name}", f"letter-probability matrix: alength= 4 w= {len(m)} nsites= 20 E= 0"]
        lines += ["  ".join(f"{v:.6f}" for v in row) for row in p]
        lines += ["", f"URL http://example.org/{name.split()[0]}", ""]
    return "\n".join(lines)


def _transfac(motifs):
    lines = []
    for name, m in motifs.items():
        ident, _, tf = name.partition(" ")
        lines += [
            f"AC  {ident}",
            "XX",
            f"ID  {tf}",
            "XX",
            f"DE  {name} ; From JASPAR",
            "P0      A      C      G      T",
        ]
        lines += [f"{i + 1:02d}  " + "  ".join(f"{v:g}" for v in row) + "  N" for i, row in enumerate(m)]
        lines += ["XX", "CC  tax_group:fungi", "XX", "//"]
    return "\n".join(lines) + "\n"


def _pfm_rows(m):  # JASPAR .pfm: 4 rows A, C, G, T
    return "\n".join(" ".join(f"{v:g}" for v in m[:, k]) for k in range(4)) + "\n"


def test_round_trip_jaspar_meme_transfac(tmp_path):
    motifs = {"MA0001.1 AGL3": M1, "MA9999.2 FAKE1": M2}
    for fmt, text in [("jaspar", _jaspar(motifs)), ("meme", _meme(motifs)), ("transfac", _transfac(motifs))]:
        path = tmp_path / f"motifs.{fmt}"
        path.write_text(text)
        for read_as in ("auto", fmt):
            got = read_motifs(path, format=read_as)
            assert list(got) == list(motifs), fmt
            for name, m in motifs.items():
                expected = m / m.sum(axis=1, keepdims=True) if fmt == "meme" else m
                np.testing.assert_allclose(got[name], expected, atol=1e-6)
                assert got[name].shape == (len(m), 4) and got[name].dtype == np.float64


def test_round_trip_pfm_and_gzip(tmp_path):
    (tmp_path / "MA0001.1.pfm").write_text(_pfm_rows(M1))
    (tmp_path / "named.pfm").write_text(">MA0001.1 AGL3\n" + _pfm_rows(M1) + ">MA9999.2 FAKE1\n" + _pfm_rows(M2))
    m5 = np.vstack([M2, M1[:1]])  # 5 rows of 4 numbers: one row per position (4 x 4 would read as A, C, G, T rows)
    (tmp_path / "columns.txt").write_text("\n".join(" ".join(f"{v:g}" for v in row) for row in m5))
    got = read_motifs(tmp_path / "MA0001.1.pfm")
    assert list(got) == ["MA0001.1"]
    np.testing.assert_array_equal(got["MA0001.1"], M1)
    got = read_motifs(tmp_path / "named.pfm", format="pfm")
    assert list(got) == ["MA0001.1 AGL3", "MA9999.2 FAKE1"]
    np.testing.assert_array_equal(got["MA9999.2 FAKE1"], M2)
    np.testing.assert_array_equal(read_motifs(tmp_path / "columns.txt")["columns"], m5)

    for name, text in [("motifs.jaspar.gz", _jaspar({"MA0001.1 AGL3": M1})), ("m.meme.gz", _meme({"X1": M2}))]:
        with gzip.open(tmp_path / name, "wt") as fh:
            fh.write(text)
    merged = read_motifs([tmp_path / "motifs.jaspar.gz", str(tmp_path / "m.meme.gz")])
    assert list(merged) == ["MA0001.1 AGL3", "X1"]
    np.testing.assert_array_equal(merged["MA0001.1 AGL3"], M1)
    np.testing.assert_allclose(merged["X1"], M2 / M2.sum(axis=1, keepdims=True), atol=1e-6)


def test_read_variants(tmp_path):
    # JASPAR rows without brackets and in another order, an id without a name
    (tmp_path / "a.txt").write_text(">MA0001.1\nT 2 19 11\nA 0 3 79\nG: 1 0 3\nC | 94 75 4\n")
    got = read_motifs(tmp_path / "a.txt")
    assert list(got) == ["MA0001.1"]
    np.testing.assert_array_equal(got["MA0001.1"], M1)
    # MEME without w=: the rows end at the first line that is not numbers; a MOTIF without a matrix is skipped
    (tmp_path / "b.meme").write_text("MOTIF X\nletter-probability matrix:\n0.1 0.2 0.3 0.4\n1 0 0 0\n\nMOTIF Y Z\n")
    got = read_motifs(tmp_path / "b.meme")
    assert list(got) == ["X"] and got["X"].shape == (2, 4)
    assert motif_counts(["TATA"], got, 0.0)["X"].tolist() == [2]  # usable as is by motif_counts


@pytest.mark.parametrize(
    ("text", "fmt", "match"),
    [
        ("", "auto", r"is empty"),
        ("   \n\n", "jaspar", r"is empty"),
        ("hello world\n", "auto", r"Could not detect"),
        (">m\nA [ 1 2 ]\nC [ 1 2 ]\nG [ 1 2 ]\n", "auto", r"lacks the row\(s\) T"),
        (">m\nA [ 1 2 ]\nC [ 1 2 ]\nG [ 1 2 ]\nT [ 1 ]\n", "auto", r"rows of different lengths"),
        (">m\nA [ 1 -2 ]\nC [ 1 2 ]\nG [ 1 2 ]\nT [ 1 2 ]\n", "auto", r"non-negative"),
        (">m\nA [ 1 x ]\nC [ 1 2 ]\nG [ 1 2 ]\nT [ 1 2 ]\n", "jaspar", r"Expected numbers on line 2"),
        ("1 2 3\n4 5 6\n", "pfm", r"4 rows"),
        ("ALPHABET= ACDEFGHIKLMNPQRSTVWY\nMOTIF x\n", "meme", r"Only DNA"),
        ("MOTIF x\nletter-probability matrix: alength= 4 w= 3\n0.25 0.25 0.25 0.25\n", "meme", r"3 rows"),
        ("AC  x\nP0 A C G\n01 1 2 3\n//\n", "transfac", r"A, C, G, T"),
        (_jaspar({"m": M1}), "meme", r"No motifs found"),
    ],
)
def test_read_bad_files(tmp_path, text, fmt, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_motifs(path, format=fmt)


def test_read_bad_arguments(tmp_path):
    path = tmp_path / "m.jaspar"
    path.write_text(_jaspar({"m": M1}))
    with pytest.raises(ValueError, match=r"`format` must be one of 'auto', 'jaspar'"):
        read_motifs(path, format="homer")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_motifs(tmp_path / "missing.jaspar")
    with pytest.raises(ValueError, match=r"appears twice"):
        read_motifs([path, path])
    with pytest.raises(ValueError, match=r"empty list"):
        read_motifs([])


# --------------------------------------------------------------------------------------------------------------------
# JASPAR database
# --------------------------------------------------------------------------------------------------------------------


def test_jaspar_fungi():
    pytest.importorskip("pyjaspar")
    motifs = jaspar_motifs("fungi", release="JASPAR2024")
    assert len(motifs) > 100
    assert all(m.ndim == 2 and m.shape[1] == 4 and len(m) >= 4 and (m >= 0).all() for m in motifs.values())
    reb1 = motifs["MA0363.3 REB1"]  # S. cerevisiae Reb1
    assert reb1.shape == (9, 4)
    np.testing.assert_array_equal(reb1[:3, 0], [281, 8, 28])
    assert "MA0265.3 ABF1" in motifs
    # a planted Reb1 consensus is a hit under the paper's rule
    consensus = "".join("ACGT"[b] for b in reb1.argmax(axis=1))
    counts = motif_counts(["GGGGG" + consensus + "GGGGG", "G" * 19], {"REB1": reb1})
    assert counts["REB1"].tolist() == [1, 0]


def test_jaspar_ids_and_errors(monkeypatch):
    pytest.importorskip("pyjaspar")
    got = jaspar_motifs(ids=["MA0363", "MA0265.3"], release="JASPAR2024")
    assert list(got) == ["MA0363.3 REB1", "MA0265.3 ABF1"]
    with pytest.raises(ValueError, match=r"No JASPAR motif with id 'MA9999.9'"):
        jaspar_motifs(ids=["MA9999.9"], release="JASPAR2024")
    with pytest.raises(ValueError, match=r"`release` must be one of"):
        jaspar_motifs(release="JASPAR1999")
    with pytest.raises(ValueError, match=r"No JASPAR2024 motifs .*tax groups"):
        jaspar_motifs("fungus", release="JASPAR2024")
    monkeypatch.setitem(sys.modules, "pyjaspar", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install pyjaspar"):
        jaspar_motifs()
