"""Pure-torch building blocks: set encoders, conditional generators, distribution distances.

Nothing here knows about AnnData.
"""

from ._distances import DISTANCES, energy_distance, mmd, sinkhorn_divergence, sliced_wasserstein
from ._encoders import (
    ENCODERS,
    AttentionEncoder,
    DeepSetsEncoder,
    KMEEncoder,
    MeanEncoder,
    ResNetEncoder,
    SetEncoder,
    build_encoder,
    encode_stream,
)
from ._generators import (
    GENERATORS,
    ConditionalGenerator,
    CVAEGenerator,
    DDPMGenerator,
    DirectGenerator,
    FlowGenerator,
    build_generator,
)
from ._layers import MLP, FiLMMLP
from ._multimodal import ModalityLayout, MultimodalCVAE, MultimodalSetEncoder
from ._pooling import PoolAccumulator, segment_pool
from ._sparse import SparseRows

__all__ = [
    "DISTANCES",
    "ENCODERS",
    "GENERATORS",
    "MLP",
    "FiLMMLP",
    "AttentionEncoder",
    "CVAEGenerator",
    "ConditionalGenerator",
    "DDPMGenerator",
    "DeepSetsEncoder",
    "DirectGenerator",
    "FlowGenerator",
    "KMEEncoder",
    "MeanEncoder",
    "ModalityLayout",
    "MultimodalCVAE",
    "MultimodalSetEncoder",
    "PoolAccumulator",
    "ResNetEncoder",
    "SetEncoder",
    "SparseRows",
    "build_encoder",
    "build_generator",
    "encode_stream",
    "energy_distance",
    "mmd",
    "segment_pool",
    "sinkhorn_divergence",
    "sliced_wasserstein",
]
