"""Output heads p(x | z): a factorised Bernoulli, Gaussian or discretised-logistic mixture, or a
lightweight autoregressive head over any of the discrete ones."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import LEAK, MaskedConv2d
from .config import HVAEConfig
from .distributions import LOG_2PI
from .errors import InputError

INIT_SCALE = 0.1  # the logistic head's weights start this much smaller than PyTorch's default
LOG_SCALE_MIN = -7.0  # PixelCNN++'s floor on a logistic's log-scale: a bin holds at most ~all the mass


def discretized_logistic_mixture_log_prob(x: Tensor, params: Tensor) -> Tensor:
    """log P(x) of 8-bit pixels under a mixture of K discretised logistics (PixelCNN++, Salimans et al. 2017).

    x: (B, C, H, W) in [0, 1], multiples of 1/255. params: (B, C, 3K, H, W): per sub-pixel the
    mixture logits, the means (on the [-1, 1] scale) and the log-scales of the K logistics.
    Returns (B, C, H, W). Each of the 256 values gets the logistic's mass over its bin of width
    2/255; the two end bins take the tails, so the 256 probabilities sum to 1.
    """
    logits, means, log_scales = params.float().chunk(3, dim=2)        # (B, C, K, H, W) each
    log_scales = log_scales.clamp(min=LOG_SCALE_MIN)
    centred = (2 * x.float() - 1).unsqueeze(2) - means                  # (B, C, K, H, W)
    inv_scale = torch.exp(-log_scales)
    upper = inv_scale * (centred + 1 / 255)
    lower = inv_scale * (centred - 1 / 255)
    log_cdf_upper = F.logsigmoid(upper)                                 # the bottom bin: P(X <= x + half a bin)
    log_survival_lower = F.logsigmoid(-lower)                           # the top bin: P(X > x - half a bin)
    # log(sigmoid(upper) - sigmoid(lower)), computed without cancellation:
    # sigmoid(u) - sigmoid(l) = sigmoid(u) * sigmoid(-l) * (1 - exp(l - u)).
    log_bin = log_cdf_upper + log_survival_lower + torch.log(-torch.expm1(lower - upper))
    value = x.float().unsqueeze(2)
    log_probs = torch.where(value < 0.5 / 255, log_cdf_upper,
                            torch.where(value > 1 - 0.5 / 255, log_survival_lower, log_bin))
    return torch.logsumexp(F.log_softmax(logits, dim=2) + log_probs, dim=2)


class OutputHead(nn.Module):
    """Maps the top-down features (B, width, H, W) to the parameters of p(x | z).

    `params(features, x)` gives (B, C * P, H, W): P parameters per sub-pixel, channel by channel
    (Bernoulli logits or Gaussian means: P = 1; a mixture of K discretised logistics: P = 3K).
    The autoregressive head also reads x, through masked convs, so the parameters of sub-pixel
    (c, i, j) see only the pixels before (i, j) and, at (i, j), the channels before c.
    `pixel_log_prob`, `mean` and `sample` complete the likelihood.
    """

    def __init__(self, config: HVAEConfig):
        super().__init__()
        self.likelihood = config.likelihood
        self.channels = config.image_channels
        self.params_per_channel = 3 * config.logistic_components if config.likelihood == "logistic" else 1
        n_params = self.channels * self.params_per_channel
        self.to_params = nn.Conv2d(config.width, n_params, 3, padding=1)
        if config.likelihood == "logistic":
            self._init_logistic(config.logistic_components)
        if config.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.full((1, *config.image_shape), math.log(0.1)))
        self.ar_layers = nn.ModuleList()
        if config.ar_layers:
            w, c = config.ar_width, self.channels
            self.condition = nn.Conv2d(config.width, w, 1)
            self.ar_layers.append(MaskedConv2d(c, w, config.ar_kernel, "A", channels=c))
            self.ar_layers.extend(MaskedConv2d(w, w, 3, "B", channels=c) for _ in range(config.ar_layers - 1))
            self.ar_out = MaskedConv2d(w, n_params, 1, "B", channels=c)
            # Zero-initialised: the head starts as the factorised one, so a model warm-started from
            # a trained factorised checkpoint begins exactly where that model ended.
            nn.init.zeros_(self.ar_out.weight)
            nn.init.zeros_(self.ar_out.bias)

    def _init_logistic(self, k: int) -> None:
        """Start every sub-pixel's mixture spread over the 256 levels: the K means at the centres of
        K equal bins of [-1, 1], each scale about a bin wide, equal weights; the weights scaled down
        so the features only nudge this start. The default init (means and log-scales near 0)
        starts with one wide logistic: its log-scales must fall by about 4 before the loss can
        follow the pixels, about 2,000 updates at lr 2e-3 (each update moves a bias by ~lr)."""
        with torch.no_grad():
            bias = self.to_params.bias.view(self.channels, 3, k)   # (C, [logits, means, log-scales], K)
            bias[:, 0] = 0.0
            bias[:, 1] = torch.linspace(-1 + 1 / k, 1 - 1 / k, k)
            bias[:, 2] = math.log(1 / k)
            self.to_params.weight.mul_(INIT_SCALE)

    @property
    def autoregressive(self) -> bool:
        return len(self.ar_layers) > 0

    def params(self, features: Tensor, x: Tensor | None = None) -> Tensor:
        """(B, width, H, W) [+ x (B, C, H, W)] -> (B, C * P, H, W) parameters of p(x | z)."""
        out = self.to_params(F.leaky_relu(features, LEAK))
        if not self.autoregressive:
            return out
        if x is None:
            raise InputError("the autoregressive head needs x; use sample() to generate")
        return out + self._autoregressive_logits(features, x)

    def _autoregressive_logits(self, features: Tensor, x: Tensor) -> Tensor:
        """Masked-conv parameters: the value at a sub-pixel depends on x only through those before it."""
        condition = self.condition(features)
        hidden = x
        for layer in self.ar_layers:
            hidden = F.leaky_relu(layer(hidden) + condition, LEAK)
        return self.ar_out(hidden)

    def _per_channel(self, params: Tensor) -> Tensor:
        """(B, C * P, H, W) -> (B, C, P, H, W)."""
        return params.unflatten(1, (self.channels, self.params_per_channel))

    def pixel_log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x_j | ...) of each sub-pixel: x (B, C, H, W), params (B, C * P, H, W) -> (B, C, H, W)."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params, x, reduction="none")
        if self.likelihood == "logistic":
            return discretized_logistic_mixture_log_prob(x, self._per_channel(params))
        mean = torch.sigmoid(params)
        return -0.5 * (LOG_2PI + 2 * self.log_scale + (x - mean) ** 2 * torch.exp(-2 * self.log_scale))

    def mean(self, params: Tensor) -> Tensor:
        """Expected image given the parameters (for a factorised head): (B, C * P, ...) -> (B, C, ...).

        For the logistic mixture: the mixture of the (clipped) component means, which ignores the
        small shift the clipping of the tails into the end bins causes.
        """
        if self.likelihood != "logistic":
            return torch.sigmoid(params)
        logits, means, _ = self._per_channel(params).float().chunk(3, dim=2)
        # The softmax weights sum to 1 only up to rounding: a mean at an end of the range can land
        # a few 1e-8 outside [0, 1], which every image check of the kit rightly refuses.
        return (((torch.softmax(logits, 2) * means.clamp(-1, 1)).sum(2) + 1) / 2).clamp(0, 1)

    def draw(self, params: Tensor) -> Tensor:
        """One sample of each sub-pixel given its parameters: (B, C * P, ...) -> (B, C, ...)."""
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(params))
        if self.likelihood == "gaussian":
            return (self.mean(params) + torch.exp(self.log_scale) * torch.randn_like(params)).clamp(0, 1)
        logits, means, log_scales = self._per_channel(params).float().chunk(3, dim=2)
        component = torch.distributions.Categorical(logits=logits.movedim(2, -1)).sample()  # (B, C, ...)
        pick = component.unsqueeze(2)
        mean, log_scale = means.gather(2, pick).squeeze(2), log_scales.gather(2, pick).squeeze(2)
        u = torch.rand_like(mean).clamp(1e-5, 1 - 1e-5)
        value = mean + torch.exp(log_scale.clamp(min=LOG_SCALE_MIN)) * (torch.log(u) - torch.log1p(-u))
        return torch.round((value.clamp(-1, 1) + 1) * 127.5) / 255  # the nearest of the 256 levels

    @torch.no_grad()
    def sample(self, features: Tensor, binary: bool = True) -> Tensor:
        """Draw x ~ p(x | z): (B, width, H, W) -> (B, C, H, W).

        Factorised heads sample all pixels at once (or return the mean when binary=False).
        The autoregressive head goes sub-pixel by sub-pixel (raster order, channels in order
        within a pixel): H * W * C passes of its masked convs; each pass runs only on the rows
        the new sub-pixel can see, so it stays cheap.
        """
        if self.autoregressive:
            return self._sample_autoregressive(features)
        params = self.params(features)
        return self.draw(params) if binary else self.mean(params)

    def _sample_autoregressive(self, features: Tensor) -> Tensor:
        size = features.shape[-1]
        base = self.to_params(F.leaky_relu(features, LEAK))  # the part that does not read x
        # Rows above r that can influence row r: k // 2 from the k x k mask-A conv, 1 per 3x3 mask-B conv.
        reach = self.ar_layers[0].kernel_size[0] // 2 + (len(self.ar_layers) - 1)
        x = features.new_zeros(features.shape[0], self.channels, size, size)
        for row in range(size):
            # Rows top..row only: the masks ignore rows below, and the zero padding above `top`
            # reaches at most `reach - 1` rows down through the stack, never row `row`.
            top = max(0, row - reach)
            window = slice(top, row + 1)
            for col in range(size):
                for channel in range(self.channels):
                    ar = self._autoregressive_logits(features[:, :, window], x[:, :, window])
                    params = base[:, :, row, col] + ar[:, :, row - top, col]  # (B, C * P)
                    x[:, channel, row, col] = self.draw(params)[:, channel]
        return x
