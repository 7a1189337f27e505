"""Tools: train a fusion model and write its clusters (:func:`cluster`), map new cells (:func:`transfer`)."""

from ._cluster import cluster, show_methods, transfer

__all__ = ["cluster", "show_methods", "transfer"]
