"""GDE as a patpy sample-representation method (``pip install "scgde[patpy]"``).

`patpy <https://github.com/lueckenlab/patpy>`_ collects sample (donor, patient) representations --
pseudobulk, cell-type composition, GloScope, PILOT, MrVI, WassersteinTSNE, ... -- behind one interface,
:class:`patpy.tl.SampleRepresentationMethod`, and scores them with the same evaluation functions.
:class:`GDESampleRepresentation` puts GDE beside them: every sample is one set, its GDE latent vector is the
sample's representation, and distances between samples are L2 distances between those vectors. Unlike MrVI,
whose samples are fixed at training (a new sample needs scArches surgery), a trained GDE embeds samples it has
never seen with one forward pass of its encoder (:meth:`GDESampleRepresentation.embed_new`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.spatial.distance
from anndata import AnnData

from scgde.data import layer_names

_DISTANCES = ("euclidean", "cosine", "cityblock")
_CLASS: type | None = None


def _patpy_base() -> type:
    try:
        from patpy.tl import SampleRepresentationMethod
    except ImportError as err:  # patpy is an optional dependency
        raise ImportError(
            'GDESampleRepresentation needs patpy (the sample-representation toolbox): pip install "scgde[patpy]"'
        ) from err
    return SampleRepresentationMethod


def __getattr__(name: str):
    """``GDESampleRepresentation`` is built on first access (PEP 562), so this module imports without patpy."""
    global _CLASS
    if name != "GDESampleRepresentation":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _CLASS is None:
        _CLASS = type(
            "GDESampleRepresentation",
            (_GDESampleRepresentation, _patpy_base()),
            {"__module__": __name__, "__doc__": _GDESampleRepresentation.__doc__},
        )
    return _CLASS


class _GDESampleRepresentation:
    """Samples (donors, patients) represented by their GDE set embedding, as a patpy method.

    Each sample's cells form one set of a :class:`scgde.model.GDE` (``GDE.setup_anndata(adata,
    set_key=sample_key)``). :meth:`prepare_anndata` trains that model (``train()`` with its defaults, or with
    ``train_kwargs``) unless a trained ``model`` is given, then embeds every sample from all its cells
    (streaming-exact: the same vector as encoding the sample whole). :meth:`calculate_distance_matrix` returns
    the sample x sample L2 distances of the embeddings, in the order of :attr:`samples`, like patpy's other
    methods, so patpy's evaluation (``evaluate_representation``, ``predict_metadata``, ``fit_linear_probe``,
    ``embed``, ``plot_clustermap``, ``to_adata``) works unchanged. :meth:`embed_new` and
    :meth:`new_sample_distances` embed samples never seen in training by a forward pass, without retraining.

    Parameters
    ----------
    sample_key
        Column of ``adata.obs`` naming each cell's sample.
    cell_group_key
        Column of cell groups (cell types). GDE does not use it; accepted for patpy's common signature.
    layer
        Features the GDE reads, as patpy resolves ``layer``: ``None`` or ``"X"`` for ``adata.X``; otherwise a
        key of ``adata.obsm`` (e.g. ``"X_pca"``; looked up first) or of ``adata.layers``. Values must be of the
        kind the model's likelihood expects (log-normalised or embedding values for the default Gaussian
        likelihood; counts with ``model_kwargs={"likelihood": "nb"}``).
    seed
        Seed of the training (set as ``scvi.settings.seed`` before the model is built and trained).
    batch_key
        Optional column of ``adata.obs`` with the batch; the generator is conditioned on it, so that the sample
        embeddings need not encode batch effects.
    model
        A trained :class:`scgde.model.GDE` to use instead of training one. Its features must be those selected by
        ``layer`` (for an ``obsm`` key: columns named ``"{layer}_0"``, ``"{layer}_1"``, ...).
    model_kwargs
        Keyword arguments of :class:`scgde.model.GDE` (``n_latent``, ``encoder``, ``likelihood``, ...).
    train_kwargs
        Keyword arguments of :meth:`scgde.model.GDE.train` (default: none, i.e. ``train()``).

    Attributes
    ----------
    model
        The trained :class:`scgde.model.GDE` (after :meth:`prepare_anndata`).
    sample_representation
        DataFrame, one row per sample (index: :attr:`samples`), columns ``gde_0, ...``.

    Notes
    -----
    As every patpy method does, the distance matrix is cached in ``adata.uns["X_gde_distances"]`` (and the
    parameters in ``adata.uns["gde_parameters"]``). The model is set up on a separate AnnData that shares the
    user's matrix: ``adata.X``, layers, ``obs`` and ``obsm`` are not modified.

    Examples
    --------
    Eight donors whose cells differ only in spread: four N(0, I), four N(0, 9 I), same mean:

    >>> from scgde.tl import GDESampleRepresentation
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0.0, 1.0 + 2.0 * (d >= 4), (80, 4)) for d in range(8)]).astype(np.float32)
    >>> obs = pd.DataFrame(
    ...     {"donor": np.repeat([f"d{d}" for d in range(8)], 80), "spread": np.repeat(["narrow", "wide"], 320)},
    ...     index=[f"c{i}" for i in range(640)],
    ... )
    >>> cells = ad.AnnData(x, obs=obs)
    >>> gde = GDESampleRepresentation(
    ...     "donor",
    ...     model_kwargs={"n_latent": 4, "n_hidden": 32},
    ...     train_kwargs={"max_epochs": 20, "batches_per_epoch": 5, "enable_progress_bar": False},
    ... )
    >>> gde.prepare_anndata(cells)  # trains a GDE with one set per donor, then embeds every donor
    >>> gde.calculate_distance_matrix().shape  # donor x donor, in the order of gde.samples
    (8, 8)
    >>> gde.evaluate_representation(target="spread", method="silhouette")["score"] > 0  # patpy's evaluation
    True

    A donor never seen in training is embedded by a forward pass of the encoder (no retraining); here the cells
    of donor ``d5`` under a new name, so its nearest fitted donor is ``d5`` itself:

    >>> new = cells[cells.obs["donor"] == "d5"].copy()
    >>> new.obs["donor"] = "new_donor"
    >>> gde.new_sample_distances(new).idxmin(axis=1).to_dict()
    {'new_donor': 'd5'}
    """

    DISTANCES_UNS_KEY = "X_gde_distances"

    def __init__(
        self,
        sample_key: str,
        cell_group_key: str | None = None,
        layer: str | None = None,
        seed: int = 67,
        batch_key: str | None = None,
        model: Any | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        train_kwargs: Mapping[str, Any] | None = None,
    ):
        if not isinstance(sample_key, str):
            raise TypeError(f"sample_key must be the name of an adata.obs column (a str), got {sample_key!r}.")
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"layer must be None, 'X', or a key of adata.obsm / adata.layers (a str), got {layer!r}.")
        for name, value in (("model_kwargs", model_kwargs), ("train_kwargs", train_kwargs)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a dict of keyword arguments or None, got {type(value).__name__}.")
        if model is not None:
            from scgde.model import GDE

            if not isinstance(model, GDE):
                raise TypeError(f"model must be a trained scgde.model.GDE, got {type(model).__name__}.")
            if model_kwargs or train_kwargs:
                raise ValueError(
                    "model= is an already trained GDE, so model_kwargs= and train_kwargs= would be ignored: "
                    "pass either model= or the kwargs to train a new one."
                )
        super().__init__(sample_key=sample_key, cell_group_key=cell_group_key, layer=layer, seed=seed)
        self.batch_key = batch_key
        self.model = model
        self.model_kwargs = dict(model_kwargs or {})
        self.train_kwargs = dict(train_kwargs or {})
        self._feature_names: pd.Index | None = None

    # ------------------------------------------------------------------ data
    def _features(self, adata: AnnData, argument: str):
        """The matrix selected by ``layer`` and its feature names (no copy)."""
        if self.layer is None or self.layer == "X":
            return adata.X, pd.Index(adata.var_names.astype(str))
        if self.layer in adata.obsm:
            x = adata.obsm[self.layer]
            if isinstance(x, pd.DataFrame):
                x = x.to_numpy()
            return x, pd.Index([f"{self.layer}_{i}" for i in range(x.shape[1])])
        if self.layer in adata.layers:
            return adata.layers[self.layer], pd.Index(adata.var_names.astype(str))
        raise ValueError(
            f"layer={self.layer!r} is neither a key of {argument}.obsm ({list(adata.obsm.keys())}) nor of "
            f"{argument}.layers ({layer_names(adata)}). Pass layer=None for {argument}.X, or the key that "
            "holds the features (e.g. layer='X_pca' after sc.pp.pca)."
        )

    def _set_adata(self, adata: AnnData, sample_key: str, argument: str) -> AnnData:
        """A lean AnnData for the GDE: the selected matrix (shared, not copied) and the keys it needs."""
        if not isinstance(adata, AnnData):
            raise TypeError(f"{argument} must be an AnnData, got {type(adata).__name__}.")
        if sample_key not in adata.obs.columns:
            raise ValueError(
                f"sample_key={sample_key!r} is not a column of {argument}.obs (columns: {list(adata.obs.columns)}); "
                "pass the column that names each cell's sample."
            )
        if adata.obs[sample_key].isna().any():
            n = int(adata.obs[sample_key].isna().sum())
            raise ValueError(
                f"{n} cells of {argument} have no sample ({sample_key!r} is missing); drop them first, e.g. "
                f"{argument}[{argument}.obs[{sample_key!r}].notna()]."
            )
        keys = [sample_key]
        if self.batch_key is not None:
            if self.batch_key not in adata.obs.columns:
                raise ValueError(f"batch_key={self.batch_key!r} is not a column of {argument}.obs.")
            keys.append(self.batch_key)
        x, names = self._features(adata, argument)
        obs = pd.DataFrame({k: adata.obs[k].to_numpy() for k in keys}, index=adata.obs_names.copy())
        return AnnData(X=x, obs=obs, var=pd.DataFrame(index=names))

    def _embed(self, set_adata: AnnData, sample_key: str, samples) -> pd.DataFrame:
        emb = self.model.get_set_representation(set_adata, set_key=sample_key, progress_bar=False)
        emb = emb.loc[[str(s) for s in samples]]
        emb.index = pd.Index(samples, name=sample_key)
        return emb

    # ------------------------------------------------------------------ patpy API
    def prepare_anndata(self, adata: AnnData) -> None:
        """Train (or take) the GDE on the samples of ``adata`` and embed every sample.

        Parameters
        ----------
        adata
            Cells with ``obs[sample_key]``; features in ``X``, ``layers[layer]`` or ``obsm[layer]``.
        """
        set_adata = self._set_adata(adata, self.sample_key, "adata")
        super().prepare_anndata(adata)
        self.samples = np.asarray(self.samples)
        if len(self.samples) < 2:
            raise ValueError(
                f"adata has {len(self.samples)} sample(s) in obs[{self.sample_key!r}]; sample distances need at least 2."
            )
        if self.model is None:
            import scvi

            from scgde.model import GDE

            scvi.settings.seed = self.seed
            GDE.setup_anndata(set_adata, set_key=self.sample_key, batch_key=self.batch_key)
            self.model = GDE(set_adata, **self.model_kwargs)
            self.model.train(**self.train_kwargs)
        self._feature_names = set_adata.var_names
        self.sample_representation = self._embed(set_adata, self.sample_key, self.samples)
        self.adata.uns.pop(self.DISTANCES_UNS_KEY, None)  # a previous fit's distances are stale
        self._fitted = True

    def calculate_distance_matrix(self, force: bool = False, dist: str = "euclidean") -> np.ndarray:
        """Sample x sample distances between the GDE embeddings (order: :attr:`samples`).

        Parameters
        ----------
        force
            Recompute instead of returning the matrix cached in ``adata.uns["X_gde_distances"]``.
        dist
            ``"euclidean"`` (the latent L2 distance GDE is trained for), ``"cosine"`` or ``"cityblock"``.
        """
        self._check_adata_loaded()
        self._check_fitted()
        if dist not in _DISTANCES:
            raise ValueError(f"dist={dist!r} is not supported; choose one of {list(_DISTANCES)}.")
        cached = self.adata.uns.get("gde_parameters", {}).get("distance_type") == dist
        if not force and cached and self.DISTANCES_UNS_KEY in self.adata.uns:
            return self.adata.uns[self.DISTANCES_UNS_KEY]
        distances = scipy.spatial.distance.squareform(
            scipy.spatial.distance.pdist(self.sample_representation.to_numpy(np.float64), metric=dist)
        )
        self.adata.uns[self.DISTANCES_UNS_KEY] = distances
        self.adata.uns["gde_parameters"] = {
            "sample_key": self.sample_key,
            "layer": "X" if self.layer is None else self.layer,
            "distance_type": dist,
            "n_latent": int(self.sample_representation.shape[1]),
        }
        return distances

    # ------------------------------------------------------------------ unseen samples
    def embed_new(self, adata_new: AnnData, sample_key: str | None = None) -> pd.DataFrame:
        """Embed the samples of ``adata_new`` with the trained GDE: a forward pass, no retraining.

        Parameters
        ----------
        adata_new
            Cells of new (or known) samples, with the features of the fitted data in the same ``layer`` (genes
            are matched by name; an ``obsm`` embedding must be in the same coordinates, e.g. projected with the
            training PCA's loadings).
        sample_key
            Column of ``adata_new.obs`` naming the samples (default: the method's ``sample_key``).

        Returns
        -------
        DataFrame with one row per sample of ``adata_new`` (in order of first appearance) and the columns of
        :attr:`sample_representation`. A sample given with the same cells as in training gets the same vector.
        """
        self._check_fitted()
        key = self.sample_key if sample_key is None else sample_key
        set_adata = self._set_adata(adata_new, key, "adata_new")
        if self._feature_names is not None and not set_adata.var_names.equals(self._feature_names):
            missing = self._feature_names.difference(set_adata.var_names)
            if len(missing) or self.layer in adata_new.obsm:
                raise ValueError(
                    f"adata_new's features (layer={self.layer!r}) differ from the fitted data's: "
                    f"{len(missing)} missing (e.g. {list(missing[:3])}), {set_adata.n_vars} given vs "
                    f"{len(self._feature_names)} fitted. Give adata_new the fitted features."
                )
            set_adata = set_adata[:, self._feature_names].copy()  # matched by name: extra genes dropped, order fixed
        samples = pd.unique(adata_new.obs[key].to_numpy())
        return self._embed(set_adata, key, samples)

    def new_sample_distances(
        self, adata_new: AnnData, sample_key: str | None = None, dist: str = "euclidean"
    ) -> pd.DataFrame:
        """Distances from each sample of ``adata_new`` to each fitted sample (rows: new, columns: fitted).

        With these, a sample never seen in training is placed among the fitted ones, e.g. for a k-nearest-neighbour
        prediction of its phenotype, without retraining (MrVI would need scArches surgery).
        """
        if dist not in _DISTANCES:
            raise ValueError(f"dist={dist!r} is not supported; choose one of {list(_DISTANCES)}.")
        new = self.embed_new(adata_new, sample_key=sample_key)
        d = scipy.spatial.distance.cdist(
            new.to_numpy(np.float64), self.sample_representation.to_numpy(np.float64), metric=dist
        )
        return pd.DataFrame(d, index=new.index, columns=self.sample_representation.index)
