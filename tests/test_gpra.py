"""Promoter tables: the DREAM demo table, and the GEO downloader against a local HTTP server (no internet)."""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from scgde.datasets._downloads import DOWNLOADS, GEO_GPRA, REGISTRY, ChecksumError
from scgde.datasets._gpra import gpra2020, read_promoter_table

SCAFFOLD_5, SCAFFOLD_3 = "TGCATTTTTTTCACATC", "GGTTACGGCTGTT"


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _promoters(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    random = ["".join(rng.choice(list("ACGT"), size=80)) for _ in range(n)]
    expression = np.round(rng.uniform(0, 17, size=n), 3)
    expression[::4] = np.round(expression[::4])  # many integer values, as in the real tables
    return pd.DataFrame({"sequence": [SCAFFOLD_5 + r + SCAFFOLD_3 for r in random], "expression": expression})


def _write_table(table: pd.DataFrame, path: Path, header: bool = False) -> Path:
    text = ("sequence\texpression\n" if header else "") + "".join(
        f"{s}\t{e}\n" for s, e in zip(table["sequence"], table["expression"], strict=True)
    )
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# read_promoter_table
# ---------------------------------------------------------------------------------------------------------------------


def test_read_dream_demo_table(shared_file):
    path = shared_file("yeast_promoters_dream", "demo_train.txt")
    adata = read_promoter_table(path, n_quantiles=10)
    assert adata.shape == (6370, 0)
    assert list(adata.obs.columns) == ["sequence", "expression", "expression_quantile"]
    seqs = adata.obs["sequence"]
    assert seqs.str.startswith(SCAFFOLD_5).all() and seqs.str.endswith(SCAFFOLD_3).all()
    assert seqs.str.len().between(80, 140).all() and seqs.str.len().median() == 110  # mostly 108-111 nt
    expression = adata.obs["expression"]
    assert expression.dtype == np.float64 and expression.min() >= 0 and expression.max() <= 17
    assert expression.mean() == pytest.approx(11.15, abs=0.01)
    quantile = adata.obs["expression_quantile"]
    assert quantile.dtype == np.int64
    assert quantile.value_counts().sort_index().tolist() == [637] * 10  # balanced despite many ties
    # ordered: every quantile lies above the previous one
    bounds = adata.obs.groupby("expression_quantile")["expression"].agg(["min", "max"])
    assert (bounds["min"].to_numpy()[1:] >= bounds["max"].to_numpy()[:-1]).all()
    assert "expression_quantile" not in read_promoter_table(path).obs


def test_read_promoter_table_header_gzip_and_columns(tmp_path):
    table = _promoters(23)
    plain = read_promoter_table(_write_table(table, tmp_path / "a.txt"), n_quantiles=4)
    zipped = read_promoter_table(_write_table(table, tmp_path / "b.txt.gz", header=True), n_quantiles=4)
    pd.testing.assert_frame_equal(plain.obs, zipped.obs)
    assert plain.obs["sequence"].tolist() == table["sequence"].tolist()
    np.testing.assert_array_equal(plain.obs["expression"], table["expression"])
    assert plain.obs_names.tolist() == [str(i) for i in range(23)]
    assert zipped.uns["read_promoter_table"]["header"] == ["sequence", "expression"]
    assert plain.uns["read_promoter_table"]["header"] == []
    sizes = plain.obs["expression_quantile"].value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3] and sizes.max() - sizes.min() <= 1
    order = np.argsort(table["expression"].to_numpy(), kind="stable")
    assert np.all(np.diff(plain.obs["expression_quantile"].to_numpy()[order]) >= 0)
    # other column layouts
    three = tmp_path / "c.tsv"
    three.write_text(
        "".join(f"id{i}\t{e}\t{s}\n" for i, (s, e) in enumerate(zip(table["sequence"], table["expression"])))
    )
    other = read_promoter_table(three, sequence_col=2, expression_col=1, n_quantiles=4)
    pd.testing.assert_frame_equal(plain.obs, other.obs)


def test_read_promoter_table_missing_values_and_errors(tmp_path, caplog):
    path = tmp_path / "t.txt"
    path.write_text("ACGT\t1.5\nACGA\tNA\n\nACGG\t\nACCC\t-2\n")
    with caplog.at_level(logging.INFO, logger="scgde.datasets._gpra"):
        adata = read_promoter_table(path)
    assert adata.obs["sequence"].tolist() == ["ACGT", "ACCC"] and adata.obs["expression"].tolist() == [1.5, -2.0]
    assert adata.uns["read_promoter_table"]["n_dropped"] == 2 and "dropped 2 rows" in caplog.text
    (tmp_path / "bad.txt").write_text("ACGT\t1.5\nACGA\thigh\n")
    with pytest.raises(ValueError, match=r"row 2.*'high'"):
        read_promoter_table(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="n_quantiles"):
        read_promoter_table(path, n_quantiles=0)
    with pytest.raises(ValueError, match="n_quantiles"):
        read_promoter_table(path, n_quantiles=3)  # more quantiles than promoters
    with pytest.raises(ValueError, match="expression_col"):
        read_promoter_table(path, expression_col=5)
    with pytest.raises(ValueError, match="differ"):
        read_promoter_table(path, sequence_col=1, expression_col=1)
    with pytest.raises(ValueError, match="sequence_col"):
        read_promoter_table(path, sequence_col=-1)
    with pytest.raises(FileNotFoundError, match="path"):
        read_promoter_table(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_promoter_table(tmp_path / "empty.txt")


# ---------------------------------------------------------------------------------------------------------------------
# gpra2020: GEO download
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def gal(server):
    table = _promoters(40, seed=1)
    fname = str(REGISTRY["gpra2020"]["Gal"]["fname"])
    path = _write_table(table, server.root / fname)
    return SimpleNamespace(table=table, fname=fname, url=server.url + fname, file=path)


def test_gpra2020_files():
    files = REGISTRY["gpra2020"]
    assert set(files) == {"Gal", "Gly", "pTpA", "Abf1TATA"}
    assert GEO_GPRA == "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE104nnn/GSE104878/suppl/"
    for condition, entry in files.items():
        fname = str(entry["fname"])
        assert fname.startswith("GSE104878_") and fname.endswith(".txt.gz") and condition in fname
        assert entry["url"] == GEO_GPRA + fname == DOWNLOADS.urls[f"gpra2020/{fname}"]
        assert entry["known_hash"] is None and entry["hash_source"]


def test_gpra2020_downloads_once_and_trusts_on_first_use(server, gal, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        adata = gpra2020("Gal", path=tmp_path / "cache", url=gal.url, n_quantiles=5)
    assert "not checksummed upstream" in caplog.text
    assert adata.obs["sequence"].tolist() == gal.table["sequence"].tolist()
    assert adata.obs["expression_quantile"].value_counts().tolist() == [8] * 5
    assert adata.uns["gpra2020"] == {"condition": "Gal", "file": gal.fname, "url": gal.url}
    cached = tmp_path / "cache" / "gpra2020" / gal.fname
    record = cached.with_name(cached.name + ".sha256")
    assert cached.is_file() and record.read_text().strip() == _sha256(gal.file).split(":")[1]
    assert server.hits == ["/" + gal.fname]
    # second call: from the cache, no request (the server is even gone)
    server.stop()
    again = gpra2020("Gal", path=tmp_path / "cache", url=gal.url)
    assert len(server.hits) == 1
    pd.testing.assert_frame_equal(adata.obs[["sequence", "expression"]], again.obs)
    # the cached file changes: its recorded SHA256 no longer matches
    cached.write_bytes(cached.read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match="no longer matches"):
        gpra2020("Gal", path=tmp_path / "cache", url=gal.url)


def test_gpra2020_known_hash(server, gal, tmp_path):
    adata = gpra2020("Gal", path=tmp_path, url=gal.url, known_hash=_sha256(gal.file))
    assert adata.n_obs == 40
    assert not (tmp_path / "gpra2020" / (gal.fname + ".sha256")).exists()  # verified, nothing to record
    with pytest.raises(ChecksumError, match="Checksum mismatch") as err:
        gpra2020("Gal", path=tmp_path / "other", url=gal.url, known_hash="sha256:" + "0" * 64)
    assert "known_hash=None" in str(err.value)
    assert not (tmp_path / "other" / "gpra2020" / gal.fname).exists()


def test_gpra2020_filename_override(server, tmp_path):
    _write_table(_promoters(12, seed=2), server.root / "GSE104878_renamed_Gly.txt.gz", header=True)
    adata = gpra2020(
        "Gly", path=tmp_path, url=server.url + "GSE104878_renamed_Gly.txt.gz", filename="GSE104878_renamed_Gly.txt.gz"
    )
    assert adata.n_obs == 12 and adata.uns["gpra2020"]["file"] == "GSE104878_renamed_Gly.txt.gz"
    assert (tmp_path / "gpra2020" / "GSE104878_renamed_Gly.txt.gz").is_file()


def test_gpra2020_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="condition"):
        gpra2020("Glu", path=tmp_path)
    with pytest.raises(ValueError, match="url"):
        gpra2020("Gal", path=tmp_path, url=5)
    with pytest.raises(ValueError, match="filename"):
        gpra2020("Gal", path=tmp_path, filename="../x.txt.gz")
    with pytest.raises(ValueError, match="known_hash"):
        gpra2020("Gal", path=tmp_path, url="http://127.0.0.1:9/x.txt.gz", known_hash=3)
    with pytest.raises(ValueError, match="path"):
        gpra2020("Gal", path=3, url="http://127.0.0.1:9/x.txt.gz")
