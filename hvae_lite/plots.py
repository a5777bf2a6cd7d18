"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global state, nothing left
open, and a notebook displays the returned figure exactly once.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib
import numpy as np
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
    ax.bar(range(len(kl)), kl, color="tab:blue")
    ax.set_xticks(range(len(kl)), _layer_names(len(kl)), rotation=45, fontsize=8)
    ax.set_ylabel("KL (nats)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def training_curves(history: Sequence[dict], title: str = "Training") -> Figure:
    """Left: train and held-out ELBO per epoch. Right: KL of each latent layer per epoch (held-out
    when the history has it, else training).

    `history` is `Trainer.fit()`'s list of per-epoch dicts (epoch, elbo, test_elbo, test_kl, ...).
    """
    if not history:
        raise ValueError("history is empty: train for at least one epoch")
    epochs = [record["epoch"] for record in history]
    fig = Figure(figsize=(10, 3.2))
    ax_elbo, ax_kl = fig.subplots(1, 2)
    ax_elbo.plot(epochs, [r["elbo"] for r in history], "o-", label="train")
    if "test_elbo" in history[0]:
        ax_elbo.plot(epochs, [r["test_elbo"] for r in history], "s-", label="held-out")
    ax_elbo.set(xlabel="epoch", ylabel="ELBO (nats)", title=title)
    ax_elbo.legend()
    held_out = "test_kl" in history[0]
    kl = np.array([r["test_kl" if held_out else "kl"] for r in history])  # (epochs, layers)
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, kl.shape[1]))
    for i, colour in enumerate(colours):
        ax_kl.plot(epochs, kl[:, i], color=colour, label="z0 (top)" if i == 0 else f"z{i}")
    ax_kl.set(xlabel="epoch", ylabel="KL (nats)",
              title=f"{'held-out ' if held_out else ''}KL per latent layer (top = dark)")
    ax_kl.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def compare_bars(values: Mapping[str, float], errors: Mapping[str, float] | None = None,
                 ylabel: str = "nats", title: str = "") -> Figure:
    """One bar per model (e.g. its IWAE NLL), in the order given, with +-1 standard-error whiskers
    for the models that have one in `errors`."""
    if not values:
        raise ValueError("nothing to plot: values is empty")
    names = list(values)
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.0))
    ax = fig.subplots()
    whiskers = [(errors or {}).get(name, 0.0) for name in names]
    ax.bar(range(len(names)), [values[n] for n in names], yerr=whiskers, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def layer_resample_grid(samples: Tensor, keeps: Sequence[int], originals: Tensor | None = None,
                        title: str | None = None, scale: float = 0.6) -> Figure:
    """Rows: number k of top layers kept from the posterior; columns: for each digit, its original
    (if given) then its samples. samples: (len(keeps), B, S, 1, 28, 28); originals: (B, 1, 28, 28)."""
    n_keeps, n_digits, n_samples = samples.shape[:3]
    if n_keeps != len(keeps):
        raise ValueError(f"{n_keeps} rows of samples but {len(keeps)} keep values")
    per_digit = n_samples + (originals is not None)
    fig = Figure(figsize=(n_digits * per_digit * scale + 0.6, n_keeps * scale + (0.4 if title else 0)))
    axes = fig.subplots(n_keeps, n_digits * per_digit, squeeze=False)
    for row, keep in enumerate(keeps):
        for digit in range(n_digits):
            cells = axes[row, digit * per_digit:(digit + 1) * per_digit]
            images = list(samples[row, digit])
            if originals is not None:
                images.insert(0, originals[digit])
            for col, (ax, image) in enumerate(zip(cells, images)):
                _show(ax, image)
                if originals is not None and col == 0:
                    _frame(ax, "tab:orange")  # the original, not a sample
        axes[row, 0].text(-4, 14, f"k={keep}", ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), wspace=0.05, hspace=0.05)
    return fig


def component_samples(images: Tensor, title: str = "Samples from each mixture component",
                      scale: float = 0.6) -> Figure:
    """One row per mixture component: images (K, n, 1, 28, 28)."""
    n_components, n = images.shape[:2]
    fig = Figure(figsize=(n * scale + 0.6, n_components * scale + 0.4))
    axes = fig.subplots(n_components, n, squeeze=False)
    for c in range(n_components):
        for j in range(n):
            _show(axes[c, j], images[c, j])
        axes[c, 0].text(-4, 14, f"c={c}", ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), wspace=0.05, hspace=0.05)
    return fig


def embedding_scatter(points: Tensor, labels: Tensor, title: str = "Top latents (2-D projection)") -> Figure:
    """points (N, 2) coloured by their integer labels (N,), one legend entry per label."""
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"need points (N, 2) and labels (N,), got {points.shape} and {labels.shape}")
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"]
    for label in np.unique(labels):
        chosen = labels == label
        ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.7, color=colours(int(label) % 10),
                   label=str(label))
    ax.set(xlabel="axis 1", ylabel="axis 2", title=title)
    ax.legend(title="label", fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


MISSING_COLOUR = np.array([0.15, 0.3, 0.75])  # where a masked input has no pixels


def imputation_grid(x: Tensor, observed: Tensor, imputations: dict[str, Tensor], scale: float = 0.7) -> Figure:
    """One row per image: the original, the masked input (missing pixels in blue), then the samples
    of each method, imputed pixels tinted amber. x, observed: (B, 1, 28, 28); each imputation
    (B, S, 1, 28, 28)."""
    columns = [("original", None), ("input", None)]
    columns += [(name if s == 0 else "", (name, s)) for name, samples in imputations.items()
                for s in range(samples.shape[1])]
    n_rows = x.shape[0]
    fig = Figure(figsize=(len(columns) * scale, n_rows * scale + 0.5))
    axes = fig.subplots(n_rows, len(columns), squeeze=False)
    for b in range(n_rows):
        image, seen = x[b, 0].cpu().numpy(), observed[b, 0].cpu().numpy()
        pictures = [np.stack([image] * 3, -1), _masked_rgb(image, seen)]
        pictures += [_imputed_rgb(imputations[name][b, s, 0].cpu().numpy(), seen) for _, (name, s) in columns[2:]]
        for ax, picture in zip(axes[b], pictures):
            ax.imshow(picture, vmin=0, vmax=1)
            ax.axis("off")
    for ax, (label, _) in zip(axes[0], columns):
        ax.set_title(label, fontsize=8, loc="left")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def _masked_rgb(image: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(28, 28) grey image and mask -> (28, 28, 3): observed pixels grey, missing ones coloured."""
    seen = seen[..., None]
    return seen * image[..., None] + (1 - seen) * MISSING_COLOUR


def _imputed_rgb(image: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Observed pixels grey; imputed pixels amber on a dark blue ground, so the filled region shows."""
    seen, value = seen[..., None], image[..., None]
    imputed = value * np.array([1.0, 0.75, 0.2]) + (1 - value) * MISSING_COLOUR * 0.4
    return seen * value + (1 - seen) * imputed


def _show(ax, image: Tensor) -> None:
    ax.imshow(image[0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _frame(ax, colour: str) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(colour)
        spine.set_linewidth(2)


def _layer_names(n: int) -> list[str]:
    return ["z0 (top)"] + [f"z{i}" for i in range(1, n)]
