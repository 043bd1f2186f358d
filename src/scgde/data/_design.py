"""Which cells are controls, which are perturbed, and how predicted groups are named."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ._sets import SET_NAME_SEP

#: the context of every cell when a design has no ``context_key``
NO_CONTEXT = "all"


@dataclass(frozen=True)
class PerturbationDesign:
    """The layout of a perturbation experiment, shared by predictors, baselines and metrics.

    One object answers the questions every perturbation tool asks: which ``obs`` column names the
    perturbation, which value marks control cells, which column (if any) names the context (cell
    type, cell line) whose own control cells are the reference, and how combinations are written.
    Predicted groups are named ``"context|perturbation"`` (just ``"perturbation"`` without a
    context), the names :meth:`scgde.model.GDE.get_set_representation` gives the sets of
    ``set_key=[context_key, perturbation_key]``.

    Parameters
    ----------
    perturbation_key
        ``obs`` column naming each cell's perturbation.
    control
        The value of ``obs[perturbation_key]`` that marks control cells (``None``: the cells hold no
        control label, e.g. the measured perturbed cells given to a report with separate controls).
    context_key
        Optional ``obs`` column of contexts; each context is compared with its own control cells.
    combination_sep
        Separator of combinatorial perturbations, e.g. ``"+"`` in ``"KLF1+CEBPA"``.

    Examples
    --------
    >>> design = PerturbationDesign("perturbation", control="control", context_key="cell_type")
    >>> design.label("K562", "KLF1+CEBPA")
    'K562|KLF1+CEBPA'
    >>> design.parts("KLF1+CEBPA")
    ['KLF1', 'CEBPA']
    """

    perturbation_key: str
    control: str | None
    context_key: str | None = None
    combination_sep: str = "+"

    def __post_init__(self):
        if not isinstance(self.perturbation_key, str) or not self.perturbation_key:
            raise TypeError(f"perturbation_key must be a non-empty string, got {self.perturbation_key!r}.")
        if self.control is not None and (not isinstance(self.control, str) or not self.control):
            raise TypeError(f"control must be a non-empty string (or None), got {self.control!r}.")
        if self.context_key is not None and (not isinstance(self.context_key, str) or not self.context_key):
            raise TypeError(f"context_key must be a non-empty string or None, got {self.context_key!r}.")
        if self.context_key == self.perturbation_key:
            raise ValueError(f"context_key and perturbation_key are both {self.context_key!r}; pass two columns.")
        if not isinstance(self.combination_sep, str) or not self.combination_sep:
            raise ValueError(f"combination_sep must be a non-empty string such as '+', got {self.combination_sep!r}.")
        if SET_NAME_SEP in self.combination_sep:
            raise ValueError(f"combination_sep={self.combination_sep!r} must not contain {SET_NAME_SEP!r}.")

    # ------------------------------------------------------------------ labels
    @property
    def keys(self) -> list[str]:
        """The ``obs`` columns that define a group: ``[context_key, perturbation_key]`` or ``[perturbation_key]``."""
        return [self.perturbation_key] if self.context_key is None else [self.context_key, self.perturbation_key]

    def is_control(self, perturbations) -> np.ndarray:
        """Boolean mask of the control label among ``perturbations`` (a string or an array of labels)."""
        return np.asarray(perturbations, dtype=object) == self.control

    def parts(self, perturbation: str) -> list[str]:
        """The single perturbations of a (possibly combinatorial) label; ``"A+B"`` gives ``["A", "B"]``."""
        parts = str(perturbation).split(self.combination_sep)
        if any(not p for p in parts):
            raise ValueError(
                f"Perturbation {perturbation!r} has an empty part when split at combination_sep="
                f"{self.combination_sep!r}; fix the label or pass another combination_sep."
            )
        return parts

    def is_combination(self, perturbation: str) -> bool:
        """Whether a label names several perturbations."""
        return len(self.parts(perturbation)) > 1

    def label(self, context: str, perturbation: str) -> str:
        """The name of a (context, perturbation) group: ``"context|perturbation"`` or ``"perturbation"``."""
        if self.context_key is None:
            return str(perturbation)
        if SET_NAME_SEP in str(context):
            raise ValueError(
                f"Context {context!r} contains {SET_NAME_SEP!r}, which separates context and perturbation."
            )
        return f"{context}{SET_NAME_SEP}{perturbation}"

    def parse_label(self, label: str) -> tuple[str, str]:
        """``(context, perturbation)`` of a group name made by :meth:`label`."""
        if self.context_key is None:
            return NO_CONTEXT, str(label)
        context, sep, perturbation = str(label).partition(SET_NAME_SEP)
        if not sep:
            raise ValueError(f"Label {label!r} lacks the {SET_NAME_SEP!r} of 'context{SET_NAME_SEP}perturbation'.")
        return context, perturbation

    def targets(self, targets: str | Sequence) -> list[tuple[str, str]]:
        """Normalise targets (``(context, perturbation)`` pairs, labels or bare perturbations) to pairs."""
        items = [targets] if isinstance(targets, str | tuple) else list(targets)
        out = []
        for t in items:
            if isinstance(t, str):
                pair = self.parse_label(t) if self.context_key is not None else (NO_CONTEXT, t)
            else:
                pair = tuple(str(v) for v in t)
                if len(pair) != 2:
                    raise ValueError(f"A target must be a (context, perturbation) pair or a label, got {t!r}.")
            out.append(pair)
        return out

    # ------------------------------------------------------------------ cells
    def check(self, obs: pd.DataFrame, name: str = "adata", need_control: bool = True) -> None:
        """Raise if ``obs`` lacks the design's columns (or, with ``need_control``, any control cell)."""
        for arg, key in (("perturbation_key", self.perturbation_key), ("context_key", self.context_key)):
            if key is not None and key not in obs:
                raise KeyError(f"{arg}={key!r} is not a column of {name}.obs; available columns: {list(obs.columns)}.")
        if need_control and self.control is None:
            raise ValueError("This needs control cells: pass control= (the control label of the design).")
        if need_control and not self.is_control(obs[self.perturbation_key].astype(str)).any():
            values = sorted(set(obs[self.perturbation_key].dropna().astype(str)))
            raise ValueError(
                f"control={self.control!r} is not a value of {name}.obs[{self.perturbation_key!r}]; "
                f"values include {values[:10]}."
            )

    def groups(self, obs: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Group code of every cell (``-1``: a missing label) and the sorted ``(context, perturbation)`` groups."""
        pert = obs[self.perturbation_key]
        keep = ~pert.isna().to_numpy()
        if self.context_key is None:
            ctx = pd.Series(NO_CONTEXT, index=obs.index)
        else:
            ctx = obs[self.context_key]
            keep &= ~ctx.isna().to_numpy()
        frame = pd.DataFrame({"c": ctx.astype(str).to_numpy(), "p": pert.astype(str).to_numpy()})
        codes = np.full(len(obs), -1, dtype=np.int64)
        if not keep.any():
            return codes, []
        index = pd.MultiIndex.from_frame(frame[keep])
        uniq = index.unique().sort_values()
        codes[keep] = uniq.get_indexer(index)
        return codes, [(str(c), str(p)) for c, p in uniq]

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        """The design as a JSON-ready dict (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PerturbationDesign:
        """Rebuild a design saved with :meth:`to_dict`."""
        return cls(**d)

    @classmethod
    def resolve(
        cls,
        design: PerturbationDesign | None,
        perturbation_key: str | PerturbationDesign | None = None,
        control: str | None = None,
        context_key: str | None = None,
        combination_sep: str | None = None,
        need_control: bool = True,
    ) -> PerturbationDesign:
        """The design of a call that takes either ``design=`` or its fields as keywords (not both).

        A design passed in place of ``perturbation_key`` counts as ``design=``. With ``need_control``
        the design must name a control label.
        """
        if isinstance(perturbation_key, PerturbationDesign):
            if design is not None:
                raise ValueError("Pass the design once: as design= or in place of perturbation_key, not both.")
            design, perturbation_key = perturbation_key, None
        fields = {
            "perturbation_key": perturbation_key,
            "control": control,
            "context_key": context_key,
            "combination_sep": combination_sep,
        }
        if design is not None:
            if not isinstance(design, PerturbationDesign):
                raise TypeError(f"design must be a PerturbationDesign, got {type(design).__name__}.")
            clash = [k for k, v in fields.items() if v is not None and v != getattr(design, k)]
            if clash:
                raise ValueError(
                    f"{', '.join(clash)} disagree(s) with design=; pass either design= or the keywords, not both."
                )
        else:
            for name in ("perturbation_key", "control") if need_control else ("perturbation_key",):
                if fields[name] is None:
                    raise TypeError(f"Pass {name}= (or design=scgde.data.PerturbationDesign(...)).")
            design = cls(**{**fields, "combination_sep": combination_sep or "+"})
        if need_control and design.control is None:
            raise ValueError("design.control is None, but control cells are needed: give the design a control label.")
        return design
