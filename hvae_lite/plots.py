"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global state, nothing left
open, and a notebook displays the returned figure exactly once.
"""
from __future__ import annotations

import math
from typing import Sequence

from matplotlib.figure import Figure
from torch import Tensor


def image_grid(images: Tensor, ncols: int | None = None, title: str | None = None, scale: float = 0.6) -> Figure:
    """A grid of (N, 1, 28, 28) images in [0, 1], white digits on black."""
    n = images.shape[0]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * scale, nrows * scale + (0.4 if title else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def kl_per_layer(kl: Sequence[float], title: str = "KL per latent layer", ax=None) -> Figure:
    """Bar chart of the mean KL (nats) of each latent layer, top vector first."""
    if ax is None:
        fig = Figure(figsize=(6, 2.8))
        ax = fig.subplots()
    fig = ax.figure
    labels = ["z0 (top)"] + [f"z{i}" for i in range(1, len(kl))]
    ax.bar(range(len(kl)), kl, color="tab:blue")
    ax.set_xticks(range(len(kl)), labels, rotation=45, fontsize=8)
    ax.set_ylabel("KL (nats)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
