"""scvi-tools registry fields for set membership and set-level labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi.data.fields import BaseAnnDataField

from ._sets import SET_NAME_SEP, SetIndex, as_key_list, set_labels

#: registry key of the set codes (``adata_manager.get_from_registry(SET_KEY)``)
SET_KEY = "set"
#: registry key of the set-level labels (``adata_manager.get_state_registry(SET_LABELS_KEY)``)
SET_LABELS_KEY = "set_labels"


class RegistryField(BaseAnnDataField):
    """A registry field that is never empty and shows no table: the parts of scvi-tools' field that are the same.

    The class fixes the registry key (``REGISTRY_KEY``) and the AnnData attribute (``ATTR_NAME``, e.g. ``"obsm"``);
    each instance names its key in that attribute (``_attr_key``), unless a subclass defines ``attr_key`` itself.
    """

    REGISTRY_KEY: str
    ATTR_NAME: str
    _attr_key: str

    @property
    def registry_key(self) -> str:
        return self.REGISTRY_KEY

    @property
    def attr_name(self) -> str:
        return self.ATTR_NAME

    @property
    def attr_key(self) -> str:
        return self._attr_key

    @property
    def is_empty(self) -> bool:
        return False

    def view_state_registry(self, state_registry: dict):
        """No table."""
        return None


class _ObsCodesField(RegistryField):
    """A registry field whose data are one integer/float code per cell in ``obs[ATTR_KEY]``."""

    ATTR_NAME = "obs"
    ATTR_KEY: str

    @property
    def attr_key(self) -> str:
        return self.ATTR_KEY


class SetObsField(_ObsCodesField):
    """Set membership from one or several ``obs`` columns, registered with scvi-tools.

    Registering writes each cell's integer set code to ``adata.obs["_scgde_set"]`` (``-1``:
    in no set) and keeps the set names in the state registry. Transferring the setup to a query
    AnnData recomputes the codes over the query's own sets, so new set labels are allowed; a
    query without the set columns gets no sets (embed it with an explicit ``set_key``).

    Parameters
    ----------
    set_key
        Column name(s) of ``adata.obs``; several columns make one set per observed combination.
    """

    REGISTRY_KEY = SET_KEY
    ATTR_KEY = "_scgde_set"

    def __init__(self, set_key: str | list[str]):
        super().__init__()
        self.set_keys = as_key_list(set_key)

    def validate_field(self, adata: AnnData) -> None:
        """Check that every set column exists."""
        missing = [k for k in self.set_keys if k not in adata.obs.columns]
        if missing:
            raise KeyError(
                f"set_key={missing[0]!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
            )

    def register_field(self, adata: AnnData) -> dict:
        """Write the set codes and return the set names."""
        self.validate_field(adata)
        codes, names = set_labels(adata.obs, self.set_keys)
        adata.obs[self.ATTR_KEY] = codes
        return {"set_keys": list(self.set_keys), "set_names": np.asarray(names, dtype=object)}

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """Register the query's own sets (new labels allowed); no set columns: no sets."""
        if any(k not in adata_target.obs.columns for k in self.set_keys):
            adata_target.obs[self.ATTR_KEY] = np.full(adata_target.n_obs, -1, dtype=np.int64)
            return {"set_keys": list(self.set_keys), "set_names": np.asarray([], dtype=object)}
        return self.register_field(adata_target)

    def get_summary_stats(self, state_registry: dict) -> dict:
        """Number of sets."""
        return {"n_sets": len(state_registry["set_names"])}

    def view_state_registry(self, state_registry: dict):
        """No table (set names can be many)."""
        return None


def registered_sets(adata_manager) -> SetIndex:
    """The sets of the AnnData registered with ``adata_manager``."""
    codes = np.asarray(adata_manager.get_from_registry(SET_KEY)).ravel()
    state = adata_manager.get_state_registry(SET_KEY)
    names = pd.Index(np.asarray(state["set_names"], dtype=str), name=SET_NAME_SEP.join(state["set_keys"]))
    return SetIndex(codes, names)


class SetLabelsObsField(_ObsCodesField):
    """One label per set (a donor's diagnosis, a sample's condition), from an ``obs`` column.

    The column must be constant within each set; missing values (NaN) mark unlabelled cells, and a
    set with no labelled cell is unlabelled. A categorical, string or boolean column gives classes
    (the categories are kept in the state registry); a numeric column gives a regression target.
    Integer class codes must be cast first (``adata.obs[key].astype("category")``).

    Registering writes each cell's label code (class position, or the value; NaN: none) to
    ``adata.obs["_scgde_set_label"]`` and keeps, in the state registry, the kind, the classes and
    ``set_values``: one float per registered set (NaN: unlabelled). A query AnnData keeps the
    model's classes; query labels of an unknown class, or a query without the column, are unlabelled.

    Parameters
    ----------
    labels_key
        Column of ``adata.obs`` with the set labels.
    set_key
        Column(s) defining the sets, as for :class:`SetObsField`.
    """

    REGISTRY_KEY = SET_LABELS_KEY
    ATTR_KEY = "_scgde_set_label"

    def __init__(self, labels_key: str, set_key: str | list[str]):
        super().__init__()
        self.labels_key = labels_key
        self.set_keys = as_key_list(set_key)

    def validate_field(self, adata: AnnData) -> None:
        """Check that the label column exists."""
        if self.labels_key not in adata.obs.columns:
            raise KeyError(
                f"set_labels_key={self.labels_key!r} is not a column of adata.obs; "
                f"available columns: {list(adata.obs.columns)}."
            )

    def register_field(self, adata: AnnData) -> dict:
        """Check that each set has one label and store the per-set labels."""
        self.validate_field(adata)
        column = adata.obs[self.labels_key]
        if _is_numeric(column):
            kind, categories = "regression", []
            values = pd.to_numeric(column).to_numpy(dtype=np.float64)
        else:
            kind = "classification"
            cat = pd.Categorical(column)
            categories = list(cat.categories)
            if len(categories) < 2:
                raise ValueError(
                    f"set_labels_key={self.labels_key!r} has {len(categories)} class(es); a classification head "
                    "needs at least 2 (use a numeric column for a regression target)."
                )
            values = np.where(cat.codes >= 0, cat.codes, np.nan).astype(np.float64)
        return self._store(adata, kind, categories, values)

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """Keep the model's kind and classes; labels the query lacks (or new classes) are unlabelled."""
        kind, categories = state_registry["kind"], list(state_registry["categories"])
        n = adata_target.n_obs
        if self.labels_key not in adata_target.obs.columns:
            values = np.full(n, np.nan)
        elif kind == "regression":
            values = pd.to_numeric(adata_target.obs[self.labels_key], errors="coerce").to_numpy(dtype=np.float64)
        else:
            codes = pd.Categorical(adata_target.obs[self.labels_key], categories=categories).codes
            values = np.where(codes >= 0, codes, np.nan).astype(np.float64)
        if not any(k in adata_target.obs.columns for k in self.set_keys):
            adata_target.obs[self.ATTR_KEY] = values
            return {"kind": kind, "categories": categories, "labels_key": self.labels_key, "set_values": np.array([])}
        return self._store(adata_target, kind, categories, values)

    def _store(self, adata: AnnData, kind: str, categories: list, values: np.ndarray) -> dict:
        codes, names = set_labels(adata.obs, self.set_keys)
        adata.obs[self.ATTR_KEY] = values
        return {
            "kind": kind,
            "categories": categories,
            "labels_key": self.labels_key,
            "set_values": per_set_labels(values, codes, names, self.labels_key),
        }

    def get_summary_stats(self, state_registry: dict) -> dict:
        """Number of classes (1 for a regression target)."""
        return {"n_set_labels": max(1, len(state_registry["categories"]))}


def _is_numeric(column) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def per_set_labels(values: np.ndarray, codes: np.ndarray, names, labels_key: str) -> np.ndarray:
    """One label per set from per-cell ``values`` (NaN: unlabelled); an error names a set whose cells disagree."""
    out = np.full(len(names), np.nan)
    ok = (codes >= 0) & np.isfinite(values)
    if not ok.any():
        return out
    c, v = codes[ok], values[ok]
    lo = np.full(len(names), np.inf)
    hi = np.full(len(names), -np.inf)
    np.minimum.at(lo, c, v)
    np.maximum.at(hi, c, v)
    bad = np.flatnonzero(np.isfinite(lo) & (lo != hi))
    if len(bad):
        raise ValueError(
            f"set_labels_key={labels_key!r} must be constant within each set, but set {names[bad[0]]!r} "
            f"has different labels ({len(bad)} set(s) disagree). Fix the column, or mark unknown labels as NaN."
        )
    labelled = np.isfinite(lo)
    out[labelled] = lo[labelled]
    return out


def registered_set_labels(adata_manager) -> dict | None:
    """State of the set-label field (kind, categories, ``set_values``), or ``None`` when none is registered."""
    if SET_LABELS_KEY not in adata_manager.data_registry:
        return None
    return adata_manager.get_state_registry(SET_LABELS_KEY)
