"""AttentionAE-sc: a ZINB autoencoder and a graph network fused by cross-attention (Li et al., 2023)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..nn import GraphConv, NeighborAttention, ZINBHeads, dense_block, kl_batchmean, soft_assign, zinb_nll
from ._base import register
from ._data import Batch, CellData, GraphView
from ._two_stage import ClusterCenters, TwoStageModel


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


@register
class AttentionAE(TwoStageModel):
    """AttentionAE-sc :cite:p:`Li2023attentionae`.

    A ZINB autoencoder on the z-scored log-normalised highly variable genes and a two-layer GCN over the
    normalised cell graph are fused by two multi-head cross-attention blocks (queries from the graph branch,
    keys/values from the autoencoder, residual). Stage 1 trains ZINB + 0.1 graph reconstruction; Leiden on the
    pretrained embedding (for a given ``n_clusters`` the same communities split or merged to k by silhouette,
    ``given_k_start="leiden"``; ``"silhouette"`` gives k-means/average linkage) starts stage 2, which trains
    ``KL(P||Q) + 0.1 ZINB + 0.01 graph`` with the decoder frozen until fewer than ``tol`` labels change.

    Differences from the authors' scripts: attention is restricted to each cell's graph neighbours and the GCN,
    losses and attention run on graph-local mini-batches (no ``n x n`` matrix); the graph is normalised
    ``D^-1/2 (W+I) D^-1/2`` and its reconstruction target is the binary adjacency on sampled pairs; noise is
    additive; ``q`` uses the Student-t exponent of the paper and ``P`` is detached; final labels come from an
    eval-mode pass; no cell is ever sampled by its label.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata, method="gauss")
    >>> scfuse.tl.cluster(adata, "attentionae", pretrain_epochs=2, max_epochs=2, progress_bar=False)
    >>> adata.obsm["X_attentionae"].shape
    (300, 16)
    """

    method_name = "attentionae"
    paper = "Li S, Guo H, Zhang S, Li Y, Li M. Attention-based deep clustering method for scRNA-seq cell type identification. PLoS Comput Biol 19(11): e1011641 (2023)."
    n_top_genes = 2500
    input_transform = "zscore"
    adjacency = "sym"
    graph_method = "gauss"
    default_batch_size = 256
    default_learning_rate = 1e-3
    module_class = AttentionAEModule
    module_hparams = ("hidden", "n_latent", "n_heads", "attention_dropout", "noise_std")
    default_hparams: dict[str, Any] = {
        **TwoStageModel.default_hparams,
        "hidden": (256, 64),
        "n_latent": 16,
        "n_heads": 8,
        "attention_dropout": 0.2,
        "noise_std": 0.1,
        "graph_weight": 0.1,
        "cluster_zinb_weight": 0.1,
        "cluster_graph_weight": 0.01,
        "grad_clip": 3.0,
        "min_cluster_size": 1,
        "given_k_start": "leiden",
    }

    def _graph_loss(self, batch: Batch, g2: torch.Tensor) -> torch.Tensor:
        logits, target = self._pair_logits(batch, g2)
        return F.mse_loss(torch.sigmoid(logits), target)

    def _pretrain_loss(self, batch: Batch) -> torch.Tensor:
        z, g2 = self.module.encode(batch.x, batch.graph)
        mean, disp, pi = self.module.decode(z, batch.covariates)
        loss = zinb_nll(batch.counts, mean, disp, pi, batch.size_factors, eps=1e-6)
        return loss + self.hparams["graph_weight"] * self._graph_loss(batch, g2)

    def _cluster_loss(self, batch: Batch, p: torch.Tensor) -> torch.Tensor:
        z, g2 = self.module.encode(batch.x, batch.graph)
        q = soft_assign(z, self.module.centers)
        mean, disp, pi = self.module.decode(z, batch.covariates)
        h = self.hparams
        return (
            kl_batchmean(p, q)
            + h["cluster_zinb_weight"] * zinb_nll(batch.counts, mean, disp, pi, batch.size_factors, eps=1e-6)
            + h["cluster_graph_weight"] * self._graph_loss(batch, g2)
        )

    def _pretrain_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.module.parameters(), lr=lr)

    def _cluster_parameters(self) -> list[torch.nn.Parameter]:
        m = self.module
        frozen = {id(p) for p in list(m.decoder.parameters()) + list(m.zinb.parameters())}
        return [p for p in m.parameters() if id(p) not in frozen]

    def _forward_all(self, data: CellData) -> dict[str, torch.Tensor]:
        batch = data.full_batch(self.device)
        z, _ = self.module.encode(batch.x, batch.graph)
        return {"latent": z}
