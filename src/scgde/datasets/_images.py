"""Sets of single-cell images with ground truth: digit mixtures, real nuclei crops, and a pooled-screen simulator."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import ArrayLike

from ._digits import digits_mixtures
from ._synthetic import _check_int, _check_positive

_CONTROL = "nontargeting"
_EFFECTS = ("log_radius", "log_dapi", "log_elongation", "log_gfp", "log_radius_sd")


def _check_nonnegative(name: str, value: object) -> float:
    """``value`` as a finite float >= 0, or a ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return float(value)


# ---------------------------------------------------------------------------------------------------------------------
# digit mixtures as images
# ---------------------------------------------------------------------------------------------------------------------


def digit_image_sets(
    n_sets: int = 600,
    set_size: int = 100,
    classes: Sequence[int] = (0, 1, 2),
    alpha: float | ArrayLike = 1.0,
    proportions: ArrayLike | None = None,
    split: str = "all",
    seed: int = 0,
) -> AnnData:
    """Sets of real 8x8 digit images with known class proportions, shaped for image models.

    The same sets as :func:`~scgde.datasets.digits_mixtures` (same arguments, same seed, same draws): set ``i`` has
    proportions ``p_i ~ Dirichlet(alpha 1_K)`` over ``classes`` and its images are real scikit-learn digits. This is
    the paper's MNIST-mixture simplex (Fig. 3), with the pixels as an image stack instead of a feature matrix.

    Parameters
    ----------
    n_sets, set_size
        Number of sets and images per set (``n_sets`` is ignored when ``proportions`` is given).
    classes
        Distinct digit labels in 0-9 that make up the mixtures.
    alpha
        Dirichlet concentration: a number or an array of length ``len(classes)``, all > 0.
    proportions
        Optional fixed proportions ``(n_sets, K)`` (rows sum to 1), replacing the Dirichlet draw.
    split
        ``"train"``, ``"test"`` or ``"all"`` images (see :func:`~scgde.datasets.digits_split_indices`).
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per image and no variables (shape ``(n, 0)``): ``obsm["image"]`` float32
    ``(n, 1, 8, 8)`` in [0, 1] (the row-major reshape of ``digits_mixtures(...).X``), and the ``obs``
    (``set``, ``digit``, ``image``) and ``uns["synthetic"]`` truth of :func:`~scgde.datasets.digits_mixtures`.

    Examples
    --------
    >>> adata = digit_image_sets(n_sets=10, set_size=50, seed=0)
    >>> adata.shape, adata.obsm["image"].shape
    ((500, 0), (500, 1, 8, 8))
    >>> adata.uns["synthetic"]["proportions"].shape
    (10, 3)
    """
    flat = digits_mixtures(
        n_sets=n_sets, set_size=set_size, classes=classes, alpha=alpha, proportions=proportions, split=split, seed=seed
    )
    images = np.ascontiguousarray(np.asarray(flat.X, dtype=np.float32).reshape(flat.n_obs, 1, 8, 8))
    return AnnData(obs=flat.obs.copy(), obsm={"image": images}, uns=dict(flat.uns))


# ---------------------------------------------------------------------------------------------------------------------
# real nuclei (stardist's Data Science Bowl 2018 test image)
# ---------------------------------------------------------------------------------------------------------------------


def _load_nuclei() -> tuple[np.ndarray, np.ndarray]:
    try:
        from stardist.data import test_image_nuclei_2d
    except ImportError as err:
        raise ImportError(
            'nuclei_crops needs stardist for its shipped test image: `pip install stardist` (or `pip install "scgde[img]"`).'
        ) from err
    img, labels = test_image_nuclei_2d(return_mask=True)
    return np.asarray(img), np.asarray(labels)


def nuclei_crops(crop_size: int = 32, scale: float = 1.0, min_area: int = 30) -> AnnData:
    """Crops of real fluorescence nuclei, one per segmented nucleus, with their masks and morphology.

    The image is stardist's shipped 2-D test image (a 512x512 uint16 fluorescence field from the 2018 Data Science
    Bowl, Caicedo et al., Nat. Methods 2019) with its labelled ground-truth mask. Every nucleus of at least
    ``min_area`` pixels gives a ``crop_size`` x ``crop_size`` crop whose pixel ``(crop_size // 2, crop_size // 2)``
    holds the nucleus centroid (zero padding where the crop leaves the image). A crop also shows parts of its
    neighbours; ``obsm["mask"]`` marks the nucleus' own pixels.

    Parameters
    ----------
    crop_size
        Side of the square crops in pixels (>= 8).
    scale
        Resize factor applied to the whole image (and, nearest-neighbour, to the mask) before cropping, e.g. 0.5 to
        fit more context into a crop. The image keeps its uint16 range.
    min_area
        Smallest nucleus kept, in pixels of the original image.

    Returns
    -------
    AnnData with one row per nucleus (``obs_names`` ``"nucleus_<label>"``) and no variables:

    - ``obsm["image"]`` uint16 ``(n, 1, crop_size, crop_size)``; ``obsm["mask"]`` bool ``(n, crop_size, crop_size)``;
      ``obsm["spatial"]`` float ``(n, 2)``: the centroid ``(row, col)`` in original pixels.
    - ``obs``: ``label`` (in the mask), ``area`` (pixels of the whole nucleus in the original image),
      ``mean_intensity`` and ``eccentricity`` (of the original image and mask), ``crop_clipped`` (the nucleus
      extends past its crop).
    - ``uns["nuclei"]``: ``source``, ``image_shape`` (after rescaling), ``crop_size``, ``scale``, ``min_area``.

    Nuclei that vanish when the mask is downscaled are left out.

    Examples
    --------
    >>> adata = nuclei_crops(crop_size=32)  # doctest: +SKIP
    >>> adata.obsm["image"].shape[1:], adata.obsm["image"].dtype  # doctest: +SKIP
    ((1, 32, 32), dtype('uint16'))
    """
    crop_size = _check_int("crop_size", crop_size, minimum=8)
    scale = _check_positive("scale", scale)
    min_area = _check_int("min_area", min_area, minimum=0)
    from skimage.measure import regionprops

    img, labels = _load_nuclei()
    img = img.astype(np.uint16, copy=False)
    labels = labels.astype(np.int64, copy=False)

    # morphology is measured once on the original image, so it does not depend on `scale`
    props = [p for p in regionprops(labels, intensity_image=img) if p.area >= min_area]
    if scale != 1.0:
        from skimage.transform import rescale

        img_s = rescale(img, scale, order=1, preserve_range=True, anti_aliasing=scale < 1)
        img_s = np.clip(np.rint(img_s), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        lab_s = rescale(labels, scale, order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)
    else:
        img_s, lab_s = img, labels
    # centroids and sizes as seen in the (rescaled) image the crops come from
    scaled = {p.label: p for p in regionprops(lab_s)}
    props = [p for p in props if p.label in scaled]

    half = crop_size // 2
    pad = crop_size  # enough for a crop centred on any pixel
    img_p = np.pad(img_s, pad)
    lab_p = np.pad(lab_s, pad)
    n = len(props)
    images = np.zeros((n, 1, crop_size, crop_size), dtype=np.uint16)
    masks = np.zeros((n, crop_size, crop_size), dtype=bool)
    clipped = np.zeros(n, dtype=bool)
    for i, p in enumerate(props):
        r, c = np.rint(scaled[p.label].centroid).astype(int) + pad - half
        images[i, 0] = img_p[r : r + crop_size, c : c + crop_size]
        masks[i] = lab_p[r : r + crop_size, c : c + crop_size] == p.label
        clipped[i] = masks[i].sum() < scaled[p.label].area

    obs = pd.DataFrame(
        {
            "label": np.array([p.label for p in props], dtype=np.int64),
            "area": np.array([p.area for p in props], dtype=np.int64),
            "mean_intensity": np.array([p.intensity_mean for p in props], dtype=np.float64),
            "eccentricity": np.array([p.eccentricity for p in props], dtype=np.float64),
            "crop_clipped": clipped,
        },
        index=[f"nucleus_{p.label}" for p in props],
    )
    spatial = np.array([p.centroid for p in props], dtype=np.float64).reshape(n, 2)
    uns = {
        "nuclei": {
            "source": "stardist test_image_nuclei_2d (Data Science Bowl 2018)",
            "image_shape": [int(s) for s in img_s.shape],
            "crop_size": crop_size,
            "scale": scale,
            "min_area": min_area,
        }
    }
    return AnnData(obs=obs, obsm={"image": images, "mask": masks, "spatial": spatial}, uns=uns)


# ---------------------------------------------------------------------------------------------------------------------
# optical pooled screen simulator
# ---------------------------------------------------------------------------------------------------------------------

#: per-cell parameters of an unperturbed cell; radii are fractions of the image side, intensities of 255
_BASELINE = {"log_radius": float(np.log(0.16)), "log_dapi": float(np.log(0.5)), "log_elongation": 0.3}
_BASELINE.update(log_gfp=float(np.log(0.35)), log_radius_sd=float(np.log(0.08)))
#: cell-to-cell standard deviations (the radius one is modulated per gene by ``log_radius_sd``)
_CELL_SD = {"log_dapi": 0.1, "log_elongation": 0.08, "log_gfp": 0.12}
#: effect sizes at ``effect_scale=1`` and how the gene's linear score maps to the effect
_AMPLITUDE = {"log_radius": 0.12, "log_dapi": 0.3, "log_elongation": 0.15, "log_gfp": 0.4, "log_radius_sd": 0.5}
_LINK = {"log_radius": "linear", "log_dapi": "tanh", "log_elongation": "linear", "log_gfp": "tanh"}
_LINK["log_radius_sd"] = "soft_threshold_0.75"


def _gene_effects(scores: np.ndarray) -> np.ndarray:
    """Effects ``(n_genes, 5)`` from linear scores ``F W``: linear for size and shape, saturating for intensity."""
    out = np.empty_like(scores)
    for j, name in enumerate(_EFFECTS):
        z = scores[:, j]
        if _LINK[name] == "tanh":
            z = np.tanh(z)
        elif name == "log_radius_sd":
            # only genes with a strong score change the spread: a sparse, non-linear effect
            z = np.sign(z) * np.maximum(np.abs(z) - 0.75, 0.0)
        out[:, j] = _AMPLITUDE[name] * z
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _render(cells: dict[str, np.ndarray], size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 images ``(m, 2, size, size)`` of the cells in ``cells`` (arrays of length ``m``)."""
    grid = np.arange(size, dtype=np.float32) + 0.5 - size / 2.0  # pixel centres around the image centre
    dy = grid[None, :, None] - cells["dy"][:, None, None]
    dx = grid[None, None, :] - cells["dx"][:, None, None]
    cos, sin = np.cos(cells["theta"])[:, None, None], np.sin(cells["theta"])[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    a, b = cells["a"][:, None, None], cells["b"][:, None, None]
    # elliptical radius: 1 on the nucleus boundary; edges are ~0.5 px wide sigmoids
    d_nuc = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    nuc = _sigmoid((1.0 - d_nuc) * np.sqrt(a * b) / 0.5)
    k = cells["cyto"][:, None, None]
    cyto = _sigmoid((1.0 - d_nuc / k) * np.sqrt(a * b) * k / 0.7)
    # mild radial texture: brighter centre and faint rings (random phase), like chromatin
    texture = (1.0 - 0.2 * d_nuc**2) * (1.0 + 0.06 * np.cos(7.0 * d_nuc + cells["phase"][:, None, None]))
    dapi = cells["dapi"][:, None, None] * nuc * texture
    gfp = cells["gfp"][:, None, None] * cyto * (1.0 - 0.7 * nuc)
    img = np.stack([dapi, gfp], axis=1) + 0.03  # faint background
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def pooled_screen(
    n_genes: int = 40,
    cells_per_gene: int = 200,
    n_control: int = 400,
    image_size: int = 32,
    n_features: int = 16,
    effect_scale: float = 1.0,
    noise: float = 0.05,
    seed: int = 0,
) -> AnnData:
    """Simulated optical pooled screen: 2-channel cell images under gene knockouts, with planted effects.

    Each targeted gene ``g`` has a feature vector ``f_g ~ N(0, I)`` of length ``n_features`` (standing in for
    GenePT or ESM embeddings). A fixed random map ``W ~ N(0, effect_scale^2 / n_features)`` gives linear scores
    ``s_g = f_g W`` for five morphology effects, mapped to effects as ``amplitude * link(s_g)``:

    ======================  =========  =======================================================  ==================
    effect                  amplitude  meaning                                                   link
    ======================  =========  =======================================================  ==================
    ``log_radius``          0.12       mean log nucleus radius                                   linear
    ``log_dapi``            0.3        mean log DAPI (nucleus) intensity                         tanh
    ``log_elongation``      0.15       mean log aspect ratio of the nucleus (area-preserving)    linear
    ``log_gfp``             0.4        mean log GFP (cytoplasm) intensity                        tanh
    ``log_radius_sd``       0.5        log of the cell-to-cell SD of log radius (spread)         soft threshold 0.75
    ======================  =========  =======================================================  ==================

    so a linear predictor from features is good but not perfect, and about half of the genes change the *spread*
    of nucleus size, not only its mean. Control cells (``"nontargeting"``) have all effects 0. Every cell draws its
    parameters as baseline + gene effect + Gaussian cell noise (SD 0.08 for log radius, scaled by
    ``exp(log_radius_sd)``), and a random orientation and small centre offset, and is rendered as:

    - channel 0, DAPI: a filled ellipse with a smooth (sigmoid) edge, brighter centre and faint rings;
    - channel 1, GFP: a ~1.8x larger cytoplasm ellipse around it, dimmer over the nucleus;

    plus Gaussian pixel noise of SD ``noise * 255``, rounded and clipped to uint8. Semi-axes are clipped so that the
    cytoplasm stays inside the image (the reported truth is what was rendered).

    Parameters
    ----------
    n_genes
        Targeted genes (``"G000"``, ``"G001"``, ...).
    cells_per_gene
        Cells per targeted gene.
    n_control
        Non-targeting control cells (may be 0).
    image_size
        Side of the square images in pixels (>= 16); cell sizes scale with it.
    n_features
        Length of the gene feature vectors.
    effect_scale
        Multiplies the linear scores (0 gives no effects at all).
    noise
        Pixel noise SD relative to 255.
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per cell (controls first, then the genes in order) and no variables:

    - ``obsm["image"]`` uint8 ``(n, 2, image_size, image_size)``, channels in ``uns["channels"]`` (``["DAPI", "GFP"]``);
    - ``obs["gene"]`` categorical (``"nontargeting"`` first) and the per-cell truth ``nucleus_area`` (pixels,
      ``pi a b``), ``dapi_intensity`` and ``gfp_intensity`` (peak brightness relative to 255) and ``elongation``
      (major / minor axis);
    - ``uns["gene_features"]`` DataFrame ``(n_genes, n_features)`` of the targeted genes;
      ``uns["gene_effects"]`` DataFrame (``"nontargeting"`` row of zeros, then the genes) x the five effects;
      ``uns["pooled_screen"]`` the parameters, baselines and links (JSON-serialisable).

    Examples
    --------
    >>> adata = pooled_screen(n_genes=5, cells_per_gene=20, n_control=40, seed=0)
    >>> adata.obsm["image"].shape, adata.obsm["image"].dtype
    ((140, 2, 32, 32), dtype('uint8'))
    >>> list(adata.obs["gene"].cat.categories[:2]), adata.uns["gene_effects"].shape
    (['nontargeting', 'G000'], (6, 5))
    """
    n_genes = _check_int("n_genes", n_genes)
    cells_per_gene = _check_int("cells_per_gene", cells_per_gene)
    n_control = _check_int("n_control", n_control, minimum=0)
    image_size = _check_int("image_size", image_size, minimum=16)
    n_features = _check_int("n_features", n_features)
    effect_scale = _check_nonnegative("effect_scale", effect_scale)
    noise = _check_nonnegative("noise", noise)
    seed = _check_int("seed", seed, minimum=0)  # an int, so the parameters stay serialisable
    rng = np.random.default_rng(seed)

    width = max(3, len(str(n_genes - 1)))
    genes = [f"G{i:0{width}d}" for i in range(n_genes)]
    features = rng.standard_normal((n_genes, n_features))
    w = rng.standard_normal((n_features, len(_EFFECTS))) * effect_scale / np.sqrt(n_features)
    effects = np.vstack([np.zeros((1, len(_EFFECTS))), _gene_effects(features @ w)])

    # per-cell parameters: baseline + effect of the cell's gene + cell noise
    code = np.concatenate([np.zeros(n_control, dtype=np.int64), np.repeat(np.arange(1, n_genes + 1), cells_per_gene)])
    n = len(code)
    eff = {name: effects[code, j] for j, name in enumerate(_EFFECTS)}
    radius_sd = np.exp(_BASELINE["log_radius_sd"] + eff["log_radius_sd"])
    log_r = _BASELINE["log_radius"] + eff["log_radius"] + radius_sd * rng.standard_normal(n)
    log_e = _BASELINE["log_elongation"] + eff["log_elongation"] + _CELL_SD["log_elongation"] * rng.standard_normal(n)
    log_d = _BASELINE["log_dapi"] + eff["log_dapi"] + _CELL_SD["log_dapi"] * rng.standard_normal(n)
    log_g = _BASELINE["log_gfp"] + eff["log_gfp"] + _CELL_SD["log_gfp"] * rng.standard_normal(n)
    cyto = 1.8 * np.exp(0.05 * rng.standard_normal(n))
    theta = rng.uniform(0.0, np.pi, n)
    offset = np.clip(rng.normal(0.0, 0.03, (n, 2)), -0.06, 0.06) * image_size
    phase = rng.uniform(0.0, 2.0 * np.pi, n)

    # area-preserving elongation; semi-axes in pixels, clipped so the cytoplasm fits in the image
    elong = np.exp(np.maximum(log_e, 0.0))
    r = np.exp(log_r) * image_size
    a_max = (0.5 - 0.06) * image_size / cyto
    a = np.clip(r * np.sqrt(elong), 1.0, a_max)
    b = np.clip(r / np.sqrt(elong), 1.0, a)
    dapi, gfp = np.exp(log_d), np.exp(log_g)

    images = np.empty((n, 2, image_size, image_size), dtype=np.uint8)
    chunk = max(1, 2**21 // image_size**2)  # ~8 MB float32 per temporary array
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        cells = {"a": a[sl], "b": b[sl], "theta": theta[sl], "dy": offset[sl, 0], "dx": offset[sl, 1]}
        cells.update(cyto=cyto[sl], phase=phase[sl], dapi=dapi[sl], gfp=gfp[sl])
        cells = {k: v.astype(np.float32) for k, v in cells.items()}
        images[sl] = _render(cells, image_size, noise, rng)

    categories = [_CONTROL, *genes]
    obs = pd.DataFrame(
        {
            "gene": pd.Categorical.from_codes(code, categories=categories),
            "nucleus_area": np.pi * a * b,
            "dapi_intensity": dapi,
            "gfp_intensity": gfp,
            "elongation": a / b,
        },
        index=[f"cell_{i:0{len(str(max(n - 1, 0)))}d}" for i in range(n)],
    )
    params = {
        "n_genes": n_genes,
        "cells_per_gene": cells_per_gene,
        "n_control": n_control,
        "image_size": image_size,
        "n_features": n_features,
        "effect_scale": effect_scale,
        "noise": noise,
        "seed": seed,
        "control": _CONTROL,
        "effects": list(_EFFECTS),
        "baseline": dict(_BASELINE),
        "cell_sd": dict(_CELL_SD),
        "amplitude": dict(_AMPLITUDE),
        "link": dict(_LINK),
        "cytoplasm_ratio": 1.8,
    }
    uns = {
        "gene_features": pd.DataFrame(features, index=genes, columns=[f"f{j:02d}" for j in range(n_features)]),
        "gene_effects": pd.DataFrame(effects, index=categories, columns=list(_EFFECTS)),
        "channels": ["DAPI", "GFP"],
        "pooled_screen": params,
    }
    return AnnData(obs=obs, obsm={"image": images}, uns=uns)
