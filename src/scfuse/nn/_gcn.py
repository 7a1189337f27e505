"""Sparse graph convolution."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class GraphConv(nn.Module):
    """``act(A_hat @ X @ W)`` with a sparse normalised adjacency ``A_hat`` (Kipf & Welling).

    Parameters
    ----------
    in_features, out_features
        Sizes.
    activation
        Applied to the output (``None`` for a linear layer).
    bias
        Add a bias after propagation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = torch.relu,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.activation = activation
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        out = torch.sparse.mm(adj, x @ self.weight) if adj.is_sparse else adj @ (x @ self.weight)
        if self.bias is not None:
            out = out + self.bias
        return self.activation(out) if self.activation is not None else out
