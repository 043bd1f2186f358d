"""Image GDE on real fluorescence nuclei: spatial-neighbourhood sets (stardist's shipped 2018 Data Science Bowl image).

The 124 labelled nuclei of ``stardist.data.test_image_nuclei_2d`` (512x512) are cut into crops centred on their
centroids (``scgde.datasets.nuclei_crops``, image rescaled by 0.5, 24x24 crops). An ImageGDE trains on spatial
neighbourhoods, the paper's exponential kernel ``exp(-d / bandwidth)`` around random nuclei (``kernel=`` option of
``train``). Readouts:

1. each nucleus's neighbourhood (itself and its 9 nearest nuclei) is embedded as a set; a ridge regression from the
   embedding to the neighbourhood's morphology (mean and sd of nuclear area, mean intensity) is scored by R^2 in
   spatially blocked cross-validation (4 image quadrants as folds), beside the untrained encoder and the
   neighbourhood's mean image (10 principal components);
2. nuclei generated from each quadrant's embedding vs that quadrant's real nuclei: Wasserstein-1 distance of the
   area and mean-intensity distributions (Otsu masks, ``scgde.img.image_features``), beside the other quadrants'
   real nuclei.

Usage: python -m benchmarks.img_nuclei [--quick] [--seed 0] [--generator flow] [--steps N] [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import wasserstein_distance
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import scgde
from benchmarks import _common, _img
from benchmarks._discrete import run_one

TITLE = "Image GDE, real nuclei (stardist test image): spatial-neighbourhood embeddings and generated nuclei"
SIZES = {"quick": {"steps": 8, "n_gen": 16}, "full": {"steps": 600, "n_gen": 64}}
K_NEIGHBOURHOOD = 10
N_SPLITS = 20
TARGETS = ["mean area", "sd area", "mean intensity"]


def _neighbourhoods(adata: AnnData) -> tuple[AnnData, pd.DataFrame]:
    """One set per nucleus: itself and its nearest nuclei (rows repeated), and each set's morphology."""
    coords = adata.obsm["spatial"]
    _, nbrs = NearestNeighbors(n_neighbors=K_NEIGHBOURHOOD).fit(coords).kneighbors(coords)
    rows = nbrs.ravel()
    centre = np.repeat(adata.obs_names.to_numpy(), K_NEIGHBOURHOOD)
    sets = AnnData(obs=pd.DataFrame({"centre": centre}), obsm={"image": adata.obsm["image"][rows]})
    sets.obs_names = [f"{c}:{i}" for i, c in enumerate(centre)]
    area, intensity = adata.obs["area"].to_numpy()[nbrs], adata.obs["mean_intensity"].to_numpy()[nbrs]
    stats = pd.DataFrame(
        {"mean area": area.mean(1), "sd area": area.std(1), "mean intensity": intensity.mean(1)},
        index=adata.obs_names,
    )
    return sets, stats


def _blocked_r2(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """R^2 per target of ridge predictions made for each fold by a model fitted on the other folds."""
    pred = np.empty_like(y)
    for f in np.unique(folds):
        test = folds == f
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(x[~test], y[~test])
        pred[test] = model.predict(x[test])
    return 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def run_nuclei(args: argparse.Namespace) -> dict:
    """The experiment; ``{"table", "metrics", "notes", "info"}``."""
    size = SIZES[args.mode]
    steps = args.steps or size["steps"]
    adata = scgde.datasets.nuclei_crops(crop_size=24, scale=0.5)
    coords = adata.obsm["spatial"]
    middle = np.median(coords, axis=0)
    quadrant = (coords[:, 0] > middle[0]).astype(int) * 2 + (coords[:, 1] > middle[1]).astype(int)
    adata.obs["quadrant"] = pd.Categorical([f"Q{q}" for q in quadrant])
    value_range = (0.0, float(np.max(adata.obsm["image"])))  # uint16 pixels using 0-225 of 0-65535
    sets, stats = _neighbourhoods(adata)
    y = stats[TARGETS].to_numpy()

    def embed(m) -> np.ndarray:
        return m.get_set_representation(sets, set_key="centre", progress_bar=False).loc[stats.index].to_numpy()

    bandwidth = float(np.median(NearestNeighbors(n_neighbors=2).fit(coords).kneighbors(coords)[0][:, 1]))
    fitted = _img.fit(
        adata,
        args,
        steps,
        16,
        16,
        setup={"set_key": "quadrant", "value_range": value_range},
        n_latent=16,
        before_train=lambda m: _blocked_r2(embed(m), y, quadrant),
        kernel={
            "obsm": "spatial",
            "kernel": "exponential",
            "bandwidth": bandwidth,
            "within_set": False,
            "n_neighbors": 30,
        },
    )
    model, train_s = fitted.model, fitted.train_s
    r2 = {
        "ImageGDE (trained on spatial neighbourhoods)": _blocked_r2(embed(model), y, quadrant),
        "untrained conv encoder": fitted.untrained,
    }
    pixels = sets.obsm["image"].reshape(sets.n_obs, -1).astype(np.float32)
    mean_images = pd.DataFrame(pixels, index=sets.obs["centre"]).groupby(level=0).mean().loc[stats.index].to_numpy()
    r2["mean image of the neighbourhood (10 PCs)"] = _blocked_r2(
        PCA(n_components=10, random_state=args.seed).fit_transform(mean_images), y, quadrant
    )

    # generated nuclei per quadrant vs the real ones
    gen = model.generate(list(adata.obs["quadrant"].cat.categories), n_samples=size["n_gen"])
    readouts = {"area": "area", "mean intensity": "mean_intensity_ch0"}
    real_f = scgde.img.image_features(adata.obsm["image"])
    gen_f = scgde.img.image_features(gen.obsm["image"])
    # every comparison is half of a quadrant's real nuclei against an equal number of other nuclei, over random
    # splits: generated (same quadrant), the other half of the quadrant (floor), real nuclei of other quadrants
    rng = np.random.default_rng(args.seed)
    kinds = [
        "generated (same quadrant)",
        "the quadrant's other real half (floor)",
        "real nuclei of the other quadrants",
    ]
    w1 = {k: {label: [] for label in readouts} for k in kinds}
    for q in adata.obs["quadrant"].cat.categories:
        own = np.flatnonzero((adata.obs["quadrant"] == q).to_numpy())
        mine, others = np.flatnonzero((gen.obs["set"] == q).to_numpy()), np.setdiff1d(np.arange(adata.n_obs), own)
        for _ in range(N_SPLITS):
            half, rest = np.array_split(rng.permutation(own), 2)
            k = min(len(half), len(rest), len(mine))
            half = half[:k]
            draws = {
                kinds[0]: gen_f.iloc[rng.choice(mine, size=k, replace=False)],
                kinds[1]: real_f.iloc[rest[:k]],
                kinds[2]: real_f.iloc[rng.choice(others, size=k, replace=False)],
            }
            for kind, frame in draws.items():
                for label, col in readouts.items():
                    a, b = frame[col].dropna(), real_f.iloc[half][col].dropna()
                    w1[kind][label].append(wasserstein_distance(a, b))
    fmt = _common.fmt_sig
    table = pd.DataFrame(
        [[fmt(v) for v in values] for values in r2.values()],
        index=pd.Index(list(r2), name="neighbourhood representation"),
        columns=[f"R^2 {t}" for t in TARGETS],
    )
    w1_table = pd.DataFrame(
        {f"W1 {label}": [fmt(np.mean(w1[m][label])) for m in w1] for label in readouts},
        index=pd.Index(list(w1), name="nuclei compared with a quadrant's real nuclei"),
    )
    notes = [
        "Generated vs real nuclei (Otsu masks; mean over the 4 quadrants; area in pixels of the 0.5x image, "
        "intensity in the image's units):\n\n" + _common.markdown_table(w1_table) + "\n",
        f"Data: {adata.n_obs} nuclei (area >= 30 px), 24x24 crops of the 0.5x-rescaled image; {K_NEIGHBOURHOOD}-nucleus "
        "neighbourhoods; folds = image quadrants (neighbourhoods near a quadrant border share nuclei with the next fold).",
        "Transductive: the encoder and generator train on all 124 nuclei (there are no others); the blocked folds "
        "keep only the ridge readout away from its test quadrant, and generated nuclei are compared with nuclei the "
        "model saw (W1 on equal numbers of nuclei, half a quadrant each, 20 random halvings).",
        f"ImageGDE (conv encoder + {args.generator} UNet, n_latent 16): {steps} steps of 16 neighbourhoods x 16 nuclei, "
        f"exponential kernel, bandwidth {bandwidth:.1f} px (median nearest-nucleus distance); training {train_s:.0f} s.",
    ]
    if args.quick:
        _common.check(all(np.isfinite(v).all() for v in r2.values()), f"non-finite R^2: {r2}")
    metrics = {"r2": {k: dict(zip(TARGETS, map(float, v), strict=True)) for k, v in r2.items()}, "w1": w1}
    return {"table": table, "metrics": metrics, "notes": notes, "info": {"train_s": train_s}}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the experiment and print it; returns the result (with ``markdown``, ``wall_s``)."""
    return run_one("img_nuclei", TITLE, _img.parser(__doc__, 600, 8), argv, run_nuclei)


if __name__ == "__main__":
    main()
