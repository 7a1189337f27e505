"""Deep embedded clustering (DEC) head: Student-t soft assignments and the sharpened target."""

from __future__ import annotations

import torch


def soft_assign(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Student-t kernel ``q_ij ∝ (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha+1)/2)``, rows normalised."""
    d2 = torch.cdist(z, centers).pow(2)
    q = (1.0 + d2 / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor, power: float = 2.0, *, norm_power: float = 1.0) -> torch.Tensor:
    """DEC target ``p_ij ∝ q_ij^power / (sum_i q_ij)^norm_power``, rows normalised (detached).

    ``power=2, norm_power=1`` is DEC's target; scCAGN's sharpened target (tau=0.5) is ``power=4, norm_power=1``
    applied to the column sums of ``q^2``: pass ``q`` accordingly.
    """
    q = q.detach()
    w = q.pow(power) / q.sum(dim=0, keepdim=True).pow(norm_power)
    return w / w.sum(dim=1, keepdim=True)


def kl_batchmean(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """``KL(P || Q)`` summed over clusters and averaged over cells."""
    return (p * (torch.log(p + eps) - torch.log(q + eps))).sum(dim=1).mean()
