"""Torch building blocks shared by the five fusion models."""

from ._adversarial import LatentDiscriminator
from ._attention import NeighborAttention
from ._centers import ClusterCenters
from ._dec import kl_batchmean, soft_assign, target_distribution
from ._fuzzy import AdaptiveFuzzyKMeans
from ._gcn import GraphConv, TAGConv, pair_logits
from ._mlp import dense_block
from ._zinb import ZINBHeads, zinb_nll

__all__ = [
    "AdaptiveFuzzyKMeans",
    "ClusterCenters",
    "GraphConv",
    "LatentDiscriminator",
    "NeighborAttention",
    "TAGConv",
    "ZINBHeads",
    "dense_block",
    "kl_batchmean",
    "pair_logits",
    "soft_assign",
    "target_distribution",
    "zinb_nll",
]
