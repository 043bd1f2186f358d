"""``scgde.seq.SeqGDE``: generative distribution embeddings of sets of sequences, scvi-tools style."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.utils import setup_anndata_dsp

from scgde._docs import inject_docs
from scgde.model.base import (
    BaseSetModelClass,
    EmbeddingMixin,
    GDETrainingPlan,
    GenerationMixin,
    SetsOrEmbeddings,
    TrainMixin,
    check_choice,
    pass_steps,
    register_element_sets,
)

from ._alphabet import get_alphabet
from ._data import SEQUENCE_KEY, SeqSetDataSplitter, SequenceObsField, SequenceReader
from ._module import SeqGDEModule
from ._nn import ElementFeatureEncoder

AlphabetName = Literal["dna", "protein"]
Unknown = Literal["error", "mask"]
Encoder = Literal["conv"]
Generator = Literal["autoregressive"]

#: default training length of sequence models: 20 passes over the training sequences, 600-3,000 steps
SEQ_PASSES, SEQ_MIN_STEPS, SEQ_MAX_STEPS = 20, 600, 3000
#: sequences per chunk when streaming (convolution maps dominate the memory)
SEQ_CHUNK = 2048
#: the same with a user's element encoder (pretrained language models hold far larger activations per sequence)
SEQ_CHUNK_ELEMENT_ENCODER = 256
#: classifier-free guidance of :meth:`SeqGDE.generate` (the generator trains with 10% condition dropout). Off by
#: default: guidance samples p(x | z)^(1+w) / p(x)^w, not the set's distribution; on the DNA simplex w = 3 tripled
#: the composition error (0.145 against 0.047), while on promoters it made expression follow the bin more closely
#: (Spearman 0.74 against 0.36, seed 0 of benchmarks.seq_promoters)
GUIDANCE = 0.0


@inject_docs(encoder_class="~scgde.seq.ConvSequenceEncoder")
class SeqGDE(TrainMixin, EmbeddingMixin, GenerationMixin, BaseSetModelClass):
    """Generative Distribution Embeddings of sets of sequences: DNA, bisulfite reads, proteins.

    The sequence counterpart of :class:`scgde.model.GDE`, on the same engine (set samplers,
    training plan, streamed exact embedding): a set of sequences (the promoters of an expression
    window, the reads of a sample, the spike proteins of one month and country) is encoded by 1-D
    convolutions over one-hot sequences whose set-mean feature map is fed back after each block,
    and a small causal transformer regenerates sequences from the set vector, which it reads as
    prefix tokens. Both train jointly on the generator's per-token negative log-likelihood over
    random subsets of each set.

    Parameters
    ----------
    %(model_adata_elements)s
    %(n_latent)s
    %(conv_encoder)s
    generator
        ``"autoregressive"``: the prefix-conditioned causal transformer
        (:class:`~scgde.seq.AutoregressiveGenerator`).
    encoder_kwargs, generator_kwargs
        Their options, e.g. ``{"n_channels": 64}`` or ``{"d_model": 128, "n_layers": 4}``.
    element_encoder
        Optional per-element network used instead of the convolutions, e.g. a protein language
        model loaded from local weights: a :class:`torch.nn.Module` mapping token rows
        ``(N, max_length)`` (``PAD`` 0, ``BOS`` 1, ``EOS`` 2, then the letters of
        :attr:`alphabet` from 3) to features ``(N, D)`` (``D`` from its ``n_features`` attribute or
        one dry run). Its features feed a pooled-feedback set encoder
        (:class:`~scgde.seq.ElementFeatureEncoder`; ``encoder_kwargs`` go to that set head). It
        trains with the model unless frozen with ``element_encoder.requires_grad_(False)``. Its
        weights are saved with the model; :meth:`load` needs the same network passed again.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> seqs = ["".join(rng.choice(list("ACGT"), 12)) for _ in range(40)]
    >>> adata = scgde.seq.sequences_to_adata(seqs, obs=pd.DataFrame({"window": np.repeat(["a", "b"], 20)}))
    >>> scgde.seq.SeqGDE.setup_anndata(adata, set_key="window", alphabet="dna")
    >>> model = scgde.seq.SeqGDE(adata, n_latent=4)
    >>> model.train(max_epochs=1, batches_per_epoch=2, enable_progress_bar=False)
    >>> model.get_set_representation(progress_bar=False).shape
    (2, 4)
    >>> gen = model.generate("a", n_samples=3)
    >>> gen.obs.columns.tolist()
    ['sequence', 'set']
    """

    _module_cls = SeqGDEModule
    _training_plan_cls = GDETrainingPlan
    _data_splitter_cls = SeqSetDataSplitter
    #: the network :meth:`load` hands to ``__init__`` (the saved model records only its class)
    _loading_element_encoder: ClassVar[torch.nn.Module | None] = None

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 32,
        encoder: Encoder = "conv",
        generator: Generator = "autoregressive",
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
        element_encoder: torch.nn.Module | None = None,
    ):
        super().__init__(adata)
        check_choice("encoder", encoder, Encoder)
        check_choice("generator", generator, Generator)
        element_encoder = self._resolve_element_encoder(element_encoder)
        state = self.adata_manager.get_state_registry(SEQUENCE_KEY)
        self.alphabet = get_alphabet(state["alphabet"])
        self.max_length = int(state["max_length"])
        self._unknown = state["unknown"]
        self.module = self._module_cls(
            n_tokens=self.alphabet.n_tokens,
            max_length=self.max_length,
            n_latent=n_latent,
            encoder_kwargs=encoder_kwargs,
            generator_kwargs=generator_kwargs,
            element_encoder=element_encoder,
        )
        elements = "convolutions" if element_encoder is None else type(element_encoder).__name__
        self._model_summary_string = (
            f"SeqGDE model: {self.alphabet.name} sequences up to {self.max_length} letters, "
            f"n_latent={n_latent}, elements by {elements}, sets from {self.set_key}."
        )
        self.init_params_ = self._get_init_params(locals())
        if element_encoder is not None:  # record the class, not the network (its weights are in the state dict)
            kind = type(element_encoder)
            self.init_params_["non_kwargs"]["element_encoder"] = f"{kind.__module__}.{kind.__qualname__}"

    @classmethod
    def _resolve_element_encoder(cls, element_encoder):
        """The network itself; a class name comes from a saved model and needs the network from :meth:`load`."""
        handed = cls._loading_element_encoder
        if isinstance(element_encoder, str):  # loading a model saved with a network
            if handed is None:
                raise ValueError(
                    f"This model was saved with a custom element encoder ({element_encoder}); pass the same "
                    "network again: SeqGDE.load(dir_path, adata, element_encoder=<the torch.nn.Module>)."
                )
            name = f"{type(handed).__module__}.{type(handed).__qualname__}"
            if name != element_encoder:
                warnings.warn(
                    f"The model was saved with an element encoder of class {element_encoder}; loading its weights "
                    f"into a {name}.",
                    UserWarning,
                    stacklevel=4,
                )
            return handed
        if element_encoder is None and handed is not None:
            raise ValueError(
                "This model was saved without an element encoder (it reads sequences with convolutions); load it "
                "without element_encoder=."
            )
        if element_encoder is None or isinstance(element_encoder, torch.nn.Module):
            return element_encoder
        raise TypeError(f"element_encoder must be a torch.nn.Module or None, got {type(element_encoder).__name__}.")

    @classmethod
    @inject_docs
    def load(
        cls,
        dir_path: str | Path,
        adata: AnnData | None = None,
        *args,
        element_encoder: torch.nn.Module | None = None,
        **kwargs,
    ) -> SeqGDE:
        """Load a saved model (scvi-tools' :meth:`~scvi.model.base.BaseModelClass.load`).

        Parameters
        ----------
        %(load_dir_path)s
        %(load_adata)s
        *args, **kwargs
            Passed on (``accelerator``, ``device``, ``prefix``, ...).
        element_encoder
            The network the model was built with, if it had one (an instance of the same class;
            its saved weights are loaded into it).
        """
        if element_encoder is not None and not isinstance(element_encoder, torch.nn.Module):
            raise TypeError(f"element_encoder must be a torch.nn.Module, got {type(element_encoder).__name__}.")
        previous, cls._loading_element_encoder = cls._loading_element_encoder, element_encoder
        try:
            return super().load(dir_path, adata, *args, **kwargs)
        finally:
            cls._loading_element_encoder = previous

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        set_key: str | Sequence[str],
        sequence_key: str = "sequence",
        alphabet: AlphabetName = "dna",
        max_length: int | None = None,
        unknown: Unknown = "error",
        **kwargs,
    ) -> None:
        """Register an AnnData whose rows are sequences grouped into sets.

        Parameters
        ----------
        %(param_adata)s
        set_key
            Column(s) of ``adata.obs`` naming each sequence's set (a window, a sample, a month x
            country); several columns make one set per observed combination.
        sequence_key
            Column of ``adata.obs`` with the sequences (``scgde.seq.read_fasta`` and
            :func:`~scgde.seq.sequences_to_adata` write ``"sequence"``).
        alphabet
            ``"dna"`` (``ACGTN``; ``U`` reads as ``T``) or ``"protein"`` (20 amino acids and ``X``).
            Letters are case-insensitive.
        max_length
            Longest allowed sequence (default: the longest one here). Longer sequences are an
            error naming the longest.
        unknown
            ``"error"`` (default): other characters are an error that lists them; ``"mask"``: they
            read as ``N`` (DNA) or ``X`` (protein).
        **kwargs
            Used by :meth:`load` to transfer a saved setup to a new AnnData.

        Notes
        -----
        Writes only scvi-tools' registration keys: ``.uns["_scvi_uuid"]``,
        ``.uns["_scvi_manager_uuid"]`` and ``.obs["_scgde_set"]``. Sequences are read, never
        modified or copied into the AnnData.
        """
        check_choice("alphabet", alphabet, AlphabetName)
        check_choice("unknown", unknown, Unknown)
        setup_method_args = cls._get_setup_method_args(**locals())
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}.")
        register_element_sets(
            cls,
            adata,
            set_key,
            SequenceObsField(sequence_key, alphabet, max_length, unknown),
            setup_method_args,
            "sequence",
            **kwargs,
        )

    @inject_docs(elements="sequences")
    def train(
        self,
        max_epochs: int | None = None,
        sets_per_batch: int = 16,
        cells_per_set: int = 32,
        **kwargs,
    ):
        """Train encoder and generator jointly; the options of :meth:`scgde.model.GDE.train`.

        Parameters
        ----------
        max_epochs
            Default: 20 passes over the training sequences, within 600 to 3,000 optimiser steps. For
            generation from weakly informative sets train longer: on the promoter benchmark 600 steps
            gave a generator that followed its expression bin in two of three runs, 1,500 steps
            (``max_epochs=30, batches_per_epoch=50``) in both runs tried (Spearman 0.63 and 0.93).
        %(sets_per_batch)s
        %(elements_per_set)s
        %(element_train_kwargs)s
        """
        return super().train(
            max_epochs=max_epochs, sets_per_batch=sets_per_batch, cells_per_set=cells_per_set, **kwargs
        )

    @staticmethod
    def _default_steps(n_train_cells: int, sets_per_batch: int, cells_per_set: int, few_sets: bool = False) -> int:
        return pass_steps(n_train_cells, sets_per_batch, cells_per_set, SEQ_PASSES, SEQ_MIN_STEPS, SEQ_MAX_STEPS)

    def _calibrate_support(self) -> None:
        """Nothing to calibrate: generated tokens are letters of the alphabet by construction."""

    def _default_chunk_size(self, reader) -> int:
        if isinstance(self.module.encoder, ElementFeatureEncoder):  # a user's network, e.g. a protein language model
            return SEQ_CHUNK_ELEMENT_ENCODER
        return SEQ_CHUNK

    def _reader(self, adata: AnnData) -> SequenceReader:
        """Tokens of the sequences of ``adata``, checked against the model's alphabet and length."""
        key = self.adata_manager.data_registry[SEQUENCE_KEY].attr_key
        if key not in adata.obs.columns:
            raise KeyError(f"adata.obs has no {key!r} column: the model reads its sequences from there.")
        return SequenceReader(adata.obs[key], self.alphabet, self.max_length, self._unknown)

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    @inject_docs(elements="sequences")
    def generate(
        self,
        sets: SetsOrEmbeddings,
        n_samples: int = 100,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_length: int | None = None,
        batch_size: int = 512,
        guidance: float = GUIDANCE,
    ) -> AnnData:
        """Generate sequences from sets or set embeddings.

        Parameters
        ----------
        %(generate_sets)s
        %(n_samples_per_set)s
        temperature
            Softmax temperature (below 1: more typical sequences).
        top_p
            Nucleus sampling: draw from the smallest set of letters holding this probability.
        max_length
            Longest generated sequence (default: the model's ``max_length``).
        %(batch_size_elements)s
        guidance
            Classifier-free guidance weight ``w``: letters are drawn from ``(1 + w)`` times the
            conditional minus ``w`` times the unconditional logits. ``0`` (default) samples the set's
            own distribution; ``w > 0`` sharpens it towards what distinguishes the set from all
            sets (promoters follow their expression bin more closely, but a mixture set's
            proportions drift towards its dominant component).

        Returns
        -------
        AnnData with no variables; ``obs["sequence"]`` and ``obs["set"]`` (the source).
        Seeded by ``scvi.settings.seed``.
        """
        emb, z_all = self._generation_latents(sets, n_samples)
        per_call = max(1, batch_size // n_samples)
        options = {"temperature": temperature, "top_p": top_p, "max_length": max_length, "guidance": guidance}
        with torch.random.fork_rng():
            torch.manual_seed(self._seed())
            tokens = [
                self.module.sample(z_all[i : i + per_call], n_samples, **options).flatten(0, 1).cpu().numpy()
                for i in range(0, len(z_all), per_call)
            ]
        obs = pd.DataFrame(
            {
                "sequence": self.alphabet.decode(np.concatenate(tokens)),
                "set": self._source_sets(emb, n_samples),
            }
        )
        obs.index = obs.index.astype(str)
        return AnnData(obs=obs)

    @inject_docs(elements="sequences")
    def interpolate(
        self, set_a: str | np.ndarray, set_b: str | np.ndarray, n_steps: int = 5, n_samples: int = 100, **kwargs
    ) -> AnnData:
        """Generate sequences along the straight latent line between two sets.

        Parameters
        ----------
        %(line_ends)s
        %(line_steps)s
        %(n_samples_per_point)s
        **kwargs
            Passed to :meth:`generate` (``temperature``, ``top_p``, ``guidance``, ...).

        Returns
        -------
        %(line_returns)s
        """
        line = self._latent_line(set_a, set_b, n_steps)
        return self._mark_line(self.generate(line, n_samples=n_samples, **kwargs), line, set_a, set_b, n_samples)

    @torch.inference_mode()
    def log_likelihood(self, sequences: Sequence[str], sets: SetsOrEmbeddings) -> np.ndarray:
        """Log-likelihood (nats) of each sequence under a set's vector, ``(n,)``.

        Parameters
        ----------
        sequences
            Sequences to score.
        sets
            One set name or embedding for all sequences, or one per sequence (names, or a
            DataFrame/array with one row per sequence).
        """
        tokens, _ = self.alphabet.encode(list(sequences), self.max_length, self._unknown)
        if not isinstance(sets, str) and not isinstance(sets, pd.DataFrame | np.ndarray):
            names = [str(s) for s in sets]  # one set name per sequence
            emb = self._as_embeddings(list(dict.fromkeys(names))).loc[names].to_numpy(copy=True)
        else:
            emb = self._as_embeddings(sets).to_numpy(copy=True)  # writable: torch.from_numpy below
        if len(emb) == 1:
            emb = np.repeat(emb, len(tokens), axis=0)
        if len(emb) != len(tokens):
            raise ValueError(f"Got {len(tokens)} sequences but {len(emb)} sets; pass one set, or one per sequence.")
        self.module.eval()
        out = [
            self.module.log_likelihood(torch.from_numpy(tokens[i : i + 1024]), torch.from_numpy(emb[i : i + 1024]))
            for i in range(0, len(tokens), 1024)
        ]
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)
