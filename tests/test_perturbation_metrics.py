"""scgde.metrics.perturbation_report on synthetic Gaussian perturbations with known truth."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.decomposition import PCA

from scgde.metrics import energy_distance, mmd, perturbation_report

N_GENES = 40
N_CELLS = 300
#: genes that perturbation "A" / "B" / "R" truly changes, and by how much (distinct magnitudes)
DE = {
    "A": (np.arange(0, 8), np.array([3.0, -2.6, 2.2, -1.8, 1.6, -1.4, 1.2, 1.0])),
    "B": (np.arange(10, 16), np.array([-2.5, 2.0, -1.5, 1.3, 1.1, -1.0])),
    "R": (np.arange(20, 28), np.full(8, 1.5)),  # mean shift; responders move twice as far
}
_counter = itertools.count()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mean(label: str) -> np.ndarray:
    mu = np.zeros(N_GENES)
    if label in DE:
        genes, shift = DE[label]
        mu[genes] = shift
    return mu


def _cells(rng, label: str, n: int = N_CELLS, as_label: str | None = None, collapsed: bool = False) -> ad.AnnData:
    """Gaussian cells of group ``label``; "R" is a 50/50 responder/non-responder mixture.

    ``collapsed=True`` gives "R" cells with the right mean but no responder split (all at the mean).
    """
    x = rng.normal(size=(n, N_GENES)) + _mean(label)
    if label == "R" and not collapsed:
        responder = np.arange(n) < n // 2
        genes, shift = DE["R"]
        x[np.ix_(responder, genes)] += shift  # responders at 2 * shift
        x[np.ix_(~responder, genes)] -= shift  # non-responders unchanged
    k = next(_counter)
    obs = pd.DataFrame({"perturbation": [as_label or label] * n}, index=[f"c{k}_{i}" for i in range(n)])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)]))


def _concat(parts: list[ad.AnnData]) -> ad.AnnData:
    out = ad.concat(parts)
    out.var_names = parts[0].var_names
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    control = _cells(rng, "ctrl")
    true = _concat([_cells(rng, p) for p in ("A", "B", "R")])
    fresh = _concat([_cells(rng, p) for p in ("A", "B", "R")])
    return {"rng": rng, "control": control, "true": true, "fresh": fresh}


def _no_change(control: ad.AnnData, labels=("A", "B", "R")) -> ad.AnnData:
    """The "no change" baseline: the control cells themselves, relabelled as each perturbation."""
    parts = []
    for p in labels:
        c = control.copy()
        c.obs["perturbation"] = p
        c.obs_names = [f"{p}_{n}" for n in c.obs_names]
        parts.append(c)
    return _concat(parts)


def _row(report: pd.DataFrame, method: str, perturbation: str) -> pd.Series:
    hit = report[(report["method"] == method) & (report["perturbation"] == perturbation)]
    assert len(hit) == 1
    return hit.iloc[0]


# ---------------------------------------------------------------------------------------------
# known answers


def test_perfect_prediction_scores_perfectly(data):
    report = perturbation_report(data["true"], data["true"], data["control"], n_pcs=10)
    assert list(report["method"].unique()) == ["predicted"]
    assert sorted(report["perturbation"]) == ["A", "B", "R"]
    np.testing.assert_allclose(report["pearson_delta"], 1.0, atol=1e-12)
    np.testing.assert_allclose(report["pearson_delta_top20"], 1.0, atol=1e-12)
    np.testing.assert_allclose(report["r2_delta"], 1.0, atol=1e-12)
    np.testing.assert_allclose(report[["mse_delta", "mse_top20"]], 0.0, atol=1e-20)
    np.testing.assert_allclose(report[["e_distance", "mmd", "sliced_w2"]], 0.0, atol=1e-5)
    assert (report["n_true"] == N_CELLS).all() and (report["n_predicted"] == N_CELLS).all()


def test_fresh_sample_is_close_and_no_change_is_far(data):
    no_change = _no_change(data["control"])
    report = perturbation_report(
        data["true"], {"fresh": data["fresh"], "no change": no_change}, data["control"], n_pcs=10
    )
    for p in ("A", "B", "R"):
        fresh, base = _row(report, "fresh", p), _row(report, "no change", p)
        assert fresh["pearson_delta"] > 0.95 and fresh["pearson_delta_top20"] > 0.95
        assert fresh["r2_delta"] > 0.9
        assert 0 < fresh["e_distance"] < 0.2 * base["e_distance"]
        assert 0 < fresh["mmd"] < 0.2 * base["mmd"]
        assert 0 < fresh["sliced_w2"] < 0.5 * base["sliced_w2"]
        # predicting no change: a zero delta has no correlation, R^2 <= 0, MSE = mean true delta^2
        assert np.isnan(base["pearson_delta"]) and np.isnan(base["pearson_delta_top20"])
        assert base["r2_delta"] <= 0
        delta = data["true"][data["true"].obs["perturbation"] == p].X.mean(0) - data["control"].X.mean(0)
        assert base["mse_delta"] == pytest.approx(np.mean(delta**2), rel=1e-6)  # cells are read as float32


def test_no_change_in_float32_has_undefined_pearson(data):
    """Round-off from storing control cells in float32 must not pass for a correlation."""
    no_change = _no_change(data["control"])
    no_change.X = no_change.X.astype(np.float32)
    shuffled = no_change[np.random.default_rng(0).permutation(no_change.n_obs)].copy()
    for pred in (no_change, shuffled):
        report = perturbation_report(data["true"], pred, data["control"], distributional=False)
        assert report[["pearson_delta", "pearson_delta_top20"]].isna().all().all()
        assert (report["r2_delta"] <= 1e-6).all()


def test_no_change_distance_equals_true_vs_control_distance(data):
    true, control = data["true"], data["control"]  # the report reads cells as float32: rel=1e-6
    no_change = _no_change(control)
    # in gene space
    report = perturbation_report(true, no_change, control, n_pcs=None)
    for p in ("A", "B", "R"):
        xt = true[true.obs["perturbation"] == p].X
        assert _row(report, "predicted", p)["e_distance"] == pytest.approx(energy_distance(control.X, xt), rel=1e-6)
        assert _row(report, "predicted", p)["mmd"] == pytest.approx(mmd(control.X, xt), rel=1e-6)
    # in a provided, fitted PCA space (object with .transform, or a plain function)
    pca = PCA(n_components=5, random_state=0).fit(np.vstack([control.X, true.X]))
    for projection in (pca, pca.transform):
        report = perturbation_report(true, no_change, control, pca=projection)
        for p in ("A", "B", "R"):
            xt = pca.transform(true[true.obs["perturbation"] == p].X)
            expected = energy_distance(pca.transform(control.X), xt)
            assert _row(report, "predicted", p)["e_distance"] == pytest.approx(expected, rel=1e-6)


def test_full_rank_pca_preserves_distances(data):
    """With as many components as genes the PCA is a rotation: e-distance and MMD are unchanged."""
    kwargs = {"distributional": True, "n_top_de": 0}
    genes = perturbation_report(data["true"], data["fresh"], data["control"], n_pcs=None, **kwargs)
    rotated = perturbation_report(data["true"], data["fresh"], data["control"], n_pcs=N_GENES, **kwargs)
    np.testing.assert_allclose(rotated["e_distance"], genes["e_distance"], rtol=1e-8)
    np.testing.assert_allclose(rotated["mmd"], genes["mmd"], rtol=1e-8)
    assert "pearson_delta_top0" not in genes and "mse_top0" not in genes


def test_right_mean_wrong_spread_is_caught_only_by_distributional_metrics(data):
    """Collapsing responders and non-responders onto the mean keeps Pearson delta but not the distribution."""
    rng = np.random.default_rng(1)
    collapsed = _cells(rng, "R", collapsed=True)
    correct = _cells(rng, "R")
    report = perturbation_report(data["true"], {"correct": correct, "collapsed": collapsed}, data["control"], n_pcs=10)
    good, bad = _row(report, "correct", "R"), _row(report, "collapsed", "R")
    # the mean-based metrics cannot tell them apart
    assert good["pearson_delta"] > 0.95 and bad["pearson_delta"] > 0.95
    assert bad["r2_delta"] > 0.9
    # the distributional ones can
    assert bad["e_distance"] > 4 * good["e_distance"]
    assert bad["mmd"] > 4 * good["mmd"]
    assert bad["sliced_w2"] > 2 * good["sliced_w2"]


@pytest.mark.parametrize("de_rank", ["mean_diff", "t"])
def test_top_de_genes_are_the_truly_changed_genes(data, de_rank):
    """A prediction exact on the changed genes and wrong elsewhere is perfect on the top-n only."""
    true, control = data["true"], data["control"]
    pred_right_de = true.copy()
    pred_wrong_de = true.copy()
    rng = np.random.default_rng(2)
    for p, (genes, _) in DE.items():
        rows = np.flatnonzero(true.obs["perturbation"] == p)
        others = np.setdiff1d(np.arange(N_GENES), genes)
        pred_right_de.X[np.ix_(rows, others)] += rng.normal(scale=2.0, size=len(others))
        pred_wrong_de.X[np.ix_(rows, genes)] += rng.normal(scale=2.0, size=len(genes))
    for p, (genes, _) in DE.items():
        n = len(genes)
        report = perturbation_report(
            true,
            {"right": pred_right_de, "wrong": pred_wrong_de},
            control,
            n_top_de=n,
            de_rank=de_rank,
            distributional=False,
        )
        right, wrong = _row(report, "right", p), _row(report, "wrong", p)
        assert right[f"mse_top{n}"] == pytest.approx(0.0, abs=1e-20)
        assert right[f"pearson_delta_top{n}"] == pytest.approx(1.0, abs=1e-12)
        assert right["mse_delta"] > 1.0
        assert wrong[f"mse_top{n}"] > 1.0
        assert wrong["mse_delta"] < wrong[f"mse_top{n}"]
        assert "e_distance" not in report


def test_de_genes_override(data):
    true, control = data["true"], data["control"]
    pred = true.copy()
    pred.X[:, 30:] += 5.0  # wrong only on genes 30..39
    de_genes = {p: [f"g{j}" for j in range(30, 40)] for p in DE}
    report = perturbation_report(true, pred, control, n_top_de=10, de_genes=de_genes, distributional=False)
    np.testing.assert_allclose(report["mse_top10"], 25.0, rtol=1e-6)
    default = perturbation_report(true, pred, control, n_top_de=6, distributional=False)
    np.testing.assert_allclose(default["mse_top6"], 0.0, atol=1e-20)
    with pytest.raises(ValueError, match="not in var_names"):
        perturbation_report(true, pred, control, de_genes={"A": ["nope"]}, distributional=False)


# ---------------------------------------------------------------------------------------------
# table layout, methods, summary


def test_dict_of_methods_one_row_per_method_and_perturbation(data):
    true, control = data["true"], data["control"]
    only_a = data["fresh"][data["fresh"].obs["perturbation"] == "A"].copy()
    methods = {"GDE": data["fresh"], "no change": _no_change(control), "partial": only_a}
    report, summary = perturbation_report(true, methods, control, n_pcs=10, summary=True)
    assert list(report.columns) == [
        "method",
        "perturbation",
        "n_true",
        "n_predicted",
        "pearson_delta",
        "pearson_delta_top20",
        "pearson_delta_pert",
        "mse_delta",
        "mse_top20",
        "r2_delta",
        "rank",
        "e_distance",
        "mmd",
        "sliced_w2",
    ]
    assert list(zip(report["method"], report["perturbation"], strict=True)) == [
        ("GDE", "A"),
        ("GDE", "B"),
        ("GDE", "R"),
        ("no change", "A"),
        ("no change", "B"),
        ("no change", "R"),
        ("partial", "A"),
    ]
    assert summary.index.names == ["method", "statistic"]
    assert list(summary.index) == [(m, s) for m in methods for s in ("mean", "median")]
    means = summary.xs("mean", level="statistic")
    medians = summary.xs("median", level="statistic")
    assert means.loc["GDE", "n_perturbations"] == 3 and means.loc["partial", "n_perturbations"] == 1
    gde = report[report["method"] == "GDE"]
    assert means.loc["GDE", "e_distance"] == pytest.approx(gde["e_distance"].mean())
    assert medians.loc["GDE", "r2_delta"] == pytest.approx(gde["r2_delta"].median())
    assert np.isnan(means.loc["no change", "pearson_delta"])  # all NaN stays NaN
    assert means.loc["GDE", "e_distance"] < means.loc["no change", "e_distance"]
    # a method's rows do not depend on the other methods or their order (shared subsamples, seeds)
    alone = perturbation_report(true, {"GDE": data["fresh"]}, control, n_pcs=10, max_cells=100)
    both = perturbation_report(true, {"partial": only_a, "GDE": data["fresh"]}, control, n_pcs=10, max_cells=100)
    pd.testing.assert_frame_equal(alone, both[both["method"] == "GDE"].reset_index(drop=True))


def test_subsampling_is_seeded_and_means_use_all_cells(data):
    args = (data["true"], data["fresh"], data["control"])
    a = perturbation_report(*args, n_pcs=10, max_cells=80, seed=3)
    b = perturbation_report(*args, n_pcs=10, max_cells=80, seed=3)
    c = perturbation_report(*args, n_pcs=10, max_cells=80, seed=4)
    full = perturbation_report(*args, n_pcs=10)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["e_distance"], c["e_distance"])
    assert (a["n_true"] == N_CELLS).all()
    np.testing.assert_allclose(
        a[["pearson_delta", "mse_delta", "r2_delta"]], full[["pearson_delta", "mse_delta", "r2_delta"]]
    )


def test_sparse_layers_and_contexts(data):
    true, fresh, control = data["true"], data["fresh"], data["control"]
    dense = perturbation_report(true, fresh, control, n_pcs=10)
    sparse = [x.copy() for x in (true, fresh, control)]
    for x in sparse:
        x.layers["lognorm"] = sp.csr_matrix(x.X)
        x.X = np.zeros_like(x.X)
    via_layer = perturbation_report(*sparse, n_pcs=10, layer="lognorm")
    pd.testing.assert_frame_equal(dense, via_layer, rtol=1e-8)

    # two contexts with different control baselines: each group is compared to its own control
    rng = np.random.default_rng(5)
    offset = np.linspace(-3, 3, N_GENES)

    def in_context(x: ad.AnnData, ctx: str) -> ad.AnnData:
        x = x.copy()
        if ctx == "k2":
            x.X = x.X + offset
        x.obs["cell_line"] = ctx
        x.obs_names = [f"{ctx}_{n}" for n in x.obs_names]
        return x

    ctrl2 = _concat([in_context(control, "k1"), in_context(_cells(rng, "ctrl"), "k2")])
    true2 = _concat([in_context(true, "k1"), in_context(_concat([_cells(rng, p) for p in DE]), "k2")])
    pred2 = _concat([in_context(fresh, "k1"), in_context(_concat([_cells(rng, p) for p in DE]), "k2")])
    report = perturbation_report(true2, pred2, ctrl2, context_key="cell_line", n_pcs=10)
    assert list(report.columns[:3]) == ["method", "context", "perturbation"]
    assert len(report) == 6 and set(report["context"]) == {"k1", "k2"}
    assert (report["r2_delta"] > 0.9).all() and (report["pearson_delta"] > 0.95).all()
    with pytest.raises(ValueError, match="No control cells for context"):
        perturbation_report(true2, pred2, ctrl2[ctrl2.obs["cell_line"] == "k1"], context_key="cell_line")


# ---------------------------------------------------------------------------------------------
# errors


def test_informative_errors(data):
    true, fresh, control = data["true"], data["fresh"], data["control"]
    with pytest.raises(KeyError, match=r"perturbation_key='condition'.*available columns: \['perturbation'\]"):
        perturbation_report(true, fresh, control, perturbation_key="condition")
    other = fresh.copy()
    other.obs["perturbation"] = "Z"
    with pytest.raises(ValueError, match=r"No perturbation is shared by true and the prediction 'odd'.*'Z'"):
        perturbation_report(true, {"good": fresh, "odd": other}, control)
    with pytest.raises(ValueError, match="same genes as true but in another order"):
        perturbation_report(true, fresh[:, fresh.var_names[::-1]], control)
    with pytest.raises(ValueError, match=r"only in true: \['g39'\]"):
        perturbation_report(true, fresh, control[:, :-1])
    with pytest.raises(ValueError, match="control has no cells"):
        perturbation_report(true, fresh, control[:0])
    with pytest.raises(KeyError, match="layer='counts' is not a layer of true"):
        perturbation_report(true, fresh, control, layer="counts")
    with pytest.raises(ValueError, match="empty dict"):
        perturbation_report(true, {}, control)
    with pytest.raises(TypeError, match="AnnData"):
        perturbation_report(true, fresh.X, control)
    with pytest.raises(ValueError, match="de_rank"):
        perturbation_report(true, fresh, control, de_rank="wilcoxon")


# ---------------------------------------------------------------------------------------------
# Systema's Pearson delta against the perturbed centroid, PerturBench's rank, the design object


def _constant_groups(values: dict[str, list[float]], n: int = 2, key: str = "perturbation") -> ad.AnnData:
    """``n`` identical cells per group, so that every group mean is exactly its listed vector."""
    x = np.repeat(np.array(list(values.values()), dtype=float), n, axis=0)
    obs = pd.DataFrame({key: np.repeat(list(values), n)}, index=[f"c{next(_counter)}_{i}" for i in range(len(x))])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])]))


TRUE = {"A": [1, 2, 0, 0], "B": [0, 0, 3, 1], "C": [2, 0, 0, 2]}
PRED = {"A": [1, 1, 0, 0], "B": [0, 1, 3, 0], "C": [0, 2, 0, 0]}


def _tiny_report(pred=PRED, **kwargs):
    control = _constant_groups({"ctrl": [0, 0, 0, 0]}, n=3)
    return perturbation_report(
        _constant_groups(TRUE), {"m": _constant_groups(pred)}, control, n_top_de=0, distributional=False, **kwargs
    )


def test_pearson_delta_against_the_perturbed_centroid():
    report = _tiny_report()
    centroid = np.array([1, 2 / 3, 1, 1])  # the average of the three true perturbation means
    for p in TRUE:
        expected = np.corrcoef(np.subtract(PRED[p], centroid), np.subtract(TRUE[p], centroid))[0, 1]
        assert _row(report, "m", p)["pearson_delta_pert"] == pytest.approx(expected, rel=1e-6)
    # a reference with a fourth perturbation moves the centroid
    reference = _constant_groups({**TRUE, "D": [0, 0, 0, 8]})
    shifted = _tiny_report(reference=reference)
    centroid = np.array([3, 2, 3, 11]) / 4
    expected = np.corrcoef(np.subtract(PRED["A"], centroid), np.subtract(TRUE["A"], centroid))[0, 1]
    assert _row(shifted, "m", "A")["pearson_delta_pert"] == pytest.approx(expected, rel=1e-6)
    # one perturbation is its own centroid: undefined
    control = _constant_groups({"ctrl": [0, 0, 0, 0]})
    alone = perturbation_report(
        _constant_groups({"A": TRUE["A"]}),
        _constant_groups({"A": PRED["A"]}),
        control,
        n_top_de=0,
        distributional=False,
    )
    assert np.isnan(alone["pearson_delta_pert"]).all()


def test_rank_of_each_prediction_among_the_methods_predictions():
    report = _tiny_report()
    # distances to true A: pred A 1, pred B sqrt(11), pred C 1 (a tie) -> (0 + 1/2) / 2
    assert _row(report, "m", "A")["rank"] == pytest.approx(0.25)
    # true B: pred B sqrt(2) is the closest (A sqrt(12), C sqrt(14))
    assert _row(report, "m", "B")["rank"] == pytest.approx(0.0)
    # true C: pred A sqrt(6) is closer than pred C sqrt(12), pred B sqrt(18) farther
    assert _row(report, "m", "C")["rank"] == pytest.approx(0.5)
    # a collapsed model predicts the same cells for every perturbation: every rank is 1/2
    collapsed = _tiny_report(pred={p: [1, 1, 1, 1] for p in TRUE})
    np.testing.assert_allclose(collapsed["rank"], 0.5)
    # a method that predicts one perturbation has no rank
    single = _tiny_report(pred={"A": PRED["A"]})
    assert np.isnan(single["rank"]).all()


def test_design_gives_the_keys_and_the_control_cells():
    from scgde.data import PerturbationDesign

    control = _constant_groups({"ctrl": [0, 0, 0, 0]}, n=3)
    true = _concat([_constant_groups(TRUE), control])  # controls in the same object, labelled "ctrl"
    design = PerturbationDesign("perturbation", control="ctrl")
    by_design = perturbation_report(true, _constant_groups(PRED), design=design, n_top_de=0, distributional=False)
    by_keywords = _tiny_report()
    assert "ctrl" not in set(by_design["perturbation"])  # the reference group is never scored
    cols = ["pearson_delta", "pearson_delta_pert", "mse_delta", "r2_delta", "rank"]
    np.testing.assert_allclose(by_design[cols].to_numpy(), by_keywords[cols].to_numpy())
    with pytest.raises(ValueError, match="Pass control="):
        perturbation_report(true, _constant_groups(PRED), n_top_de=0, distributional=False)
    with pytest.raises(ValueError, match="perturbation_key disagree"):
        perturbation_report(true, _constant_groups(PRED), perturbation_key="condition", design=design)
