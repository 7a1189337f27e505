"""Plots: the learned embedding, training history, soft assignments."""

from ._plots import cluster_proba, embedding, history

__all__ = ["cluster_proba", "embedding", "history"]
