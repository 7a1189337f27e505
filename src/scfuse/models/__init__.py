"""Model classes behind :func:`scfuse.tl.cluster` (train, embed, predict new cells, save, load)."""

from ._attentionae import AttentionAE
from ._base import FusionModel, get_model_class, registered_methods
from ._scasdc import ScASDC
from ._scdefer import ScDEFER
from ._scamac import ScAMAC
from ._sccagn import ScCAGN

__all__ = ["AttentionAE", "FusionModel", "get_model_class", "registered_methods", "ScAMAC", "ScASDC", "ScCAGN", "ScDEFER"]
