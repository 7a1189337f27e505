"""The torch module of AttentionAE-sc: a ZINB autoencoder and a graph network fused by cross-attention (Li et al., 2023)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from scfuse.nn import (
    ClusterCenters,
    GraphConv,
    NeighborAttention,
    ZINBHeads,
    dense_block,
    kl_batchmean,
    pair_logits,
    soft_assign,
    zinb_nll,
)

if TYPE_CHECKING:
    from scfuse.models._data import GraphView


class AttentionAEModule(ClusterCenters):
    """Encoder ``g -> 256 -> 64 -> n_latent`` fused with a 2-layer GCN by two cross-attention blocks.

    Queries come from the graph branch, keys and values from the autoencoder branch, each block is added to its
    autoencoder layer (residual). The decoder ``n_latent -> 64 -> 256`` ends in ZINB heads.
    """

    def __init__(
        self,
        n_input: int,
        *,
        hidden: tuple[int, int] = (256, 64),
        n_latent: int = 16,
        n_heads: int = 8,
        attention_dropout: float = 0.2,
        noise_std: float = 0.1,
        n_clusters: int | None = None,
        n_covariates: int = 0,
    ) -> None:
        super().__init__()
        h1, h2 = hidden
        self.noise_std = noise_std
        self.enc1 = dense_block(n_input, h1, activation=nn.ReLU, batch_norm="after")
        self.enc2 = dense_block(h1, h2, activation=nn.ReLU, batch_norm="after")
        self.z_layer = nn.Linear(h2, n_latent)
        self.gcn1 = GraphConv(h1, h2, activation=torch.tanh)
        self.gcn2 = GraphConv(h2, n_latent, activation=torch.tanh)
        self.att1 = NeighborAttention(h2, n_heads, dropout=attention_dropout)
        self.att2 = NeighborAttention(n_latent, n_heads, dropout=attention_dropout)
        self.decoder = nn.Sequential(nn.Linear(n_latent, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU())
        self.zinb = ZINBHeads(h1, n_input, mean_range=(1e-5, 1e4), disp_range=(1e-4, 1e3), n_covariates=n_covariates)
        if n_clusters is not None:
            self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise_std > 0:
            return x + self.noise_std * torch.randn_like(x)
        return x

    def encode(self, x: torch.Tensor, graph: GraphView) -> tuple[torch.Tensor, torch.Tensor]:
        kw = graph.attention_kwargs()
        e1 = self.enc1(self._noise(x))
        g1 = self.gcn1(e1, graph.adj)
        g2 = self.gcn2(g1, graph.adj)
        e2 = self.enc2(self._noise(e1))
        e2 = self.att1(g1, e2, **kw) + e2
        z = self.z_layer(self._noise(e2))
        z = self.att2(g2, z, **kw) + z
        return z, g2

    def decode(self, z: torch.Tensor, covariates: torch.Tensor | None = None):
        return self.zinb(self.decoder(z), covariates)

    def loss(self, batch, targets: dict, phase: str) -> dict[str, torch.Tensor]:
        """Loss terms of a mini-batch.

        ``zinb`` and ``graph`` (MSE of the sigmoid of sampled pair logits to the adjacency), plus ``kl``
        (KL(P||Q) to ``targets["p"]``) in the clustering stage.
        """
        z, g2 = self.encode(batch.x, batch.graph)
        terms = {}
        if phase == "cluster":
            terms["kl"] = kl_batchmean(targets["p"], soft_assign(z, self.centers))
        mean, disp, pi = self.decode(z, batch.covariates)
        terms["zinb"] = zinb_nll(batch.counts, mean, disp, pi, batch.size_factors, eps=1e-6)
        logits, target = pair_logits(g2, targets["pairs"])
        terms["graph"] = F.mse_loss(torch.sigmoid(logits), target)
        return terms
