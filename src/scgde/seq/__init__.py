"""Distribution embeddings of sets of sequences: DNA, bisulfite reads, proteins.

The same engine as :mod:`scgde.model` (set samplers, training plan, streamed exact embedding),
with a convolutional set encoder of one-hot sequences and an autoregressive generator.
"""

from ._alphabet import BOS, EOS, N_SPECIAL, PAD, Alphabet, get_alphabet
from ._data import SeqSetDataSplitter, SequenceObsField, SequenceReader
from ._io import bisulfite_convert, expand_pat, read_fasta, read_fastq, read_pat, sequences_to_adata, translate
from ._model import SeqGDE
from ._module import SeqGDEModule
from ._motifs import jaspar_motifs, motif_counts, motif_hits_per_set, motif_scores, pwm_log_odds, read_motifs
from ._nn import AutoregressiveGenerator, ConvSequenceEncoder, ElementFeatureEncoder

__all__ = [
    "BOS",
    "EOS",
    "N_SPECIAL",
    "PAD",
    "Alphabet",
    "AutoregressiveGenerator",
    "ConvSequenceEncoder",
    "ElementFeatureEncoder",
    "SeqGDE",
    "SeqGDEModule",
    "SeqSetDataSplitter",
    "SequenceObsField",
    "SequenceReader",
    "bisulfite_convert",
    "expand_pat",
    "get_alphabet",
    "jaspar_motifs",
    "motif_counts",
    "motif_hits_per_set",
    "motif_scores",
    "pwm_log_odds",
    "read_motifs",
    "read_fasta",
    "read_fastq",
    "read_pat",
    "sequences_to_adata",
    "translate",
]
