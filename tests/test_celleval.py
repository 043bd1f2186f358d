"""Predictions exported for cell-eval (scgde.tl.to_celleval) and generated values kept in the data's range."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData

import scgde

KEY = "perturbation"


@pytest.fixture(scope="module")
def screen():
    return scgde.datasets.synthetic_perturbseq(
        n_genes=30, n_perturbations=6, n_cell_types=1, cells_per_group=40, counts=True, seed=0
    )


def _split(adata):
    is_ctrl = (adata.obs[KEY] == "control").to_numpy()
    return adata[~is_ctrl].copy(), adata[is_ctrl].copy()


def _lognorm(adata):
    out = adata.copy()
    counts = out.layers["counts"]
    out.X = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    return out


def test_layout_labels_genes_and_order(screen):
    data = _lognorm(screen)
    perturbed, controls = _split(data)
    # controls carry extra genes in another order: the result has the predicted genes in the predicted order
    shuffled = controls[:, controls.var_names[::-1]].copy()
    shuffled.obs[KEY] = "control"
    out = scgde.tl.to_celleval(perturbed, shuffled, perturbation_key=KEY, control="control")
    assert list(out.var_names) == list(perturbed.var_names)
    assert out.n_obs == perturbed.n_obs + controls.n_obs
    labels = out.obs["target_gene"].astype(str).to_numpy()
    assert (labels[perturbed.n_obs :] == "non-targeting").all()
    assert list(labels[: perturbed.n_obs]) == list(perturbed.obs[KEY].astype(str))
    # the values are the inputs' values, rows and columns matched
    np.testing.assert_allclose(out.X[: perturbed.n_obs].toarray(), perturbed.X, rtol=1e-6)
    np.testing.assert_allclose(out.X[perturbed.n_obs :].toarray(), controls.X, rtol=1e-6)
    assert out.uns["celleval"]["values"] == "lognorm"
    assert out.obs_names.is_unique


def test_controls_filtered_by_label_and_inputs_untouched(screen):
    data = _lognorm(screen)
    perturbed, _ = _split(data)
    before = data.X.copy()
    out = scgde.tl.to_celleval(perturbed, data, perturbation_key=KEY, control="control", pert_col="p", control_pert="c")
    assert (out.obs["p"] == "c").sum() == (data.obs[KEY] == "control").sum()
    np.testing.assert_array_equal(data.X, before)


def test_counts_both_sides(screen):
    perturbed, controls = _split(screen)
    out = scgde.tl.to_celleval(perturbed, controls, perturbation_key=KEY, layer="counts", controls_layer="counts")
    assert out.uns["celleval"]["values"] == "counts"
    assert sp.issparse(out.X) and np.all(out.X.data == np.round(out.X.data))


def test_refusals(screen):
    data = _lognorm(screen)
    perturbed, controls = _split(data)
    with pytest.raises(ValueError, match="perturbation_key='nope'"):
        scgde.tl.to_celleval(perturbed, controls, perturbation_key="nope")
    with pytest.raises(ValueError, match="control="):  # controls with several labels and no control label
        scgde.tl.to_celleval(perturbed, data, perturbation_key=KEY)
    with pytest.raises(ValueError, match="No cell of `controls`"):
        scgde.tl.to_celleval(perturbed, data, perturbation_key=KEY, control="ctrl")
    with pytest.raises(ValueError, match="not in controls.var_names"):
        scgde.tl.to_celleval(perturbed, controls[:, :10], perturbation_key=KEY)
    with pytest.raises(ValueError, match="controls_layer='counts'"):  # counts beside log values
        scgde.tl.to_celleval(perturbed, controls, perturbation_key=KEY, layer="counts")
    big = perturbed.copy()
    big.X = big.X * 4.0  # up to ~30: not log-normalised
    with pytest.raises(ValueError, match="beyond log-normalised"):
        scgde.tl.to_celleval(big, controls, perturbation_key=KEY)
    scaled = perturbed.copy()
    scaled.X = scaled.X - 1.0
    with pytest.raises(ValueError, match="negative values"):
        scgde.tl.to_celleval(scaled, controls, perturbation_key=KEY)
    named = perturbed.copy()
    named.obs[KEY] = "non-targeting"
    with pytest.raises(ValueError, match="control_pert"):
        scgde.tl.to_celleval(named, controls, perturbation_key=KEY)
    with pytest.raises(ValueError, match="layer='raw'"):
        scgde.tl.to_celleval(perturbed, controls, perturbation_key=KEY, layer="raw")


def test_cell_eval_scores_the_export(screen, tmp_path):
    """cell-eval itself accepts the export; a perfect prediction scores 1 on pearson_delta, a wrong one far less."""
    cell_eval = pytest.importorskip("cell_eval", reason="cell-eval is not installed (pip install 'scgde[eval]')")
    data = _lognorm(screen)
    perturbed, controls = _split(data)
    real = scgde.tl.to_celleval(perturbed, controls, perturbation_key=KEY)
    wrong = perturbed.copy()  # every perturbation predicted by another one's cells
    names = sorted(set(perturbed.obs[KEY].astype(str)))
    wrong.obs[KEY] = perturbed.obs[KEY].astype(str).map(dict(zip(names, names[1:] + names[:1]))).to_numpy()
    scores = {}
    for name, pred in (("same", perturbed), ("wrong", wrong)):
        ev = cell_eval.MetricsEvaluator(
            scgde.tl.to_celleval(pred, controls, perturbation_key=KEY),
            real,
            control_pert="non-targeting",
            pert_col="target_gene",
            outdir=str(tmp_path / name.replace(" ", "_")),
            num_threads=1,
        )
        results, _ = ev.compute(profile="minimal", write_csv=False)
        scores[name] = results.to_pandas().set_index("perturbation")["pearson_delta"]
    assert np.allclose(scores["same"], 1.0, atol=1e-5)
    assert scores["wrong"].mean() < 0.5


def test_generated_values_stay_within_the_data_range():
    rng = np.random.default_rng(0)
    x = np.log1p(rng.poisson(rng.gamma(1.0, 2.0, size=(1, 40)), size=(300, 40))).astype(np.float32)
    adata = AnnData(x, obs=pd.DataFrame({"set": np.repeat(["a", "b", "c"], 100)}, index=[str(i) for i in range(300)]))
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    far = np.full((2, 4), 50.0, dtype=np.float32)  # a set vector far outside anything seen: wild generator output
    far[1] *= -1
    out = model.generate(far, n_samples=200).X
    high = x.max(0) + x.std(0)
    assert np.all(out <= high + 1e-4), (out.max(0) - high).max()
    assert np.all(out >= 0)


def test_models_saved_without_value_bounds_still_load(tmp_path):
    rng = np.random.default_rng(1)
    adata = AnnData(rng.normal(size=(120, 6)).astype(np.float32))
    adata.obs["set"] = np.repeat(["a", "b", "c"], 40)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    model.save(tmp_path / "m")
    saved = torch.load(tmp_path / "m" / "model.pt", weights_only=False)
    del saved["model_state_dict"]["value_bounds"]  # as written before the bounds existed
    torch.save(saved, tmp_path / "m" / "model.pt")
    loaded = scgde.model.GDE.load(tmp_path / "m", adata=adata)
    # the bounds come from the AnnData the model is loaded with (its training data here)
    x = adata.X.astype(np.float64)
    expected = np.stack([x.min(0) - x.std(0), x.max(0) + x.std(0)])
    np.testing.assert_allclose(loaded.module.value_bounds.numpy(), expected, rtol=1e-4)
    assert loaded.generate(["a"], n_samples=5).shape == (5, 6)
