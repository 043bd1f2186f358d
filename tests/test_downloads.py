"""Downloaders against a local HTTP server serving small fake files in the real formats (no internet)."""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.io import mmwrite

from scgde.datasets import ChecksumError, kang2018, norman2019, replogle2022_k562_essential, weinreb2020
from scgde.datasets._downloads import DOWNLOADS, REGISTRY, registry_table


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# fake files in the real formats
# ---------------------------------------------------------------------------------------------------------------------


def _write_mtx_gz(matrix, path: Path) -> None:
    buffer = io.BytesIO()
    mmwrite(buffer, sparse.coo_matrix(matrix))
    with gzip.open(path, "wb") as handle:
        handle.write(buffer.getvalue())


@pytest.fixture
def larry(server):
    """Fake LARRY experiment-1 files: 60 cells (14 without barcode), 40 genes, 7 clones."""
    rng = np.random.default_rng(0)
    n_cells, n_genes, n_clones = 60, 40, 7
    raw = rng.poisson(rng.gamma(1.0, 2.0, size=n_genes), size=(n_cells, n_genes)).astype(float)
    raw[:, 0] += 1  # no empty cells
    normed = raw / raw.sum(1, keepdims=True) * raw.sum(1).mean()  # total-count normalised, like the original
    clone_of = rng.integers(0, n_clones, size=n_cells)
    barcoded = np.ones(n_cells, dtype=bool)
    barcoded[rng.choice(n_cells, size=14, replace=False)] = False
    clones = np.zeros((n_cells, n_clones))
    clones[np.flatnonzero(barcoded), clone_of[barcoded]] = 1
    genes = [f"Gene{j}" for j in range(n_genes)]
    meta = pd.DataFrame(
        {
            "Library": rng.choice(["d2_1", "d4_1", "d6_2"], size=n_cells),
            "Cell barcode": [f"AAC-{i:04d}" for i in range(n_cells)],
            "Time point": rng.choice([2, 4, 6], size=n_cells),
            "Starting population": rng.choice(["Lin-Kit+Sca1+", "Lin-Kit+"], size=n_cells),
            "Cell type annotation": rng.choice(["undiff", "Neutrophil", "Monocyte"], size=n_cells),
            "Well": rng.choice([0, 1, 2], size=n_cells),
            "SPRING-x": rng.normal(size=n_cells),
            "SPRING-y": rng.normal(size=n_cells),
        }
    )
    root = server.root
    _write_mtx_gz(normed, root / "stateFate_inVitro_normed_counts.mtx.gz")
    _write_mtx_gz(clones, root / "stateFate_inVitro_clone_matrix.mtx.gz")
    with gzip.open(root / "stateFate_inVitro_gene_names.txt.gz", "wt") as handle:
        handle.write("\n".join(genes) + "\n")
    with gzip.open(root / "stateFate_inVitro_metadata.txt.gz", "wt") as handle:
        meta.to_csv(handle, sep="\t", index=False)
    hashes = {k: _sha256(root / str(e["fname"])) for k, e in REGISTRY["weinreb2020"].items()}
    return SimpleNamespace(raw=normed, clones=clones, barcoded=barcoded, clone_of=clone_of, meta=meta, hashes=hashes)


def _perturbseq_h5ad(path: Path, *, dense: bool, column: str, control: str, doubles: bool) -> None:
    rng = np.random.default_rng(1)
    genes = ["GATA1", "KLF1", "CEBPA", "SPI1", "MYC", "TP53", "GATA1", "EGR1"]  # one duplicated symbol
    labels = [control] * 12 + ["KLF1"] * 6 + ["CEBPA"] * 6 + (["KLF1_CEBPA"] * 6 if doubles else ["MYC"] * 6)
    counts = rng.poisson(3.0, size=(len(labels), len(genes))).astype(np.float32)
    counts[:, 0] += 1
    obs = pd.DataFrame(
        {
            column: pd.Categorical(labels),
            "nperts": [0 if lab == control else lab.count("_") + 1 for lab in labels],
            "celltype": "K562",
            "guide_id": [f"g{i % 3}" for i in range(len(labels))],
        },
        index=[f"cell{i}" for i in range(len(labels))],
    )
    X = counts if dense else sparse.csc_matrix(counts)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique")
        ad.AnnData(X, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)


@pytest.fixture
def replogle(server):
    _perturbseq_h5ad(
        server.root / "ReplogleWeissman2022_K562_essential.h5ad",
        dense=True,
        column="perturbation",
        control="control",
        doubles=False,
    )
    return server.url + "ReplogleWeissman2022_K562_essential.h5ad"


@pytest.fixture
def norman(server):
    _perturbseq_h5ad(
        server.root / "NormanWeissman2019_filtered.h5ad",
        dense=False,
        column="perturbation",
        control="control",
        doubles=True,
    )
    return server.url + "NormanWeissman2019_filtered.h5ad"


# ---------------------------------------------------------------------------------------------------------------------
# Weinreb 2020
# ---------------------------------------------------------------------------------------------------------------------


def test_weinreb_parses_and_preprocesses(server, larry, tmp_path):
    adata = weinreb2020(path=tmp_path / "cache", url=server.url, n_top_genes=None, known_hashes=larry.hashes)
    kept = np.flatnonzero(larry.barcoded)
    assert adata.n_obs == len(kept) == 46 and adata.n_vars == 40
    for col in ("clone", "time", "state", "library", "cell_barcode", "starting_population", "well", "cell_index"):
        assert col in adata.obs
    np.testing.assert_array_equal(adata.obs["cell_index"], kept)
    # clone = argmax of the clone-matrix row; categories are the clones that occur
    expected = [f"clone_{j}" for j in larry.clone_of[kept]]
    assert list(adata.obs["clone"].astype(str)) == expected
    assert set(adata.obs["clone"].cat.categories) == set(expected)
    assert sparse.issparse(adata.obsm["X_clone"]) and adata.obsm["X_clone"].shape == (46, 7)
    np.testing.assert_array_equal(adata.obsm["X_clone"].toarray(), larry.clones[kept])
    assert adata.obs["time"].dtype == np.int64
    np.testing.assert_array_equal(adata.obs["time"], larry.meta["Time point"].to_numpy()[kept])
    assert list(adata.obs["state"].astype(str)) == list(larry.meta["Cell type annotation"].to_numpy()[kept])
    assert adata.obsm["X_spring"].shape == (46, 2)
    # normalised to 1e4 and log1p
    assert sparse.issparse(adata.X)
    np.testing.assert_allclose(np.expm1(adata.X.toarray()).sum(1), 1e4, rtol=1e-4)
    assert adata.uns["weinreb2020"]["n_clones"] == len(set(expected))


def test_weinreb_hvg_and_scale(server, larry, tmp_path):
    adata = weinreb2020(path=tmp_path, url=server.url, n_top_genes=15, scale=True, known_hashes=larry.hashes)
    assert adata.n_vars == 15 and adata.var["highly_variable"].all()
    assert not sparse.issparse(adata.X) and np.abs(adata.X).max() <= 10 + 1e-6
    np.testing.assert_allclose(np.asarray(adata.X).mean(0), 0, atol=1e-4)


def test_weinreb_keeps_exactly_n_top_genes_despite_ties(server, larry, tmp_path):
    """scanpy keeps every gene tied with the n-th dispersion; the loader ranks and cuts at exactly n."""
    import scanpy as sc

    full = weinreb2020(path=tmp_path, url=server.url, n_top_genes=None, known_hashes=larry.hashes)
    sc.pp.highly_variable_genes(full, flavor="seurat")
    score = np.nan_to_num(full.var["dispersions_norm"].to_numpy(np.float64), nan=-np.inf)  # NaN: constant genes
    assert (score >= np.sort(score)[::-1][14]).sum() > 15  # ties at the 15th gene: the case that went wrong
    for n in (15, 10, 5):
        adata = weinreb2020(path=tmp_path, url=server.url, n_top_genes=n, known_hashes=larry.hashes)
        assert adata.n_vars == n and adata.var["highly_variable"].all()
        kept = full.var_names.get_indexer(adata.var_names)
        dropped = np.setdiff1d(np.arange(full.n_vars), kept)
        assert score[kept].min() >= score[dropped].max()  # the n best ...
        cut = score[kept].min()
        tied = np.flatnonzero(score == cut)
        assert set(kept) & set(tied) == set(tied[: len(set(kept) & set(tied))])  # ... ties go to earlier genes
        again = weinreb2020(path=tmp_path, url=server.url, n_top_genes=n, known_hashes=larry.hashes)
        assert list(again.var_names) == list(adata.var_names)


def test_weinreb_uses_the_cache(server, larry, tmp_path):
    first = weinreb2020(path=tmp_path, url=server.url, n_top_genes=10, known_hashes=larry.hashes)
    assert len(server.hits) == 4
    for entry in REGISTRY["weinreb2020"].values():
        assert (tmp_path / "weinreb2020" / str(entry["fname"])).is_file()
    server.stop()
    second = weinreb2020(path=tmp_path, url=server.url, n_top_genes=10, known_hashes=larry.hashes)
    assert len(server.hits) == 4
    np.testing.assert_array_equal(first.X.toarray(), second.X.toarray())


def test_weinreb_registry_checksum_mismatch(server, larry, tmp_path):
    """The fake files do not match the registered checksums: a clear error, and nothing cached."""
    with pytest.raises(ChecksumError, match="Checksum mismatch") as err:
        weinreb2020(path=tmp_path, url=server.url)
    assert "known_hashes={" in str(err.value)
    assert not (tmp_path / "weinreb2020" / "stateFate_inVitro_gene_names.txt.gz").exists()


def test_weinreb_trust_on_first_use(server, larry, tmp_path):
    hashes = dict.fromkeys(REGISTRY["weinreb2020"])
    weinreb2020(path=tmp_path, url=server.url, n_top_genes=None, known_hashes=hashes)
    cached = tmp_path / "weinreb2020" / "stateFate_inVitro_normed_counts.mtx.gz"
    record = cached.with_name(cached.name + ".sha256")
    assert record.read_text().strip() == larry.hashes["counts"].split(":")[1]
    weinreb2020(path=tmp_path, url=server.url, n_top_genes=None, known_hashes=hashes)  # verified, still fine
    _write_mtx_gz(larry.raw * 2, cached)  # the cached file changes
    with pytest.raises(ChecksumError, match="no longer matches"):
        weinreb2020(path=tmp_path, url=server.url, n_top_genes=None, known_hashes=hashes)


def test_weinreb_url_mapping_and_argument_errors(server, larry, tmp_path):
    urls = {k: server.url + str(e["fname"]) for k, e in REGISTRY["weinreb2020"].items()}
    adata = weinreb2020(path=tmp_path, url=urls, n_top_genes=None, known_hashes=larry.hashes)
    assert adata.n_obs == 46
    with pytest.raises(ValueError, match="url"):
        weinreb2020(path=tmp_path, url={"bogus": server.url})
    with pytest.raises(ValueError, match="url"):
        weinreb2020(path=tmp_path, url=3)
    with pytest.raises(ValueError, match="known_hashes"):
        weinreb2020(path=tmp_path, url=server.url, known_hashes={"bogus": None})
    with pytest.raises(ValueError, match="n_top_genes"):
        weinreb2020(path=tmp_path, url=server.url, n_top_genes=0)


# ---------------------------------------------------------------------------------------------------------------------
# Perturb-seq
# ---------------------------------------------------------------------------------------------------------------------


def _check_perturbseq(adata, n_controls=12):
    assert adata.obs["perturbation"].cat.categories[0] == "control"
    assert (adata.obs["perturbation"] == "control").sum() == n_controls
    assert adata.obs["is_control"].sum() == n_controls
    assert set(adata.obs["cell_type"]) == {"K562"}
    assert adata.var_names.is_unique
    assert sparse.issparse(adata.X) and adata.X.dtype == np.float32
    counts = adata.layers["counts"]
    np.testing.assert_allclose(np.expm1(adata.X.toarray()).sum(1), 1e4, rtol=1e-4)
    np.testing.assert_allclose(
        np.log1p(counts.toarray() / counts.toarray().sum(1, keepdims=True) * 1e4), adata.X.toarray(), rtol=1e-5
    )


def test_replogle_dense_file(server, replogle, tmp_path):
    file = server.root / "ReplogleWeissman2022_K562_essential.h5ad"
    adata = replogle2022_k562_essential(path=tmp_path, url=replogle, known_hash=_sha256(file))
    _check_perturbseq(adata)
    assert {"KLF1", "CEBPA", "MYC"} <= set(adata.obs["perturbation"].cat.categories)
    assert "nperts" in adata.obs and "guide_id" in adata.obs
    assert (tmp_path / "replogle2022_k562_essential" / "ReplogleWeissman2022_K562_essential.h5ad").is_file()
    # second call: from the cache, without the server
    n = len(server.hits)
    server.stop()
    again = replogle2022_k562_essential(path=tmp_path, url=replogle, known_hash=_sha256(file))
    assert len(server.hits) == n == 1
    np.testing.assert_array_equal(adata.X.toarray(), again.X.toarray())
    raw = replogle2022_k562_essential(path=tmp_path, url=replogle, known_hash=_sha256(file), normalize=False)
    assert "counts" not in raw.layers and np.allclose(raw.X.toarray(), np.round(raw.X.toarray()))


def test_norman_sparse_file_and_doubles(server, norman, tmp_path):
    file = server.root / "NormanWeissman2019_filtered.h5ad"
    adata = norman2019(path=tmp_path, url=norman, known_hash=_sha256(file))
    _check_perturbseq(adata)
    assert "KLF1_CEBPA" in set(adata.obs["perturbation"])
    assert adata.obs.loc[adata.obs["perturbation"] == "KLF1_CEBPA", "nperts"].eq(2).all()


def test_perturbseq_checksum_mismatch(server, replogle, norman, tmp_path):
    with pytest.raises(ChecksumError, match="Checksum mismatch"):
        norman2019(path=tmp_path, url=norman)  # the registered Zenodo MD5 does not fit the fake file
    with pytest.raises(ChecksumError, match="known_hash=None"):
        norman2019(path=tmp_path, url=norman)
    with pytest.raises(ChecksumError, match="Checksum mismatch"):
        replogle2022_k562_essential(path=tmp_path, url=replogle, known_hash="sha256:" + "0" * 64)
    assert not (tmp_path / "norman2019" / "NormanWeissman2019_filtered.h5ad").exists()


def test_perturbseq_trust_on_first_use_and_control_labels(server, tmp_path):
    """Replogle's own processing calls the column `gene` and the controls `non-targeting`."""
    _perturbseq_h5ad(server.root / "k562_raw.h5ad", dense=True, column="gene", control="non-targeting", doubles=False)
    url = server.url + "k562_raw.h5ad"
    adata = replogle2022_k562_essential(path=tmp_path, url=url, known_hash=None)
    _check_perturbseq(adata)
    assert set(adata.obs["gene"].astype(str)) >= {"non-targeting"}
    cached = tmp_path / "replogle2022_k562_essential" / "ReplogleWeissman2022_K562_essential.h5ad"
    assert cached.with_name(cached.name + ".sha256").is_file()
    cached.write_bytes(cached.read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match="no longer matches"):
        replogle2022_k562_essential(path=tmp_path, url=url, known_hash=None)


def test_perturbseq_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="url"):
        norman2019(path=tmp_path, url=5)
    with pytest.raises(ValueError, match="known_hash"):
        norman2019(path=tmp_path, url="http://127.0.0.1:9/x.h5ad", known_hash=3)
    with pytest.raises(ValueError, match="normalize"):
        norman2019(path=tmp_path, url="http://127.0.0.1:9/x.h5ad", normalize="yes")
    with pytest.raises(ValueError, match="path"):
        norman2019(path=3, url="http://127.0.0.1:9/x.h5ad")


# ---------------------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------------------


def test_registry_entries():
    lengths = {"sha256": 64, "md5": 32}
    assert set(REGISTRY) == {
        "weinreb2020",
        "replogle2022_k562_essential",
        "norman2019",
        "kang2018",
        "gpra2020",
        "spike_variant_sets",
        "nextstrain_spike_sets",
        "bdtnp_embryo",
        "intestine_zonation",
    }
    for files in REGISTRY.values():
        for entry in files.values():
            assert str(entry["url"]).startswith("https://")
            assert str(entry["url"]).split("?")[0].endswith(str(entry["fname"]))
            if entry["known_hash"] is not None:
                alg, hexdigest = str(entry["known_hash"]).split(":")
                assert len(hexdigest) == lengths[alg] and int(hexdigest, 16) >= 0
            assert entry["hash_source"]
    # only the 2 GB LARRY matrix and GEO's GPRA tables have no recorded checksum (trust on first use)
    unchecked = [(d, k) for d, files in REGISTRY.items() for k, e in files.items() if e["known_hash"] is None]
    assert unchecked == [("weinreb2020", "counts"), *(("gpra2020", c) for c in ("Gal", "Gly", "pTpA", "Abf1TATA"))]
    assert registry_table().shape == (19, 4)
    # one pooch registry holds every file, with the same checksum and URL
    expected = {f"{d}/{e['fname']}": e for d, files in REGISTRY.items() for e in files.values()}
    assert set(DOWNLOADS.registry) == set(expected)
    for name, entry in expected.items():
        assert DOWNLOADS.registry[name] == entry["known_hash"] and DOWNLOADS.urls[name] == entry["url"]


def test_small_datasets_are_pinned_to_a_commit_and_checksummed():
    """The files behind the loaders' defaults (instead of a path beside the repository) are immutable downloads."""
    for dataset in ("spike_variant_sets", "nextstrain_spike_sets", "bdtnp_embryo", "intestine_zonation"):
        for entry in REGISTRY[dataset].values():
            assert str(entry["url"]).startswith("https://raw.githubusercontent.com/")
            commit = str(entry["url"]).split("/")[5]
            assert len(commit) == 40 and int(commit, 16) >= 0  # a commit, not a branch that can move
            assert str(entry["known_hash"]).startswith("sha256:")


def test_registered_spatial_hashes_match_the_shared_copies(shared_data):
    folders = {"bdtnp_embryo": "spatial_bdtnp_novosparc", "intestine_zonation": "intestine_zonation_novosparc"}
    for dataset, folder in folders.items():
        for entry in REGISTRY[dataset].values():
            assert _sha256(shared_data(folder, str(entry["fname"]))) == entry["known_hash"]


def test_registered_kang2018_hash_matches_the_shared_copy(shared_file):
    file = shared_file("kang2018_ifnb", "kang2018_valid.h5ad")
    assert _sha256(file) == REGISTRY["kang2018"]["h5ad"]["known_hash"]


# ---------------------------------------------------------------------------------------------------------------------
# Kang 2018
# ---------------------------------------------------------------------------------------------------------------------


def _kang_h5ad(path: Path, n: int) -> None:
    obs = pd.DataFrame(
        {"label": ["ctrl", "stim"] * (n // 2), "cell": ["B", "NK"] * (n // 2)}, index=[f"c{i}" for i in range(n)]
    )
    ad.AnnData(np.zeros((n, 3), dtype=np.float32), obs=obs).write_h5ad(path)


def test_kang2018_downloads_into_the_cache_and_never_searches_shared(server, tmp_path, monkeypatch):
    # a decoy where the old loader looked (../shared/data/... relative to the working directory)
    decoy = tmp_path / "shared" / "data" / "kang2018_ifnb"
    decoy.mkdir(parents=True)
    _kang_h5ad(decoy / "kang2018_valid.h5ad", n=4)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    _kang_h5ad(server.root / "valid.h5ad", n=6)
    remote = server.root / "valid.h5ad"
    adata = kang2018(url=server.url + "valid.h5ad", cache=tmp_path / "cache", known_hash=_sha256(remote))
    assert adata.n_obs == 6 and list(adata.obs["condition"].cat.categories) == ["control", "stimulated"]
    assert (tmp_path / "cache" / "kang2018" / "valid.h5ad").is_file() and len(server.hits) == 1
    with pytest.raises(ChecksumError, match="known_hash=None"):  # the registered hash is scGen's file
        kang2018(url=server.url + "valid.h5ad", cache=tmp_path / "fresh")
    server.stop()
    again = kang2018(url=server.url + "valid.h5ad", cache=tmp_path / "cache", known_hash=_sha256(remote))
    assert again.n_obs == 6 and len(server.hits) == 2  # from the cache


def test_kang2018_explicit_path_reads_it_without_downloading(tmp_path, monkeypatch):
    _kang_h5ad(tmp_path / "kang2018_valid.h5ad", n=8)
    monkeypatch.setattr(DOWNLOADS, "fetch", None)  # any download attempt would fail
    assert kang2018(tmp_path).n_obs == 8
    assert kang2018(tmp_path / "kang2018_valid.h5ad").n_obs == 8
    with pytest.raises(FileNotFoundError, match="path=None"):
        kang2018(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="path"):
        kang2018(3)
