"""The torch module of scDEFER: an MLP and a topology-adaptive GCN fused layer by layer, with heterogeneous latent fusion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from scfuse.nn import (
    ClusterCenters,
    TAGConv,
    ZINBHeads,
    dense_block,
    kl_batchmean,
    pair_logits,
    soft_assign,
    zinb_nll,
)

if TYPE_CHECKING:
    from scfuse.models._data import GraphView


def neighbor_self_attention(h: torch.Tensor, graph: GraphView, *, chunk_size: int = 4096) -> torch.Tensor:
    """``S h`` with ``S = softmax_rows(h h^T)`` restricted to each cell's graph neighbours and itself.

    Training: the mini-batch mask (``b x b``); inference: the padded neighbour table in row chunks. No ``n x n``.
    """
    if graph.neighbors is None:
        scores = h @ h.T
        if graph.mask is not None:
            scores = scores.masked_fill(~graph.mask, float("-inf"))
        return torch.softmax(scores, dim=1) @ h
    outs = []
    for s in range(0, h.shape[0], chunk_size):
        idx = graph.neighbors[s : s + chunk_size]
        hn = h[idx]  # (c, K, d)
        sc = (h[s : s + chunk_size].unsqueeze(1) * hn).sum(-1)
        sc = sc.masked_fill(~graph.neighbor_mask[s : s + chunk_size], float("-inf"))
        outs.append((torch.softmax(sc, dim=1).unsqueeze(-1) * hn).sum(1))
    return torch.cat(outs, dim=0)


class ScDEFERModule(ClusterCenters):
    """scDEFER's network: an MLP branch and a TAGConv branch, fused, with a ZINB decoder.

    Both branches are ``g -> 1024 -> 128 -> n_latent`` with layer fusion and latent fusion; the ZINB decoder
    ``n_latent -> 128 -> 1024`` has three separate heads.
    """

    def __init__(
        self,
        n_input: int,
        *,
        hidden: tuple[int, int] = (1024, 128),
        n_latent: int = 24,
        hops: int = 3,
        sigma: float = 0.1,
        dropout: float = 0.01,
        n_clusters: int | None = None,
        n_covariates: int = 0,
    ) -> None:
        super().__init__()
        h1, h2 = hidden
        self.sigma = sigma
        bn = {"momentum": 0.01, "eps": 1e-3}
        self.mlp1 = dense_block(n_input, h1, batch_norm="before", dropout=dropout, bn_kwargs=bn)
        self.mlp2 = dense_block(h1, h2, batch_norm="before", dropout=dropout, bn_kwargs=bn)
        self.mlp3 = nn.Linear(h2, n_latent)
        self.tag1 = TAGConv(n_input, h1, hops=hops)
        self.tag2 = TAGConv(h1, h2, hops=hops)
        self.tag3 = TAGConv(h2, n_latent, hops=hops, activation=None)
        self.drop = nn.Dropout(dropout)
        # latent fusion: per-dimension weights (init 0.5) and the self-correlation weight (init 0)
        self.fuse_a = nn.Parameter(torch.full((n_latent,), 0.5))
        self.fuse_b = nn.Parameter(torch.full((n_latent,), 0.5))
        self.fuse_alpha = nn.Parameter(torch.zeros(1))
        self.decoder = nn.Sequential(
            dense_block(n_latent, h2, batch_norm="before", dropout=dropout, bn_kwargs=bn),
            dense_block(h2, h1, batch_norm="before", dropout=dropout, bn_kwargs=bn),
        )
        self.zinb = ZINBHeads(h1, n_input, mean_range=(1e-5, 1e6), disp_range=(1e-4, 1e4), n_covariates=n_covariates)
        if n_clusters is not None:
            self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    def encode(self, x: torch.Tensor, graph: GraphView) -> dict[str, torch.Tensor]:
        s, adj = self.sigma, graph.adj
        l1 = self.mlp1(x)
        t1 = self.drop(self.tag1(x, adj))
        u1 = (1 - s) * t1 + s * l1
        l2 = self.mlp2(u1)
        t2 = self.drop(self.tag2(u1, adj))
        u2 = (1 - s) * t2 + s * l2
        z_l, z_g = self.mlp3(u2), self.tag3(u2, adj)
        zi = self.fuse_a * z_l + self.fuse_b * z_g
        zp = torch.sparse.mm(adj, zi)
        z = self.fuse_alpha * neighbor_self_attention(zp, graph) + zp
        return {"z": z, "z_mlp": z_l, "z_graph": z_g}

    def decode(self, z: torch.Tensor, covariates: torch.Tensor | None = None):
        return self.zinb(self.decoder(z), covariates)

    def loss(self, batch, targets: dict, phase: str) -> dict[str, torch.Tensor]:
        """Loss terms of a mini-batch.

        ``graph`` (BCE of sampled pair logits of the graph latent) and ``zinb``; in the clustering stage also
        ``kl`` (KL(P||Q) on the fused latent) and ``bce_graph`` / ``bce_mlp`` (each branch's Q to its own target
        ``p_graph`` / ``p_mlp``).
        """
        out = self.encode(batch.x, batch.graph)
        if phase == "cluster":  # (the order of the operations is the order of the autograd graph)
            q = soft_assign(self.assign_space(out["z"]), self.centers)
            q_l = soft_assign(self.assign_space(out["z_mlp"]), self.centers)
            q_g = soft_assign(self.assign_space(out["z_graph"]), self.centers)
        terms = {"graph": F.binary_cross_entropy_with_logits(*pair_logits(out["z_graph"], targets["pairs"]))}
        mean, disp, pi = self.decode(out["z"], batch.covariates)
        terms["zinb"] = zinb_nll(batch.counts, mean, disp, pi, batch.size_factors, eps=1e-10)
        if phase == "cluster":
            terms["kl"] = kl_batchmean(targets["p"], q)
            terms["bce_graph"] = F.binary_cross_entropy(q_g.clamp(1e-7, 1 - 1e-7), targets["p_graph"])
            terms["bce_mlp"] = F.binary_cross_entropy(q_l.clamp(1e-7, 1 - 1e-7), targets["p_mlp"])
        return terms
