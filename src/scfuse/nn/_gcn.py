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


class TAGConv(nn.Module):
    """Topology-adaptive graph convolution (Du et al., 2017) with sparse matmuls.

    ``act(sum_{m=0..K} A_hat^m X W_m + b)``: one linear map per hop ``m`` of the propagated features
    ``A_hat^m X`` (``A_hat`` sparse and normalised, e.g. ``D^-1/2 A D^-1/2``). Memory is ``O(n * (K+1) * d)``;
    no dense adjacency and no PyTorch Geometric dependency.

    Parameters
    ----------
    in_features, out_features
        Sizes.
    hops
        ``K``, the number of propagation steps (PyTorch Geometric's default is 3).
    activation
        Applied to the output (``None`` for a linear layer).
    bias
        Add a bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hops: int = 3,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = torch.relu,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if hops < 0:
            raise ValueError(f"hops must be >= 0, got {hops}.")
        self.hops = hops
        self.lins = nn.ModuleList([nn.Linear(in_features, out_features, bias=False) for _ in range(hops + 1)])
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.activation = activation
        for lin in self.lins:
            nn.init.xavier_uniform_(lin.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        # Horner form: W_0 x + A (W_1 x + A (W_2 x + ... A W_K x)); propagates out_features-wide signals only
        out = self.lins[self.hops](x)
        for m in range(self.hops - 1, -1, -1):
            prop = torch.sparse.mm(adj, out) if adj.is_sparse else adj @ out
            out = self.lins[m](x) + prop
        if self.bias is not None:
            out = out + self.bias
        return self.activation(out) if self.activation is not None else out


def pair_logits(h: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
    """Inner-product graph decoder on sampled cell pairs ``(rows, cols, target)``, giving ``(<h_i, h_j>, target)``."""
    r, c, t = pairs
    return (h[r] * h[c]).sum(dim=1), t
