"""Set-level supervision: a label head on the set vector, trained jointly with the generator."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from scgde._docs import inject_docs
from scgde.data import registered_set_labels


def head_options(adata_manager) -> dict:
    """Module arguments of the label head registered with ``set_labels_key`` (``{}``: none)."""
    state = registered_set_labels(adata_manager)
    if state is None:
        return {}
    return {"n_set_labels": max(1, len(state["categories"])), "set_label_kind": state["kind"]}


def check_label_training(label_weight: float, plan_kwargs: dict, adata_manager, **samplers) -> None:
    """Validate the loss weights, and warn when no labelled set will be drawn (``samplers``: mixer=, kernel=, window=)."""
    generator_weight = plan_kwargs.get("generator_weight", 1.0)
    for name, value in (("label_weight", label_weight), ("generator_weight", generator_weight)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    if label_weight == 0 and generator_weight == 0:
        raise ValueError("label_weight=0 and generator_weight=0 leave nothing to train; make one of them positive.")
    active = {k: v for k, v in samplers.items() if v is not None and not (k == "kernel" and v == "auto")}
    if label_weight > 0 and active:
        what, value = next(iter(active.items()))
        warnings.warn(
            f"With {what}={value!r} the training sets are mixtures, neighbourhoods or windows, which carry no "
            f"set label: the label head is not trained. Pass {what}=None to train it.",
            UserWarning,
            stacklevel=3,
        )
    state = registered_set_labels(adata_manager)
    if label_weight > 0 and not np.isfinite(np.asarray(state["set_values"], dtype=float)).any():
        warnings.warn(
            f"set_labels_key={state['labels_key']!r} labels no set of this AnnData; the label head is not trained.",
            UserWarning,
            stacklevel=3,
        )


class SupervisionMixin:
    """``predict_set_labels`` for models set up with ``set_labels_key``."""

    def _init_label_head(self) -> None:
        """Regression heads learn standardised targets: the moments of the labelled sets."""
        state = registered_set_labels(self.adata_manager)
        if state is None:
            return
        values = np.asarray(state["set_values"], dtype=np.float64)
        labelled = values[np.isfinite(values)]
        if len(labelled) and state["kind"] == "regression":
            self.module.label_head.set_target_moments(labelled.mean(), labelled.std())

    def _label_state(self) -> dict:
        state = registered_set_labels(self.adata_manager)
        if state is None or getattr(self.module, "label_head", None) is None:
            raise ValueError(
                "This model has no set-label head: register the labels first, e.g. "
                "GDE.setup_anndata(adata, set_key=..., set_labels_key='diagnosis'), then create the model."
            )
        return state

    @torch.inference_mode()
    @inject_docs
    def predict_set_labels(
        self,
        adata: AnnData | None = None,
        set_key: str | Sequence[str] | None = None,
        sets: Sequence[str] | None = None,
        chunk_size: int | None = None,
        progress_bar: bool = True,
    ) -> pd.DataFrame:
        """Predict each set's label with the head trained on the labelled sets.

        Sets are embedded exactly from all of their cells (as :meth:`get_set_representation`), so
        sets never seen in training, in a query AnnData, can be predicted.

        Parameters
        ----------
        %(query_adata)s
        %(set_key)s
        %(sets_subset)s
        chunk_size
            Cells per chunk of the streamed encoding (see :meth:`get_set_representation`).
        %(progress_bar)s

        Returns
        -------
        DataFrame with one row per set. Classification: one column of probabilities per class
        (named by the class) and ``"predicted"``, the most probable class (categorical).
        Regression: ``"predicted"``, the predicted value.

        Examples
        --------
        >>> pred = model.predict_set_labels(adata=query, progress_bar=False)  # doctest: +SKIP
        """
        state = self._label_state()
        emb = self.get_set_representation(adata, set_key, sets, chunk_size=chunk_size, progress_bar=progress_bar)
        head = self.module.label_head
        head.eval()
        z = torch.tensor(emb.to_numpy(), dtype=torch.float32, device=self.device)
        out = head.predict(z).cpu().numpy()
        if state["kind"] == "regression":
            return pd.DataFrame({"predicted": out}, index=emb.index)
        categories = list(state["categories"])
        pred = pd.DataFrame(out, index=emb.index, columns=[str(c) for c in categories])
        best = np.where(np.isfinite(out).all(1), out.argmax(1), -1)  # a set with no cell has no prediction
        pred["predicted"] = pd.Categorical.from_codes(best, categories=categories)
        return pred
