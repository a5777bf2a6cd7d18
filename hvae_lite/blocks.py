"""Convolutional building blocks: residual branches and masked (causal) convolutions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError

LEAK = 0.1  # leaky ReLU slope of the author's code


class Branch(nn.Module):
    """Two 3x3 convs with a leaky ReLU between: the residual update g_i, r_i of a latent layer.

    (B, in_channels, H, W) -> (B, out_channels, H, W). The last conv starts scaled down so each
    residual update begins close to the identity: a deep stack of them then starts stable.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int, out_scale: float = 0.1):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)
        with torch.no_grad():
            self.conv_out.weight.mul_(out_scale)
            self.conv_out.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(F.leaky_relu(self.conv_in(F.leaky_relu(x, LEAK)), LEAK))


def gaussian_head(in_channels: int, latent_channels: int) -> nn.Conv2d:
    """3x3 conv giving (mean, logvar) maps: (B, in, H, W) -> (B, 2 * latent, H, W).

    Zero-initialised: every posterior starts equal to its prior and every conditional prior
    starts at N(0, I), so no layer begins with a large KL that would push it to collapse.
    """
    head = nn.Conv2d(in_channels, 2 * latent_channels, 3, padding=1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def upsample(x: Tensor, size: int) -> Tensor:
    """Nearest-neighbour resize of (B, C, H, W) to (B, C, size, size); identity when already there."""
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="nearest")


def downsample(x: Tensor, size: int) -> Tensor:
    """Average-pool (B, C, H, W) down to (B, C, size, size); identity when already there."""
    return x if x.shape[-1] == size else F.adaptive_avg_pool2d(x, size)


class MaskedConv2d(nn.Conv2d):
    """PixelCNN convolution over a raster-ordered image, with channel-ordered masks for colour.

    Pixels come in raster order and, within a pixel, colour channels in order (R, then G, then B).
    The features of both input and output are split into `channels` contiguous groups, group g
    standing for colour channel g (the image itself: one feature per group). Type "A" excludes
    the current sub-pixel: at the centre, output group g sees input groups < g. Type "B" includes
    it (used after "A", on features that already exclude it): groups <= g. Every pixel before the
    centre is seen in full, none after it. With one channel this is the plain PixelCNN mask.
    (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 channels: int = 1):
        if mask_type not in ("A", "B"):
            raise InputError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if not 1 <= channels <= min(in_channels, out_channels):
            raise InputError(f"channels must be between 1 and min(in_channels, out_channels), got {channels}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)  # (out, in, k, k)
        centre = kernel_size // 2
        group_out = torch.arange(out_channels) * channels // out_channels  # (out,)
        group_in = torch.arange(in_channels) * channels // in_channels     # (in,)
        sees = group_in[None, :] <= group_out[:, None] if mask_type == "B" else group_in[None, :] < group_out[:, None]
        mask[:, :, centre, centre] = sees.to(mask.dtype)  # the current pixel: earlier colour channels only
        mask[:, :, centre, centre + 1:] = 0                 # the current row, right of centre
        mask[:, :, centre + 1:, :] = 0                      # every row below
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
