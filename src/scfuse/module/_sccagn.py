"""The torch module of scCAGN: an adversarial autoencoder and a GCN fused by cross-attention, with dual-constraint clustering."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from scfuse.nn import (
    ClusterCenters,
    GraphConv,
    LatentDiscriminator,
    NeighborAttention,
    kl_batchmean,
    soft_assign,
)

if TYPE_CHECKING:
    from scfuse.models._data import GraphView


class ScCAGNModule(ClusterCenters):
    """scCAGN's network: a GCN branch, an autoencoder, cross-attention and a latent discriminator.

    GCN branch ``g -> 100 -> 200 -> n_latent (-> k)``, autoencoder ``g -> 100 -> 200 -> 200 -> n_latent`` with the
    GCN layers injected, cross-attention (query = AE latent, key/value = GCN latent) and a decoder with the GCN
    layers injected; plus the latent discriminator of the adversarial autoencoder.
    """

    def __init__(
        self,
        n_input: int,
        *,
        hidden: tuple[int, int, int] = (100, 200, 200),
        n_latent: int = 8,
        n_heads: int = 4,
        phi: float | None = None,
        attention_residual: bool = True,
        disc_hidden: int = 64,
        pretrain_fused: bool = True,
        n_clusters: int | None = None,
    ) -> None:
        super().__init__()
        self.pretrain_fused = pretrain_fused
        h1, h2, h3 = hidden
        if h2 != h3:
            raise ValueError(
                f"hidden[1] and hidden[2] must be equal (the GCN's second layer is injected into both), got {hidden}."
            )
        if n_latent % n_heads:
            raise ValueError(f"n_latent={n_latent} must be divisible by n_heads={n_heads}.")
        self.phi = phi
        self.attention_residual = attention_residual
        self.gcn1 = GraphConv(n_input, h1)
        self.gcn2 = GraphConv(h1, h2)
        self.gcn3 = GraphConv(h2, n_latent)
        self.enc1 = nn.Linear(n_input, h1)
        self.enc2 = nn.Linear(h1, h2)
        self.enc3 = nn.Linear(h2, h3)
        self.z_layer = nn.Linear(h3, n_latent)
        self.attention = NeighborAttention(n_latent, n_heads, head_dim=n_latent // n_heads, qkv_bias=True)
        self.dec1 = nn.Linear(n_latent, h3)
        self.dec2 = nn.Linear(h3, h2)
        self.dec3 = nn.Linear(h2, h1)
        self.x_bar = nn.Linear(h1, n_input)
        self.discriminator = LatentDiscriminator(n_latent, disc_hidden)
        self.n_latent = n_latent
        # the clustering head reads z / latent_scale (1 until the clusters are initialised, see ScCAGN._after_init)
        self.register_buffer("latent_scale", torch.ones(()))
        self.gcn_head: GraphConv | None = None
        if n_clusters is not None:
            self.set_head(n_clusters)
            self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    def set_head(self, n_clusters: int) -> None:
        self.gcn_head = GraphConv(self.n_latent, n_clusters)

    def _mix(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return a + g if self.phi is None else (1.0 - self.phi) * a + self.phi * g

    def forward(
        self, x: torch.Tensor, graph: GraphView, *, decode: bool = True, head: bool = False, fused: bool = True
    ) -> dict:
        """``fused=False`` is the plain autoencoder of pretraining (no GCN injection, no attention, ``z`` decoded)."""
        if not fused:
            a1 = F.relu(self.enc1(x))
            z = self.z_layer(F.relu(self.enc3(F.relu(self.enc2(a1)))))
            out = {"z": z / self.latent_scale}
            if decode:
                b = F.relu(self.dec3(F.relu(self.dec2(F.relu(self.dec1(z))))))
                out["x_bar"] = self.x_bar(b)
            return out
        adj = graph.adj
        g1 = self.gcn1(x, adj)
        g2 = self.gcn2(g1, adj)
        g3 = self.gcn3(g2, adj)
        a1 = F.relu(self.enc1(x))
        a2 = F.relu(self.enc2(self._mix(a1, g1)))
        a3 = F.relu(self.enc3(self._mix(a2, g2)))
        z = self.z_layer(self._mix(a3, g2))
        out = {"z": z / self.latent_scale, "g3": g3}
        if decode:
            c = self.attention(z, g3, **graph.attention_kwargs())
            if self.attention_residual:
                c = c + z
            b1 = F.relu(self.dec1(self._mix(c, g3)))
            b2 = F.relu(self.dec2(self._mix(b1, g2)))
            b3 = F.relu(self.dec3(self._mix(b2, g2)))
            out["x_bar"] = self.x_bar(self._mix(b3, g1))
        if head and self.gcn_head is not None:
            out["pred"] = torch.softmax(self.gcn_head(g3, adj), dim=1)
        return out

    def model_parameters(self) -> list[nn.Parameter]:
        disc = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in disc]

    def loss(self, batch, targets: dict, phase: str) -> dict[str, torch.Tensor]:
        """Loss terms of a mini-batch.

        ``reconstruction`` (MSE); in the clustering stage also ``kl`` (KL(P||Q)) and ``kl_pred`` (KL(P||GCN head)).
        ``"_codes"`` (not a loss term) is the latent for the adversarial step.
        """
        if phase == "pretrain":
            out = self(batch.x, batch.graph, fused=self.pretrain_fused)
            return {"reconstruction": F.mse_loss(out["x_bar"], batch.x), "_codes": out["z"]}
        out = self(batch.x, batch.graph, head=True)
        q = soft_assign(out["z"], self.centers)
        return {
            "kl": kl_batchmean(targets["p"], q),
            "kl_pred": kl_batchmean(targets["p"], out["pred"]),
            "reconstruction": F.mse_loss(out["x_bar"], batch.x),
            "_codes": out["z"],
        }
