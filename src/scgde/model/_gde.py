"""``scgde.model.GDE``: generative distribution embeddings of sets of cells, scvi-tools style."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.utils import setup_anndata_dsp

from scgde._docs import inject_docs
from scgde.data import (
    GeneOrder,
    NicheObspField,
    RowFetcher,
    SetLabelsObsField,
    SetObsField,
    as_key_list,
    layer_fetcher,
    layer_names,
    set_labels,
)
from scgde.data._sets import warn_set_coverage
from scgde.module import GDEModule

from ._embed import EmbeddingMixin, looks_like_counts, value_range
from ._generate import GenerationMixin
from ._multimodal import MultimodalGDE
from ._supervision import SupervisionMixin, head_options
from ._train import TrainMixin, is_global_zero
from ._training import GDETrainingPlan
from ._validate import check_choice
from .base import BaseSetModelClass

Encoder = Literal["resnet", "attention", "deepsets", "mean", "kme"]
Generator = Literal["flow", "ddpm", "cvae", "direct"]
Likelihood = Literal["gaussian", "nb"]
Support = Literal["auto", "nonnegative", "real"]


@inject_docs
class GDE(TrainMixin, EmbeddingMixin, GenerationMixin, SupervisionMixin, BaseSetModelClass):
    """Generative Distribution Embeddings of sets of cells (Fishman, Gowri et al., NeurIPS 2025).

    Each set of cells (a clone, a perturbation, a donor, ...) is encoded into one vector by an
    encoder that depends only on the set's empirical distribution; a conditional generator
    regenerates cells from that vector. Both train jointly on the generator's own loss over random
    subsets of each set. Latent distances then track Wasserstein distances between the sets, and
    any set of any size, also one never seen in training, can be embedded without retraining.

    The defaults are the best configuration measured in ``benchmarks/defaults.py``
    (``docs/benchmarks.md``): a ResNet set encoder, a flow-matching generator, 16 latent
    dimensions. When sets differ mostly by their covariances in many dimensions, the default
    latent encodes their means and little of their covariances; there
    ``GDE(adata, generator="cvae", encoder_kwargs={"quadratic": True},
    generator_kwargs={"conditioning": "film"})`` trained for twice the default steps made latent
    distances track W2 (Spearman 0.97 against 0.61 on 50-D Gaussian sets, the distance-matrix
    job of ``benchmarks/speed.py``); it is no general replacement (0.75 against the default's
    0.95 on 2-D covariance-heavy sets). ``GDE(adata, w2_weight=1.0)`` adds a term that pulls latent
    distances toward the Gaussian W2 of the sets' subsets; on Gaussian families at d = 2 to 50 it
    ranked pairs by W2 better than the default (but below the set means at d = 30 with random
    rotations; ``benchmarks/probe.py``, ``docs/benchmarks.md``); it is not measured on real data.

    A MuData (cells measured in several modalities) has its own model,
    :class:`~scgde.model.MultimodalGDE`; ``GDE.setup_mudata(mdata, ...)`` registers one for it and
    ``GDE(mdata)`` *is* ``MultimodalGDE(mdata)``: it returns a ``MultimodalGDE`` (each modality with
    its own element encoder, generator head and likelihood; ``generate`` returns a MuData).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (a MuData registered with
        :meth:`setup_mudata` gives a :class:`~scgde.model.MultimodalGDE`, see above).
    %(n_latent)s
    encoder
        ``"resnet"`` (default: pool-and-concatenate blocks with skips, the paper's best),
        ``"attention"`` (induced self-attention), ``"deepsets"``, ``"mean"`` or ``"kme"`` (baselines).
    generator
        ``"flow"`` (default: flow matching; the best measured on covariances, interpolation and
        perturbation responses), ``"ddpm"``, ``"cvae"`` (the default, and the only choice, for
        ``likelihood="nb"``) or ``"direct"``.
    likelihood
        ``"gaussian"`` (default; log-normalised, scaled or PCA data) or ``"nb"`` (raw counts, CVAE).
    %(n_hidden)s
    output_support
        ``"auto"`` (default): if the data have no negative entries (e.g. log-normalised
        expression), generated sets are kept on their support: per set and gene, the zero
        fraction is the data's at the generated mean (learned after training from neighbourhoods
        of real cells) and the other cells keep the set's generated mean and spread, at least
        the gene's smallest positive value; no entry is negative (see ``docs/design.md``).
        ``"nonnegative"`` forces this, ``"real"`` turns it off (scaled or PCA data).
    **kwargs
        Passed to :class:`~scgde.module.GDEModule` (e.g. ``encoder_kwargs={"n_blocks": 4}``,
        ``generator_kwargs={"n_sample_steps": 64}``, ``w2_weight=1.0``).

    Examples
    --------
    >>> import scgde
    >>> adata = scgde.datasets.synthetic_mvn(n_sets=20, set_size=50, seed=0)
    >>> scgde.model.GDE.setup_anndata(adata, set_key="set")
    >>> model = scgde.model.GDE(adata, n_latent=4, n_hidden=16)
    >>> model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    >>> emb = model.get_set_representation(progress_bar=False)  # one row per set
    >>> emb.shape
    (20, 4)
    """

    _module_cls = GDEModule
    _training_plan_cls = GDETrainingPlan

    def __new__(cls, adata: AnnData | None = None, *args, **kwargs):
        """``GDE(mdata)`` builds and returns ``MultimodalGDE(mdata, ...)`` (then ``GDE.__init__`` does not run)."""
        if cls is GDE and isinstance(adata, MuData):
            return MultimodalGDE(adata, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 16,
        encoder: Encoder = "resnet",
        generator: Generator | None = None,
        likelihood: Likelihood | None = None,
        n_hidden: int = 64,
        output_support: Support = "auto",
        **kwargs,
    ):
        if isinstance(adata, MuData):  # only a subclass of GDE gets here: GDE(mdata) is a MultimodalGDE
            raise TypeError(f"{type(self).__name__} models an AnnData; for a MuData use scgde.model.MultimodalGDE.")
        super().__init__(adata)
        if adata.n_obs == 0:
            raise ValueError("adata is empty (0 cells); GDE needs cells grouped into at least 2 sets.")
        likelihood = likelihood or "gaussian"
        check_choice("likelihood", likelihood, Likelihood)
        generator = generator or ("cvae" if likelihood == "nb" else "flow")
        check_choice("output_support", output_support, Support)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_latent=n_latent,
            encoder=encoder,
            generator=generator,
            likelihood=likelihood,
            n_batch=self.summary_stats.get("n_batch", 0) if self._batch_key else 0,
            n_hidden=n_hidden,
            **head_options(self.adata_manager),
            **kwargs,
        )
        self._init_label_head()
        fetcher = self._fetcher(self.adata)
        if likelihood == "nb":
            fetcher.check_counts()
            self.module.set_library_prior(*self._log_library(fetcher))
        else:
            mean, std = fetcher.moments()
            self.module.set_feature_moments(mean, std)
            low, high = fetcher.value_range()
            self.module.set_value_bounds(low - std, high + std)
            nonnegative, min_positive = fetcher.support()
            if output_support == "nonnegative" or (output_support == "auto" and nonnegative):
                self.module.set_support(np.where(np.isfinite(min_positive), min_positive, np.inf))
            # where the training values lie (saved with the model): queries far outside are refused
            self.data_range_ = value_range(fetcher)
            self._range_checked = self.data_range_
            if looks_like_counts(self.data_range_):
                warnings.warn(
                    f"{fetcher.name} looks like raw counts (non-negative integers, median "
                    f"{self.data_range_['row_sum_median']:.0f} per cell), but likelihood='gaussian' models "
                    "log-normalised values. Log-normalise first (sc.pp.normalize_total(adata); sc.pp.log1p(adata)), "
                    "or model the counts: GDE.setup_anndata(adata, layer='counts', ...) with the counts in that "
                    "layer, then GDE(adata, likelihood='nb').",
                    UserWarning,
                    stacklevel=2,
                )
        self._var_names = pd.Index(self.adata.var_names.astype(str))
        self._model_summary_string = (
            f"GDE model: encoder={encoder!r}, generator={generator!r}, likelihood={likelihood!r}, "
            f"n_latent={n_latent}, {self._sets_description}."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        set_key: str | Sequence[str] | None = None,
        layer: str | None = None,
        batch_key: str | None = None,
        set_labels_key: str | None = None,
        niche_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register an AnnData whose cells are grouped into sets (or whose every cell has a niche).

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
        set_labels_key
            Column of ``adata.obs`` with one label per set (a donor's diagnosis), constant within
            each set; NaN marks unlabelled cells, so most sets may be unlabelled. Categorical,
            string or boolean labels train a classification head, numeric ones a regression head,
            on the set vector, jointly with the generator (``train(label_weight=...)``); predict
            with :meth:`predict_set_labels`. A set whose cells disagree is an error.
        niche_key
            Instead of ``set_key``: a key of ``adata.obsp`` whose row ``i`` weights the cells of
            cell ``i``'s niche (from :func:`scgde.tl.niche_sets`). Every cell's niche is then a
            weighted set: :meth:`train` draws random niches (cells with probability given by the
            weights), :meth:`get_set_representation` returns one row per cell (index: obs names),
            and :func:`scgde.tl.embed_niches` stores them in ``adata.obsm["X_gde_niche"]``.
        **kwargs
            Used by :meth:`load` to transfer a saved setup to a new AnnData.

        Notes
        -----
        Writes only scvi-tools' registration keys: ``.uns["_scvi_uuid"]``,
        ``.uns["_scvi_manager_uuid"]``, ``.obs["_scgde_set"]`` (each cell's set code, ``-1`` for
        none; not with ``niche_key``) and ``.obs["_scvi_batch"]`` when a ``batch_key`` is given.
        ``adata.X`` and layers are never modified.

        Examples
        --------
        >>> adata = scgde.datasets.synthetic_mvn(n_sets=5, set_size=10)
        >>> scgde.model.GDE.setup_anndata(adata, set_key="set")
        >>> int(adata.obs["_scgde_set"].max())
        4
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if (set_key is None) == (niche_key is None):
            raise ValueError(
                "Pass exactly one of set_key= (an adata.obs column naming each cell's set) and niche_key= "
                "(an adata.obsp key of niche weights from scgde.tl.niche_sets)."
            )
        if niche_key is not None and set_labels_key is not None:
            raise ValueError("set_labels_key= needs named sets (set_key=); niches (niche_key=) have no set labels.")
        if adata.n_obs == 0:
            raise ValueError("adata is empty (0 cells); GDE needs cells grouped into at least 2 sets.")
        if layer is not None and layer not in adata.layers:
            raise KeyError(
                f"layer={layer!r} is not in adata.layers (available: {layer_names(adata)}); "
                "pass layer=None to use adata.X."
            )
        if batch_key is not None and batch_key not in adata.obs:
            raise KeyError(
                f"batch_key={batch_key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
            )
        transfer = "source_registry" in kwargs
        if niche_key is None and not transfer:
            codes, names = set_labels(adata.obs, as_key_list(set_key))
            if len(names) < 2:
                raise ValueError(f"set_key={set_key!r} defines {len(names)} set; GDE needs at least 2 sets.")
            warn_set_coverage(codes, names, set_key)  # cells without a set, tiny sets: counted
        layer_fetcher(adata, layer).check_finite()
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False, correct_data_format=False),
            SetObsField(as_key_list(set_key)) if niche_key is None else NicheObspField(niche_key),
        ]
        if batch_key is not None:
            fields.append(CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key))
        if set_labels_key is not None:
            fields.append(SetLabelsObsField(set_labels_key, as_key_list(set_key)))
        if transfer:
            kwargs.setdefault("extend_categories", True)  # new batches in a query AnnData
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    #: ``GDE.setup_mudata(mdata, ...)`` *is* :meth:`MultimodalGDE.setup_mudata`: the MuData is registered for
    #: :class:`~scgde.model.MultimodalGDE`, which ``GDE(mdata)`` then returns
    setup_mudata = staticmethod(MultimodalGDE.setup_mudata)

    def save(self, dir_path: str | Path, *args, **kwargs) -> None:
        """Save the model to ``dir_path``; see :meth:`load`.

        scvi-tools' format and arguments (``prefix``, ``overwrite``, ``save_anndata``, ...).

        After distributed (DDP) training every process holds the same trained model; only the
        global-zero process writes, the others return without writing.
        """
        if is_global_zero():
            super().save(str(dir_path), *args, **kwargs)

    @classmethod
    @inject_docs
    def load(cls, dir_path: str | Path, adata: AnnData | None = None, **kwargs) -> GDE | MultimodalGDE:
        """Load a saved model, optionally onto another AnnData with the same genes.

        The genes of ``adata`` are matched to the model's by name: the same genes in another order
        are read in the model's order; different genes are an error. The folder of a multimodal
        model gives a :class:`~scgde.model.MultimodalGDE` (:meth:`MultimodalGDE.load
        <scgde.model.MultimodalGDE.load>`; ``adata`` then is a MuData).

        Parameters
        ----------
        %(load_dir_path)s
        %(load_adata)s
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (e.g. ``accelerator``).
        """
        saved = cls._saved_var_names(dir_path)
        if isinstance(saved, dict):  # scvi-tools saves a MuData model's features per modality
            return MultimodalGDE._load_saved(dir_path, adata, saved, **kwargs)
        trained = pd.Index(np.asarray(saved))
        if adata is not None:
            gene_columns(adata.var_names, trained)  # a clear error before scvi-tools' checks
        # genes in another order are handled by gene_columns, not scvi-tools' warning
        model = cls._load_quietly(dir_path, adata, **kwargs)
        model._var_names = pd.Index(trained.astype(str))
        return model

    # ------------------------------------------------------------------ helpers
    @property
    def _batch_key(self) -> str | None:
        return self._setup_args.get("batch_key")

    @property
    def var_names(self) -> pd.Index:
        """Genes the model was trained on, in the model's order."""
        return self._var_names

    def _wrap_generated(self, x: np.ndarray, obs: pd.DataFrame) -> AnnData:
        """Generated cells: an AnnData with the model's genes."""
        return AnnData(x, obs=obs, var=pd.DataFrame(index=self.var_names))

    def _fetcher(self, adata: AnnData) -> RowFetcher:
        """Reader of the registered matrix of an AnnData (the training one or a query)."""
        fix = "the model reads this layer, which this AnnData lacks: pass one that has it"
        return layer_fetcher(adata, self._setup_args["layer"], fix=fix)

    def expression_reader(self, adata: AnnData | None = None) -> GeneOrder:
        """Reader of the registered matrix (``X`` or the layer) of ``adata`` in the model's gene order.

        ``reader.rows(idx)`` and ``reader.slice(start, stop)`` return dense float32 rows without
        densifying the whole matrix (also for backed AnnData). Genes are matched by name.
        """
        return self._reader(self.adata if adata is None else adata)

    def _reader(self, adata: AnnData) -> GeneOrder:
        """Rows of ``adata`` with columns in the model's gene order (validated counts for nb models)."""
        columns = gene_columns(adata.var_names, self.var_names)
        fetcher = self._fetcher(adata)
        if self.module.likelihood == "nb" and adata is not self.adata:
            fetcher.check_counts()
        return GeneOrder(fetcher, columns)

    def _log_library(self, fetcher: RowFetcher, chunk_size: int = 8192) -> tuple[np.ndarray, np.ndarray | None]:
        """Log library size of every cell (streamed) and the batch codes, for the count generator."""
        sums = [
            fetcher.slice(s, min(s + chunk_size, fetcher.shape[0])).sum(1)
            for s in range(0, fetcher.shape[0], chunk_size)
        ]
        log_lib = np.log(np.maximum(np.concatenate(sums), 1.0))
        batch = None
        if self._batch_key:
            batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        return torch.as_tensor(log_lib), None if batch is None else torch.tensor(batch)


def gene_columns(query: pd.Index, trained: pd.Index) -> np.ndarray | None:
    """Column of each trained gene in ``query`` (``None``: same order); an error if the genes differ."""
    query, trained = pd.Index(np.asarray(query, dtype=str)), pd.Index(np.asarray(trained, dtype=str))
    if query.equals(trained):
        return None
    if query.has_duplicates:
        raise ValueError("adata.var_names has duplicates; make them unique (adata.var_names_make_unique()).")
    pos = query.get_indexer(trained)
    if (pos < 0).any() or len(query) != len(trained):
        missing = list(trained[pos < 0][:5])
        extra = list(query.difference(trained)[:5])
        raise ValueError(
            f"adata's genes differ from the {len(trained)} genes the model was trained on "
            f"(missing: {missing}{'...' if (pos < 0).sum() > 5 else ''}; not in the model: {extra}). "
            "Select and order them first: adata[:, model.var_names]."
        )
    return pos


# inspect.signature(GDE) (and the documentation) shows __init__'s parameters, not __new__'s
GDE.__new__.__signature__ = inspect.signature(GDE.__init__)
