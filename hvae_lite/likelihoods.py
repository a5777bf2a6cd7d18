"""Output heads p(x | z): a factorised Bernoulli or Gaussian, or a lightweight autoregressive head."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import LEAK, MaskedConv2d
from .config import HVAEConfig
from .distributions import LOG_2PI


class OutputHead(nn.Module):
    """Maps the top-down features (B, width, 28, 28) to the parameters of p(x | z).

    `params(features, x)` gives (B, 1, 28, 28) Bernoulli logits or Gaussian means; the
    autoregressive head also reads x, through masked convs, so the logit of pixel j sees only
    pixels before j. `log_prob` and `sample` complete the likelihood.
    """

    def __init__(self, config: HVAEConfig):
        super().__init__()
        self.likelihood = config.likelihood
        self.to_params = nn.Conv2d(config.width, 1, 3, padding=1)
        if config.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.full((1, 1, 28, 28), math.log(0.1)))
        self.ar_layers = nn.ModuleList()
        if config.ar_layers:
            w = config.ar_width
            self.condition = nn.Conv2d(config.width, w, 1)
            self.ar_layers.append(MaskedConv2d(1, w, config.ar_kernel, "A"))
            self.ar_layers.extend(MaskedConv2d(w, w, 3, "B") for _ in range(config.ar_layers - 1))
            self.ar_out = nn.Conv2d(w, 1, 1)
            # Zero-initialised: the head starts as the factorised one, so a model warm-started from
            # a trained factorised checkpoint begins exactly where that model ended.
            nn.init.zeros_(self.ar_out.weight)
            nn.init.zeros_(self.ar_out.bias)

    @property
    def autoregressive(self) -> bool:
        return len(self.ar_layers) > 0

    def params(self, features: Tensor, x: Tensor | None = None) -> Tensor:
        """(B, width, 28, 28) [+ x (B, 1, 28, 28)] -> (B, 1, 28, 28) logits or means."""
        out = self.to_params(F.leaky_relu(features, LEAK))
        if not self.autoregressive:
            return out
        if x is None:
            raise ValueError("the autoregressive head needs x; use sample() to generate")
        return out + self._autoregressive_logits(features, x)

    def _autoregressive_logits(self, features: Tensor, x: Tensor) -> Tensor:
        """Masked-conv logits: the value at pixel j depends on x only through pixels before j."""
        condition = self.condition(features)
        hidden = x
        for layer in self.ar_layers:
            hidden = F.leaky_relu(layer(hidden) + condition, LEAK)
        return self.ar_out(hidden)

    def pixel_log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x_j | ...) of each pixel: (B, 1, 28, 28) -> (B, 1, 28, 28)."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params, x, reduction="none")
        mean = torch.sigmoid(params)
        return -0.5 * (LOG_2PI + 2 * self.log_scale + (x - mean) ** 2 * torch.exp(-2 * self.log_scale))

    def mean(self, params: Tensor) -> Tensor:
        """Expected image given the parameters (for a factorised head)."""
        return torch.sigmoid(params)

    @torch.no_grad()
    def sample(self, features: Tensor, binary: bool = True) -> Tensor:
        """Draw x ~ p(x | z): (B, width, 28, 28) -> (B, 1, 28, 28).

        Factorised heads sample all pixels at once (or return the mean when binary=False).
        The autoregressive head goes pixel by pixel in raster order, 784 passes of its masked
        convs; each pass runs only on the rows the new pixel can see, so it stays cheap.
        """
        if self.autoregressive:
            return self._sample_autoregressive(features)
        params = self.params(features)
        if not binary:
            return self.mean(params)
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(params))
        return (self.mean(params) + torch.exp(self.log_scale) * torch.randn_like(params)).clamp(0, 1)

    def _sample_autoregressive(self, features: Tensor) -> Tensor:
        size = features.shape[-1]
        base = self.to_params(F.leaky_relu(features, LEAK))  # the part that does not read x
        # Rows above r that can influence row r: k // 2 from the k x k mask-A conv, 1 per 3x3 mask-B conv.
        reach = self.ar_layers[0].kernel_size[0] // 2 + (len(self.ar_layers) - 1)
        x = torch.zeros_like(features[:, :1])
        for row in range(size):
            # Rows top..row only: the masks ignore rows below, and the zero padding above `top`
            # reaches at most `reach - 1` rows down through the stack, never row `row`.
            top = max(0, row - reach)
            window = slice(top, row + 1)
            for col in range(size):
                ar = self._autoregressive_logits(features[:, :, window], x[:, :, window])
                logits = base[:, 0, row, col] + ar[:, 0, row - top, col]
                x[:, 0, row, col] = torch.bernoulli(torch.sigmoid(logits))
        return x
