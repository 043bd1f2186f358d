"""``scgde.model.GDE``: generative distribution embeddings of sets of cells, scvi-tools style."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy.spatial.distance import cdist
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp, track

from scgde.data import (
    DirichletMixer,
    GroupSampler,
    KernelSampler,
    RowFetcher,
    SetDataModule,
    SetIndex,
    as_key_list,
    set_labels,
    split_sets,
)
from scgde.module import LIKELIHOODS, GDEModule
from scgde.nn import encode_stream

from ._training import GDETrainingPlan

logger = logging.getLogger(__name__)

#: default number of optimiser steps when ``max_epochs`` is not given
DEFAULT_STEPS = 2000
SetsOrEmbeddings = str | Sequence[str] | pd.DataFrame | np.ndarray


def _make_sampler(adata, index, sets, cells_per_set, mixer, kernel):
    """The training-set sampler for ``GDE.train`` options (group, Dirichlet mixer or kernel)."""
    if mixer is not None and kernel is not None:
        raise ValueError("Pass either mixer= or kernel=, not both.")
    if kernel is not None:
        options = dict(kernel)
        key = options.pop("obsm", None)
        if key not in adata.obsm:
            raise KeyError(f"kernel={{'obsm': {key!r}}} must name a key of adata.obsm; available: {list(adata.obsm)}.")
        return KernelSampler(index, np.asarray(adata.obsm[key]), cells_per_set, sets=sets, **options)
    if mixer is None:
        return GroupSampler(index, cells_per_set, sets)
    if not (mixer == "dirichlet" or isinstance(mixer, dict)):
        raise ValueError(f"mixer must be None, 'dirichlet' or a dict like {{'k': 3, 'alpha': 1.0}}; got {mixer!r}.")
    options = {} if mixer == "dirichlet" else dict(mixer)
    options["k"] = min(options.get("k", 3), len(sets))
    return DirichletMixer(index, cells_per_set, sets=sets, **options)


class _Chunks:
    """Re-iterable chunks ``(x, seg, weights)`` of the cells of the wanted sets, in file order."""

    def __init__(
        self, fetcher: RowFetcher, codes: np.ndarray, module: GDEModule, device, chunk_size: int, description: str
    ):
        self.fetcher, self.codes, self.module, self.device = fetcher, codes, module, device
        rows = np.flatnonzero(codes >= 0)
        # contiguous reads when most rows are needed (fast when backed), else only the wanted rows
        self.contiguous = len(rows) > 0.5 * len(codes)
        total = len(codes) if self.contiguous else len(rows)
        self.bounds = [(s, min(s + chunk_size, total)) for s in range(0, total, chunk_size)]
        self.rows = rows
        self.description = description
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        bounds = self.bounds
        if len(bounds) > 4:
            bounds = track(
                bounds, description=f"{self.description} (pass {self.passes})", style=settings.progress_bar_style
            )
        for start, stop in bounds:
            if self.contiguous:
                seg = self.codes[start:stop]
                keep = seg >= 0
                if not keep.any():
                    continue
                x = self.fetcher.slice(start, stop)
                if not keep.all():  # avoid copying a chunk that is all wanted
                    x, seg = x[keep], seg[keep]
            else:
                rows = self.rows[start:stop]
                x, seg = self.fetcher.rows(rows), self.codes[rows]
            x = self.module.encoder_input(torch.from_numpy(x).to(self.device))
            yield x, torch.from_numpy(seg).to(self.device), None


class GDE(UnsupervisedTrainingMixin, BaseModelClass):
    """Generative Distribution Embeddings of sets of cells (Fishman, Gowri et al., NeurIPS 2025).

    Each set of cells (a clone, a perturbation, a donor, ...) is encoded into one vector by an
    encoder that depends only on the set's empirical distribution; a conditional generator
    regenerates cells from that vector. Both train jointly on the generator's own loss over random
    subsets of each set. Latent distances then track Wasserstein distances between the sets, and
    any set of any size, also one never seen in training, can be embedded without retraining.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Dimension of the set embedding.
    encoder
        ``"resnet"`` (default: pool-and-concatenate blocks with skips, the paper's best),
        ``"attention"`` (induced self-attention), ``"deepsets"``, ``"mean"`` or ``"kme"`` (baselines).
    generator
        ``"cvae"`` (default), ``"ddpm"``, ``"flow"`` or ``"direct"``.
    likelihood
        ``"gaussian"`` (default; log-normalised, scaled or PCA data) or ``"nb"`` (raw counts, CVAE).
    n_hidden
        Hidden width of encoder and generator.
    **kwargs
        Passed to :class:`~scgde.module.GDEModule` (e.g. ``encoder_kwargs={"n_blocks": 4}``,
        ``generator_kwargs={"n_latent_element": 20}``).

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.synthetic_mvn(n_sets=50, set_size=100)
    >>> scgde.model.GDE.setup_anndata(adata, set_key="set")
    >>> model = scgde.model.GDE(adata, n_latent=8)
    >>> model.train(max_epochs=2)
    >>> emb = model.get_set_representation()  # one row per set
    >>> scgde.tl.embed_sets(model)  # adata.uns["gde"], adata.obsm["X_gde"]
    """

    _module_cls = GDEModule
    _training_plan_cls = GDETrainingPlan

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 64,
        encoder: str = "resnet",
        generator: str = "cvae",
        likelihood: str | None = None,
        n_hidden: int = 128,
        **kwargs,
    ):
        super().__init__(adata)
        likelihood = likelihood or "gaussian"
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood={likelihood!r}; choose one of {list(LIKELIHOODS)}.")
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_latent=n_latent,
            encoder=encoder,
            generator=generator,
            likelihood=likelihood,
            n_batch=self.summary_stats.get("n_batch", 0) if self._batch_key else 0,
            n_hidden=n_hidden,
            **kwargs,
        )
        fetcher = self._fetcher(self.adata)
        if likelihood == "nb":
            fetcher.check_counts()
        else:
            self.module.set_feature_moments(*fetcher.moments())
        self._model_summary_string = (
            f"GDE model: encoder={encoder!r}, generator={generator!r}, likelihood={likelihood!r}, "
            f"n_latent={n_latent}, sets from {self._set_keys}."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        set_key: str | Sequence[str],
        layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register an AnnData whose cells are grouped into sets.

        Parameters
        ----------
        %(param_adata)s
        set_key
            Column of ``adata.obs`` naming each cell's set (clone, perturbation, donor, ...), or a
            list of columns: each observed combination is then one set, named ``"a|b"``. Cells
            with a missing value belong to no set and are ignored.
        %(param_layer)s
        batch_key
            Column of ``adata.obs`` with the experimental batch. The generator is conditioned on
            it, so that set embeddings need not encode batch effects.
        labels_key
            Column of ``adata.obs`` with cell labels (recorded for downstream summaries).
        **kwargs
            Used by :meth:`load` to transfer a saved setup to a new AnnData.

        Notes
        -----
        Writes only scvi-tools' registration keys (``.uns["_scvi_uuid"]``,
        ``.uns["_scvi_manager_uuid"]``, and ``.obs["_scvi_batch"]`` / ``.obs["_scvi_labels"]``
        when those keys are given). ``adata.X`` and layers are never modified.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        keys = as_key_list(set_key)
        if layer is not None and layer not in adata.layers:
            raise KeyError(
                f"layer={layer!r} is not in adata.layers (available: {list(adata.layers)}); "
                "pass layer=None to use adata.X."
            )
        for name, key in (("batch_key", batch_key), ("labels_key", labels_key)):
            if key is not None and key not in adata.obs:
                raise KeyError(
                    f"{name}={key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
                )
        _, names = set_labels(adata.obs, keys)
        transfer = "source_registry" in kwargs
        if not transfer and len(names) < 2:
            raise ValueError(f"set_key={set_key!r} defines {len(names)} set; GDE needs at least 2 sets.")
        matrix = adata.X if layer is None else adata.layers[layer]
        RowFetcher(matrix, "adata.X" if layer is None else f"adata.layers[{layer!r}]").check_finite()
        fields = [LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False, correct_data_format=False)]
        if batch_key is not None:
            fields.append(CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key))
        if labels_key is not None:
            fields.append(CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key))
        if transfer:
            kwargs.setdefault("extend_categories", True)  # new batches or labels in a query AnnData
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    # ------------------------------------------------------------------ helpers
    @property
    def _setup_args(self) -> dict:
        return self.adata_manager.registry["setup_args"]

    @property
    def _set_keys(self) -> list[str]:
        return as_key_list(self._setup_args["set_key"])

    @property
    def _batch_key(self) -> str | None:
        return self._setup_args.get("batch_key")

    @property
    def var_names(self) -> pd.Index:
        """Features the model was trained on."""
        return pd.Index(self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names)

    def _fetcher(self, adata: AnnData) -> RowFetcher:
        layer = self._setup_args["layer"]
        if layer is None:
            return RowFetcher(adata.X, "adata.X")
        if layer not in adata.layers:
            raise KeyError(f"The model reads layer {layer!r}, which this AnnData lacks (layers: {list(adata.layers)}).")
        return RowFetcher(adata.layers[layer], f"adata.layers[{layer!r}]")

    def _check_adata(self, adata: AnnData | None) -> AnnData:
        if adata is None:
            return self.adata
        if not np.array_equal(np.asarray(adata.var_names), np.asarray(self.var_names)):
            raise ValueError(
                "adata.var_names differ from the genes the model was trained on; "
                "select and order them first: adata[:, model.var_names]."
            )
        return adata

    def _batch_codes(self, adata: AnnData) -> np.ndarray | None:
        if not self._batch_key:
            return None
        mapping = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
        codes = pd.Categorical(adata.obs[self._batch_key], categories=mapping).codes
        if (codes < 0).any():
            raise ValueError(f"adata.obs[{self._batch_key!r}] has missing values or batches unseen in training.")
        return codes.astype(np.int64)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        sets_per_batch: int = 32,
        cells_per_set: int = 64,
        mixer: str | dict | None = None,
        kernel: dict | None = None,
        min_set_size: int = 1,
        train_size: float = 0.9,
        batches_per_epoch: int | None = None,
        lr: float = 1e-3,
        early_stopping: bool = False,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train encoder and generator jointly on random subsets of the training sets.

        Sets (never cells) are split into training and validation sets; the validation loss is
        computed on the same validation subsets every epoch and logged as ``validation_loss``.

        Parameters
        ----------
        max_epochs
            Number of epochs; default: enough for about 2,000 optimiser steps. Short trainings
            can give set vectors that carry the sets' means but little of their spread: on 2-D
            Gaussian sets whose means vary far more than their covariances, the covariance was
            readable from the set vector after 15,000 steps (R^2 0.94) but not after 1,500 (0.18;
            ``benchmarks/covariance_probe.py``). Train longer when within-set structure matters.
        sets_per_batch
            Sets per minibatch ``B``.
        cells_per_set
            Cells drawn per set ``m`` (with replacement from sets smaller than ``m``).
        mixer
            ``None`` (each training set is one group), ``"dirichlet"`` or a dict such as
            ``{"k": 3, "alpha": 1.0}``: train on k-sparse Dirichlet mixtures of sets, which fills
            the space between sets (the paper's mixer).
        kernel
            Train on kernel-weighted neighbourhoods instead of whole sets, e.g.
            ``{"obsm": "X_pca", "bandwidth": None, "n_neighbors": 200, "within_set": True}``: each
            training set is centred on a random cell of a training set (see
            :class:`~scgde.data.KernelSampler`). Gives many local distributions when there are
            only a few groups. Embeddings are still computed from whole sets.
        min_set_size
            Sets with fewer cells are skipped (with a warning that counts them).
        train_size
            Fraction of sets used for training; the rest are validation sets.
        batches_per_epoch
            Minibatches per epoch; default: about one pass over the training cells, at least 10.
        lr
            Adam learning rate.
        early_stopping
            Stop when the validation loss stops improving (patience via ``early_stopping_patience``).
        accelerator, devices
            Lightning device selection (``"auto"`` uses a GPU when available).
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan` (e.g. ``weight_decay``).
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``gradient_clip_val``, ``enable_progress_bar``).
        """
        if cells_per_set < 1:
            raise ValueError(f"cells_per_set must be >= 1, got {cells_per_set}.")
        if sets_per_batch < 1:
            raise ValueError(f"sets_per_batch must be >= 1, got {sets_per_batch}.")
        index = SetIndex.from_obs(self.adata.obs, self._set_keys)
        usable = np.flatnonzero(index.sizes >= max(1, min_set_size))
        n_skipped = index.n_sets - len(usable)
        if n_skipped:
            warnings.warn(
                f"Skipping {n_skipped} of {index.n_sets} sets with fewer than min_set_size={min_set_size} cells.",
                UserWarning,
                stacklevel=2,
            )
        if len(usable) < 2:
            raise ValueError(f"Only {len(usable)} set(s) have at least min_set_size={min_set_size} cells; GDE needs 2.")
        seed = int(np.random.randint(0, 2**31 - 1))  # follows scvi.settings.seed
        train_sets, val_sets = split_sets(usable, train_size, np.random.default_rng(seed))

        def sampler(sets):
            return _make_sampler(self.adata, index, sets, cells_per_set, mixer, kernel)

        n_train_cells = int(index.sizes[train_sets].sum())
        if batches_per_epoch is None:
            batches_per_epoch = max(10, math.ceil(n_train_cells / (sets_per_batch * cells_per_set)))
        if max_epochs is None:
            max_epochs = max(1, math.ceil(DEFAULT_STEPS / batches_per_epoch))
        datamodule = SetDataModule(
            self._fetcher(self.adata),
            sampler(train_sets),
            sampler(val_sets) if len(val_sets) else None,
            index.names,
            train_sets,
            val_sets,
            sets_per_batch,
            batches_per_epoch,
            batch_codes=self._batch_codes(self.adata),
            seed=seed,
        )
        if early_stopping and not len(val_sets):
            raise ValueError("early_stopping needs validation sets: use train_size < 1.")
        plan_kwargs = {"lr": lr, "eps": 1e-8, "weight_decay": 0.0, **(plan_kwargs or {})}
        if len(val_sets):
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
        trainer_kwargs.setdefault("gradient_clip_val", 10.0)
        out = super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            plan_kwargs=plan_kwargs,
            datamodule=datamodule,
            **trainer_kwargs,
        )
        self.train_sets_ = datamodule.train_idx
        self.validation_sets_ = datamodule.val_idx
        return out

    # ------------------------------------------------------------------ embeddings
    @torch.inference_mode()
    def get_set_representation(
        self,
        adata: AnnData | None = None,
        set_key: str | Sequence[str] | None = None,
        sets: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> pd.DataFrame:
        """Embed every set using all of its cells.

        Cells are streamed in chunks of ``chunk_size`` (one pass per pooling stage of the encoder),
        so sets of any size, in memory or in a backed AnnData, are embedded exactly with bounded
        memory.

        Parameters
        ----------
        adata
            AnnData with the model's genes (default: the training AnnData). It may hold sets never
            seen in training.
        set_key
            Column(s) of ``adata.obs`` defining the sets (default: the registered ``set_key``).
        sets
            Embed only these sets (in this order).
        chunk_size
            Cells per chunk (default: about 4M matrix entries per chunk, e.g. 2,097 cells at 2,000
            genes; peak memory grows with it, speed hardly does).

        Returns
        -------
        DataFrame with one row per set (index: set names) and columns ``gde_0, ..., gde_{L-1}``.
        """
        adata = self._check_adata(adata)
        codes, names = set_labels(adata.obs, set_key or self._set_keys)
        if sets is not None:
            wanted = SetIndex(codes, names).codes_of(sets)
            remap = np.full(len(names) + 1, -1, dtype=np.int64)
            remap[wanted] = np.arange(len(wanted))
            codes, names = remap[codes], pd.Index(list(sets), name=names.name)
        if chunk_size is None:
            chunk_size = max(256, min(16384, 2**22 // max(adata.n_vars, 1)))
        elif chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive number of cells.")
        self.module.eval()
        chunks = _Chunks(self._fetcher(adata), codes, self.module, self.device, chunk_size, "Encoding sets")
        z = encode_stream(self.module.encoder, lambda: chunks, len(names)).cpu().numpy()
        return pd.DataFrame(z, index=names, columns=[f"gde_{i}" for i in range(z.shape[1])])

    def get_latent_representation(
        self, adata: AnnData | None = None, set_key: str | Sequence[str] | None = None
    ) -> np.ndarray:
        """Per-cell rows: each cell gets its set's embedding (NaN for cells in no set).

        Returns
        -------
        ``(n_obs, n_latent)`` array, the scvi-tools convention for ``adata.obsm``.
        """
        adata = self._check_adata(adata)
        codes, _ = set_labels(adata.obs, set_key or self._set_keys)
        z = self.get_set_representation(adata, set_key).to_numpy()
        out = np.full((adata.n_obs, z.shape[1]), np.nan, dtype=np.float32)
        out[codes >= 0] = z[codes[codes >= 0]]
        return out

    def set_distances(
        self,
        adata: AnnData | None = None,
        set_key: str | Sequence[str] | None = None,
        sets: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Pairwise Euclidean distances between set embeddings (sets x sets DataFrame)."""
        emb = self.get_set_representation(adata, set_key, sets)
        return pd.DataFrame(cdist(emb.to_numpy(), emb.to_numpy()), index=emb.index, columns=emb.index)

    def _as_embeddings(self, sets: SetsOrEmbeddings) -> pd.DataFrame:
        if isinstance(sets, pd.DataFrame):
            emb = sets
        elif isinstance(sets, np.ndarray | torch.Tensor) and np.asarray(sets).dtype.kind == "f":
            arr = np.atleast_2d(np.asarray(sets, dtype=np.float32))
            emb = pd.DataFrame(arr, index=[f"z{i}" for i in range(len(arr))])
        else:
            names = [sets] if isinstance(sets, str) else list(sets)
            emb = self.get_set_representation(sets=names)
        if emb.shape[1] != self.module.n_latent:
            raise ValueError(f"Embeddings have {emb.shape[1]} columns; the model's n_latent is {self.module.n_latent}.")
        return emb

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(
        self,
        sets: SetsOrEmbeddings,
        n_cells: int = 100,
        batch: str | None = None,
        max_cells_per_call: int = 65536,
        **sample_kwargs,
    ) -> AnnData:
        """Generate new cells from sets or set embeddings.

        Parameters
        ----------
        sets
            Set names of the training AnnData, a DataFrame of embeddings (as returned by
            :meth:`get_set_representation`), or an array ``(n, n_latent)``.
        n_cells
            Cells to generate per set.
        batch
            Batch category to generate in (required if the model was set up with a ``batch_key``).
        max_cells_per_call
            Bound on cells generated per network call (memory).
        **sample_kwargs
            Generator options, e.g. ``guidance`` (ddpm, flow), ``noise=False`` (cvae: likelihood means).

        Returns
        -------
        AnnData ``(n_sets * n_cells, n_vars)`` with the model's genes; ``obs["set"]`` names the source.
        """
        if n_cells < 1:
            raise ValueError(f"n_cells must be >= 1, got {n_cells}.")
        emb = self._as_embeddings(sets)
        self.module.eval()
        z_all = torch.as_tensor(emb.to_numpy(), dtype=torch.float32)
        batch_code = None
        if self._batch_key:
            mapping = list(self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping)
            if batch not in mapping:
                raise ValueError(f"Pass batch= one of {mapping} (the model is conditioned on {self._batch_key!r}).")
            batch_code = mapping.index(batch)
        per_call = max(1, max_cells_per_call // n_cells)
        blocks = []
        for start in range(0, len(z_all), per_call):
            z = z_all[start : start + per_call]
            b = None if batch_code is None else torch.full((len(z), n_cells), batch_code)
            blocks.append(
                self.module.sample(z, n_cells, b, **sample_kwargs).reshape(-1, len(self.var_names)).cpu().numpy()
            )
        obs = pd.DataFrame({"set": pd.Categorical(np.repeat(np.asarray(emb.index, dtype=str), n_cells))})
        if self._batch_key:
            obs[self._batch_key] = batch
        obs.index = obs.index.astype(str)
        return AnnData(np.concatenate(blocks), obs=obs, var=pd.DataFrame(index=self.var_names))

    def interpolate(
        self, set_a: str | np.ndarray, set_b: str | np.ndarray, n_steps: int = 11, n_cells: int = 100, **generate_kwargs
    ) -> AnnData:
        """Generate cells along the straight latent line between two sets.

        Latent lines approximately follow optimal-transport (McCann) paths between the two
        distributions.

        Parameters
        ----------
        set_a, set_b
            Set names or embeddings ``(n_latent,)``.
        n_steps
            Number of points ``t = 0, ..., 1`` on the line.
        n_cells
            Cells per point.

        Returns
        -------
        AnnData of generated cells with ``obs["t"]`` (position on the line) and ``obs["set"]``.
        """
        if n_steps < 2:
            raise ValueError(f"n_steps must be >= 2, got {n_steps}.")
        ends = [self._as_embeddings(s if not isinstance(s, str) else [s]).to_numpy()[0] for s in (set_a, set_b)]
        ts = np.linspace(0.0, 1.0, n_steps)
        z = np.stack([(1 - t) * ends[0] + t * ends[1] for t in ts]).astype(np.float32)
        names = [f"t={t:.3g}" for t in ts]
        out = self.generate(pd.DataFrame(z, index=names), n_cells=n_cells, **generate_kwargs)
        out.obs["t"] = np.repeat(ts, n_cells)
        out.uns["interpolation"] = {
            "from": str(set_a) if isinstance(set_a, str) else "embedding",
            "to": str(set_b) if isinstance(set_b, str) else "embedding",
        }
        return out
