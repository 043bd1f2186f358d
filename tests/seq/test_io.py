"""Tests of the pure-numpy data layer of scgde.seq: the tokeniser and the readers / helpers."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from scgde.seq._alphabet import BOS, EOS, N_SPECIAL, PAD, Alphabet, get_alphabet
from scgde.seq._io import (
    bisulfite_convert,
    expand_pat,
    read_fasta,
    read_fastq,
    read_pat,
    sequences_to_adata,
    translate,
)

# --------------------------------------------------------------------------------------------------------------------
# Alphabet
# --------------------------------------------------------------------------------------------------------------------


def _slow_encode(alphabet: Alphabet, seqs, width):
    """Character-by-character reference implementation (unknown -> mask)."""
    out = np.zeros((len(seqs), width), dtype=np.uint8)
    for i, s in enumerate(seqs):
        for j, ch in enumerate(s.upper()):
            if alphabet.name == "dna" and ch == "U":
                ch = "T"
            if ch not in alphabet.letters:
                ch = alphabet.unknown
            out[i, j] = N_SPECIAL + alphabet.letters.index(ch)
    return out


def test_alphabets_and_special_ids():
    dna, protein = get_alphabet("dna"), get_alphabet("protein")
    assert (PAD, BOS, EOS, N_SPECIAL) == (0, 1, 2, 3)
    assert dna.letters == "ACGTN" and dna.unknown == "N" and dna.n_tokens == 8
    assert protein.letters == "ACDEFGHIKLMNPQRSTVWYX" and protein.unknown == "X" and protein.n_tokens == 24
    assert get_alphabet(dna) is dna
    tokens, _ = dna.encode(["ACGTN"])
    assert tokens.tolist() == [[3, 4, 5, 6, 7]]
    assert not {PAD, BOS, EOS} & set(tokens.ravel().tolist())
    with pytest.raises(ValueError, match=r"Unknown alphabet 'rna'.*'dna', 'protein'"):
        get_alphabet("rna")


def test_encode_padding_lengths_and_round_trip():
    dna = get_alphabet("dna")
    seqs = ["ACGT", "acgu", "", "nNa"]
    tokens, lengths = dna.encode(seqs)
    assert tokens.dtype == np.uint8 and tokens.shape == (4, 4)
    assert lengths.dtype == np.int64 and lengths.tolist() == [4, 4, 0, 3]
    assert tokens.tolist() == [[3, 4, 5, 6], [3, 4, 5, 6], [0, 0, 0, 0], [7, 7, 3, 0]]
    assert dna.decode(tokens) == ["ACGT", "ACGT", "", "NNA"]
    wide, wide_lengths = dna.encode(seqs, max_length=7)
    assert wide.shape == (4, 7) and (wide[:, 4:] == PAD).all() and (wide[:, :4] == tokens).all()
    assert wide_lengths.tolist() == [4, 4, 0, 3]


@pytest.mark.parametrize(
    "container", [list, tuple, lambda s: np.array(s, dtype=object), lambda s: np.array(s), pd.Series]
)
def test_encode_accepts_containers(container):
    tokens, lengths = get_alphabet("dna").encode(container(["AC", "G"]))
    assert tokens.tolist() == [[3, 4], [5, 0]] and lengths.tolist() == [2, 1]


def test_encode_edge_cases():
    dna = get_alphabet("dna")
    tokens, lengths = dna.encode([])
    assert tokens.shape == (0, 0) and lengths.shape == (0,)
    tokens, lengths = dna.encode(["", ""])
    assert tokens.shape == (2, 0) and lengths.tolist() == [0, 0]
    assert dna.decode(tokens) == ["", ""]
    tokens, _ = dna.encode("ACG")  # a single str is one sequence
    assert tokens.tolist() == [[3, 4, 5]]


def test_encode_unknown_error_and_mask():
    dna = get_alphabet("dna")
    seqs = ["ACGT", "ACRT", "AC-Té"]
    with pytest.raises(ValueError, match=r"'-', 'R', 'é'.*sequence 1\b.*unknown='mask'.*'N'"):
        dna.encode(seqs)
    tokens, lengths = dna.encode(seqs, unknown="mask")
    assert dna.decode(tokens) == ["ACGT", "ACNT", "ACNTN"]  # the non-ASCII character counts as one unknown
    assert lengths.tolist() == [4, 4, 5]
    with pytest.raises(ValueError, match=r"'U'.*sequence 0\b.*'X'"):
        get_alphabet("protein").encode(["MKU"])  # U is RNA only for DNA
    with pytest.raises(ValueError, match="must be 'error' or 'mask'"):
        dna.encode(["A"], unknown="drop")


def test_encode_too_long():
    dna = get_alphabet("dna")
    with pytest.raises(ValueError, match=r"Sequence 2 has length 6.*max_length=4.*max_length >= 6"):
        dna.encode(["A", "ACGTA", "ACGTAC", "AC"], max_length=4)
    tokens, _ = dna.encode(["ACGT"], max_length=4)  # exactly max_length is fine
    assert tokens.shape == (1, 4)


def test_tokens_are_fresh_and_never_mutated():
    dna = get_alphabet("dna")
    seqs = ["ACGT", "GG", "T"]
    first, first_lengths = dna.encode(seqs)
    expected = first.copy()
    second, second_lengths = dna.encode(seqs)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_lengths, second_lengths)
    assert not np.shares_memory(first, second) and not np.shares_memory(first_lengths, second_lengths)
    assert not np.shares_memory(first, dna._lookup)
    assert not dna._lookup.flags.writeable
    first[:] = 99  # the caller may scribble on its array without affecting later calls
    third, _ = dna.encode(seqs)
    np.testing.assert_array_equal(third, expected)
    # decoding does not mutate its input either
    with_specials = np.array([[BOS, 3, 4, EOS, 5], [BOS, 6, PAD, 3, 3]])
    before = with_specials.copy()
    assert dna.decode(with_specials) == ["AC", "T"]
    np.testing.assert_array_equal(with_specials, before)


def test_decode_specials_shapes_and_errors():
    dna = get_alphabet("dna")
    assert dna.decode(np.array([BOS, 3, BOS, 4, EOS, 5])) == ["AC"]
    assert dna.decode([3, 4, 5]) == ["ACG"]
    assert dna.decode(np.array([[EOS, 3], [3, PAD]], dtype=np.int64)) == ["", "A"]
    torch = pytest.importorskip("torch")
    assert dna.decode(torch.tensor([[BOS, 6, 5, EOS]]).numpy()) == ["TG"]
    with pytest.raises(ValueError, match="letter ids in"):
        dna.decode([3, 8])
    with pytest.raises(ValueError, match="1-D or 2-D"):
        dna.decode(np.zeros((1, 2, 3), dtype=int))


def test_protein_round_trip():
    protein = get_alphabet("protein")
    seqs = ["MKTAYIAKQR", "acdefghiklmnpqrstvwyx", "M"]
    tokens, lengths = protein.encode(seqs)
    assert protein.decode(tokens) == [s.upper() for s in seqs]
    assert lengths.tolist() == [10, 21, 1]
    assert tokens.max() == protein.n_tokens - 1


def test_encode_large_input_matches_slow_reference():
    rng = np.random.default_rng(0)
    dna = get_alphabet("dna")
    n, length = 200_000, 100
    letters = np.frombuffer(b"ACGTNacgtuR", dtype=np.uint8)
    text = letters[rng.integers(0, len(letters), n * length)].tobytes().decode()
    seqs = [text[i * length : (i + 1) * length] for i in range(n)]
    seqs[7] = seqs[7][:30]  # ragged
    tokens, lengths = dna.encode(seqs, unknown="mask")
    assert tokens.shape == (n, length) and lengths[7] == 30 and (tokens[7, 30:] == PAD).all()
    subset = np.concatenate([[0, 7, n - 1], rng.choice(n, 300, replace=False)])
    np.testing.assert_array_equal(tokens[subset], _slow_encode(dna, [seqs[i] for i in subset], length))
    decoded = dna.decode(tokens[subset])
    assert decoded == [seqs[i].upper().replace("U", "T").replace("R", "N") for i in subset]


# --------------------------------------------------------------------------------------------------------------------
# AnnData helpers and readers
# --------------------------------------------------------------------------------------------------------------------


def test_sequences_to_adata():
    adata = sequences_to_adata(["ACGT", "GG", "T"])
    assert adata.shape == (3, 0) and adata.n_vars == 0
    assert adata.X.dtype == np.float32 and adata.X.shape == (3, 0)
    assert adata.obs_names.tolist() == ["0", "1", "2"]
    assert adata.obs["sequence"].tolist() == ["ACGT", "GG", "T"]

    obs = pd.DataFrame({"sample": ["a", "b", "a"]}, index=["x", "y", "x"])
    adata = sequences_to_adata(pd.Series(["A", "C", "G"], index=[5, 6, 7]), obs=obs, sequence_key="seq")
    assert adata.obs_names.is_unique and adata.obs_names.tolist()[:2] == ["x", "y"]
    assert adata.obs["sample"].tolist() == ["a", "b", "a"]
    assert adata.obs["seq"].tolist() == ["A", "C", "G"]
    assert "seq" not in obs and obs.index.tolist() == ["x", "y", "x"]  # the caller's frame is untouched

    adata = sequences_to_adata(["A", "C"], index=["r", "r"])
    assert adata.obs_names.is_unique and adata.obs_names[0] == "r"
    with pytest.raises(ValueError, match=r"3 sequences.*`obs` has 2 rows"):
        sequences_to_adata(["A", "C", "G"], obs=obs.iloc[:2])
    with pytest.raises(ValueError, match=r"2 sequences.*`index` has 1"):
        sequences_to_adata(["A", "C"], index=["r"])


FASTA = ">read1 sample=a some words\nACGT\nacgt\n\n>read2\nGG TT\n>read1 again\nN\n"


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_fasta(tmp_path, gzipped):
    path = tmp_path / "reads.fa"
    if gzipped:
        path.write_bytes(gzip.compress(FASTA.encode()))  # gzip detected from the magic bytes, not the name
    else:
        path.write_text("\n\n" + FASTA)
    adata = read_fasta(path)
    assert adata.n_obs == 3 and adata.n_vars == 0
    assert adata.obs_names[:2].tolist() == ["read1", "read2"] and adata.obs_names.is_unique
    assert adata.obs["sequence"].tolist() == ["ACGTacgt", "GGTT", "N"]
    assert adata.obs["description"].tolist() == ["sample=a some words", "", "again"]


def test_read_fasta_gz_name_and_key(tmp_path):
    path = tmp_path / "reads.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(">p1\nMKV\n")
    adata = read_fasta(path, sequence_key="protein")
    assert adata.obs["protein"].tolist() == ["MKV"]


def test_read_fasta_errors(tmp_path):
    empty = tmp_path / "empty.fa"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty\.fa.*'>'.*is empty"):
        read_fasta(empty)
    fastq = tmp_path / "reads.fq"
    fastq.write_text("@r1\nACGT\n+\nIIII\n")
    with pytest.raises(ValueError, match=r"reads\.fq is not a FASTA file.*'>'.*'@r1'"):
        read_fasta(fastq)


FASTQ = "@r1 lane 1\nACGT\n+\nIIII\n@r2\nGGN\n+r2\n#5!\n@r1\nA\n+\nI\n"


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_fastq(tmp_path, gzipped):
    path = tmp_path / ("reads.fq.gz" if gzipped else "reads.fq")
    path.write_bytes(gzip.compress(FASTQ.encode()) if gzipped else FASTQ.encode())
    adata = read_fastq(path)
    assert adata.shape == (3, 0)
    assert adata.obs_names[:2].tolist() == ["r1", "r2"] and adata.obs_names.is_unique
    assert adata.obs["sequence"].tolist() == ["ACGT", "GGN", "A"]
    assert adata.obs["quality"].tolist() == ["IIII", "#5!", "I"]
    assert adata.obs["description"].tolist() == ["lane 1", "", ""]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@r1\nACGT\n+\nIIII\nr2\nAC\n+\nII\n", r"bad\.fq, record 2 \(line 5\).*'@'"),
        ("@r1\nACGT\n-\nIIII\n", r"bad\.fq, record 1 \(line 1\).*'\+'"),
        ("@r1\nACGT\n+\nIIII\n@r2\nACG\n+\nII\n", r"bad\.fq, record 2.*sequence has 3.*quality has 2"),
        ("@r1\nACGT\n+\nIIII\n@r2\nAC\n", r"bad\.fq, record 2.*truncated"),
        ("", r"bad\.fq is empty"),
    ],
)
def test_read_fastq_errors(tmp_path, text, message):
    path = tmp_path / "bad.fq"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_fastq(path)


def test_readers_stream_multiline_fastq_and_name_biopython(tmp_path, monkeypatch):
    """Bio.SeqIO parses: wrapped records and qualities starting with '@' are read; without it, an install hint."""
    import sys

    from scgde.seq._motifs import read_motifs

    path = tmp_path / "wrapped.fq"
    path.write_text("@r1\nACGT\nAC\n+\n@III\nII\n@r2\nG\n+\n@\n")
    adata = read_fastq(path)
    assert adata.obs["sequence"].tolist() == ["ACGTAC", "G"] and adata.obs["quality"].tolist() == ["@IIIII", "@"]
    motif_file = tmp_path / "m.jaspar"
    motif_file.write_text(">m\nA [ 1 ]\nC [ 1 ]\nG [ 1 ]\nT [ 1 ]\n")
    for module in ("Bio", "Bio.SeqIO", "Bio.SeqIO.FastaIO", "Bio.SeqIO.QualityIO", "Bio.motifs"):
        monkeypatch.setitem(sys.modules, module, None)  # as if biopython were not installed
    for reader, file in ((read_fasta, path), (read_fastq, path), (read_motifs, motif_file)):
        with pytest.raises(ImportError, match=r"needs biopython: `pip install 'scgde\[seq\]'`"):
            reader(file)


# --------------------------------------------------------------------------------------------------------------------
# translation
# --------------------------------------------------------------------------------------------------------------------


def test_translate_known_sequences():
    assert translate("ATGGCCTAA") == "MA"
    assert translate("ATGTGAAAA") == "M"
    assert translate("ATGTGAAAA", to_stop=False) == "M*K"
    assert translate("atggccuaa") == "MA"  # case-insensitive, RNA
    assert translate("ATGGC") == "M"  # trailing partial codon dropped
    assert translate("ATGNNNGCR") == "MXX"  # N or ambiguity codes -> X
    assert translate("") == ""
    assert translate(["ATGTAG", "TGGTAATGG"], to_stop=False) == ["M*", "W*W"]
    assert translate(("TTT", "TAG")) == ["F", ""]


def test_translate_genetic_code_spot_checks():
    # one codon per amino acid of the standard code, plus the three stops
    code = {"GCT": "A", "TGC": "C", "GAT": "D", "GAG": "E", "TTC": "F", "GGA": "G", "CAC": "H", "ATA": "I",
            "AAG": "K", "CTG": "L", "TTA": "L", "ATG": "M", "AAC": "N", "CCC": "P", "CAG": "Q", "AGA": "R",
            "CGT": "R", "AGC": "S", "TCG": "S", "ACA": "T", "GTG": "V", "TGG": "W", "TAT": "Y",
            "TAA": "*", "TAG": "*", "TGA": "*"}  # fmt: skip
    assert translate(list(code), to_stop=False) == list(code.values())
    assert translate("".join(code), to_stop=False) == "".join(code.values())


# --------------------------------------------------------------------------------------------------------------------
# bisulfite conversion
# --------------------------------------------------------------------------------------------------------------------


def test_bisulfite_convert_by_hand():
    # read     A C G T T C G C A C G
    # position 0 1 2 3 4 5 6 7 8 9 10   CpG Cs at 1, 5, 9; the C at 7 is not in a CpG and always converts
    read = "ACGTTCGCACG"
    assert bisulfite_convert(read, "101") == "ACGTTTGTACG"
    assert bisulfite_convert(read, "MUM") == bisulfite_convert(read, "CTC") == "ACGTTTGTACG"
    assert bisulfite_convert(read, "000") == "ATGTTTGTATG"
    assert bisulfite_convert(read, "1.0") == "ACGTTNGTATG"  # unknown state -> N
    assert bisulfite_convert("acgtt", "1") == "ACGTT"  # case-insensitive input, upper-case output
    assert bisulfite_convert("ATTA", "") == "ATTA"
    # per position (MethylBERT layout): one character per position from `start`, '2' off CpG Cs
    assert bisulfite_convert(read, "1222022212", start=1) == "ACGTTTGTACG"
    assert bisulfite_convert(read, "22022212", start=3) == "ANGTTTGTACG"  # the CpG before `start` is unknown
    # per CpG from `start`: the CpGs before `start` are unknown
    assert bisulfite_convert(read, "01", start=2) == "ANGTTTGTACG"
    assert bisulfite_convert([read, "CGCG"], ["000", "10"]) == ["ATGTTTGTATG", "CGTG"]
    assert bisulfite_convert([read, read], ["01", "1"], start=[2, 6]) == ["ANGTTTGTACG", "ANGTTNGTACG"]


def test_bisulfite_convert_errors():
    with pytest.raises(ValueError, match=r"read has 3 CpGs.*methylation string has 2 characters"):
        bisulfite_convert("ACGTTCGCACG", "10")
    with pytest.raises(ValueError, match=r"read has 1 CpGs \(from position 2\).*has 2 characters"):
        bisulfite_convert("ACGTTCG", "10", start=2)
    with pytest.raises(ValueError, match=r"Read 1: The read has 0 CpGs.*1 characters"):
        bisulfite_convert(["CG", "AT"], ["1", "1"])
    with pytest.raises(ValueError, match=r"marks 1 CpGs but the read has 2 CpGs in positions 0\.\.6"):
        bisulfite_convert("ACGTTCG", "0222222")
    with pytest.raises(ValueError, match=r"marks 1 CpGs but the read has 1 CpGs.*\[1\].*\[2\]"):
        bisulfite_convert("ACGTT", "2212")  # right count, wrong position
    with pytest.raises(ValueError, match=r"covers positions 1\.\.5 but the read has length 4"):
        bisulfite_convert("ACGT", "21222", start=1)
    with pytest.raises(ValueError, match="Unexpected methylation states"):
        bisulfite_convert("ACG", "Z")
    with pytest.raises(ValueError, match=r"2 reads, 1 methylation strings"):
        bisulfite_convert(["CG", "CG"], ["1"])


# --------------------------------------------------------------------------------------------------------------------
# wgbstools .pat
# --------------------------------------------------------------------------------------------------------------------

PAT = "chr1\t46\tCC.T\t3\nchr1\t47\tT\t1\n\nchrX\t1000\t..C\t2\n"


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_pat_and_expand(tmp_path, gzipped):
    path = tmp_path / ("sample.pat.gz" if gzipped else "sample.pat")
    path.write_bytes(gzip.compress(PAT.encode()) if gzipped else PAT.encode())
    df = read_pat(path)
    assert df.columns.tolist() == ["chrom", "start", "pattern", "count"]
    assert df["chrom"].tolist() == ["chr1", "chr1", "chrX"]
    assert df["start"].tolist() == [46, 47, 1000] and df["start"].dtype == np.int64
    assert df["pattern"].tolist() == ["CC.T", "T", "..C"]
    assert df["count"].tolist() == [3, 1, 2] and df["count"].dtype == np.int64

    reads = expand_pat(df)
    assert reads.index.tolist() == list(range(6)) and "count" not in reads
    assert reads["pattern"].tolist() == ["CC.T"] * 3 + ["T"] + ["..C"] * 2
    assert reads["start"].tolist() == [46, 46, 46, 47, 1000, 1000]
    # a duplicated index is repeated by position, not by label
    dup = pd.DataFrame({"pattern": ["C", "T"], "count": [1, 2]}, index=[0, 0])
    assert expand_pat(dup)["pattern"].tolist() == ["C", "T", "T"]
    # a pattern is the per-CpG layout of bisulfite_convert: the read CGACGTCG over CpGs 46, 47, 48
    assert bisulfite_convert("CGACGTCG", reads["pattern"][0][:3]) == "CGACGTNG"


def test_read_pat_empty_and_errors(tmp_path):
    empty = tmp_path / "empty.pat"
    empty.write_text("")
    df = read_pat(empty)
    assert len(df) == 0 and df.columns.tolist() == ["chrom", "start", "pattern", "count"]
    for line, label in [
        ("chr1\t46\tCCX\t3", "pattern"),
        ("chr1\t46\tCC\tthree", "count"),
        ("chr1\t-4\tCC\t1", "start"),
        ("chr1 46 CC 1", "spaces"),
        ("chr1\t46\tCC\t1\textra", "fields"),
    ]:
        path = tmp_path / f"{label}.pat"
        path.write_text("chr1\t10\tT\t1\n\n" + line + "\n")
        with pytest.raises(ValueError, match=rf"{label}\.pat, line 3: expected 4 tab-separated fields"):
            read_pat(path)
    with pytest.raises(ValueError, match="non-negative"):
        expand_pat(pd.DataFrame({"pattern": ["C"], "count": [-1]}))


def _reverse_complement(seq: str) -> str:
    return seq.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


def test_bisulfite_convert_reproduces_methylbert_reads(shared_data):
    """Convert each read's reference (``dna_seq``) with its ``methyl_seq`` and compare with the sequenced ``seq``.

    Reads of the original top strand (``XG == "CT"``) show C->T conversion, reads of the bottom strand
    (``XG == "GA"``) show it as G->A on the reference strand: convert the reverse complement there. A sequenced base
    is compared wherever Bismark's ``XM`` call says the C was converted (lower case ``z/x/h/u``) or is a methylated
    CpG (``Z``): this covers every CpG, and leaves out methylated (or unconverted) non-CpG Cs and sequencing errors.
    """
    files = [shared_data("methylation_reads_methylbert", name) for name in ("train_seq.csv", "test_seq.csv")]
    data = pd.concat([pd.read_csv(f, sep="\t", dtype={"methyl_seq": str}) for f in files], ignore_index=True)
    data = data[data["cigar"].str.fullmatch(r"\d+M")]  # no indels: the reference and the read line up
    checked = inconsistent = compared = exact = 0
    for row in data.itertuples():
        kmers = row.dna_seq.split()
        ref = "".join(k[0] for k in kmers) + kmers[-1][1:]
        assert len(row.methyl_seq) == len(kmers) == len(ref) - 2  # one state per 3-mer centre: positions 1..n-2
        try:
            top = bisulfite_convert(ref, row.methyl_seq, start=1)
        except ValueError as err:  # the reference's CpGs differ from those the reads were called at
            assert re.search("marks .* CpGs but the read has", str(err))
            inconsistent += 1
            continue
        compact = row.methyl_seq.replace("2", "")
        assert top[1:] == bisulfite_convert(ref[1:], compact)  # both layouts agree
        if row.XG == "CT":
            converted, conversion = top, "C"
        else:
            converted = ref[0] + _reverse_complement(bisulfite_convert(_reverse_complement(ref[1:]), compact[::-1]))
            conversion = "G"
        # a CpG C at position 0 is not covered by methyl_seq: its base is N; skip position 0 (and 1 for GA reads).
        # The last base of dna_seq has no next base: a C there may be a CpG (Bismark saw the genome), skip it too.
        first, last = (1 if row.XG == "CT" else 2), len(ref) - 1
        positions = [p for p in range(first, last) if ref[p] == conversion and row.XM[p] in "zxhuZ"]
        assert all(converted[p] == row.seq[p] for p in positions), row.name
        assert all(converted[p] == ref[p] for p in range(len(ref)) if ref[p] != conversion)  # the other strand's Cs
        compared += len(positions)
        exact += converted[first:last] == row.seq[first:last]
        checked += 1
    assert checked > 1500 and inconsistent <= 0.05 * (checked + inconsistent)
    assert compared > 50_000 and exact > 500  # about 1,700 reads, 37% reproduced base for base
