"""Adversarial autoencoder parts: a latent-code discriminator and its two losses (Makhzani et al., 2016).

Samples of the prior ``N(0, I)`` are "real", the encoder's live codes are "fake". The discriminator learns to tell
them apart; the encoder gets ``BCE(D(z), real)`` with gradient, which pushes the codes towards the prior.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LatentDiscriminator(nn.Module):
    """``n_latent -> hidden -> hidden -> 1`` (LeakyReLU 0.2 then batch norm), returns logits."""

    def __init__(self, n_latent: int, hidden: int = 64, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_latent, hidden),
            nn.LeakyReLU(negative_slope),
            nn.BatchNorm1d(hidden),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(negative_slope),
            nn.BatchNorm1d(hidden),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def loss(self, z: torch.Tensor, prior: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """Discriminator loss on detached codes ``z`` vs prior samples, and its accuracy on both."""
        z = z.detach()
        if prior is None:
            prior = torch.randn_like(z)
        logits = self(torch.cat([prior, z]))
        target = torch.cat([torch.ones(prior.shape[0], device=z.device), torch.zeros(z.shape[0], device=z.device)])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        acc = float(((logits > 0).float() == target).float().mean())
        return loss, acc

    def generator_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder loss ``BCE(D(z), real)``: gradient flows into ``z`` (the discriminator is not updated by it).

        The discriminator runs in eval mode here: its batch norm then uses the running statistics of the mixed
        real + fake batches it was trained on. In train mode a batch of codes alone would be re-normalised by its own
        statistics, hiding their scale and location from the discriminator and hence from the encoder.
        """
        was_training = self.training
        self.eval()
        logits = self(z)
        self.train(was_training)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
