"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global state, nothing left
open, and a notebook displays the returned figure exactly once.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib
import matplotlib.lines
import matplotlib.patches
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
import torch
from torch import Tensor

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


def _numbers(values: Sequence[float], name: str, each: str = "one per latent layer") -> np.ndarray:
    """A non-empty 1-D sequence of finite numbers (`each` says what one of them stands for)."""
    try:
        array = np.asarray(values, dtype=float) if len(values) else np.zeros(0)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.ndim != 1 or len(array) == 0 or not np.isfinite(array).all():
        raise InputError(f"{name} must be a non-empty list of finite numbers, {each}, got {values!r}")
    return array


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


def kl_per_layer(kl: Sequence[float], title: str = "KL per latent layer", ax=None) -> Figure:
    """Bar chart of the mean KL (nats) of each latent layer, top vector first."""
    kl = _numbers(kl, "kl")
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
        raise InputError("history is empty: train for at least one epoch")
    needed = {"epoch", "elbo", "kl"}
    if any(not isinstance(r, dict) or needed - set(r) for r in history):
        raise InputError(f"each record of history must be a dict with {sorted(needed)} (Trainer.fit() returns "
                         "such a list)")
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
                 ylabel: str = "nats", title: str = "", *, from_zero: bool = False) -> Figure:
    """One bar per model (e.g. its IWAE NLL), in the order given, with +-1 standard-error whiskers
    for the models that have one in `errors`.

    The value axis spans the values and their whiskers (with a margin), not 0 to the largest: a
    15-nat difference between NLLs of about 100 is then visible. A note under the title says where
    the axis starts when it is not 0. from_zero=True draws the axis from 0 instead.
    """
    if not values:
        raise InputError("nothing to plot: values is empty")
    names = list(values)
    heights = _numbers([values[n] for n in names], "values", "one per model")
    whiskers = _numbers([(errors or {}).get(name, 0.0) for name in names], "errors", "one per model")
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2))
    ax = fig.subplots()
    ax.bar(range(len(names)), heights, yerr=whiskers, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    low, high = value_axis_limits(heights, whiskers, from_zero=from_zero)
    ax.set_ylim(low, high)
    if low > 0 or high < 0:
        start = low if low > 0 else high
        ax.text(0.01, 0.98, f"axis from {start:.3g}, not 0", transform=ax.transAxes, ha="left", va="top",
                fontsize=7, color="0.35")
    fig.tight_layout()
    return fig


def value_axis_limits(values: Sequence[float], errors: Sequence[float] | None = None, *,
                      from_zero: bool = False, margin: float = 0.15) -> tuple[float, float]:
    """(low, high) of a value axis that shows the differences between `values` (with their +-errors).

    0 is included when from_zero is set, or when including it would stretch the span by less than
    half (so a chart of 3, 5 and 9 still starts at 0 while one of 88, 90 and 110 does not).
    """
    values = np.asarray(values, dtype=float)
    errors = np.zeros_like(values) if errors is None else np.abs(np.asarray(errors, dtype=float))
    lows, highs = values - errors, values + errors
    low, high = float(lows.min()), float(highs.max())
    with_zero = (min(low, 0.0), max(high, 0.0))
    span = high - low
    if from_zero or len(values) == 1 or (with_zero[1] - with_zero[0]) <= 1.5 * span:
        low, high = with_zero
        span = high - low or 1.0
        return (low - margin * span if low < 0 else 0.0, high + margin * span if high > 0 else 0.0)
    span = span or abs(high) * 0.1 or 1.0
    return low - margin * span, high + margin * span


def kl_comparison(kls: Mapping[str, Sequence[float]], title: str = "KL per latent layer") -> Figure:
    """Side-by-side bars of the mean KL (nats) of each latent layer (top vector first), one colour
    per model, so two models' layers can be compared bar by bar. kls: name -> one KL per layer."""
    if not kls:
        raise InputError("nothing to plot: kls is empty")
    series = {name: _numbers(kl, f"kls[{name!r}]") for name, kl in kls.items()}
    n_layers = {len(kl) for kl in series.values()}
    if len(n_layers) != 1:
        raise InputError(f"every model must have the same number of latent layers, got {sorted(n_layers)}")
    n = n_layers.pop()
    fig = Figure(figsize=(max(6.0, 0.5 * n + 1.5), 3.0))
    ax = fig.subplots()
    width = 0.8 / len(series)
    colours = matplotlib.colormaps["tab10"]
    for j, (name, kl) in enumerate(series.items()):
        ax.bar(np.arange(n) - 0.4 + width * (j + 0.5), kl, width, color=colours(j), label=name)
    ax.set_xticks(range(n), _layer_names(n), rotation=45, fontsize=8)
    ax.set_ylabel("KL (nats)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
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


def embedding_scatter(points: Tensor, labels: Tensor, title: str = "Top latents (2-D projection)",
                      variance_share: Sequence[float] | None = None) -> Figure:
    """points (N, 2) coloured by their integer labels (N,), one legend entry per label.

    variance_share: for a PCA map, the share of the latents' variance along each of the two axes
    (e.g. `explore.top_latent_pca(...).variance_share`), written in the axis labels."""
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels) or len(points) == 0:
        raise InputError(f"need points (N, 2) and labels (N,), N >= 1, got {points.shape} and {labels.shape}")
    if not np.isfinite(points.astype(float)).all():
        raise InputError("points contain NaN or inf values; an embedding of finite latents has none")
    if labels.dtype.kind not in "iu":
        raise InputError(f"labels must be integers, got {labels.dtype}")
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"]
    for label in np.unique(labels):
        chosen = labels == label
        ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.7, color=colours(int(label) % 10),
                   label=str(label))
    if variance_share is None:
        ax.set(xlabel="axis 1", ylabel="axis 2", title=title)
    else:
        shares = _numbers(variance_share, "variance_share", "one per axis")
        if len(shares) != 2 or (shares < 0).any() or (shares > 1).any():
            raise InputError(f"variance_share must be two fractions in [0, 1], one per axis, got {variance_share!r}")
        ax.set(xlabel=f"principal axis 1 ({shares[0]:.0%} of the variance)",
               ylabel=f"principal axis 2 ({shares[1]:.0%} of the variance)", title=title)
    ax.legend(title="label", fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


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


CAUSAL_COLOURS = {"unaffected": "0.08", "pixel": "tab:red", "changed": "tab:orange", "read": "tab:cyan"}


def causality_maps(changed: Tensor, reads: Tensor, pixel: tuple[int, int],
                   title: str | None = "What pixel j touches in an autoregressive head") -> Figure:
    """Two maps of an autoregressive head's dependencies around one pixel j = (row, col): left, the
    logits that change when pixel j is flipped; right, the input pixels logit j reads. changed,
    reads: (H, W) booleans. Pixel j is red, with dotted lines through its row and column so that
    "above / below / left / right of j" can be read off; a legend names every colour."""
    maps = []
    for name, grid in (("changed", changed), ("reads", reads)):
        grid = torch.as_tensor(grid).detach().cpu()
        if grid.dim() != 2:
            raise InputError(f"{name} must be an (H, W) map of booleans, got shape {tuple(grid.shape)}")
        maps.append(grid.bool())
    if maps[0].shape != maps[1].shape:
        raise InputError(f"changed and reads must have the same shape, got {tuple(maps[0].shape)} and {tuple(maps[1].shape)}")
    height, width = maps[0].shape
    if not (isinstance(pixel, (tuple, list)) and len(pixel) == 2):
        raise InputError(f"pixel must be (row, col), got {pixel!r}")
    row = check_int(pixel[0], "pixel row", minimum=0, maximum=height - 1)
    col = check_int(pixel[1], "pixel column", minimum=0, maximum=width - 1)
    fig = Figure(figsize=(7.0, 4.2))
    axes = fig.subplots(1, 2)
    panels = (("changed", "logits that change when pixel j flips"), ("read", "inputs that logit j reads"))
    for ax, grid, (kind, label) in zip(axes, maps, panels):
        codes = grid.long().numpy().copy()  # 0 unaffected, 1 changed / read, 2 pixel j
        codes[row, col] = 2
        cmap = ListedColormap([CAUSAL_COLOURS["unaffected"], CAUSAL_COLOURS[kind], CAUSAL_COLOURS["pixel"]])
        ax.imshow(codes, cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        ax.axhline(row, color="white", lw=0.6, ls=":")
        ax.axvline(col, color="white", lw=0.6, ls=":")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([0, col, width - 1], ["0", f"col {col}", str(width - 1)], fontsize=7)
        ax.set_yticks([0, row, height - 1], ["0", f"row {row}", str(height - 1)], fontsize=7)
    handles = [Patch(color=CAUSAL_COLOURS["pixel"], label="pixel j"),
               Patch(color=CAUSAL_COLOURS["changed"], label="logit changes (left)"),
               Patch(color=CAUSAL_COLOURS["read"], label="input read (right)"),
               Patch(facecolor=CAUSAL_COLOURS["unaffected"], edgecolor="0.5", label="neither")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(bottom=0.16, wspace=0.25)
    return fig


# The colours of the three streams in `architecture_diagram`.
STREAM_COLOURS = {"top-down": "tab:blue", "bottom-up": "tab:orange", "merge": "tab:green", "latent": "tab:purple"}


def architecture_diagram(title: str | None = "The Matryoshka network: three streams of deterministic state") -> Figure:
    """The model as the kit builds it (`hvae_lite.model`), for the top vector z_0, the first two
    latent maps and the last one, z_L:

    - bottom-up (orange, inference only): x -> b_L -> ... -> b_1 -> the top features, run once;
    - top-down (blue, the generator): h_0 = f(z_0), then h_i = h_{i-1} + g_i([h_{i-1}, z_i]);
    - merge (green, inference only): m_i = m_{i-1} + r_i([h_{i-1}, b_i, m_{i-1}]);
    - latents (purple circles): the prior p(z_i | h_{i-1}) read from the top-down state (dashed blue),
      the posterior q(z_i | x, z_<i) from the merge state (dashed green), as an offset from the prior.
    """
    fig = Figure(figsize=(11.5, 6.0))
    ax = fig.subplots()
    ax.set_xlim(-0.2, 13.2)
    ax.set_ylim(-0.5, 6.2)
    ax.axis("off")
    colour = STREAM_COLOURS
    rows = {"h": 5.2, "z": 3.55, "m": 2.0, "b": 0.45}
    columns = {0: 1.3, 1: 4.0, 2: 6.7, "L": 9.7}  # layer -> x
    x_end, x_dots = 12.2, 8.2
    shapes: dict[str, tuple[float, float, float, float]] = {}  # name -> (x, y, half width, half height)

    def box(name, x, y, text, edge, w=1.0, h=0.62):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", facecolor="white",
                                    edgecolor=edge, linewidth=1.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)
        shapes[name] = (x, y, w / 2 + 0.05, h / 2 + 0.05)

    def circle(name, x, y, text):
        ax.add_patch(matplotlib.patches.Circle((x, y), 0.36, facecolor="white", edgecolor=colour["latent"], lw=1.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=12)
        shapes[name] = (x, y, 0.36, 0.36)

    def side(name, where):
        x, y, hw, hh = shapes[name]
        return {"top": (x, y + hh), "bottom": (x, y - hh), "left": (x - hw, y), "right": (x + hw, y),
                "bottom-right": (x + 0.8 * hw, y - hh)}[where]

    def arrow(start, end, edge, dashed=False, label=None, at=0.5, offset=(0.0, 0.0)):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(
            arrowstyle="-|>", color=edge, lw=1.5, linestyle="--" if dashed else "-", shrinkA=1, shrinkB=1))
        if label:
            ax.text(start[0] + at * (end[0] - start[0]) + offset[0], start[1] + at * (end[1] - start[1]) + offset[1],
                    label, fontsize=8, color=edge, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.9))

    # the top vector: its posterior reads the bottom-up stream's top features; h_0 = f(z_0)
    x0 = columns[0]
    box("h0", x0, rows["h"], "$h_0 = f(z_0)$", colour["top-down"], w=1.7)
    circle("z0", x0, rows["z"], "$z_0$")
    box("m0", x0 + 0.95, rows["m"], "$m_0 = 0$", colour["merge"], w=1.1)
    box("b0", x0, rows["b"], "top features", colour["bottom-up"], w=1.7)
    arrow(side("z0", "top"), side("h0", "bottom"), colour["top-down"])
    arrow((x0 - 0.55, rows["b"] + 0.36), (x0 - 0.2, rows["z"] - 0.32), colour["merge"], dashed=True,
          label="$q(z_0 \\mid x)$", offset=(-0.35, 0.0))
    ax.text(x0 - 0.95, rows["z"] + 0.62, "prior $N(0, I)$", fontsize=8, color=colour["top-down"], ha="center")
    for layer in (1, 2, "L"):
        x, i = columns[layer], str(layer)
        above = {1: "0", 2: "1", "L": "L-1"}[layer]
        box(f"h{i}", x, rows["h"], f"$h_{{{i}}}$", colour["top-down"])
        circle(f"z{i}", x, rows["z"], f"$z_{{{i}}}$")
        box(f"m{i}", x, rows["m"], f"$m_{{{i}}}$", colour["merge"])
        box(f"b{i}", x, rows["b"], f"$b_{{{i}}}$", colour["bottom-up"])
        source_h = side(f"h{above}", "bottom-right") if layer != "L" else (x_dots + 0.2, rows["h"] - 0.2)
        arrow(source_h, (x - 0.27, rows["z"] + 0.24), colour["top-down"], dashed=True,
              label=f"$p(z_{{{i}}} \\mid h_{{{above}}})$", at=0.4, offset=(0.0, 0.14))
        arrow(side(f"m{i}", "top"), side(f"z{i}", "bottom"), colour["merge"], dashed=True,
              label=f"$q(z_{{{i}}} \\mid x, z_{{<{i}}})$", at=0.5, offset=(0.0, 0.0))
        arrow(side(f"z{i}", "top"), side(f"h{i}", "bottom"), colour["top-down"],
              label=f"$+\\,g_{{{i}}}$", at=0.5, offset=(0.28, 0.0))
        arrow(side(f"b{i}", "top"), side(f"m{i}", "bottom"), colour["bottom-up"])
        source_m = side(f"h{above}", "bottom") if layer != "L" else (x_dots - 0.1, rows["h"] - 0.3)
        arrow(source_m, side(f"m{i}", "left"), colour["merge"])  # the merge reads the generator's state
    for left, right in ((0, 1), (1, 2)):
        arrow(side(f"h{left}", "right"), side(f"h{right}", "left"), colour["top-down"])
        arrow(side(f"m{left}", "right"), side(f"m{right}", "left"), colour["merge"])
        arrow(side(f"b{right}", "left"), side(f"b{left}", "right"), colour["bottom-up"])
    for row, stream in (("h", "top-down"), ("m", "merge"), ("b", "bottom-up")):
        ax.text(x_dots, rows[row], "...", ha="center", va="center", fontsize=14, color=colour[stream])
    box("out", x_end, rows["h"], "$p(x \\mid z)$", colour["top-down"], w=1.4)
    box("x", x_end, rows["b"], "image $x$", colour["bottom-up"], w=1.4)
    arrow(side("hL", "right"), side("out", "left"), colour["top-down"], label="output head", offset=(0, 0.3))
    arrow(side("x", "left"), side("bL", "right"), colour["bottom-up"])
    for name, y in (("top-down $h$\n(generator)", rows["h"]), ("latents $z$", rows["z"]),
                    ("merge $m$\n(inference)", rows["m"]), ("bottom-up $b$\n(inference)", rows["b"])):
        ax.text(-0.25, y, name, ha="right", va="center", fontsize=9)
    handles = [Patch(color=colour["top-down"], label="top-down: $h_i = h_{i-1} + g_i([h_{i-1}, z_i])$, priors"),
               Patch(color=colour["merge"], label="merge: $m_i = m_{i-1} + r_i([h_{i-1}, b_i, m_{i-1}])$, posteriors"),
               Patch(color=colour["bottom-up"], label="bottom-up: features $b_i$ of $x$, run once"),
               matplotlib.lines.Line2D([], [], color="0.3", ls="--", label="dashed: a distribution over $z_i$"),
               matplotlib.lines.Line2D([], [], color="0.3", ls="-", label="solid: a deterministic function")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    fig.subplots_adjust(left=0.1, right=0.99, top=0.93, bottom=0.16)
    return fig


def _rgb(image: Tensor) -> np.ndarray:
    """(1, H, W) grey or (3, H, W) colour image -> (H, W, 3) array for imshow."""
    if image.shape[0] not in (1, 3):
        raise ValueError(f"images need 1 (grey) or 3 (RGB) channels, got shape {tuple(image.shape)}")
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


def _layer_names(n: int) -> list[str]:
    return ["z0 (top)"] + [f"z{i}" for i in range(1, n)]
