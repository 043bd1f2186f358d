"""The set-model base and the mixins every set model is built from (as :mod:`scvi.model.base`).

A new set model (cells, sequences, images) subclasses the mixins and :class:`BaseSetModelClass`
and overrides the hooks its elements need; see :class:`BaseSetModelClass` for the list.
"""

from scgde.model._embed import EmbeddingMixin
from scgde.model._generate import GenerationMixin, SetsOrEmbeddings
from scgde.model._setup import pass_steps, register_element_sets
from scgde.model._train import TrainMixin, default_steps
from scgde.model._training import GDETrainingPlan
from scgde.model._validate import check_choice

from ._set_model import BaseSetModelClass

__all__ = [
    "BaseSetModelClass",
    "EmbeddingMixin",
    "GDETrainingPlan",
    "GenerationMixin",
    "SetsOrEmbeddings",
    "TrainMixin",
    "check_choice",
    "default_steps",
    "pass_steps",
    "register_element_sets",
]
