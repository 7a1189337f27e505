"""Model classes behind :func:`scfuse.tl.cluster` (train, embed, predict new cells, save, load)."""

from ._attentionae import AttentionAE
from ._base import FusionModel
from ._config import (
    AttentionAEConfig,
    MethodConfig,
    ScAMACConfig,
    ScASDCConfig,
    ScCAGNConfig,
    ScDEFERConfig,
    TwoStageConfig,
)
from ._registry import get_model_class, register, registered_methods, unregister
from ._scamac import ScAMAC
from ._scasdc import ScASDC
from ._sccagn import ScCAGN
from ._scdefer import ScDEFER
from ._two_stage import TwoStageModel

__all__ = [
    "AttentionAEConfig",
    "MethodConfig",
    "ScAMACConfig",
    "ScASDCConfig",
    "ScCAGNConfig",
    "ScDEFERConfig",
    "TwoStageConfig",
    "AttentionAE",
    "FusionModel",
    "TwoStageModel",
    "get_model_class",
    "register",
    "registered_methods",
    "unregister",
    "ScAMAC",
    "ScASDC",
    "ScCAGN",
    "ScDEFER",
]
