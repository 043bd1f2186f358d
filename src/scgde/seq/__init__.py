"""Distribution embeddings of sets of sequences: DNA, bisulfite reads, proteins.

The same engine as :mod:`scgde.model` (set samplers, training plan, streamed exact embedding),
with a convolutional set encoder of one-hot sequences and an autoregressive generator.
"""

from ._alphabet import BOS, EOS, N_SPECIAL, PAD, Alphabet, get_alphabet
from ._data import SeqSetDataSplitter, SequenceObsField, SequenceReader
from ._io import bisulfite_convert, expand_pat, read_fasta, read_fastq, read_pat, sequences_to_adata, translate
from ._model import SeqGDE
from ._module import SeqGDEModule
from ._nn import AutoregressiveGenerator, ConvSequenceEncoder

__all__ = [
    "BOS",
    "EOS",
    "N_SPECIAL",
    "PAD",
    "Alphabet",
    "AutoregressiveGenerator",
    "ConvSequenceEncoder",
    "SeqGDE",
    "SeqGDEModule",
    "SeqSetDataSplitter",
    "SequenceObsField",
    "SequenceReader",
    "bisulfite_convert",
    "expand_pat",
    "get_alphabet",
    "read_fasta",
    "read_fastq",
    "read_pat",
    "sequences_to_adata",
    "translate",
]
