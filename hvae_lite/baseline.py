"""The classic one-latent-layer VAE (MLP encoder and decoder): the baseline every deep model must beat.

It returns the same named `HVAEOutput` as the hierarchical model, so the trainer, the
objectives and the evaluation treat both alike.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .validate import check_images, check_int, check_temperature
from .distributions import DiagonalGaussian, soft_clamp, sum_except_batch
from .model import HVAEOutput, LayerStats


@dataclass(frozen=True)
class MLPVAEConfig:
    """784 -> hidden -> latent -> reversed hidden -> 784 Bernoulli logits."""

    hidden: tuple[int, ...] = (512, 256)   # encoder widths; the decoder mirrors them
    latent_dim: int = 32
    likelihood: str = "bernoulli"          # the only one this baseline has
    conditional: bool = False              # (never: kept so evaluation treats all models alike)

    @property
    def n_latent_layers(self) -> int:
        return 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width): binary MNIST-sized images only."""
        return (1, 28, 28)

    def replace(self, **changes: Any) -> "MLPVAEConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "latent_dim": self.latent_dim}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MLPVAEConfig":
        return cls(hidden=tuple(values["hidden"]), latent_dim=values["latent_dim"])


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Softplus()]
    return nn.Sequential(*layers[:-1])  # no activation after the last linear layer


class MLPVAE(nn.Module):
    """q(z|x) = N(mu(x), sigma(x)), p(z) = N(0, I), p(x|z) = Bernoulli(logits(z)). x: (B, 1, 28, 28)."""

    def __init__(self, config: MLPVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = _mlp([784, *config.hidden, 2 * config.latent_dim])
        self.decoder = _mlp([config.latent_dim, *config.hidden[::-1], 784])

    @property
    def n_latent_layers(self) -> int:
        return 1

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        mean, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return DiagonalGaussian(mean, soft_clamp(logvar))

    def forward(self, x: Tensor, observed: Tensor | None = None, pixel_mask: Tensor | None = None) -> HVAEOutput:
        """x: (B, 1, 28, 28); `pixel_mask` (1 = counts) restricts the reconstruction term."""
        x = check_images(x, binary=True, name="x")
        if pixel_mask is not None:
            pixel_mask = check_images(pixel_mask, name="pixel_mask")
        posterior = self.posterior(x)
        z = posterior.sample()
        prior = DiagonalGaussian.standard_like(z)
        logits = self.decoder(z).view_as(x)
        pixel_log_prob = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        log_px = sum_except_batch(pixel_log_prob if pixel_mask is None else pixel_log_prob * pixel_mask)
        log_p, log_q = sum_except_batch(prior.log_prob(z)), sum_except_batch(posterior.log_prob(z))
        kl = sum_except_batch(posterior.kl(prior))
        return HVAEOutput(elbo=log_px - kl, recon=-log_px, kl=kl[:, None], log_weight=log_px + log_p - log_q,
                          params=logits, layers=[LayerStats(z, log_p, log_q, kl, prior, posterior)])

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, binary: bool = False, **_: Any) -> Tensor:
        check_int(n, "n (number of samples)", minimum=1)
        check_temperature(temperature)
        device = next(self.parameters()).device
        z = temperature * torch.randn(n, self.config.latent_dim, device=device)
        probs = torch.sigmoid(self.decoder(z)).view(n, 1, 28, 28)
        return torch.bernoulli(probs) if binary else probs
