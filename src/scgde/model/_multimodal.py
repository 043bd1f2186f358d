"""Multimodal sets: ``GDE.setup_mudata`` and what a GDE on a MuData does differently."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scvi.data import AnnDataManager
from scvi.data._manager import AnnDataManagerValidationCheck
from scvi.data.fields import MuDataLayerField, MuDataWrapper

from scgde.data import MODALITY_ARGS, ModalityFetcher, SetObsField, as_key_list, registered_modalities, set_labels
from scgde.data._fetch import _bad_count_mask

MuDataSetObsField = MuDataWrapper(SetObsField)

#: the default modality names, as in scvi-tools' TOTALVI / MULTIVI ``setup_mudata``
DEFAULT_MODALITIES = {"rna_layer": "rna", "protein_layer": "prot", "atac_layer": "atac"}
#: rows sampled to decide each modality's likelihood and its feature moments
N_SAMPLE_ROWS = 20000


def _looks_like_counts(block: np.ndarray) -> bool:
    return block.size > 0 and not _bad_count_mask(block).any()


class MultimodalMixin:
    """``setup_mudata`` and the MuData paths of :class:`~scgde.model.GDE` (registration, reading, generation)."""

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        set_key: str | Sequence[str],
        rna_layer: str | None = None,
        protein_layer: str | None = None,
        atac_layer: str | None = None,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        """Register a MuData whose cells, measured in several modalities, are grouped into sets.

        One set is the cells of a clone / donor / perturbation in every registered modality. Each
        modality gets its own element encoder (joined before the invariant pooling) and its own
        generator head and likelihood: RNA counts a negative binomial (continuous RNA, e.g.
        log-normalised, a Gaussian), proteins a Gaussian on ``log1p`` of counts (or on the values
        when they are not counts), accessibility a Bernoulli (a region is open when positive).

        Parameters
        ----------
        mdata
            MuData with the modalities and, in ``mdata.obs``, the set column(s).
        set_key
            Column(s) of ``mdata.obs`` naming each cell's set (pull a modality's column up with
            ``mdata.pull_obs`` or ``mdata.obs[...] = ...``).
        rna_layer, protein_layer, atac_layer
            Layer of each modality to read (``None``: its ``.X``).
        modalities
            Which argument reads which modality of ``mdata.mod``, as in scvi-tools' TOTALVI and
            MULTIVI. Default ``{"rna_layer": "rna", "protein_layer": "prot", "atac_layer":
            "atac"}``, using those of the three that ``mdata`` holds; an explicit mapping must name
            existing modalities (e.g. ``{"rna_layer": "rna"}`` for RNA alone).
        **kwargs
            Used by :meth:`load` to transfer a saved setup.

        Notes
        -----
        A cell missing from a modality (``mdata.obsmap[mod] == 0``, e.g. after ``mudata.MuData``
        joined modalities with different cells) is masked there: its other modalities are encoded
        and trained on, that one is ignored. A cell measured in none of the registered modalities is
        an error. Writes only ``mdata.obs["_scgde_set"]`` and scvi-tools' ``mdata.uns`` keys.

        Examples
        --------
        >>> mdata = scgde.datasets.multimodal_sets(n_sets=20, seed=0)
        >>> scgde.model.GDE.setup_mudata(mdata, set_key="clone")
        >>> model = scgde.model.GDE(mdata)
        """
        if not isinstance(mdata, MuData):
            raise TypeError(
                f"setup_mudata needs a MuData, got {type(mdata).__name__}; use setup_anndata for an AnnData."
            )
        unsupported = [k for k in ("batch_key", "set_labels_key", "layer", "niche_key") if k in kwargs]
        if unsupported:
            raise TypeError(
                f"setup_mudata does not take {unsupported[0]}= (batches, set labels and niches are AnnData-only "
                "for now); pass rna_layer= / protein_layer= / atac_layer= for layers."
            )
        setup_method_args = cls._get_setup_method_args(**locals())
        layers = {"rna_layer": rna_layer, "protein_layer": protein_layer, "atac_layer": atac_layer}
        chosen = _chosen_modalities(mdata, modalities)
        keys = as_key_list(set_key)
        if mdata.n_obs == 0:
            raise ValueError("mdata is empty (0 cells); GDE needs cells grouped into at least 2 sets.")
        for arg, mod in chosen.items():
            layer = layers[arg]
            if layer is not None and layer not in mdata.mod[mod].layers:
                raise KeyError(
                    f"{arg}={layer!r} is not a layer of mdata.mod[{mod!r}] (layers: {list(mdata.mod[mod].layers)}); "
                    f"pass {arg}=None to read its .X."
                )
        missing = [k for k in keys if k not in mdata.obs.columns]
        if missing:
            raise KeyError(
                f"set_key={missing[0]!r} is not a column of mdata.obs (columns: {list(mdata.obs.columns)[:10]}); "
                "set it on the MuData (mdata.obs[key] = ...) or pull it from a modality with mdata.pull_obs."
            )
        fetcher = ModalityFetcher.from_mudata(mdata, {mod: layers[arg] for arg, mod in chosen.items()})
        unmeasured = np.flatnonzero(~fetcher.present().any(axis=1))
        if len(unmeasured):
            raise ValueError(
                f"{len(unmeasured)} cell(s) of mdata (e.g. {mdata.obs_names[unmeasured[0]]!r}) are in none of the "
                f"registered modalities {list(chosen.values())}; drop them (mdata = mdata[mask]) or register "
                "the modality that holds them."
            )
        fetcher.check_finite()
        if "source_registry" not in kwargs:
            _, names = set_labels(mdata.obs, keys)
            if len(names) < 2:
                raise ValueError(f"set_key={set_key!r} defines {len(names)} set; GDE needs at least 2 sets.")
        fields = [MuDataSetObsField(keys, mod_key=None)]
        for arg, mod in chosen.items():
            registry_key = MODALITY_ARGS[arg][0]
            fields.append(
                MuDataLayerField(
                    registry_key,
                    layers[arg],
                    mod_key=mod,
                    is_count_data=False,
                    correct_data_format=False,
                    mod_required=True,
                )
            )
        manager = AnnDataManager(
            fields=fields,
            setup_method_args=setup_method_args,
            # unpaired cells are masked per modality, not refused
            validation_checks=AnnDataManagerValidationCheck(check_fully_paired_mudata=False),
        )
        manager.register_fields(mdata, **kwargs)
        cls.register_manager(manager)

    # ------------------------------------------------------------------ helpers
    @property
    def _multimodal(self) -> bool:
        return isinstance(self.adata, MuData)

    @property
    def modalities(self) -> dict[str, str | None]:
        """Registered modalities of a MuData model: name -> layer (``None``: ``.X``); empty for an AnnData model."""
        return registered_modalities(self.adata_manager) or {}

    def _modality_fetcher(self, mdata) -> ModalityFetcher:
        """Reader of a MuData's registered modalities, with features checked against the model's."""
        if not isinstance(mdata, MuData):
            raise TypeError(f"This model was set up on a MuData; pass a MuData, not {type(mdata).__name__}.")
        for mod in self.modalities:
            if mod not in mdata.mod:
                raise KeyError(f"The model reads modality {mod!r}, which this MuData lacks (mod: {list(mdata.mod)}).")
        if mdata is not self.adata:
            for mod in self.modalities:
                if not mdata.mod[mod].var_names.equals(self.adata.mod[mod].var_names):
                    raise ValueError(
                        f"mdata.mod[{mod!r}] has other features than the model's; "
                        f"select them first: mdata.mod[{mod!r}][:, model.adata.mod[{mod!r}].var_names]."
                    )
        counts = set()
        if mdata is not self.adata and hasattr(self, "module"):  # a query must hold what the model reads as counts
            layout = self.module.layout
            counts = {
                n for n, k, l1p in zip(layout.names, layout.kinds, self.module.log1p, strict=True) if k == "nb" or l1p
            }
        return ModalityFetcher.from_mudata(mdata, self.modalities, counts=counts)

    def _modality_var_names(self) -> pd.Index:
        return pd.Index(np.concatenate([np.asarray(self.adata.mod[m].var_names, dtype=str) for m in self.modalities]))

    def _modality_specs(self, fetcher: ModalityFetcher) -> tuple[list[dict], np.ndarray, np.ndarray]:
        """Each modality's likelihood (from its data) and the moments of the Gaussian features."""
        rng = np.random.default_rng(0)
        arg_of = {mod: arg for arg, mod in _registered_args(self.adata_manager).items()}
        specs, means, stds = [], [], []
        for i, mod in enumerate(self.modalities):
            present = np.flatnonzero(fetcher.positions[i] >= 0)
            sample = np.sort(rng.choice(present, size=min(N_SAMPLE_ROWS, len(present)), replace=False))
            x, _ = fetcher.modality_rows(i, sample)
            counts = _looks_like_counts(x)
            arg = arg_of[mod]
            if arg == "atac_layer":
                kind, log1p = "bernoulli", False
            elif arg == "rna_layer" and counts:
                kind, log1p = "nb", False
            else:
                kind, log1p = "gaussian", arg == "protein_layer" and counts
            values = np.log1p(x) if log1p else x
            means.append(values.mean(0) if kind == "gaussian" else np.zeros(x.shape[1]))
            stds.append(values.std(0) if kind == "gaussian" else np.ones(x.shape[1]))
            specs.append({"name": mod, "kind": kind, "n_features": x.shape[1], "log1p": log1p})
        return specs, np.concatenate(means), np.concatenate(stds)

    def _init_multimodal_module(
        self, module_cls, n_latent: int, n_hidden: int, encoder: str, specs: list[dict] | None = None, **kwargs
    ) -> list[dict]:
        """Build the module; each modality's likelihood is decided from the data once and then kept (``specs``)."""
        fetcher = self._modality_fetcher(self.adata)
        found, mean, std = self._modality_specs(fetcher)
        specs = found if specs is None else [dict(s) for s in specs]
        self.module = module_cls(specs, n_latent=n_latent, n_hidden=n_hidden, encoder=encoder, **kwargs)
        self.module.set_feature_moments(mean, std)  # a loaded model's saved moments replace these
        for i, spec in enumerate(specs):
            if spec["kind"] == "nb":
                present = np.flatnonzero(fetcher.positions[i] >= 0)
                lib = np.log(np.maximum(_row_sums(fetcher, i, present), 1.0))
                self.module.generator.init_library(spec["name"], float(lib.mean()), float(lib.std()))
        self._var_names = self._modality_var_names()
        return specs

    def _wrap_generated(self, x: np.ndarray, obs: pd.DataFrame) -> AnnData | MuData:
        """Generated cells: an AnnData, or a MuData with the model's modalities for a MuData model."""
        if not self._multimodal:
            return AnnData(x, obs=obs, var=pd.DataFrame(index=self.var_names))
        mods, start = {}, 0
        for mod in self.modalities:
            var = self.adata.mod[mod].var_names
            mods[mod] = AnnData(
                x[:, start : start + len(var)], obs=pd.DataFrame(index=obs.index), var=pd.DataFrame(index=var)
            )
            start += len(var)
        out = MuData(mods)
        for col in obs.columns:
            out.obs[col] = obs[col].to_numpy()
        return out


def _chosen_modalities(mdata: MuData, modalities: dict[str, str] | None) -> dict[str, str]:
    """The ``setup_mudata`` arguments in use and the modality each reads."""
    explicit = modalities is not None
    modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    unknown = [k for k in modalities if k not in MODALITY_ARGS]
    if unknown:
        raise ValueError(f"modalities has unknown key {unknown[0]!r}; use {list(MODALITY_ARGS)}.")
    modalities = {k: v for k, v in modalities.items() if v is not None}
    named = list(modalities.values())
    repeated = sorted({m for m in named if named.count(m) > 1})
    if repeated:
        raise ValueError(f"modalities maps several arguments to modality {repeated[0]!r}; each reads one modality.")
    if explicit:
        absent = [m for m in modalities.values() if m not in mdata.mod]
        if absent:
            raise KeyError(f"modalities names {absent[0]!r}, which is not in mdata.mod ({list(mdata.mod)}).")
    chosen = {arg: mod for arg, mod in modalities.items() if mod is not None and mod in mdata.mod}
    if not chosen:
        raise KeyError(
            f"None of the modalities {list(modalities.values())} is in mdata.mod ({list(mdata.mod)}); "
            'name them, e.g. modalities={"rna_layer": "gex", "protein_layer": "adt"}.'
        )
    return chosen


def _registered_args(adata_manager) -> dict[str, str]:
    """``setup_mudata`` argument -> modality, from the registry."""
    registry = adata_manager.data_registry
    return {arg: registry[key].mod_key for arg, (key, _) in MODALITY_ARGS.items() if key in registry}


def _row_sums(fetcher: ModalityFetcher, i: int, rows: np.ndarray, chunk: int = 8192) -> np.ndarray:
    return np.concatenate([fetcher.modality_rows(i, rows[s : s + chunk])[0].sum(1) for s in range(0, len(rows), chunk)])
