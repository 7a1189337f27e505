"""The torch module of scAMAC: a multi-scale autoencoder fused by multi-scale attention, clustered by adaptive fuzzy k-means."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    pass


class MultiScaleAttention(nn.Module):
    """MSA block over ``S`` scales of ``b`` cells: spatial + channel attention (EPA), then scale weighting (ECA).

    Spatial attention runs among the ``b`` cells given together (a mini-batch or an inference chunk), with the
    query and key from one shared projection. Channel attention mixes the head features of each cell. Both share
    the output projection and are averaged, added to the input, then each scale is re-weighted by
    ``sigmoid(beta * mean(LN(T)))``. The output is the mean over scales (``b x dim``).
    """

    def __init__(self, dim: int = 500, n_heads: int = 3, channel_dim: int = 55, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        inner = self.head_dim * n_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qk = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.channel = nn.Linear(self.head_dim, channel_dim)
        self.out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.beta = nn.Parameter(torch.ones(()))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        s, b, _ = t.shape
        h, e = self.n_heads, self.head_dim
        y = self.norm1(t)
        q = self.qk(y).view(s, b, h, e)  # query = key
        v = self.v(y).view(s, b, h, e)
        # spatial: (s, h, b, b) among the cells given together
        qh, vh = q.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attn = torch.softmax(qh @ qh.transpose(-1, -2) / math.sqrt(e), dim=-1)
        spatial = (self.dropout(attn) @ vh).permute(0, 2, 1, 3).reshape(s, b, h * e)
        # channel: per scale and cell, (channel_dim x head_dim) over the heads
        kp, vp = self.channel(q), self.channel(v)  # (s, b, h, p)
        c = torch.softmax(kp.transpose(-1, -2) @ q, dim=-1)  # (s, b, p, e)
        channel = (vp @ self.dropout(c)).reshape(s, b, h * e)
        t1 = 0.5 * (self.out(spatial) + self.out(channel)) + t
        y2 = self.norm2(t1)
        w = torch.sigmoid(self.beta * y2.mean(dim=-1, keepdim=True))  # (s, b, 1): one weight per scale and cell
        return (w * y2 + t1).mean(dim=0)


class ScAMACModule(nn.Module):
    """Denoising autoencoder ``g -> hidden -> n_latent -> hidden -> g`` (LeakyReLU) and the fusion network.

    The fusion network projects the encoder layer ``Za`` and the decoder layer ``Zc`` to ``n_latent``, stacks them
    with the bottleneck ``Zb`` as three scales and fuses them with :class:`MultiScaleAttention` into ``Z``.
    """

    def __init__(
        self,
        n_input: int,
        *,
        hidden: int = 1500,
        n_latent: int = 500,
        n_heads: int = 3,
        channel_dim: int = 55,
        attention_dropout: float = 0.1,
        negative_slope: float = 0.01,
        noise: float = 1.0,
        identity_init: bool = True,
        n_clusters: int | None = None,
    ) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.noise = noise
        self.enc1 = nn.Linear(n_input, hidden)
        self.enc2 = nn.Linear(hidden, n_latent)
        self.dec1 = nn.Linear(n_latent, hidden)
        self.dec2 = nn.Linear(hidden, n_input)
        self.proj_a = nn.Linear(hidden, n_latent)
        self.proj_c = nn.Linear(hidden, n_latent)
        self.msa = MultiScaleAttention(n_latent, n_heads, channel_dim, attention_dropout)
        if identity_init:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.eye_(m.weight)
                    nn.init.zeros_(m.bias)
        self.register_buffer("centers", torch.zeros(n_clusters or 0, n_latent))

    def autoencode(self, x: torch.Tensor, noisy: bool = False):
        if noisy and self.noise > 0:
            x = x + self.noise * torch.rand_like(x)
        a = self.negative_slope
        za = F.leaky_relu(self.enc1(x), a)
        zb = F.leaky_relu(self.enc2(za), a)
        zc = F.leaky_relu(self.dec1(zb), a)
        return za, zb, zc, self.dec2(zc)

    def ae_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.enc1, self.enc2, self.dec1, self.dec2) for p in m.parameters()]

    def fusion_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.proj_a, self.proj_c, self.msa) for p in m.parameters()]

    def fuse(self, za: torch.Tensor, zb: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
        return self.msa(torch.stack([zb, self.proj_a(za), self.proj_c(zc)]))

    def loss(self, x: torch.Tensor, memberships: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Autoencoder loss terms on noisy input.

        ``reconstruction`` (MSE to ``x``), ``agreement`` (MSE of the encoder and decoder layers) and, given the cells' ``memberships``, ``feedback`` (MSE of the
        cosine similarities of the memberships and of the bottleneck codes among the cells).
        """
        za, zb, zc, xr = self.autoencode(x, noisy=True)
        terms = {"reconstruction": F.mse_loss(xr, x), "agreement": F.mse_loss(za, zc)}
        if memberships is not None:
            ub = F.normalize(memberships, dim=1)
            zn = F.normalize(zb, dim=1)
            terms["feedback"] = F.mse_loss(ub @ ub.T, zn @ zn.T)
        return terms
