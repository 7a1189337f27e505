"""Torch building blocks shared by the five fusion models."""

from ._attention import NeighborAttention
from ._dec import kl_batchmean, soft_assign, target_distribution
from ._gcn import GraphConv
from ._mlp import dense_block
from ._zinb import ZINBHeads, zinb_nll

__all__ = [
    "GraphConv",
    "NeighborAttention",
    "ZINBHeads",
    "dense_block",
    "kl_batchmean",
    "soft_assign",
    "target_distribution",
    "zinb_nll",
]
