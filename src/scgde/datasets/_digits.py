"""Dirichlet mixtures of real handwritten digits (scikit-learn's 8x8 ``load_digits``, shipped offline)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from numbers import Integral

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import ArrayLike

from ._synthetic import _as_adata, _check_alpha, _check_int, _check_simplex_rows

_SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images ``(1797, 64)`` scaled to [0, 1] and their labels (read-only, cached)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.asarray(data.data, dtype=np.float64) / 16.0
    labels = np.asarray(data.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits_split_indices(split: str = "all") -> np.ndarray:
    """Indices into ``sklearn.datasets.load_digits()`` of the images in a split.

    The split is fixed and stratified: within each digit class, in dataset order, images at even positions are
    ``"train"`` and images at odd positions ``"test"`` (about 50/50 per class; independent of any seed).

    Parameters
    ----------
    split
        ``"train"``, ``"test"`` or ``"all"``.

    Returns
    -------
    Sorted int64 array of image indices.

    Examples
    --------
    >>> train, test = digits_split_indices("train"), digits_split_indices("test")
    >>> len(train) + len(test), len(np.intersect1d(train, test))
    (1797, 0)
    """
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {_SPLITS}; got {split!r}.")
    _, labels = _load_digits()
    if split == "all":
        return np.arange(len(labels))
    # rank of every image within its class, in dataset order
    order = np.argsort(labels, kind="stable")
    rank = np.empty(len(labels), dtype=np.int64)
    starts = np.searchsorted(labels[order], np.arange(10))
    rank[order] = np.arange(len(labels)) - np.repeat(starts, np.bincount(labels, minlength=10))
    keep = rank % 2 == (0 if split == "train" else 1)
    return np.flatnonzero(keep)


def digits_mixtures(
    n_sets: int = 600,
    set_size: int = 100,
    classes: Sequence[int] = (0, 1, 2),
    alpha: float | ArrayLike = 1.0,
    proportions: ArrayLike | None = None,
    split: str = "all",
    seed: int = 0,
) -> AnnData:
    """Sets of real 8x8 digit images whose class proportions are known exactly.

    Set ``i`` has class proportions ``p_i ~ Dirichlet(alpha 1_K)`` over ``classes`` (or the given ``proportions``).
    Its per-class counts are ``Multinomial(set_size, p_i)``, and the images of each class are drawn uniformly with
    replacement from that class's images in ``split``; the order within a set is then shuffled. This is the
    small-scale, offline analogue of the paper's MNIST-multinomial sets (digits 0, 1, 2; Dirichlet(1, 1, 1)).

    Parameters
    ----------
    n_sets, set_size
        Number of sets and images per set. ``n_sets`` is ignored when ``proportions`` is given.
    classes
        Distinct digit labels in 0-9 that make up the mixtures (``K = len(classes)``).
    alpha
        Dirichlet concentration: a number (``alpha * 1_K``) or an array of length ``K``, all > 0.
    proportions
        Optional fixed proportions ``(n_sets, K)``, rows summing to 1, columns aligned with ``classes``
        (e.g. ``simplex_grid(3, 9)``); replaces the Dirichlet draw.
    split
        Which images to draw from: ``"train"``, ``"test"`` (a fixed, stratified even/odd partition, see
        :func:`digits_split_indices`) or ``"all"``. Use ``"train"`` for training sets and ``"test"`` for held-out sets
        made of unseen images.
    seed
        Random seed; the same seed gives identical data.

    Returns
    -------
    AnnData with one row per image (``X`` float32 pixels in [0, 1], 64 columns ``pixel0 ...``, row-major 8x8),
    ``obs["set"]``, ``obs["digit"]`` (categorical label), ``obs["image"]`` (index into ``load_digits()``), and in
    ``uns["synthetic"]`` the truth ``proportions (n_sets, K)``, the realised ``counts (n_sets, K)``, ``classes (K,)``
    and ``params``.

    Examples
    --------
    >>> adata = digits_mixtures(n_sets=10, set_size=50, classes=(0, 1, 2), seed=0)
    >>> adata.shape, adata.uns["synthetic"]["proportions"].shape
    ((500, 64), (10, 3))
    >>> sorted(adata.obs["digit"].cat.categories)
    [0, 1, 2]
    """
    set_size = _check_int("set_size", set_size)
    try:
        class_list = list(classes)
    except TypeError:
        raise ValueError(f"`classes` must be a sequence of digit labels in 0-9; got {classes!r}.") from None
    if not class_list:
        raise ValueError("`classes` must name at least one digit.")
    for c in class_list:
        if isinstance(c, bool) or not isinstance(c, Integral) or not 0 <= c <= 9:
            raise ValueError(f"`classes` must contain digit labels in 0-9; unknown class {c!r}.")
    class_arr = np.asarray(class_list, dtype=np.int64)
    if len(np.unique(class_arr)) != len(class_arr):
        raise ValueError(f"`classes` must be distinct; got {class_list}.")
    k = len(class_arr)
    pool = digits_split_indices(split)  # validates split
    rng = np.random.default_rng(seed)

    params: dict = {"split": split, "seed": seed, "image_shape": [8, 8]}
    if proportions is None:
        n_sets = _check_int("n_sets", n_sets)
        alpha_vec = _check_alpha(alpha, k)
        props = rng.dirichlet(alpha_vec, size=n_sets)
        params.update(alpha=alpha_vec, proportions_given=False)
    else:
        props = _check_simplex_rows("proportions", proportions, k=k)
        n_sets = props.shape[0]
        params["proportions_given"] = True

    images, labels = _load_digits()
    # the split's images grouped by class (in the order of ``classes``)
    by_class = [pool[labels[pool] == c] for c in class_arr]
    sizes = np.array([len(b) for b in by_class])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    grouped = np.concatenate(by_class)

    counts = rng.multinomial(set_size, props)  # (n_sets, K)
    slot = np.repeat(np.tile(np.arange(k), n_sets), counts.ravel()).reshape(n_sets, set_size)
    slot = rng.permuted(slot, axis=1)
    pick = rng.integers(0, sizes[slot])
    image_idx = grouped[offsets[slot] + pick]  # (n_sets, set_size)

    truth = {"proportions": props, "counts": counts, "classes": class_arr, "params": params}
    adata = _as_adata(list(images[image_idx]), truth, "digits", var_prefix="pixel")
    flat = image_idx.ravel()
    adata.obs["digit"] = pd.Categorical(labels[flat], categories=class_list)
    adata.obs["image"] = flat
    return adata
