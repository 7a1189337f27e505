"""Preprocessing: the cell-cell graph the fusion models read."""

from ._build_graph import build_graph

__all__ = ["build_graph"]
