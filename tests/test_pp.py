from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scgde
from scgde.pp import clones_from_matrix

#: small real datasets live beside the repository (same convention as conftest.SHARED_DATA)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LARRY = ("larry_cospar_subset",)
MEGATRON = ("megatron_lineage",)
# the MEGATRON fixtures are old-format h5ad files
pytestmark = pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")


def _shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


# --------------------------------------------------------------------------- synthetic fixture
#
#        k0 k1 k2 k3
#   c0    1  .  .  .     one clone
#   c1    1  .  .  .
#   c2    2  .  .  .     counts, still one clone
#   c3    .  .  .  .     no clone
#   c4    .  1  3  .     two clones, max -> k2
#   c5    .  2  2  .     two clones, tied max -> dropped
#   c6    .  1  .  .     k1 (its only single cell)
#   c7    .  .  .  1     k3, a clone of one cell
#   c8    .  .  .  0     explicit stored zero: no clone
DENSE = np.array(
    [
        [1, 0, 0, 0],
        [1, 0, 0, 0],
        [2, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 1, 3, 0],
        [0, 2, 2, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ]
)
NAMES = ["k0", "k1", "k2", "k3"]
CELLS = [f"c{i}" for i in range(9)]
N = None  # a missing label


def _sparse_with_explicit_zero() -> sp.csr_matrix:
    m = sp.csr_matrix(DENSE)
    indptr = m.indptr.copy()
    indptr[-1] += 1  # the explicit zero belongs to the last row (c8)
    m = sp.csr_matrix((np.append(m.data, 0), np.append(m.indices, 3), indptr), shape=m.shape)
    assert m.nnz == np.count_nonzero(DENSE) + 1 == 10 and m[8].nnz == 1
    return m


@pytest.fixture
def adata():
    x = np.arange(9 * 3, dtype=np.float32).reshape(9, 3)
    a = ad.AnnData(x, obs=pd.DataFrame(index=CELLS))
    a.layers["counts"] = x.copy()
    a.obsm["X_clone"] = _sparse_with_explicit_zero()
    a.obsm["X_pca"] = np.zeros((9, 2))
    return a


def _labels(adata, key="clone") -> list:
    return [None if pd.isna(v) else v for v in adata.obs[key].tolist()]


EXPECTED = {
    # (multi, min_cells): (labels, kept categories, summary counts)
    ("drop", 1): (
        ["k0", "k0", "k0", N, N, N, "k1", "k3", N],
        ["k0", "k1", "k3"],
        {"n_cells_multi_resolved": 0, "n_cells_small_clone": 0, "n_cells_labelled": 5, "n_clones_nonempty": 3},
    ),
    ("max", 1): (
        ["k0", "k0", "k0", N, "k2", N, "k1", "k3", N],
        ["k0", "k1", "k2", "k3"],
        {"n_cells_multi_resolved": 1, "n_cells_small_clone": 0, "n_cells_labelled": 6, "n_clones_nonempty": 4},
    ),
    ("drop", 2): (
        ["k0", "k0", "k0", N, N, N, N, N, N],
        ["k0"],
        {"n_cells_multi_resolved": 0, "n_cells_small_clone": 2, "n_cells_labelled": 3, "n_clones_nonempty": 3},
    ),
    ("max", 2): (
        ["k0", "k0", "k0", N, N, N, N, N, N],
        ["k0"],
        {"n_cells_multi_resolved": 1, "n_cells_small_clone": 3, "n_cells_labelled": 3, "n_clones_nonempty": 4},
    ),
    ("max", 3): (
        ["k0", "k0", "k0", N, N, N, N, N, N],
        ["k0"],
        {"n_cells_multi_resolved": 1, "n_cells_small_clone": 3, "n_cells_labelled": 3, "n_clones_nonempty": 4},
    ),
    ("drop", 4): (
        [N] * 9,
        [],
        {"n_cells_multi_resolved": 0, "n_cells_small_clone": 5, "n_cells_labelled": 0, "n_clones_nonempty": 3},
    ),
}


@pytest.mark.parametrize(("multi", "min_cells"), list(EXPECTED))
def test_synthetic_labels_and_summary(adata, multi, min_cells):
    labels, kept, counts = EXPECTED[multi, min_cells]
    clones_from_matrix(adata, "X_clone", multi=multi, min_cells=min_cells, clone_names=NAMES)
    assert _labels(adata) == labels
    assert isinstance(adata.obs["clone"].dtype, pd.CategoricalDtype)
    assert list(adata.obs["clone"].cat.categories) == kept
    s = adata.uns["clone_summary"]
    assert s == {
        "n_cells": 9,
        "n_cells_in_one_clone": 5,
        "n_cells_unassigned": 2,
        "n_cells_multi": 2,
        **counts,
        "n_clones": 4,
        "n_clones_kept": len(kept),
        "parameters": {
            "clones": "X_clone",
            "source": "obsm",
            "multi": multi,
            "min_cells": min_cells,
            "key_added": "clone",
        },
    }
    assert s["n_cells"] == s["n_cells_unassigned"] + s["n_cells_in_one_clone"] + s["n_cells_multi"]
    assert s["n_cells_labelled"] == s["n_cells_in_one_clone"] + s["n_cells_multi_resolved"] - s["n_cells_small_clone"]


def test_multi_error_counts_cells(adata):
    with pytest.raises(ValueError, match=r"2 of 9 cells belong to several clones \(e\.g\. 'c4', 'c5'\)"):
        clones_from_matrix(adata, multi="error")
    assert "clone" not in adata.obs
    # no multi-clone cell: "error" behaves like "drop"
    clones_from_matrix(adata, DENSE[[0, 1, 2, 3, 6, 7, 8, 0, 1]], multi="error")
    assert adata.uns["clone_summary"]["n_cells_multi"] == 0


def test_min_cells_zero_keeps_all(adata):
    clones_from_matrix(adata, min_cells=0)
    assert _labels(adata) == ["clone_0"] * 3 + [N, N, N, "clone_1", "clone_3", N]


@pytest.mark.parametrize(
    "make",
    [
        lambda: DENSE,
        lambda: DENSE.astype(bool),
        lambda: DENSE.astype(np.float32),
        lambda: sp.csc_matrix(DENSE),
        lambda: sp.csr_array(DENSE),
        lambda: sp.coo_matrix(DENSE),
        _sparse_with_explicit_zero,
    ],
    ids=["dense", "bool", "float32", "csc", "csr_array", "coo", "explicit_zero"],
)
def test_matrix_inputs(adata, make):
    m = make()
    clones_from_matrix(adata, m, multi="max")
    expected = ["clone_0"] * 3 + [N, "clone_2", N, "clone_1", "clone_3", N]
    if m.dtype == bool:  # binary: every multi-clone cell is a tie
        expected[4] = N
    assert _labels(adata) == expected
    assert adata.uns["clone_summary"]["parameters"]["source"] == "matrix"
    # the same matrix stored in .obsm (which takes no COO)
    adata.obsm["other"] = m.tocsr() if sp.issparse(m) and m.format == "coo" else m
    clones_from_matrix(adata, "other", multi="max", key_added="other")
    assert _labels(adata, "other") == expected


def test_obsm_dataframe_names_clones(adata):
    adata.obsm["df"] = pd.DataFrame(DENSE, index=adata.obs_names, columns=["a", "b", "c", "d"])
    clones_from_matrix(adata, "df")
    assert _labels(adata) == ["a"] * 3 + [N, N, N, "b", "d", N]


def test_files(adata, tmp_path):
    sp.save_npz(tmp_path / "c.npz", sp.csr_matrix(DENSE))
    np.save(tmp_path / "c.npy", DENSE)
    np.savez(tmp_path / "dense.npz", DENSE)
    expected = ["clone_0"] * 3 + [N, N, N, "clone_1", "clone_3", N]
    for path in ["c.npz", "c.npy", "dense.npz"]:
        clones_from_matrix(adata, str(tmp_path / path))
        assert _labels(adata) == expected, path
        assert adata.uns["clone_summary"]["parameters"] == {
            "clones": str(tmp_path / path),
            "source": "file",
            "multi": "drop",
            "min_cells": 1,
            "key_added": "clone",
        }
    clones_from_matrix(adata, tmp_path / "c.npz")  # a Path works too
    assert _labels(adata) == expected


def test_copy_semantics(adata):
    x, layer, clone = adata.X.copy(), adata.layers["counts"].copy(), adata.obsm["X_clone"].copy()
    out = clones_from_matrix(adata, copy=True, key_added="lab")
    assert isinstance(out, ad.AnnData) and out is not adata
    assert "lab" not in adata.obs and "lab_summary" not in adata.uns
    assert out.obs["lab"].notna().sum() == 5
    # inputs untouched, including the explicit zero stored in the clone matrix
    for a in (adata, out):
        np.testing.assert_array_equal(a.X, x)
        np.testing.assert_array_equal(a.layers["counts"], layer)
        assert a.obsm["X_clone"].nnz == clone.nnz == 10
        np.testing.assert_array_equal(a.obsm["X_clone"].data, clone.data)
    assert clones_from_matrix(adata) is None
    assert adata.obsm["X_clone"].nnz == 10
    np.testing.assert_array_equal(adata.X, x)


def test_summary_is_logged_and_survives_h5ad(adata, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="scgde.pp"):
        clones_from_matrix(adata, min_cells=2)
    msg = caplog.text
    assert "9 cells, 5 in one clone, 2 in none, 2 in several" in msg
    assert "4 clones, 3 with cells, 1 kept" in msg
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["clone_summary"] == adata.uns["clone_summary"]
    assert _labels(back) == _labels(adata)


# --------------------------------------------------------------------------- tables


def _table(adata) -> pd.DataFrame:
    rows = []
    for i, j in zip(*np.nonzero(DENSE), strict=True):
        rows += [(adata.obs_names[i], NAMES[j])] * int(DENSE[i, j])  # a pair listed k times counts k
    return pd.DataFrame(rows, columns=["cell", "clone"]).sample(frac=1, random_state=0)


@pytest.mark.parametrize("multi", ["drop", "max"])
def test_table_matches_matrix(adata, multi):
    clones_from_matrix(adata, _table(adata), multi=multi, key_added="tab")
    clones_from_matrix(adata, DENSE, multi=multi, clone_names=NAMES)
    assert _labels(adata, "tab") == _labels(adata)
    s = adata.uns["tab_summary"]
    assert s["n_table_rows"] == DENSE.sum() and s["n_table_rows_unmatched"] == 0
    assert s["n_cells_unassigned"] == 2 and s["n_cells_multi"] == 2 and s["n_clones"] == 4
    assert s["parameters"]["table_index"] == "obs_names" and s["parameters"]["source"] == "table"


def test_table_files_and_unmatched_cells(adata, tmp_path):
    table = pd.concat([_table(adata), pd.DataFrame({"cell": ["elsewhere", None], "clone": ["k9", "k0"]})])
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_csv(tmp_path / "t.tsv.gz", sep="\t", index=False)
    table.to_csv(tmp_path / "t.txt", sep="\t", index=False)
    for name in ["t.csv", "t.tsv.gz", "t.txt"]:
        with pytest.warns(UserWarning, match="1 of 15 table rows name cells that are not in adata"):
            clones_from_matrix(adata, tmp_path / name, multi="max")
        assert _labels(adata) == ["k0"] * 3 + [N, "k2", N, "k1", "k3", N], name
        s = adata.uns["clone_summary"]
        # the row with a missing cell id is ignored; k9 (only on an unmatched cell) counts as a clone without cells
        assert (s["n_table_rows"], s["n_table_rows_unmatched"], s["n_clones"], s["n_clones_nonempty"]) == (15, 1, 5, 4)


def test_table_positions(adata):
    table = _table(adata)
    table["cell"] = "cell_" + pd.Series(adata.obs_names.get_indexer(table["cell"]), index=table.index).astype(str)
    with warnings.catch_warnings():  # scgde's own warnings are errors (third-party ones, e.g. pandas', are not)
        warnings.filterwarnings("error", module="scgde")  # raised in scgde's code
        warnings.filterwarnings("error", module=__name__)  # or pointing at this call
        clones_from_matrix(adata, table, table_index="position", multi="max", key_added="pos")
    with pytest.warns(UserWarning, match="read as row positions"):
        clones_from_matrix(adata, table, multi="max", key_added="auto")
    clones_from_matrix(adata, _table(adata), multi="max")
    assert _labels(adata, "pos") == _labels(adata, "auto") == _labels(adata)
    assert adata.uns["auto_summary"]["parameters"]["table_index"] == "position"
    # plain integers work as positions too
    table["cell"] = table["cell"].str.removeprefix("cell_").astype(int)
    clones_from_matrix(adata, table, table_index="position", multi="max", key_added="int")
    assert _labels(adata, "int") == _labels(adata)


def test_table_errors(adata, tmp_path):
    table = _table(adata)
    with pytest.raises(ValueError, match="exactly two columns.*it has 3"):
        clones_from_matrix(adata, table.assign(extra=1))
    with pytest.raises(ValueError, match="exactly two columns.*it has 1"):
        clones_from_matrix(adata, table[["cell"]])
    with pytest.raises(ValueError, match="no cell id of the table matches adata.obs_names"):
        clones_from_matrix(adata, table.assign(cell=table["cell"] + "_x"))  # c0_x ... not positions either
    positional = table.assign(cell="cell_" + table["cell"].str[1:])
    with pytest.raises(ValueError, match="no cell id .* table_index='position'"):
        clones_from_matrix(adata, positional, table_index="obs_names")
    with pytest.raises(ValueError, match="is a signed integer"):
        clones_from_matrix(adata, positional.assign(cell=-1), table_index="position")
    with pytest.raises(ValueError, match="out of range for n_obs=9"):
        clones_from_matrix(adata, positional.assign(cell="cell_12"), table_index="position")
    with pytest.raises(ValueError, match="clone_names cannot be used with a cell/clone table"):
        clones_from_matrix(adata, table, clone_names=NAMES)
    pd.DataFrame({"a": [1], "b": [2], "c": [3]}).to_csv(tmp_path / "three.csv", index=False)
    with pytest.raises(ValueError, match="three.csv.*exactly two columns"):
        clones_from_matrix(adata, tmp_path / "three.csv")


def test_errors(adata, tmp_path):
    with pytest.raises(
        KeyError, match=r"clones='X_clones' is not a key of adata.obsm \(available: \['X_clone', 'X_pca'\]"
    ):
        clones_from_matrix(adata, "X_clones")
    with pytest.raises(ValueError, match="clone_names has 4 names but the clone matrix has 2 columns"):
        clones_from_matrix(adata, "X_pca", clone_names=NAMES)
    with pytest.raises(ValueError, match="the matrix has 8 rows but adata has n_obs=9"):
        clones_from_matrix(adata, DENSE[:8])
    with pytest.raises(ValueError, match="2-D"):
        clones_from_matrix(adata, np.zeros(9))
    with pytest.raises(ValueError, match="negative"):
        clones_from_matrix(adata, -DENSE)
    with pytest.raises(ValueError, match="non-finite"):
        clones_from_matrix(adata, np.full((9, 2), np.nan))
    with pytest.raises(ValueError, match="clone_names has 2 names but the clone matrix has 4 columns"):
        clones_from_matrix(adata, clone_names=["a", "b"])
    with pytest.raises(ValueError, match="clone_names must be unique"):
        clones_from_matrix(adata, clone_names=["a", "a", "b", "c"])
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        clones_from_matrix(adata, str(tmp_path / "missing.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="bad.npz' could not be read"):
        clones_from_matrix(adata, tmp_path / "bad.npz")
    (tmp_path / "c.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown file type '.h5'"):
        clones_from_matrix(adata, tmp_path / "c.h5")
    with pytest.raises(ValueError, match="multi='first' is not one of"):
        clones_from_matrix(adata, multi="first")
    with pytest.raises(ValueError, match="min_cells=-1"):
        clones_from_matrix(adata, min_cells=-1)
    with pytest.raises(ValueError, match="table_index='rows'"):
        clones_from_matrix(adata, table_index="rows")
    with pytest.raises(TypeError, match="clones must be"):
        clones_from_matrix(adata, 3)
    assert "clone" not in adata.obs and "clone_summary" not in adata.uns


def test_exported():
    assert scgde.pp.clones_from_matrix is clones_from_matrix
    assert "clones_from_matrix" in scgde.pp.__all__


# --------------------------------------------------------------------------- real data


def _same_partition(a: pd.Series, b: pd.Series) -> bool:
    """Same cells unlabelled, and a one-to-one correspondence between the labels."""
    a, b = a.astype(object), b.astype(object)
    if not (a.isna() == b.isna()).all():
        return False
    pairs = pd.DataFrame({"a": a, "b": b}).dropna().drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique


def test_larry_obsm_and_table():
    a = ad.read_h5ad(_shared(*LARRY, "test_adata_preprocessed.h5ad"))
    table = _shared(*LARRY, "clonal_data_in_table_format.txt")
    clones_from_matrix(a, "X_clone")
    s = a.uns["clone_summary"]
    assert (s["n_cells"], s["n_cells_in_one_clone"], s["n_cells_unassigned"], s["n_cells_multi"]) == (781, 781, 0, 0)
    assert s["n_clones"] == s["n_clones_kept"] == a.obs["clone"].nunique() == 339

    # Cell_ID = cell_<row position>, Clone_ID = clone_<column>: no id is an obs name ('10', '13', ...)
    clones_from_matrix(a, table, table_index="position", key_added="table")
    t = a.uns["table_summary"]
    assert (t["n_table_rows"], t["n_table_rows_unmatched"], t["n_clones"], t["n_cells_unassigned"]) == (781, 0, 339, 0)
    assert _same_partition(a.obs["clone"], a.obs["table"])
    assert (a.obs["clone"].astype(str) == a.obs["table"].astype(str)).all()  # even the names agree
    with pytest.warns(UserWarning, match="read as row positions"):
        clones_from_matrix(a, table, key_added="auto")
    assert (a.obs["auto"].astype(str) == a.obs["table"].astype(str)).all()

    # 185 clones have >= 2 cells (SOURCE.md)
    clones_from_matrix(a, "X_clone", min_cells=2, key_added="big")
    b = a.uns["big_summary"]
    assert (b["n_clones_kept"], b["n_cells_small_clone"], b["n_cells_labelled"]) == (185, 154, 627)


def test_larry_table_by_name_trap():
    """CoSpar renames cells with cell_id.txt (cell_<obs name>); the table's ids are positions, so only 87 collide."""
    a = ad.read_h5ad(_shared(*LARRY, "test_adata_preprocessed.h5ad"))
    table = _shared(*LARRY, "clonal_data_in_table_format.txt")
    clones_from_matrix(a, "X_clone")
    a.obs_names = pd.read_csv(_shared(*LARRY, "cell_id.txt"))["Cell_ID"].to_numpy()
    with pytest.warns(UserWarning, match="694 of 781 table rows name cells that are not in adata"):
        clones_from_matrix(a, table, key_added="by_name")
    assert a.uns["by_name_summary"]["n_cells_labelled"] == 87
    labelled = a.obs["by_name"].notna()
    assert (a.obs["by_name"][labelled].astype(str) != a.obs["clone"][labelled].astype(str)).all()  # all wrong


def test_weinreb_npz_matches_obsm():
    a = ad.read_h5ad(_shared(*MEGATRON, "rnaseq_weinreb20.h5ad"))
    clones_from_matrix(a, _shared(*MEGATRON, "clones_weinreb20.npz"), key_added="npz")
    clones_from_matrix(a, "X_clone", key_added="obsm")
    assert _same_partition(a.obs["npz"], a.obs["obsm"])
    for key in ("npz", "obsm"):
        s = a.uns[f"{key}_summary"]
        assert (s["n_cells"], s["n_cells_unassigned"], s["n_cells_multi"], s["n_clones"]) == (100, 0, 0, 56)
    clones_from_matrix(a, "X_clone", min_cells=2, key_added="big")
    assert a.uns["big_summary"]["n_clones_kept"] == 22  # SOURCE.md: 22 clones with >= 2 cells


def test_lareau_unassigned_cells():
    a = ad.read_h5ad(_shared(*MEGATRON, "chromVAR_lareau_2021.h5ad"))
    path = _shared(*MEGATRON, "clones_lareau_2021.npz")
    m = sp.load_npz(path)
    clones_from_matrix(a, path)
    s = a.uns["clone_summary"]
    n_per_cell = np.asarray((m != 0).sum(1)).ravel()
    assert s["n_cells_unassigned"] == int((n_per_cell == 0).sum()) == a.obs["clone"].isna().sum()
    # every cell is in exactly one clone here; it is the clones that are mostly empty (162 of 197)
    assert (s["n_cells_unassigned"], s["n_cells_in_one_clone"], s["n_cells_multi"]) == (0, 100, 0)
    assert (s["n_clones"], s["n_clones_nonempty"], s["n_clones_kept"]) == (197, 35, 35)
    assert list(a.obs["clone"].value_counts().head(3)) == [32, 9, 8]
    clones_from_matrix(a, path, min_cells=2)
    assert a.uns["clone_summary"]["n_clones_kept"] == 15


def test_biddy_trajectory_matrix_is_mostly_multi():
    """clone_traj_biddy18.npz is not a clean cell-by-clone matrix: 5 cells are in all 50 columns, 44 in none."""
    a = ad.read_h5ad(_shared(*MEGATRON, "rnaseq_biddy18.h5ad"))
    clones_from_matrix(a, _shared(*MEGATRON, "clone_traj_biddy18.npz"))
    s = a.uns["clone_summary"]
    assert (s["n_cells_unassigned"], s["n_cells_in_one_clone"], s["n_cells_multi"], s["n_clones_kept"]) == (44, 1, 5, 1)
    with pytest.raises(ValueError, match="5 of 50 cells belong to several clones"):
        clones_from_matrix(a, _shared(*MEGATRON, "clone_traj_biddy18.npz"), multi="error")
