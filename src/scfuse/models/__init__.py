"""Model classes behind :func:`scfuse.tl.cluster` (train, embed, predict new cells, save, load)."""

from ._attentionae import AttentionAE
from ._base import FusionModel, get_model_class, registered_methods

__all__ = ["AttentionAE", "FusionModel", "get_model_class", "registered_methods"]
