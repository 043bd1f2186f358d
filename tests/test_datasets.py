"""Synthetic dataset families: layout, reproducibility, agreement with the true parameters, argument checks."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scgde.datasets import (
    bdtnp_embryo,
    digits_mixtures,
    digits_split_indices,
    intestine_zonation,
    simplex_grid,
    synthetic_gmm,
    synthetic_multinomial,
    synthetic_mvn,
    synthetic_poisson,
)

# (factory, small kwargs, truth keys with their expected leading shapes after n_sets)
FAMILIES = {
    "mvn": (synthetic_mvn, {"n_sets": 6, "set_size": 20, "dim": 3}, {"means": (3,), "covs": (3, 3)}, 3),
    "gmm": (
        synthetic_gmm,
        {"n_sets": 6, "set_size": 20, "dim": 3, "n_components": 4},
        {"weights": (4,), "means": (4, 3), "covs": (4, 3, 3)},
        3,
    ),
    "multinomial": (
        synthetic_multinomial,
        {"n_sets": 6, "set_size": 20, "n_categories": 4},
        {"probabilities": (4,)},
        4,
    ),
    "poisson": (synthetic_poisson, {"n_sets": 6, "set_size": 20, "dim": 2}, {"rates": (2,)}, 2),
    "digits": (digits_mixtures, {"n_sets": 6, "set_size": 20, "classes": (3, 5, 7, 9)}, {"proportions": (4,)}, 64),
}


def _sets(adata):
    codes = adata.obs["set"].cat.codes.to_numpy()
    return [adata.X[codes == i] for i in range(len(adata.obs["set"].cat.categories))]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_layout(family, tmp_path):
    fn, kwargs, keys, n_vars = FAMILIES[family]
    adata = fn(**kwargs, seed=1)
    n_sets, size = kwargs["n_sets"], kwargs["set_size"]
    assert adata.shape == (n_sets * size, n_vars)
    assert adata.X.dtype == np.float32
    assert adata.obs["set"].dtype == "category"
    truth = adata.uns["synthetic"]
    assert truth["family"] == family
    assert list(truth["sets"]) == list(adata.obs["set"].cat.categories)
    assert (adata.obs["set"].value_counts() == size).all()
    for key, shape in keys.items():
        assert truth[key].shape == (n_sets, *shape), key
    assert truth["params"]["seed"] == 1
    # the truth survives an h5ad round trip (no None or object values in uns)
    adata.write_h5ad(tmp_path / "x.h5ad")
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    for key in keys:
        np.testing.assert_array_equal(back.uns["synthetic"][key], truth[key])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_seeds(family):
    fn, kwargs, keys, _ = FAMILIES[family]
    a, b, c = fn(**kwargs, seed=3), fn(**kwargs, seed=3), fn(**kwargs, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    for key in keys:
        np.testing.assert_array_equal(a.uns["synthetic"][key], b.uns["synthetic"][key])
        assert not np.array_equal(a.uns["synthetic"][key], c.uns["synthetic"][key])
    assert not np.array_equal(a.X, c.X)


def test_mvn_moments():
    adata = synthetic_mvn(n_sets=3, set_size=20000, dim=2, scale=0.5, seed=0)
    truth = adata.uns["synthetic"]
    for x, mu, cov in zip(_sets(adata), truth["means"], truth["covs"], strict=True):
        se = np.sqrt(np.diag(cov) / len(x))
        assert np.all(np.abs(x.mean(0) - mu) < 5 * se)
        np.testing.assert_allclose(np.cov(x.T), cov, atol=0.1 * np.abs(cov).max())


def test_gmm_moments_and_components():
    adata = synthetic_gmm(n_sets=3, set_size=30000, dim=2, n_components=3, seed=0)
    truth = adata.uns["synthetic"]
    codes = adata.obs["set"].cat.codes.to_numpy()
    comp = adata.obs["component"].to_numpy()
    assert truth["covs"].shape == (3, 3, 2, 2)
    np.testing.assert_allclose(truth["weights"].sum(1), 1.0)
    for i, x in enumerate(_sets(adata)):
        w, mu, cov = truth["weights"][i], truth["means"][i], truth["covs"][i]
        n = len(x)
        mean = w @ mu
        second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
        total = second - np.outer(mean, mean)
        assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(np.diag(total) / n))
        c = comp[codes == i]
        frac = np.bincount(c, minlength=3) / n
        assert np.all(np.abs(frac - w) < 5 * np.sqrt(w * (1 - w) / n) + 1e-12)
        for k in np.flatnonzero(np.bincount(c, minlength=3) > 2000):
            xk = x[c == k]
            assert np.all(np.abs(xk.mean(0) - mu[k]) < 5 * np.sqrt(np.diag(cov[k]) / len(xk)))
            np.testing.assert_allclose(np.cov(xk.T), cov[k], atol=0.15 * np.abs(cov[k]).max())


def test_gmm_defaults_and_overlap():
    adata = synthetic_gmm(n_sets=4, set_size=10, dim=5, seed=0)
    assert adata.uns["synthetic"]["params"]["df"] == 40.0  # df0 * (dim - 1), as synthetic_mvn
    assert synthetic_gmm(n_sets=2, set_size=5, dim=5, df=10, seed=0).uns["synthetic"]["params"]["df"] == 10.0
    same = synthetic_gmm(n_sets=4, set_size=10, mean_range=(2.0, 2.0), seed=0).uns["synthetic"]["means"]
    np.testing.assert_array_equal(same, 2.0)


def test_gmm_sparse_weights_never_pick_empty_components():
    adata = synthetic_gmm(n_sets=50, set_size=200, n_components=5, alpha=0.02, seed=0)
    truth = adata.uns["synthetic"]
    codes = adata.obs["set"].cat.codes.to_numpy()
    comp = adata.obs["component"].to_numpy()
    used = np.zeros_like(truth["weights"], dtype=bool)
    used[codes, comp] = True
    assert not np.any(used & (truth["weights"] < 1e-12))


def test_multinomial_moments():
    adata = synthetic_multinomial(n_sets=20, set_size=2000, n_categories=3, n_trials=20, seed=0)
    probs = adata.uns["synthetic"]["probabilities"]
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert list(adata.var_names) == ["cat0", "cat1", "cat2"]
    for x, p in zip(_sets(adata), probs, strict=True):
        np.testing.assert_array_equal(x.sum(1), 20)
        assert np.all(x == np.round(x)) and x.min() >= 0
        se = np.sqrt(p * (1 - p) / (20 * len(x)))
        assert np.all(np.abs(x.mean(0) / 20 - p) < 5 * se + 1e-12)


def test_multinomial_asymmetric_prior_and_given_probabilities():
    spiked = synthetic_multinomial(n_sets=2000, set_size=1, alpha=(2**-5, 1, 1), seed=0)
    probs = spiked.uns["synthetic"]["probabilities"]
    np.testing.assert_allclose(probs.mean(0), np.array([2**-5, 1, 1]) / (2 + 2**-5), atol=0.03)
    np.testing.assert_allclose(spiked.uns["synthetic"]["params"]["alpha"], [2**-5, 1, 1])

    grid = simplex_grid(3, 9)
    adata = synthetic_multinomial(set_size=300, n_trials=10, probabilities=grid, seed=0)
    truth = adata.uns["synthetic"]
    assert adata.shape == (55 * 300, 3) and truth["params"]["probabilities_given"]
    np.testing.assert_allclose(truth["probabilities"], grid)
    means = np.stack([x.mean(0) for x in _sets(adata)]) / 10
    assert np.all(np.abs(means - grid) < 5 * np.sqrt(grid * (1 - grid) / 3000) + 1e-12)
    # categories with p = 0 are never drawn
    assert np.all(np.stack([x.max(0) for x in _sets(adata)])[grid == 0] == 0)


def test_simplex_grid():
    grid = simplex_grid(3, 9)
    assert grid.shape == (55, 3)
    np.testing.assert_allclose(grid.sum(1), 1.0)
    assert len(np.unique(np.round(grid * 9).astype(int), axis=0)) == 55
    np.testing.assert_allclose(grid * 9, np.round(grid * 9))
    assert grid.min() >= 0
    np.testing.assert_array_equal(grid, simplex_grid(3, 9))
    np.testing.assert_array_equal(grid[0], [0, 0, 1])
    np.testing.assert_array_equal(grid[-1], [1, 0, 0])
    assert simplex_grid(4, 5).shape == (56, 4)
    assert simplex_grid(2, 1).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert simplex_grid(1, 3).tolist() == [[1.0]]


def test_poisson_moments_and_p_zero():
    adata = synthetic_poisson(n_sets=8, set_size=5000, dim=2, rate_range=(0.0, 10.0), seed=0)
    rates = adata.uns["synthetic"]["rates"]
    assert rates.min() >= 0 and rates.max() <= 10
    for x, lam in zip(_sets(adata), rates, strict=True):
        assert np.all(x == np.round(x)) and x.min() >= 0
        assert np.all(np.abs(x.mean(0) - lam) < 5 * np.sqrt(lam / len(x)) + 1e-12)
        p0 = np.exp(-lam)
        assert np.all(np.abs((x == 0).mean(0) - p0) < 5 * np.sqrt(p0 * (1 - p0) / len(x)) + 1e-12)


def test_poisson_given_rates():
    adata = synthetic_poisson(set_size=50, rates=[0.0, 0.5, 3.0], seed=0)
    assert adata.shape == (150, 1)
    np.testing.assert_array_equal(adata.uns["synthetic"]["rates"], [[0.0], [0.5], [3.0]])
    assert np.all(_sets(adata)[0] == 0)


def test_digits_mixtures_proportions_and_pixels():
    classes = (0, 1, 2)
    adata = digits_mixtures(n_sets=40, set_size=400, classes=classes, seed=0)
    truth = adata.uns["synthetic"]
    assert adata.shape == (16000, 64)
    assert adata.X.min() >= 0 and adata.X.max() <= 1 and adata.X.max() > 0.9
    assert list(truth["classes"]) == list(classes)
    assert list(adata.obs["digit"].cat.categories) == list(classes)
    np.testing.assert_allclose(truth["proportions"].sum(1), 1.0)
    codes = adata.obs["set"].cat.codes.to_numpy()
    digit = adata.obs["digit"].to_numpy().astype(int)
    for i in range(40):
        counts = np.array([(digit[codes == i] == c).sum() for c in classes])
        np.testing.assert_array_equal(counts, truth["counts"][i])
        p = truth["proportions"][i]
        assert np.all(np.abs(counts / 400 - p) < 5 * np.sqrt(p * (1 - p) / 400) + 1e-12)

    # each row is the load_digits image named in obs["image"], with that image's label
    from sklearn.datasets import load_digits

    data = load_digits()
    image = adata.obs["image"].to_numpy()
    np.testing.assert_allclose(adata.X, data.data[image] / 16, atol=1e-6)
    np.testing.assert_array_equal(data.target[image], digit)


def test_digits_given_proportions_and_splits():
    grid = simplex_grid(3, 9)
    adata = digits_mixtures(set_size=90, proportions=grid, split="test", seed=0)
    truth = adata.uns["synthetic"]
    assert adata.shape == (55 * 90, 64)
    np.testing.assert_allclose(truth["proportions"], grid)
    assert np.all(truth["counts"][grid == 0] == 0)

    train, test, every = (digits_split_indices(s) for s in ("train", "test", "all"))
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(every) == 1797
    assert np.isin(adata.obs["image"].to_numpy(), test).all()
    held_in = digits_mixtures(n_sets=20, set_size=50, split="train", seed=0)
    assert np.isin(held_in.obs["image"].to_numpy(), train).all()
    # the split is stratified: each class is halved
    from sklearn.datasets import load_digits

    labels = load_digits().target
    assert np.all(np.abs(np.bincount(labels[train]) - np.bincount(labels[test])) <= 1)


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (synthetic_mvn, {"set_size": 0}, "set_size"),
        (synthetic_mvn, {"mean_range": (5, 0)}, "mean_range"),
        (synthetic_gmm, {"alpha": 0.0}, "alpha"),
        (synthetic_gmm, {"n_components": 0}, "n_components"),
        (synthetic_gmm, {"n_sets": 2.5}, "n_sets"),
        (synthetic_gmm, {"scale": -1.0}, "scale"),
        (synthetic_gmm, {"dim": 3, "df": 1.0}, "df"),
        (synthetic_gmm, {"mean_range": (0, 1, 2)}, "mean_range"),
        (synthetic_multinomial, {"alpha": -1.0}, "alpha"),
        (synthetic_multinomial, {"alpha": (1.0, 1.0)}, "alpha"),
        (synthetic_multinomial, {"n_trials": 0}, "n_trials"),
        (synthetic_multinomial, {"set_size": 0}, "set_size"),
        (synthetic_multinomial, {"probabilities": [[0.5, 0.6, 0.1]]}, "probabilities"),
        (synthetic_multinomial, {"probabilities": [[-0.5, 1.5]]}, "probabilities"),
        (synthetic_multinomial, {"probabilities": [0.5, 0.5]}, "probabilities"),
        (synthetic_poisson, {"rate_range": (-1.0, 2.0)}, "rate_range"),
        (synthetic_poisson, {"rates": [1.0, -2.0]}, "rates"),
        (synthetic_poisson, {"dim": 0}, "dim"),
        (simplex_grid, {"resolution": 0}, "resolution"),
        (simplex_grid, {"n_categories": 0}, "n_categories"),
        (digits_mixtures, {"classes": (0, 1, 12)}, "unknown class 12"),
        (digits_mixtures, {"classes": (0, 0)}, "distinct"),
        (digits_mixtures, {"classes": ()}, "classes"),
        (digits_mixtures, {"alpha": 0}, "alpha"),
        (digits_mixtures, {"split": "val"}, "split"),
        (digits_mixtures, {"proportions": [[0.5, 0.5]]}, "proportions"),
        (digits_mixtures, {"set_size": 0}, "set_size"),
    ],
)
def test_bad_arguments(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# real-data loaders: the user's files or the package's registry, never a path outside the package
# ---------------------------------------------------------------------------------------------------------------------


def _bdtnp_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dge.txt").write_text("g1\tg2\n0.5\t1.0\n1.5\t0.0\n2.0\t0.25\n")
    (folder / "geometry.txt").write_text("xcoord ycoord zcoord\n1 2 3\n4 5 6\n7 8 9\n10 11 12\n")


def _intestine_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    counts = pd.DataFrame(
        {"AAAC": [0, 3], "AAAG": [1, 0], "AAAT": [2, 2]}, index=pd.Index(["Apoa4", "Ada"], name="gene")
    )
    counts.to_csv(folder / "dge.tsv.gz", sep="\t")
    zones = pd.DataFrame(
        {"tSNE_coordinate_1": [0.1, 0.2, 0.3], "tSNE_coordinate_2": [1.0, 2.0, 3.0], "zone": [0, 3, 6]},
        index=pd.Index(["c1", "c2", "c3"], name="cell_id"),
    )
    zones.to_csv(folder / "zones.tsv", sep="\t")


def test_spatial_loaders_read_the_given_folder(tmp_path):
    _bdtnp_files(tmp_path / "bdtnp")
    emb = bdtnp_embryo(tmp_path / "bdtnp")
    assert emb.shape == (3, 2) and emb.obsm["spatial"].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    _intestine_files(tmp_path / "intestine")
    gut = intestine_zonation(str(tmp_path / "intestine"))
    assert gut.shape == (3, 2) and gut.obs["zone"].tolist() == [0, 3, 6] and gut.X.toarray()[0].tolist() == [0, 3]
    with pytest.raises(FileNotFoundError, match=r"dge.txt not found; pass path= to the folder"):
        bdtnp_embryo(tmp_path / "intestine")
    with pytest.raises(ValueError, match="`path` must be a folder path"):
        intestine_zonation(3)


@pytest.mark.parametrize(
    ("loader", "write", "shape"), [(bdtnp_embryo, _bdtnp_files, (3, 2)), (intestine_zonation, _intestine_files, (3, 2))]
)
def test_spatial_loaders_download_their_defaults(server, tmp_path, monkeypatch, loader, write, shape):
    import pooch

    from scgde.datasets._downloads import DOWNLOADS, REGISTRY

    dataset = loader.__name__
    write(server.root)
    for entry in REGISTRY[dataset].values():
        name, file = f"{dataset}/{entry['fname']}", server.root / str(entry["fname"])
        monkeypatch.setitem(DOWNLOADS.urls, name, server.url + str(entry["fname"]))
        monkeypatch.setitem(DOWNLOADS.registry, name, "sha256:" + pooch.file_hash(str(file)))
    monkeypatch.chdir(tmp_path)  # nothing is looked up relative to the working directory or the repository
    assert loader(cache=tmp_path / "cache").shape == shape
    assert sorted(p.name for p in (tmp_path / "cache" / dataset).iterdir()) == sorted(
        str(e["fname"]) for e in REGISTRY[dataset].values()
    )
    for name in list(DOWNLOADS.urls):  # offline: the cached files are still read; an empty cache names path=
        monkeypatch.setitem(DOWNLOADS.urls, name, server.url + "absent")
    assert loader(cache=tmp_path / "cache").shape == shape
    with pytest.raises(FileNotFoundError, match=r"`path` was not given.*could not be downloaded.*Pass `path=`"):
        loader(cache=tmp_path / "empty")


#: paths that leave the package: a ``shared/data`` folder, a ``..`` segment
_OUTSIDE = re.compile(r"""shared['"]?\s*[/,]\s*['"]?data|['"]\.\.(?:[/\\'"])""")
_PARENTS = re.compile(r"__file__\)?(?:\.resolve\(\)|\.absolute\(\))?((?:\.parent(?!s)|\.parents\[\d+\])*)")


def _levels_up(chain: str) -> int:
    """How many directories up ``.parent.parents[2]...`` goes from a file (``.parents[k]`` is ``k + 1``)."""
    return len(re.findall(r"\.parent(?!s)", chain)) + sum(int(k) + 1 for k in re.findall(r"\.parents\[(\d+)\]", chain))


def test_package_code_never_reaches_outside_the_package():
    """No module of the installed package builds a path outside it (e.g. ``<repo>/../shared/data``).

    Such a path points nowhere once scgde is installed from a wheel: package code reads the user's files or its own
    pooch registry. Checked on the source of the package that is imported (``src/scgde`` in a checkout).
    """
    import scgde

    root = Path(scgde.__file__).resolve().parent
    offences = []
    for file in sorted(root.rglob("*.py")):
        depth = len(file.relative_to(root).parts)  # .parent this many times is the package root
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{file.relative_to(root.parent)}:{number}: {line.strip()}"
            if _OUTSIDE.search(line):
                offences.append(where)
            for match in _PARENTS.finditer(line):
                if _levels_up(match.group(1)) > depth:
                    offences.append(where)
    assert not offences, "package code builds paths outside the package:\n" + "\n".join(offences)


def test_the_package_scan_catches_the_old_shared_path():
    """The patterns of the scan above find the lines that used to be in ``datasets/_viral.py``."""
    old = [
        '_SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"',
        "DATA = Path(__file__).parent.parent.parent / 'x.csv'",
        'folder = Path("../shared/data")',
    ]
    assert _OUTSIDE.search(old[0]) and _OUTSIDE.search(old[2])
    assert [_levels_up(_PARENTS.search(line).group(1)) for line in old[:2]] == [5, 3]  # beyond a module 2 levels down
    assert _levels_up(_PARENTS.search("HERE = Path(__file__).parent").group(1)) == 1  # its own folder: allowed
