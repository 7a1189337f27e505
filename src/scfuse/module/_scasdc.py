"""The torch module of scASDC: a ZINB autoencoder and a GCN fused layer by layer through multi-head self-attention (Min et al., 2024)."""

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


class ScASDCModule(ClusterCenters):
    """scASDC's network: an autoencoder and a GCN encoder/decoder fused by attention.

    Autoencoder ``g -> 1000 -> 1000 -> 4000 -> n_latent`` (symmetric decoder, MSE and ZINB heads); the GCN
    encoder/decoder's layer inputs are the attention-fused mixes of the two branches.

    GCN encoder: ``g1 = GCN(x)``; ``r1 = SA(a g1 + (1-a) e2)``; ``g3 = GCN(r1)``; ``r2 = SA(a g3 + (1-a) z)``;
    ``h = GCN_lin(r2)`` (k logits, softmax head). GCN decoder: ``g6 = GCN(h)``; ``g7 = GCN(a g6 + (1-a) d1)``;
    ``x_hat = GCN(a g7 + (1-a) d3)``. ``SA`` is multi-head self-attention over each cell's graph neighbours.
    The head and the GCN decoder depend on k and are created by :meth:`set_centers`.
    """

    def __init__(
        self,
        n_input: int,
        *,
        hidden: tuple[int, int, int] = (1000, 1000, 4000),
        n_latent: int = 10,
        n_heads: int = 8,
        head_dims: tuple[int | None, int | None] = (125, None),
        alpha: float = 0.5,
        head_decoder_grad: bool = False,
        n_clusters: int | None = None,
        n_covariates: int = 0,
    ) -> None:
        super().__init__()
        self.head_decoder_grad = head_decoder_grad
        h1, h2, h3 = hidden
        self.n_input, self.hidden, self.n_latent, self.alpha = n_input, (h1, h2, h3), n_latent, alpha
        # autoencoder (Linear -> BN -> ReLU)
        self.enc1 = dense_block(n_input, h1, batch_norm="before")
        self.enc2 = dense_block(h1, h2, batch_norm="before")
        self.enc3 = dense_block(h2, h3, batch_norm="before")
        self.z_layer = nn.Sequential(nn.Linear(h3, n_latent), nn.BatchNorm1d(n_latent))
        self.dec1 = dense_block(n_latent, h3, batch_norm="before")
        self.dec2 = dense_block(h3, h2, batch_norm="before")
        self.dec3 = dense_block(h2, h1, batch_norm="before")
        self.x_bar = nn.Linear(h1, n_input)
        self.zinb = ZINBHeads(h1, n_input, mean_range=(1e-5, 1e6), disp_range=(1e-4, 1e4), n_covariates=n_covariates)
        # GCN encoder with attention fusion
        self.gcn1 = GraphConv(n_input, h2)
        self.att1 = NeighborAttention(h2, n_heads, head_dim=head_dims[0], chunk_size=1024)
        self.gcn2 = GraphConv(h2, n_latent)
        self.att2 = NeighborAttention(n_latent, n_heads, head_dim=head_dims[1])
        if n_clusters is not None:
            self._build_head(n_clusters)
            self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    def _build_head(self, k: int) -> None:
        h1, _, h3 = self.hidden
        self.gcn_head = GraphConv(self.n_latent, k, activation=None)
        self.gdec1 = GraphConv(k, h3)
        self.gdec2 = GraphConv(h3, h1)
        self.gdec3 = GraphConv(h1, self.n_input)

    def set_centers(self, centers: torch.Tensor) -> None:
        super().set_centers(centers)
        if not hasattr(self, "gcn_head"):
            self._build_head(centers.shape[0])
            for name in ("gcn_head", "gdec1", "gdec2", "gdec3"):
                getattr(self, name).to(centers.device)

    @property
    def has_head(self) -> bool:
        return hasattr(self, "gcn_head")

    def autoencode(self, x: torch.Tensor, *, decode: bool = True) -> dict[str, torch.Tensor]:
        """Encoder layers and latent; with ``decode`` also the decoder layers and the reconstruction."""
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        z = self.z_layer(self.enc3(e2))
        if not decode:
            return {"e2": e2, "z": z}
        d1 = self.dec1(z)
        d3 = self.dec3(self.dec2(d1))
        return {"e2": e2, "z": z, "d1": d1, "d3": d3, "x_bar": self.x_bar(d3)}

    def _mix(self, gcn: torch.Tensor, ae: torch.Tensor) -> torch.Tensor:
        return self.alpha * gcn + (1.0 - self.alpha) * ae

    def graph_encode(self, x: torch.Tensor, ae: dict, graph: GraphView) -> torch.Tensor:
        """Logits of the GCN head."""
        kw = graph.attention_kwargs()
        y1 = self._mix(self.gcn1(x, graph.adj), ae["e2"])
        r1 = self.att1(y1, y1, **kw)
        y2 = self._mix(self.gcn2(r1, graph.adj), ae["z"])
        r2 = self.att2(y2, y2, **kw)
        return self.gcn_head(r2, graph.adj)

    def graph_decode(self, h: torch.Tensor, ae: dict, graph: GraphView) -> torch.Tensor:
        g6 = self.gdec1(h, graph.adj)
        g7 = self.gdec2(self._mix(g6, ae["d1"]), graph.adj)
        return self.gdec3(self._mix(g7, ae["d3"]), graph.adj)

    def loss(self, batch, targets: dict, phase: str) -> dict[str, torch.Tensor]:
        """Loss terms of a mini-batch.

        Pretraining: ``reconstruction`` (MSE) and ``zinb``. Clustering: ``kl`` (KL(P||Q) on the autoencoder
        latent), ``head`` (KL(P||softmax head)), ``reconstruction``, ``graph`` (BCE of sampled pair logits of the
        GCN decoder), ``gcn_reconstruction`` (MSE of the GCN decoder) and ``zinb``.
        """
        ae = self.autoencode(batch.x)
        if phase == "pretrain":
            return {"reconstruction": F.mse_loss(ae["x_bar"], batch.x), "zinb": self._zinb(batch, ae)}
        p = targets["p"]
        logits = self.graph_encode(batch.x, ae, batch.graph)
        # the GCN decoder reads the head's logits; with ``head_decoder_grad=False`` (default) its reconstruction
        # losses train the decoder but do not pull on the head and the GCN encoder, which learn from KL(P||pred)
        x_hat = self.graph_decode(logits if self.head_decoder_grad else logits.detach(), ae, batch.graph)
        q = soft_assign(self.assign_space(ae["z"]), self.centers)
        pred = torch.softmax(logits, dim=1)
        graph = F.binary_cross_entropy_with_logits(*pair_logits(x_hat, targets["pairs"]))
        return {
            "kl": kl_batchmean(p, q),
            "head": kl_batchmean(p, pred),
            "reconstruction": F.mse_loss(ae["x_bar"], batch.x),
            "graph": graph,
            "gcn_reconstruction": F.mse_loss(x_hat, batch.x),
            "zinb": self._zinb(batch, ae),
        }

    def _zinb(self, batch, ae: dict) -> torch.Tensor:
        mean, disp, pi = self.zinb(ae["d3"], batch.covariates)
        return zinb_nll(batch.counts, mean, disp, pi, batch.size_factors, eps=1e-10)
