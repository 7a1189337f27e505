"""Zero-inflated negative binomial likelihood and output heads (one implementation for every method)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def zinb_nll(
    x: torch.Tensor,
    mean: torch.Tensor,
    disp: torch.Tensor,
    pi: torch.Tensor,
    size_factors: torch.Tensor | None = None,
    *,
    eps: float = 1e-10,
    ridge: float = 0.0,
) -> torch.Tensor:
    """Mean negative log-likelihood of counts ``x`` under ZINB(mean * size_factor, dispersion, dropout pi).

    ``disp`` is the inverse dispersion theta (variance = mu + mu^2 / theta). ``ridge`` adds ``ridge * pi^2``.
    """
    if size_factors is not None:
        mean = mean * size_factors.view(-1, 1)
    t1 = torch.lgamma(disp + eps) + torch.lgamma(x + 1.0) - torch.lgamma(x + disp + eps)
    t2 = (disp + x) * torch.log1p(mean / (disp + eps)) + x * (torch.log(disp + eps) - torch.log(mean + eps))
    nb_case = t1 + t2 - torch.log(1.0 - pi + eps)
    zero_nb = torch.pow(disp / (disp + mean + eps), disp)
    zero_case = -torch.log(pi + (1.0 - pi) * zero_nb + eps)
    res = torch.where(x <= 1e-8, zero_case, nb_case)
    if ridge > 0:
        res = res + ridge * pi.pow(2)
    return res.mean()


class ZINBHeads(nn.Module):
    """Three linear heads from a decoder layer to the ZINB mean, inverse dispersion and dropout of each gene.

    ``n_covariates`` > 0: the heads also read a covariate vector of each cell (the one-hot batch), concatenated to
    the decoder layer, as scVI's decoder reads the batch: the batch's own shifts of the counts are modelled by the
    decoder instead of the embedding.
    """

    def __init__(
        self,
        in_features: int,
        n_genes: int,
        *,
        mean_range: tuple[float, float] = (1e-5, 1e6),
        disp_range: tuple[float, float] = (1e-4, 1e4),
        n_covariates: int = 0,
    ) -> None:
        super().__init__()
        self.n_covariates = int(n_covariates)
        in_features += self.n_covariates
        self.mean = nn.Linear(in_features, n_genes)
        self.disp = nn.Linear(in_features, n_genes)
        self.pi = nn.Linear(in_features, n_genes)
        self.mean_range = mean_range
        self.disp_range = disp_range

    def forward(
        self, h: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.n_covariates:
            if covariates is None:
                raise ValueError("These ZINB heads were built with batch covariates; pass the cells' covariates.")
            h = torch.cat([h, covariates], dim=1)
        mean = torch.clamp(torch.exp(torch.clamp(self.mean(h), max=30.0)), *self.mean_range)
        disp = torch.clamp(F.softplus(self.disp(h)), *self.disp_range)
        pi = torch.sigmoid(self.pi(h))
        return mean, disp, pi
