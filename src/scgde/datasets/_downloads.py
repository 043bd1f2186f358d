"""Downloaders for the public datasets of the paper's biology experiments (never run in CI), and the registry.

Every file is fetched once with :mod:`pooch` into a cache folder (default ``pooch.os_cache("scgde")``,
i.e. ``~/.cache/scgde`` on Linux) and checked against a checksum:

- files with a published or recorded checksum (the entries of :data:`REGISTRY` with a ``known_hash``)
  are verified on every load, and a mismatch raises a :class:`ChecksumError`;
- files without one are *trusted on first use*: the SHA256 of the first download is written next to
  the cached file (``<file>.sha256``) and every later load verifies the cached file against it.

All files are entries of one :mod:`pooch` registry, :data:`DOWNLOADS`. Each loader takes ``path`` (the cache
folder; for :func:`kang2018`, a local copy of the file) and ``url`` (a mirror; tests point it at a local server).
The registry also holds the small open files of the sequence and spatial loaders (``spike_variant_sets``,
``nextstrain_spike_sets``, ``bdtnp_embryo``, ``intestine_zonation``), pinned to a commit of their source repository:
those loaders read the user's file when given one, and otherwise these registered files.
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pooch
from anndata import AnnData
from scipy import sparse

__all__ = [
    "DOWNLOADS",
    "REGISTRY",
    "ChecksumError",
    "kang2018",
    "norman2019",
    "replogle2022_k562_essential",
    "weinreb2020",
]

logger = logging.getLogger(__name__)

_KLEIN = "https://kleintools.hms.harvard.edu/paper_websites/state_fate2020/"
_SCPERTURB = "https://zenodo.org/records/10044268/files/"
_SCGEN_COMMIT = "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7"
_GITHUB = "https://raw.githubusercontent.com/"
_EVESCAPE = _GITHUB + "OATML-Markslab/EVEscape/fc312ff0af0e00c516d978f7461423c80ba95b19/"
_NEXTSTRAIN = _GITHUB + "nextstrain/ncov/5993a7421ea707d4ca5262adcfe944027dc8620c/"
_NOVOSPARC = _GITHUB + "rajewsky-lab/novosparc/a3c9f3d76e59c7a601cfcd0e211630e2458d79a3/"
_SHARED_COPY = "SHA256 of the copy in the project's shared data (upstream publishes none)"
#: GEO's folder of the GPRA series' supplementary files
GEO_GPRA = "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE104nnn/GSE104878/suppl/"

#: Every downloadable file: ``{dataset: {file key: {"fname", "url", "known_hash", "hash_source"}}}``.
#: ``known_hash`` is ``"sha256:<hex>"`` or ``"md5:<hex>"``, or ``None`` when no checksum is published for
#: the file (it is then verified against the SHA256 recorded at its first download).
REGISTRY: dict[str, dict[str, dict[str, str | None]]] = {
    # Weinreb et al. 2020 (Science), LARRY in-vitro time course (GEO GSE140802). Files and URLs from the
    # authors' data page, github.com/AllonKleinLab/paper-data
    # (Lineage_tracing_on_transcriptional_landscapes_links_state_to_fate_during_differentiation/README.md).
    # The authors publish no checksums; three SHA256 values were recorded by a third-party repository that
    # downloads and verifies these exact URLs. The 2 GB expression matrix has no recorded checksum.
    "weinreb2020": {
        "counts": {
            "fname": "stateFate_inVitro_normed_counts.mtx.gz",
            "url": _KLEIN + "stateFate_inVitro_normed_counts.mtx.gz",
            "known_hash": None,
            "hash_source": "none published: trust on first use",
        },
        "genes": {
            "fname": "stateFate_inVitro_gene_names.txt.gz",
            "url": _KLEIN + "stateFate_inVitro_gene_names.txt.gz",
            "known_hash": "sha256:5672e137bcac196851b8dc44311b40fe61c428d6fd726dfae320b3fe5ddfffcd",
            "hash_source": "recorded by a third-party repository (not by the authors)",
        },
        "metadata": {
            "fname": "stateFate_inVitro_metadata.txt.gz",
            "url": _KLEIN + "stateFate_inVitro_metadata.txt.gz",
            "known_hash": "sha256:c88e02cc512205e7033e28bf512f5d0dd43b98ba547fdd4a196b4bd9b62d7c07",
            "hash_source": "recorded by a third-party repository (not by the authors)",
        },
        "clones": {
            "fname": "stateFate_inVitro_clone_matrix.mtx.gz",
            "url": _KLEIN + "stateFate_inVitro_clone_matrix.mtx.gz",
            "known_hash": "sha256:26258702f8ccb7c98884d4f91bdcd1d6f552d7f2dd5125358efe7ade2fdcc50d",
            "hash_source": "recorded by a third-party repository (not by the authors)",
        },
    },
    # Replogle et al. 2022 (Cell), K562 day-7 essential-gene CRISPRi Perturb-seq, as harmonised by scPerturb
    # (Peidli et al. 2024), Zenodo record 10044268: the file that pertpy's `replogle_2022_k562_essential` loads.
    # MD5 as listed by Zenodo for the record (recorded in gao-lab/CASCADE data/download/Replogle-2022/README.md).
    "replogle2022_k562_essential": {
        "h5ad": {
            "fname": "ReplogleWeissman2022_K562_essential.h5ad",
            "url": _SCPERTURB + "ReplogleWeissman2022_K562_essential.h5ad?download=1",
            "known_hash": "md5:d8cba17576d1a8afc0f7d71b79cad0f7",
            "hash_source": "Zenodo MD5 (as recorded in gao-lab/CASCADE)",
        },
    },
    # Norman et al. 2019 (Science), K562 CRISPRa single and double perturbations, scPerturb harmonisation,
    # Zenodo record 10044268 (pertpy's `norman_2019` loads a different, figshare-hosted processing).
    "norman2019": {
        "h5ad": {
            "fname": "NormanWeissman2019_filtered.h5ad",
            "url": _SCPERTURB + "NormanWeissman2019_filtered.h5ad?download=1",
            "known_hash": "md5:c870e6967d91c017d9da827bab183cd6",
            "hash_source": "Zenodo MD5 (as recorded in gao-lab/CASCADE data/download/Norman-2019/README.md)",
        },
    },
    # Kang et al. 2018 (Nat. Biotechnol.), IFN-beta stimulated PBMCs (GEO GSE96583): the 1,975-cell validation
    # split the scGen authors distributed as data/valid.h5ad in theislab/scgen (removed after this commit).
    "kang2018": {
        "h5ad": {
            "fname": "valid.h5ad",
            "url": f"https://raw.githubusercontent.com/theislab/scgen/{_SCGEN_COMMIT}/data/valid.h5ad",
            "known_hash": "sha256:83f89f5356a4c01f65bbcee225eb45d8d8b13b6c962724431a26c1bf568ff09e",
            "hash_source": "SHA256 of the copy in the project's shared data (the scGen authors publish none)",
        },
    },
    # de Boer et al. 2020 (Nat. Biotechnol.), GPRA random yeast promoters, GEO GSE104878 supplementary tables, one
    # per condition. File names as downloaded from these URLs by several public code bases (the authors' analysis
    # scripts use them without the `GSE104878_` prefix); not checked against GEO's own listing, which could not be
    # reached when this was written. GEO publishes no checksums.
    "gpra2020": {
        condition: {
            "fname": fname,
            "url": GEO_GPRA + fname,
            "known_hash": None,
            "hash_source": "none published by GEO: trust on first use",
        }
        for condition, fname in {
            # the GDE paper's conditions: galactose and glycerol as carbon source, pTpA scaffold
            "Gal": "GSE104878_20161024_average_promoter_ELs_per_seq_3p1E7_Gal_ALL.shuffled.txt.gz",
            "Gly": "GSE104878_20161024_average_promoter_ELs_per_seq_3p1E7_Gly_ALL.shuffled.txt.gz",
            # the main experiments (glucose), pTpA and Abf1TATA scaffolds
            "pTpA": "GSE104878_20160609_average_promoter_ELs_per_seq_pTpA_ALL.shuffled.txt.gz",
            "Abf1TATA": "GSE104878_20160609_average_promoter_ELs_per_seq_Abf1TATA_ALL.shuffled.txt.gz",
        }.items()
    },
    # Small open datasets of the sequence and spatial tasks, pinned to a commit of their source repository. SHA256
    # of the copies in the project's shared data (the upstream repositories publish none).
    "spike_variant_sets": {
        "counts": {
            "fname": "single_mutant_count_by_month.csv",
            "url": _EVESCAPE + "data/gisaid/single_mutant_count_by_month.csv",
            "known_hash": "sha256:b9b934d75b32cec61b2d43b23af431ad0ebde1d6a5a024c316e06bd58ac0afa1",
            "hash_source": _SHARED_COPY,
        },
        "reference": {
            "fname": "SPIKE_SARS2.fasta",
            "url": _EVESCAPE + "data/sequences/SPIKE_SARS2.fasta",
            "known_hash": "sha256:399308ca13674141add24eb388b1b4fc3a84330350075c18be0b4261166f8086",
            "hash_source": _SHARED_COPY,
        },
    },
    "nextstrain_spike_sets": {
        "fasta": {
            "fname": "example_sequences.fasta.gz",
            "url": _NEXTSTRAIN + "data/example_sequences.fasta.gz",
            "known_hash": "sha256:983baf012f652c0c7cb77828e6f09ddf71cee7c1218d119acd03cf8a0c386626",
            "hash_source": _SHARED_COPY,
        },
        "metadata": {
            "fname": "example_metadata.tsv",
            "url": _NEXTSTRAIN + "data/example_metadata.tsv",
            "known_hash": "sha256:dbdb516e65fbea9563a13ff2c9db2e0235506b66e220e0911917d951b75d7260",
            "hash_source": _SHARED_COPY,
        },
    },
    "bdtnp_embryo": {
        "dge": {
            "fname": "dge.txt",
            "url": _NOVOSPARC + "novosparc/datasets/bdtnp/dge.txt",
            "known_hash": "sha256:54f92f3e20e392f23b39b87d5b8d19a2158fed761f1ce7a0a5b7fb4ec176d388",
            "hash_source": _SHARED_COPY,
        },
        "geometry": {
            "fname": "geometry.txt",
            "url": _NOVOSPARC + "novosparc/datasets/bdtnp/geometry.txt",
            "known_hash": "sha256:7db4e560581020bf647df915d39941f8ec3d472c351883aeff836d7aa6069762",
            "hash_source": _SHARED_COPY,
        },
    },
    "intestine_zonation": {
        "dge": {
            "fname": "dge.tsv.gz",
            "url": _NOVOSPARC + "novosparc/datasets/intestine/dge.tsv.gz",
            "known_hash": "sha256:1dcc550ee7018b9f1f82f579d42df1862c3dc96d400825c5e6d789143ea00a87",
            "hash_source": _SHARED_COPY,
        },
        "zones": {
            "fname": "zones.tsv",
            "url": _NOVOSPARC + "novosparc/datasets/intestine/zones.tsv",
            "known_hash": "sha256:8c08e2d290faa6dbac7ca9c4f6d9e2293978735ff8410eb842500595c83fb21b",
            "hash_source": _SHARED_COPY,
        },
    },
}


def _registry_name(dataset: str, key: str) -> str:
    """Name of a file in :data:`DOWNLOADS` (its path below the cache folder)."""
    return f"{dataset}/{REGISTRY[dataset][key]['fname']}"


#: The one :mod:`pooch` registry of all downloadable files (hashes and URLs from :data:`REGISTRY`). The cache
#: folder is ``pooch.os_cache("scgde")`` unless the environment variable ``SCGDE_DATA_DIR`` names another.
DOWNLOADS = pooch.create(
    path=pooch.os_cache("scgde"),
    base_url="",
    env="SCGDE_DATA_DIR",
    registry={_registry_name(d, k): e["known_hash"] for d, files in REGISTRY.items() for k, e in files.items()},
    urls={_registry_name(d, k): str(e["url"]) for d, files in REGISTRY.items() for k, e in files.items()},
)

#: Default of ``known_hash`` / ``known_hashes``: use the checksum of :data:`REGISTRY`.
_FROM_REGISTRY = "registry"

#: Labels of control cells in public Perturb-seq files (compared case-insensitively).
_CONTROL_LABELS = frozenset({"control", "ctrl", "non-targeting", "non_targeting", "nontargeting", "nt", "negative"})


class ChecksumError(ValueError):
    """A downloaded or cached file does not match its known or recorded checksum."""


# ---------------------------------------------------------------------------------------------------------------------
# fetching with checksums
# ---------------------------------------------------------------------------------------------------------------------


def _cache_dir(path: str | Path | None) -> Path:
    if path is None:  # $SCGDE_DATA_DIR as set now, not when scgde was imported
        return Path(os.environ.get("SCGDE_DATA_DIR") or DOWNLOADS.path).expanduser()
    if not isinstance(path, str | Path):
        raise ValueError(f"`path` must be a folder path (str or Path) or None; got {path!r}.")
    return Path(path).expanduser()


def _check_known_hash(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{name}` must be a string such as 'sha256:<hex>' or 'md5:<hex>', or None; got {value!r}.")
    return value


def _trust_on_first_use(file: Path, url: str) -> None:
    """Record the SHA256 of ``file`` at first use; on later uses, verify the file against the record."""
    record = file.with_name(file.name + ".sha256")
    digest = pooch.file_hash(str(file), alg="sha256")
    if not record.exists():
        record.write_text(digest + "\n")
        logger.warning(
            "%s (from %s) is not checksummed upstream; recorded its SHA256 %s in %s and will verify it on later loads.",
            file.name,
            url,
            digest,
            record,
        )
        return
    expected = record.read_text().strip().split(":")[-1].lower()
    if digest != expected:
        raise ChecksumError(
            f"The cached file {file} no longer matches the SHA256 recorded at its first download "
            f"(recorded {expected}, now {digest}). It may be corrupted or have been replaced. Delete {file} and "
            f"{record} to download it again from {url}."
        )


def _fetch(
    dataset: str,
    key: str,
    *,
    path: str | Path | None,
    url: str | None,
    known_hash: str | None,
    fname: str | None = None,
) -> Path:
    """Download one registered file (or take it from the cache) and verify it; return its local path.

    ``fname`` replaces the registered file name (a renamed upstream file): it is then fetched from the same folder
    of the registered URL unless ``url`` is given, and has no registered checksum.
    """
    name = _registry_name(dataset, key)
    source = url if url is not None else DOWNLOADS.urls[name]
    expected = DOWNLOADS.registry[name] if known_hash == _FROM_REGISTRY else known_hash
    if fname is None:
        fname = str(REGISTRY[dataset][key]["fname"])
    else:
        source = url if url is not None else source.rsplit("/", 1)[0] + "/" + fname
        expected = None if known_hash == _FROM_REGISTRY else known_hash
        name = f"{dataset}/{fname}"
    # the one registry, with this call's cache folder, mirror and checksum
    store = pooch.Pooch(
        path=_cache_dir(path),
        base_url="",
        registry={**DOWNLOADS.registry, name: expected},
        urls={**DOWNLOADS.urls, name: source},
    )
    try:
        local = store.fetch(name, progressbar=_progressbar())
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        hint = f"known_hashes={{{key!r}: None}}" if dataset == "weinreb2020" else "known_hash=None"
        raise ChecksumError(
            f"Checksum mismatch for {fname} of `{dataset}` downloaded from {source}: expected {expected}. "
            f"The download was deleted. ({err}) If the upstream file changed on purpose, pass {hint} to "
            "verify it against the SHA256 of its first download instead."
        ) from err
    local = Path(local)
    if expected is None:
        _trust_on_first_use(local, source)
    return local


def _registered_file(dataset: str, key: str, *, argument: str, cache: str | Path | None = None) -> Path:
    """The registered file ``dataset``/``key``, for a loader's ``argument`` left at ``None``.

    The file comes from the cache, or is downloaded once and verified against its registered checksum. Raises a ``FileNotFoundError`` naming ``argument=`` when the file is neither cached nor downloadable (offline).
    """
    entry = REGISTRY[dataset][key]
    try:
        return _fetch(dataset, key, path=cache, url=None, known_hash=_FROM_REGISTRY)
    except OSError as err:  # no network, HTTP error (requests' errors are OSErrors), unwritable cache
        raise FileNotFoundError(
            f"`{argument}` was not given, and its default file {entry['fname']} could not be downloaded from "
            f"{entry['url']} into {_cache_dir(cache) / dataset} ({type(err).__name__}: {err}). Pass `{argument}=` "
            "the path of your copy of the file, or retry with network access (it is downloaded once, then cached)."
        ) from err


def _progressbar() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return sys.stderr.isatty()


def _file_urls(dataset: str, url: str | Mapping[str, str] | None) -> dict[str, str | None]:
    """Per-file URLs from ``url``: None (registry), a base URL (file names appended) or a mapping."""
    keys = list(REGISTRY[dataset])
    if url is None:
        return dict.fromkeys(keys)
    if isinstance(url, str):
        base = url if url.endswith("/") else url + "/"
        return {k: base + str(REGISTRY[dataset][k]["fname"]) for k in keys}
    if isinstance(url, Mapping):
        unknown = set(url) - set(keys)
        if unknown:
            raise ValueError(f"`url` has unknown file keys {sorted(unknown)}; expected some of {keys}.")
        return {k: url.get(k) for k in keys}
    raise ValueError(f"`url` must be None, a base URL string or a mapping of file keys to URLs; got {url!r}.")


def _file_hashes(dataset: str, known_hashes: Mapping[str, str | None] | None) -> dict[str, str | None]:
    keys = list(REGISTRY[dataset])
    if known_hashes is None:
        return dict.fromkeys(keys, _FROM_REGISTRY)
    if not isinstance(known_hashes, Mapping):
        raise ValueError(f"`known_hashes` must be a mapping of file keys to hashes (or None); got {known_hashes!r}.")
    unknown = set(known_hashes) - set(keys)
    if unknown:
        raise ValueError(f"`known_hashes` has unknown file keys {sorted(unknown)}; expected some of {keys}.")
    return {k: _check_known_hash(f"known_hashes[{k!r}]", known_hashes.get(k, _FROM_REGISTRY)) for k in keys}


# ---------------------------------------------------------------------------------------------------------------------
# Weinreb 2020 (LARRY)
# ---------------------------------------------------------------------------------------------------------------------

_LARRY_COLUMNS = {
    "Library": "library",
    "Cell barcode": "cell_barcode",
    "Time point": "time",
    "Starting population": "starting_population",
    "Cell type annotation": "state",
    "Well": "well",
}


def weinreb2020(
    path: str | Path | None = None,
    url: str | Mapping[str, str] | None = None,
    *,
    n_top_genes: int | None = 10_000,
    scale: bool = False,
    known_hashes: Mapping[str, str | None] | None = None,
) -> AnnData:
    """LARRY in-vitro haematopoiesis time course (Weinreb et al. 2020), barcoded cells, preprocessed.

    Downloads the four files of experiment 1 from the authors' data page (Klein lab,
    ``https://kleintools.hms.harvard.edu/paper_websites/state_fate2020/``; GEO GSE140802): the
    total-count-normalised expression matrix (130,887 cells x 25,289 genes, about 2 GB compressed), the
    gene names, the cell metadata and the binary cell x clone matrix (5,864 clones). Then, as in the GDE
    paper (Fishman et al. 2025, lineage experiment):

    1. keep only cells with a clone barcode; a cell's clone is the argmax of its clone-matrix row;
    2. normalise every cell to 10,000 counts and ``log1p``;
    3. keep exactly the ``n_top_genes`` genes with the highest normalised dispersion
       (``scanpy.pp.highly_variable_genes``, ``flavor="seurat"`` on the log data; ties go to the gene that comes
       first in the files, where scanpy alone would keep every gene tied with the last one);
    4. optionally z-score each gene with clipping at 10 (``scale=True``, the paper code's
       ``sc.pp.scale(max_value=10)``; this makes ``X`` dense).

    Checksums: the gene-name, metadata and clone-matrix files are verified against SHA256 values recorded by
    a third-party repository (the authors publish none). **The expression matrix is not checksummed
    upstream**: the SHA256 of its first download is stored next to it (``.sha256``) and verified on every
    later load (trust on first use).

    Parameters
    ----------
    path
        Cache folder (files go to ``path / "weinreb2020"``). Default ``pooch.os_cache("scgde")``.
    url
        Mirror: a base URL to which the original file names are appended, or a mapping from the file keys
        ``"counts"``, ``"genes"``, ``"metadata"``, ``"clones"`` to URLs. Default: the authors' URLs.
    n_top_genes
        Number of highly variable genes to keep (10,000 in the paper); ``None`` keeps all genes.
    scale
        Z-score each gene and clip at 10 (dense ``X``).
    known_hashes
        Per-file checksum overrides (``"sha256:<hex>"``, ``"md5:<hex>"``, or ``None`` for trust on first
        use), by file key; files not named use :data:`REGISTRY`.

    Returns
    -------
    AnnData of the barcoded cells with ``X`` the log-normalised expression of the selected genes (CSR
    float32; dense when ``scale``); ``obs["clone"]`` (categorical ``"clone_<column>"``, the column of the
    original clone matrix), ``obs["time"]`` (day 2, 4 or 6, int), ``obs["state"]`` (the authors' cell-type
    annotation: ``"undiff"`` or one of ten mature types, categorical), ``obs["library"]``,
    ``obs["cell_barcode"]``, ``obs["starting_population"]`` (``"LSK"``/``"LK"``), ``obs["well"]`` and
    ``obs["cell_index"]`` (row in the original files); ``obsm["X_clone"]`` (sparse CSR cells x all clones,
    binary) and ``obsm["X_spring"]`` (the authors' SPRING coordinates); ``var["highly_variable"]`` and the
    HVG statistics; ``uns["weinreb2020"]`` with the preprocessing parameters and source URLs.

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.weinreb2020()  # doctest: +SKIP
    >>> scgde.model.GDE.setup_anndata(adata, set_key=["clone", "time"])  # doctest: +SKIP
    """
    import scanpy as sc
    from scipy.io import mmread

    if n_top_genes is not None and (isinstance(n_top_genes, bool) or not isinstance(n_top_genes, int | np.integer)):
        raise ValueError(f"`n_top_genes` must be a positive integer or None; got {n_top_genes!r}.")
    if n_top_genes is not None and n_top_genes < 1:
        raise ValueError(f"`n_top_genes` must be >= 1; got {n_top_genes}.")
    urls = _file_urls("weinreb2020", url)
    hashes = _file_hashes("weinreb2020", known_hashes)
    files = {k: _fetch("weinreb2020", k, path=path, url=urls[k], known_hash=hashes[k]) for k in REGISTRY["weinreb2020"]}

    meta = pd.read_csv(files["metadata"], sep="\t", keep_default_na=False)
    missing = [c for c in _LARRY_COLUMNS if c not in meta.columns]
    if missing:
        raise ValueError(f"{files['metadata']} lacks the LARRY metadata columns {missing}; got {list(meta.columns)}.")
    with gzip.open(files["genes"], "rt") as handle:
        genes = np.array([line.strip() for line in handle if line.strip()], dtype=object)
    counts = sparse.csr_matrix(mmread(files["counts"], spmatrix=False), dtype=np.float32)
    clones = sparse.csr_matrix(mmread(files["clones"], spmatrix=False), dtype=np.float32)
    n_cells = len(meta)
    if counts.shape != (n_cells, len(genes)):
        raise ValueError(
            f"The expression matrix has shape {counts.shape}; expected (cells, genes) = ({n_cells}, {len(genes)})."
        )
    if clones.shape[0] != n_cells:
        raise ValueError(f"The clone matrix has {clones.shape[0]} rows; expected one per cell ({n_cells}).")

    barcoded = np.flatnonzero(clones.getnnz(axis=1) > 0)
    clones = clones[barcoded]
    clone_id = np.asarray(clones.argmax(axis=1)).ravel()
    width = len(str(clones.shape[1] - 1))
    clone_names = np.array([f"clone_{j:0{width}d}" for j in range(clones.shape[1])])

    obs = meta.iloc[barcoded].rename(columns=_LARRY_COLUMNS)
    obs = obs[list(_LARRY_COLUMNS.values())].copy()
    obs["time"] = obs["time"].astype(np.int64)
    for col in ("library", "cell_barcode", "starting_population", "state", "well"):
        obs[col] = obs[col].astype(str)
    for col in ("library", "starting_population", "state", "well"):
        obs[col] = obs[col].astype("category")
    used = np.unique(clone_id)
    obs["clone"] = pd.Categorical(clone_names[clone_id], categories=clone_names[used])
    obs["cell_index"] = barcoded.astype(np.int64)
    obs.index = pd.Index((obs["library"].astype(str) + ":" + obs["cell_barcode"]).to_numpy())
    spring = meta.iloc[barcoded][["SPRING-x", "SPRING-y"]].to_numpy(np.float32) if "SPRING-x" in meta else None

    adata = AnnData(counts[barcoded], obs=obs, var=pd.DataFrame(index=genes))
    adata.obs_names_make_unique()
    adata.var_names_make_unique()
    adata.obsm["X_clone"] = clones.tocsr()
    if spring is not None:
        adata.obsm["X_spring"] = spring
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    if n_top_genes is not None and n_top_genes < adata.n_vars:
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor="seurat")
        adata.var["highly_variable"] = _top_n(adata.var["dispersions_norm"].to_numpy(), n_top_genes)
        adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
        adata.uns.pop("hvg", None)
    else:
        adata.var["highly_variable"] = True
    adata.uns.pop("log1p", None)
    if scale:
        adata.X = adata.X.toarray()
        sc.pp.scale(adata, max_value=10)
    adata.uns["weinreb2020"] = {
        "target_sum": 1e4,
        "n_top_genes": -1 if n_top_genes is None else int(n_top_genes),
        "scaled": bool(scale),
        "n_clones": int(len(used)),
        "urls": {k: urls[k] or str(REGISTRY["weinreb2020"][k]["url"]) for k in urls},
    }
    return adata


def _top_n(score: np.ndarray, n: int) -> np.ndarray:
    """Mask of exactly ``n`` entries with the highest ``score``; ties go to the earlier entry, NaN ranks last.

    scanpy's ``n_top_genes`` keeps every gene tied with the n-th score, so it can return more than ``n``.
    """
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    keep = np.zeros(len(score), dtype=bool)
    keep[np.argsort(-score, kind="stable")[:n]] = True
    return keep


# ---------------------------------------------------------------------------------------------------------------------
# Perturb-seq (scPerturb harmonised files)
# ---------------------------------------------------------------------------------------------------------------------


def _read_h5ad_sparse(file: Path, chunk: int = 8192) -> AnnData:
    """Read an ``.h5ad`` with ``X`` as CSR float32, converting a dense on-disk ``X`` block by block."""
    import anndata
    import h5py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*names are not unique")
        backed = anndata.read_h5ad(file, backed="r")
    try:
        X = backed.X
        if isinstance(X, h5py.Dataset):
            blocks = [
                sparse.csr_matrix(np.asarray(X[i : i + chunk], dtype=np.float32)) for i in range(0, X.shape[0], chunk)
            ]
            matrix = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix(X.shape, dtype=np.float32)
        elif hasattr(X, "to_memory"):
            matrix = sparse.csr_matrix(X.to_memory(), dtype=np.float32)
        else:
            matrix = sparse.csr_matrix(np.asarray(X), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*names are not unique")
            adata = AnnData(
                matrix,
                obs=backed.obs.copy(),
                var=backed.var.copy(),
                obsm={k: v if sparse.issparse(v) else np.asarray(v) for k, v in backed.obsm.items()},
            )
    finally:
        backed.file.close()
    return adata


def _first_column(obs: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in obs.columns), None)


def _standardise_perturbseq(adata: AnnData, *, default_cell_type: str, normalize: bool) -> AnnData:
    key = _first_column(adata.obs, ("perturbation", "gene", "perturbation_name", "target_gene", "condition"))
    if key is None:
        raise ValueError(
            "Cannot find the perturbation column (one of 'perturbation', 'gene', 'perturbation_name', "
            f"'target_gene', 'condition') in obs; got {list(adata.obs.columns)}."
        )
    raw = adata.obs[key].astype(str).to_numpy()
    is_control = np.isin(np.char.lower(raw.astype(str)), list(_CONTROL_LABELS))
    if not is_control.any():
        raise ValueError(f"obs[{key!r}] has no control cells (labels {sorted(_CONTROL_LABELS)}, any case).")
    labels = np.where(is_control, "control", raw)
    if key == "perturbation" and not np.array_equal(labels, raw):
        adata.obs["perturbation_raw"] = pd.Categorical(raw)
    others = sorted(set(labels[~is_control]))
    adata.obs["perturbation"] = pd.Categorical(labels, categories=["control", *others])
    adata.obs["is_control"] = is_control
    ct_key = _first_column(adata.obs, ("cell_type", "celltype", "cell_line"))
    cell_type = (
        adata.obs[ct_key].astype(str).to_numpy() if ct_key is not None else np.full(adata.n_obs, default_cell_type)
    )
    adata.obs["cell_type"] = pd.Categorical(cell_type)
    adata.obs_names_make_unique()
    adata.var_names = adata.var_names.astype(str)
    adata.var_names_make_unique()
    if normalize:
        counts = adata.X.tocsr().astype(np.float32)
        adata.layers["counts"] = counts
        totals = np.asarray(counts.sum(axis=1)).ravel()
        factors = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)
        X = sparse.diags(factors) @ counts
        X = sparse.csr_matrix(X, dtype=np.float32)
        np.log1p(X.data, out=X.data)
        adata.X = X
    return adata


def _perturbseq(
    dataset: str,
    path: str | Path | None,
    url: str | None,
    known_hash: str | None,
    normalize: bool,
    default_cell_type: str,
) -> AnnData:
    if url is not None and not isinstance(url, str):
        raise ValueError(f"`url` must be a URL string or None; got {url!r}.")
    if known_hash != _FROM_REGISTRY:
        known_hash = _check_known_hash("known_hash", known_hash)
    if not isinstance(normalize, bool | np.bool_):
        raise ValueError(f"`normalize` must be True or False; got {normalize!r}.")
    file = _fetch(dataset, "h5ad", path=path, url=url, known_hash=known_hash)
    adata = _standardise_perturbseq(_read_h5ad_sparse(file), default_cell_type=default_cell_type, normalize=normalize)
    adata.uns[dataset] = {
        "url": url or str(REGISTRY[dataset]["h5ad"]["url"]),
        "file": str(REGISTRY[dataset]["h5ad"]["fname"]),
        "normalized": bool(normalize),
        "target_sum": 1e4,
    }
    return adata


def replogle2022_k562_essential(
    path: str | Path | None = None,
    url: str | None = None,
    *,
    normalize: bool = True,
    known_hash: str | None = _FROM_REGISTRY,
) -> AnnData:
    """Replogle et al. 2022 K562 essential-gene CRISPRi Perturb-seq (scPerturb harmonisation).

    Downloads ``ReplogleWeissman2022_K562_essential.h5ad`` (about 1.5 GB) from scPerturb's Zenodo record
    10044268, the file behind pertpy's ``replogle_2022_k562_essential``: about 310,000 K562 cells x 8,563
    genes, raw UMI counts (stored dense on disk; read here block by block into a sparse matrix), one
    perturbation per cell (a targeted gene, or ``"control"`` for non-targeting guides; multi-guide cells
    carry joined labels, see ``obs["nperts"]``). The file is verified against the MD5 that Zenodo lists for
    it. The GDE paper used the authors' own processing of this screen (figshare ``K562_essential_raw_
    singlecell_01.h5ad``, control label ``"non-targeting"`` in ``obs["gene"]``); pass its URL as ``url``
    with ``known_hash=None`` to load that file with the same standardisation.

    Parameters
    ----------
    path
        Cache folder (the file goes to ``path / "replogle2022_k562_essential"``). Default
        ``pooch.os_cache("scgde")``.
    url
        Mirror URL of the file. Default: the scPerturb Zenodo URL.
    normalize
        Keep the raw counts in ``layers["counts"]`` and set ``X`` to ``log1p`` of counts normalised to
        10,000 per cell. With ``False``, ``X`` holds the raw counts.
    known_hash
        Checksum (``"md5:<hex>"`` or ``"sha256:<hex>"``) to verify instead of the registered one, or ``None``
        to trust the first download (its SHA256 is recorded and checked on later loads).

    Returns
    -------
    AnnData (``X`` sparse CSR float32) with the file's own columns plus ``obs["perturbation"]``
    (categorical, control cells labelled ``"control"`` whatever the file calls them, first category),
    ``obs["is_control"]`` (bool) and ``obs["cell_type"]`` (``"K562"``); ``layers["counts"]`` when
    ``normalize``; ``uns["replogle2022_k562_essential"]`` with the source.

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.replogle2022_k562_essential()  # doctest: +SKIP
    >>> adata.obs["perturbation"].value_counts().head()  # doctest: +SKIP
    """
    return _perturbseq("replogle2022_k562_essential", path, url, known_hash, normalize, default_cell_type="K562")


def norman2019(
    path: str | Path | None = None,
    url: str | None = None,
    *,
    normalize: bool = True,
    known_hash: str | None = _FROM_REGISTRY,
) -> AnnData:
    """Norman et al. 2019 K562 CRISPRa Perturb-seq of single and double gene activations (scPerturb).

    Downloads ``NormanWeissman2019_filtered.h5ad`` (about 110,000 cells x 33,000 genes, raw UMI counts)
    from scPerturb's Zenodo record 10044268 and verifies it against the MD5 that Zenodo lists for it.
    ``obs["perturbation"]`` is a single activated gene (``"KLF1"``), a pair joined by ``"_"``
    (``"CBL_CNN1"``; scPerturb's convention, GEARS writes ``"CBL+CNN1"``) or ``"control"``; ``obs["nperts"]``
    counts the targeted genes. pertpy's ``norman_2019`` loads a different processing of the same screen
    (figshare file 34027562).

    Parameters
    ----------
    path
        Cache folder (the file goes to ``path / "norman2019"``). Default ``pooch.os_cache("scgde")``.
    url
        Mirror URL of the file. Default: the scPerturb Zenodo URL.
    normalize
        Keep the raw counts in ``layers["counts"]`` and set ``X`` to ``log1p`` of counts normalised to
        10,000 per cell. With ``False``, ``X`` holds the raw counts.
    known_hash
        Checksum to verify instead of the registered one, or ``None`` to trust the first download.

    Returns
    -------
    AnnData (``X`` sparse CSR float32) with the file's own columns plus ``obs["perturbation"]``
    (categorical, ``"control"`` first), ``obs["is_control"]`` and ``obs["cell_type"]`` (``"K562"``);
    ``layers["counts"]`` when ``normalize``; ``uns["norman2019"]`` with the source.

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.norman2019()  # doctest: +SKIP
    >>> doubles = adata[adata.obs["perturbation"].str.contains("_")]  # doctest: +SKIP
    """
    return _perturbseq("norman2019", path, url, known_hash, normalize, default_cell_type="K562")


def registry_table() -> pd.DataFrame:
    """The download registry as a table (dataset, file key, file name, URL, checksum and its source).

    Examples
    --------
    >>> from scgde.datasets._downloads import registry_table
    >>> registry_table().loc["weinreb2020"].shape[0]
    4
    """
    rows: list[dict[str, Any]] = [
        {"dataset": d, "file": k, **{f: e[f] for f in ("fname", "url", "known_hash", "hash_source")}}
        for d, files in REGISTRY.items()
        for k, e in files.items()
    ]
    return pd.DataFrame(rows).set_index(["dataset", "file"])


# ---------------------------------------------------------------------------------------------------------------------
# Kang 2018 (scGen's validation split)
# ---------------------------------------------------------------------------------------------------------------------

#: the name of the Kang 2018 file in a local data folder
KANG2018_FILE = "kang2018_valid.h5ad"


def kang2018(
    path: str | Path | None = None,
    url: str | None = None,
    *,
    cache: str | Path | None = None,
    known_hash: str | None = _FROM_REGISTRY,
) -> AnnData:
    """Kang et al. 2018 IFN-beta stimulated and control PBMCs: scGen's 1,975-cell validation split.

    1,975 cells x 6,998 genes, log-normalised expression; 936 control and 1,039 stimulated cells of 7 cell
    types (CD4T, CD14+Mono, B, CD8T, NK, FCGR3A+Mono, Dendritic). The data are from GEO GSE96583 (Kang et
    al., *Nature Biotechnology* 36, 2018); the file is the ``data/valid.h5ad`` the scGen authors distributed
    in theislab/scgen (commit ``dd7e178``). With ``path``, that local file is read and nothing is downloaded;
    without it, the file (2.3 MB) is downloaded once into the cache and verified against the SHA256 in
    :data:`REGISTRY`. The file itself is never modified.

    Parameters
    ----------
    path
        The ``.h5ad`` file, or a folder holding ``kang2018_valid.h5ad``. ``None`` downloads the file.
    url
        Mirror URL of the file, used only when ``path`` is ``None``. Default: the scGen commit's URL.
    cache
        Cache folder of the download (the file goes to ``cache / "kang2018"``). Default
        ``pooch.os_cache("scgde")`` or ``$SCGDE_DATA_DIR``.
    known_hash
        Checksum to verify the download against instead of the registered one, or ``None`` to trust the
        first download.

    Returns
    -------
    AnnData with ``obs["condition"]`` (categorical ``["control", "stimulated"]``) and ``obs["cell_type"]``
    (categorical), the file's other columns, embeddings and graphs, ``uns["kang2018"]["file"]``, and
    ``layers["counts"]``: the integer UMI counts behind ``X`` over its 6,998 genes (``X`` is
    ``log1p(s_i * counts)`` with one size factor per cell; a cell's smallest positive ``expm1(X)`` is one count,
    and the quotients are whole numbers to within 0.001), for count models and for evaluators that need counts.

    Raises
    ------
    FileNotFoundError
        When ``path`` names no file (nor a folder holding ``kang2018_valid.h5ad``).

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.kang2018("data/kang2018_ifnb")  # doctest: +SKIP
    >>> adata.obs.groupby(["cell_type", "condition"], observed=True).size()  # doctest: +SKIP
    """
    from ._perturbation import read_kang2018  # reads and standardises one explicit file

    if path is None:
        if url is not None and not isinstance(url, str):
            raise ValueError(f"`url` must be a URL string or None; got {url!r}.")
        if known_hash != _FROM_REGISTRY:
            known_hash = _check_known_hash("known_hash", known_hash)
        return read_kang2018(_fetch("kang2018", "h5ad", path=cache, url=url, known_hash=known_hash))
    if not isinstance(path, str | Path):
        raise ValueError(f"`path` must be a file or folder path (str or Path) or None; got {path!r}.")
    path = Path(path).expanduser()
    file = path / KANG2018_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"Kang 2018 file not found: {file} does not exist. Pass the path of scGen's `valid.h5ad` (Kang et al. "
            f"2018, GEO GSE96583) or of a folder holding it as {KANG2018_FILE!r}, or path=None to download it."
        )
    return read_kang2018(file)
