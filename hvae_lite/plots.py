"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global state, nothing left
open, and a notebook displays the returned figure exactly once.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
import torch
from torch import Tensor

from .charts import (_numbers, class_kept_curve, compare_bars, embedding_scatter, kl_comparison,  # noqa: F401
                     kl_per_layer, time_to_quality, training_curves, value_axis_limits)  # (re-exported)
from .diagrams import CAUSAL_COLOURS, STREAM_COLOURS, architecture_diagram, causality_maps  # noqa: F401 (re-exported)
from .errors import InputError
from .validate import check_float, check_images, check_int


def _image_stack(images: Tensor, n_lead: int, name: str) -> Tensor:
    """images (*lead, C, H, W) with n_lead leading axes, C = 1 (grey) or 3 (RGB), checked like
    every image in the kit."""
    if not isinstance(images, Tensor) or images.dim() != n_lead + 3 or images.shape[-3] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"{name} must have {n_lead} leading axes before (C, H, W) with C = 1 or 3, got {shape}")
    image_shape = tuple(images.shape[-3:])
    return check_images(images.detach().cpu().reshape(-1, *image_shape), name=name,
                        shape=image_shape).view(images.shape)


def image_grid(images: Tensor, ncols: int | None = None, title: str | None = None, scale: float = 0.6) -> Figure:
    """A grid of (N, C, H, W) images in [0, 1]: grey (C = 1, white digits on black) or RGB (C = 3);
    `scale`: inches per image."""
    images = _image_stack(images if isinstance(images, Tensor) else torch.as_tensor(images), 1, "images")
    check_float(scale, "scale", low=0.0, low_open=True)
    n = images.shape[0]
    ncols = math.ceil(math.sqrt(n)) if ncols is None else check_int(ncols, "ncols", minimum=1)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * scale, nrows * scale + (0.4 if title else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            _imshow(ax, images[i])
    if title:
        fig.suptitle(title, fontsize=max(12, round(11 * scale)))
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def layer_resample_grid(samples: Tensor, keeps: Sequence[int], originals: Tensor | None = None,
                        title: str | None = None, scale: float = 0.6) -> Figure:
    """Rows: number k of top layers kept from the posterior; columns: for each digit, its original
    (if given) then its samples. samples: (len(keeps), B, S, C, H, W); originals: (B, C, H, W)."""
    samples = _image_stack(samples, 3, "samples")
    if originals is not None:
        originals = _image_stack(originals, 1, "originals")
        if len(originals) != samples.shape[1]:
            raise InputError(f"{samples.shape[1]} digits of samples but {len(originals)} originals")
    n_keeps, n_digits, n_samples = samples.shape[:3]
    if n_keeps != len(keeps):
        raise InputError(f"{n_keeps} rows of samples but {len(keeps)} keep values")
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
        axes[row, 0].text(-4, samples.shape[-2] / 2, f"k={keep}", ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), wspace=0.05, hspace=0.05)
    return fig


def original_and_samples(original: Tensor, samples: Tensor, ncols: int = 4, scale: float = 1.2,
                         title: str | None = None) -> Figure:
    """One image beside its samples, sized for a projector: the original (C, H, W), framed orange,
    spans the rows on the left; the samples (S, C, H, W) fill a grid of `ncols` columns on the right.
    `scale`: inches per sample."""
    samples = _image_stack(samples, 1, "samples")
    original = _image_stack(original.unsqueeze(0) if isinstance(original, Tensor) else original, 1, "original")[0]
    if original.shape != samples.shape[1:]:
        raise InputError(f"need original (C, H, W) and samples (S, C, H, W) of the same image shape, got "
                         f"{tuple(original.shape)} and {tuple(samples.shape)}")
    ncols = check_int(ncols, "ncols", minimum=1)
    n = samples.shape[0]
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    gap = 0.3  # between the original and the grid, in sample widths
    fig = Figure(figsize=((nrows + gap + ncols) * scale, nrows * scale + (0.5 if title else 0)))
    grid = fig.add_gridspec(nrows, ncols + 2, width_ratios=[nrows, gap] + [1] * ncols, wspace=0.05, hspace=0.05)
    first = fig.add_subplot(grid[:, 0])
    _show(first, original)
    _frame(first, "tab:orange")
    first.set_title("original", fontsize=round(10 * scale))
    for i in range(nrows * ncols):
        ax = fig.add_subplot(grid[i // ncols, 2 + i % ncols])
        if i < n:
            _show(ax, samples[i])
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=round(11 * scale))
    return fig


def component_samples(images: Tensor, title: str = "Samples from each mixture component",
                      scale: float = 0.6, row_labels: Sequence[str] | None = None, *,
                      temperature: float | None = None) -> Figure:
    """One row per mixture component: images (K, n, C, H, W); row_labels: K names written left of
    the rows (default "c=0", "c=1", ...), e.g. with the class a digit judge sees in each row and its
    share (`judge_row_labels`); temperature: the sampling temperature, added to the title."""
    images = _image_stack(images, 2, "images")
    if temperature is not None:
        title = f"{title} (temperature {check_float(temperature, 'temperature', low=0.0):g})"
    n_components, n = images.shape[:2]
    if row_labels is None:
        row_labels = [f"c={c}" for c in range(n_components)]
    elif isinstance(row_labels, str) or len(row_labels) != n_components:
        raise InputError(f"row_labels must be {n_components} names, one per component, got {row_labels!r}")
    margin = 0.6 if max(len(str(label)) for label in row_labels) <= 4 else 1.6
    fig = Figure(figsize=(n * scale + margin, n_components * scale + 0.4))
    axes = fig.subplots(n_components, n, squeeze=False)
    for c in range(n_components):
        for j in range(n):
            _show(axes[c, j], images[c, j])
        axes[c, 0].text(-4, images.shape[-2] / 2, str(row_labels[c]), ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    fig.subplots_adjust(left=margin / fig.get_figwidth(), wspace=0.05, hspace=0.05)
    return fig


def judge_row_labels(judge_classes: Sequence[int], shares: Sequence[float], prefix: str = "c") -> list[str]:
    """Row labels for `component_samples`: "c=0: judge 7 (62%)", one per component, from the class
    the digit judge sees most often in each row and the share of that row it sees it in."""
    if isinstance(judge_classes, str) or len(judge_classes) != len(shares):
        raise InputError(f"need one judge class and one share per component, got {len(judge_classes)} and {len(shares)}")
    shares = _numbers(shares, "shares", "one per component")
    return [f"{prefix}={c}: judge {int(k)} ({share:.0%})" for c, (k, share) in enumerate(zip(judge_classes, shares))]


MISSING_COLOUR = np.array([0.15, 0.3, 0.75])  # where a masked input has no pixels


IMPUTED_COLOUR = np.array([1.0, 0.75, 0.2])  # ink a grey model drew in the missing region


def imputation_grid(x: Tensor, observed: Tensor, imputations: dict[str, Tensor], scale: float = 0.7,
                    row_labels: Sequence[str] | None = None, legend: bool = True) -> Figure:
    """One row per image: the original, the masked input (missing pixels in blue), then the samples
    of each method; grey images have their imputed pixels tinted amber, colour images keep their
    colours (the input column shows where the gap is). x: (B, C, H, W), observed: (B, 1, H, W);
    each imputation (B, S, C, H, W); row_labels: B names written left of the rows (e.g. the
    occlusion kind of each row of an `impute.occlusion_gallery`); legend: a key to the colours
    under the grid."""
    x = _image_stack(x, 1, "x")
    observed = check_images(observed.detach().cpu(), binary=True, name="observed", shape=(1, *x.shape[2:]))
    if observed.shape[0] != x.shape[0]:
        raise InputError(f"observed must have one mask per image of x ({x.shape[0]}), got {observed.shape[0]}")
    imputations = {name: _image_stack(samples, 2, f"imputations[{name!r}]") for name, samples in imputations.items()}
    if any(samples.shape[0] != x.shape[0] for samples in imputations.values()):
        raise InputError(f"every imputation must have {x.shape[0]} rows, one per image of x")
    if row_labels is not None and (isinstance(row_labels, str) or len(row_labels) != x.shape[0]):
        raise InputError(f"row_labels must be {x.shape[0]} names, one per image of x, got {row_labels!r}")
    columns = [("original", None), ("input", None)]
    columns += [(name if s == 0 else "", (name, s)) for name, samples in imputations.items()
                for s in range(samples.shape[1])]
    n_rows = x.shape[0]
    n_keys = 3 if x.shape[1] == 1 else 1
    width = len(columns) * scale
    key_columns = n_keys if width >= 5.5 else 1  # a narrow grid lists the colours one under another
    key = (0.3 + 0.2 * math.ceil(n_keys / key_columns)) if legend else 0.0
    fig = Figure(figsize=(max(width, 2.6 if legend else 0), n_rows * scale + 0.5 + key))
    axes = fig.subplots(n_rows, len(columns), squeeze=False)
    for b in range(n_rows):
        image, seen = _rgb(x[b]), observed[b, 0].cpu().numpy()
        pictures = [image, _masked_rgb(image, seen)]
        pictures += [_imputed_rgb(imputations[name][b, s], seen) for _, (name, s) in columns[2:]]
        for ax, picture in zip(axes[b], pictures):
            ax.imshow(picture, vmin=0, vmax=1)
            ax.axis("off")
        if row_labels is not None:
            axes[b][0].text(-0.08, 0.5, str(row_labels[b]), transform=axes[b][0].transAxes, ha="right", va="center",
                            fontsize=round(12 * scale))
    for ax, (label, _) in zip(axes[0], columns):
        ax.set_title(label, fontsize=round(12 * scale), loc="left")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, bottom=key / fig.get_figheight() if legend else 0.11)
    if legend:
        handles = [Patch(color=MISSING_COLOUR, label="missing (hidden from the model)")]
        if x.shape[1] == 1:
            handles += [Patch(color=IMPUTED_COLOUR, label="ink imputed in the missing region"),
                        Patch(facecolor="0.85", edgecolor="0.5", label="observed (kept as it is)")]
        fig.legend(handles=handles, loc="lower left", ncol=key_columns, fontsize=7, frameon=False)
    return fig


def _rgb(image: Tensor) -> np.ndarray:
    """(1, H, W) grey or (3, H, W) colour image -> (H, W, 3) array for imshow."""
    if image.shape[0] not in (1, 3):
        raise InputError(f"images need 1 (grey) or 3 (RGB) channels, got shape {tuple(image.shape)}")
    array = image.detach().cpu().float().numpy().transpose(1, 2, 0)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def _imshow(ax, image: Tensor) -> None:
    """(C, H, W) in [0, 1]: grey levels with a fixed 0..1 scale, or RGB."""
    if image.shape[0] == 1:
        ax.imshow(image[0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(_rgb(image).clip(0, 1))


def _masked_rgb(image: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(H, W, 3) image and (H, W) mask -> (H, W, 3): observed pixels as they are, missing ones blue."""
    seen = seen[..., None]
    return seen * image + (1 - seen) * MISSING_COLOUR


def _imputed_rgb(image: Tensor, seen: np.ndarray) -> np.ndarray:
    """(C, H, W) imputed image -> (H, W, 3). Grey: observed pixels grey, imputed ones amber on a dark
    blue ground, so the filled region shows. Colour: the colours themselves."""
    if image.shape[0] != 1:
        return _rgb(image).clip(0, 1)
    seen, value = seen[..., None], _rgb(image)[..., :1]
    imputed = value * IMPUTED_COLOUR + (1 - value) * MISSING_COLOUR * 0.4
    return seen * value + (1 - seen) * imputed


def _show(ax, image: Tensor) -> None:
    _imshow(ax, image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _frame(ax, colour: str) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(colour)
        spine.set_linewidth(2)


