"""The cluster centres a DEC-style module holds and the space its Student-t assignment reads."""

from __future__ import annotations

import torch


class ClusterCenters(torch.nn.Module):
    """Mixin module part: a ``centers`` parameter filled once k is known.

    Also the space the Student-t assignment reads (:meth:`assign_space`).
    """

    def __init__(self) -> None:
        super().__init__()
        # 0: assign on the latent itself; > 0: on the latent's direction, at this radius
        self.register_buffer("direction_scale", torch.zeros(()))

    def assign_space(self, z: torch.Tensor) -> torch.Tensor:
        """``z``, or ``direction_scale * z / ||z||`` once a direction scale is set."""
        s = self.direction_scale
        # torch.where rather than a Python test on the buffer: no device-to-host sync per training step
        return torch.where(s > 0, torch.nn.functional.normalize(z, dim=1) * s, z)

    def set_centers(self, centers: torch.Tensor) -> None:
        self.centers = torch.nn.Parameter(centers.clone())
