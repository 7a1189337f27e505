"""Adaptive (robust) fuzzy k-means head of scAMAC, computed in the log domain.

For an embedding ``Z`` (n x d) and centres ``C`` (k x d), with ``d_ij = ||z_i - c_j||`` (Euclidean, not squared):

* robust distance ``rho_ij = (1 + eps) d_ij^2 / (d_ij + eps)``
* memberships ``U_ij = softmax_j(-rho_ij / gamma)``, evaluated as ``exp(log_softmax(...))`` so that rows never
  underflow to ``0 / 0`` (the authors' ``exp / sum`` returns NaN for far-apart clusters)
* adaptive weights ``H_ij = (1 + eps)(d_ij + 2 eps) / (2 (d_ij + eps))``
* centre update ``c_j = sum_i H_ij U_ij z_i / sum_i H_ij U_ij``
* clustering loss ``sum_ij H_ij U_ij ||z_i - c_j||^2 / n`` (``H``, ``U``, ``C`` held fixed)

Nothing here is ``n x n``: every tensor is ``n x k`` or ``k x d``.
"""

from __future__ import annotations

import torch


class AdaptiveFuzzyKMeans:
    """Parameter-free fuzzy k-means with robust weights (scAMAC).

    Parameters
    ----------
    gamma
        Fuzziness: memberships are ``softmax(-rho / gamma)``; smaller is harder.
    eps
        Robustness constant ``epsilon`` of the adaptive loss.
    """

    def __init__(self, gamma: float = 1.0, eps: float = 0.01) -> None:
        if not gamma > 0:
            raise ValueError(f"gamma must be positive, got {gamma}.")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}.")
        self.gamma = float(gamma)
        self.eps = float(eps)

    @staticmethod
    def distances(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Euclidean distances ``n x k`` (computed from squared norms, clamped at 0 before the root)."""
        d2 = (z.pow(2).sum(1, keepdim=True) - 2.0 * z @ centers.T + centers.pow(2).sum(1)).clamp_min(0.0)
        return d2.sqrt()

    def robust_distance(self, d: torch.Tensor) -> torch.Tensor:
        return (1.0 + self.eps) * d.pow(2) / (d + self.eps)

    def weights(self, d: torch.Tensor) -> torch.Tensor:
        """Adaptive weights ``H`` (between ``(1+eps)/2`` and ``1+eps``)."""
        return (1.0 + self.eps) * (d + 2.0 * self.eps) / (2.0 * (d + self.eps))

    def log_memberships(self, d: torch.Tensor) -> torch.Tensor:
        """``log U`` (rows: log-softmax of ``-rho / gamma``); finite for any finite distances."""
        return torch.log_softmax(-self.robust_distance(d) / self.gamma, dim=1)

    def memberships(self, d: torch.Tensor) -> torch.Tensor:
        return self.log_memberships(d).exp()

    @staticmethod
    def update_centers(z: torch.Tensor, u: torch.Tensor, h: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Weighted means ``sum_i H_ij U_ij z_i / sum_i H_ij U_ij``; a centre without weight keeps its position."""
        w = h * u  # n x k
        mass = w.sum(0)  # k
        new = (w.T @ z) / mass.clamp_min(1e-30).unsqueeze(1)
        keep = (mass <= 1e-12).unsqueeze(1)
        return torch.where(keep, centers, new)

    @staticmethod
    def loss(z: torch.Tensor, centers: torch.Tensor, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``sum_ij H_ij U_ij ||z_i - c_j||^2 / n`` with ``U``, ``H`` and ``C`` fixed (gradient to ``z`` only)."""
        d2 = (z.pow(2).sum(1, keepdim=True) - 2.0 * z @ centers.T + centers.pow(2).sum(1)).clamp_min(0.0)
        return (h * u * d2).sum() / z.shape[0]

    @staticmethod
    def entropy(log_u: torch.Tensor) -> torch.Tensor:
        """Mean membership entropy (nats) over cells: 0 for hard assignments, ``log k`` for uniform ones."""
        return -(log_u.exp() * log_u).sum(1).mean()
