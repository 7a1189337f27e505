"""The torch modules of the five methods (network and losses); the model classes in :mod:`scfuse.models` train them."""

from ._attentionae import AttentionAEModule
from ._scamac import MultiScaleAttention, ScAMACModule
from ._scasdc import ScASDCModule
from ._sccagn import ScCAGNModule
from ._scdefer import ScDEFERModule, neighbor_self_attention

__all__ = [
    "AttentionAEModule",
    "MultiScaleAttention",
    "ScAMACModule",
    "ScASDCModule",
    "ScCAGNModule",
    "ScDEFERModule",
    "neighbor_self_attention",
]
