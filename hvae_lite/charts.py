"""Charts of numbers: KL per latent layer (one model, or several side by side), training curves,
bars with standard-error whiskers on a value axis that shows the differences, the time-to-quality
curves, and the 2-D map of the top latents. Pure functions returning matplotlib Figures (re-exported by `hvae_lite.plots`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from .errors import InputError


def _numbers(values: Sequence[float], name: str, each: str = "one per latent layer") -> np.ndarray:
    """A non-empty 1-D sequence of finite numbers (`each` says what one of them stands for)."""
    try:
        array = np.asarray(values, dtype=float) if len(values) else np.zeros(0)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.ndim != 1 or len(array) == 0 or not np.isfinite(array).all():
        raise InputError(f"{name} must be a non-empty list of finite numbers, {each}, got {values!r}")
    return array



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
    when the history has it, else training), and the free-bits floor (dashed) when the run had one.

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
    if any(r.get("free_bits", 0) > 0 for r in history):  # below this line a layer's KL cost nothing
        ax_kl.plot(epochs, [r.get("free_bits", 0) for r in history], "k--", label="free-bits floor")
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


def kl_comparison(kls: Mapping[str, Sequence[float]], title: str = "KL per latent layer",
                  in_use_from: float | None = 1.0) -> Figure:
    """Side-by-side bars of the mean KL (nats) of each latent layer (top vector first), one colour
    per model, so two models' layers can be compared bar by bar. kls: name -> one KL per layer.
    A dashed line at `in_use_from` nats: the kit's "in use" threshold (evaluate.layers_in_use)."""
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
    if in_use_from is not None:
        ax.axhline(in_use_from, color="grey", linestyle="--", linewidth=1, label=f"in use from {in_use_from:g} nat")
    ax.set_xticks(range(n), _layer_names(n), rotation=45, fontsize=8)
    ax.set_ylabel("KL (nats)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def class_kept_curve(curves: Mapping[str, Mapping[int, tuple[float, float]]], chance: float | None = 0.1,
                     title: str = "Which layers hold the class") -> Figure:
    """The share of keep-top-k resamples the digit judge still gives the true class, against k, one
    line per model, with +-1 standard-error bars (`explore.class_kept`'s {k: (share, stderr)})."""
    if not curves:
        raise InputError("nothing to plot: curves is empty")
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.subplots()
    for name, curve in curves.items():
        keeps = sorted(curve)
        ax.errorbar(keeps, [curve[k][0] for k in keeps], yerr=[curve[k][1] for k in keeps], marker="o",
                    capsize=3, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set(xlabel="k: top layers kept from the digit (the rest resampled)", ylabel="true class kept",
           ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def time_to_quality(curves: Mapping[str, Mapping], title: str = "What a training run buys, minute by minute") -> Figure:
    """Held-out IWAE NLL and judge-confident prior samples against training minutes, one line per
    recipe, with +-1 standard-error bars: the `curves` of benchmarks/results/time_to_quality.json
    ({name: {"what", "points": [{"minutes_two_threads", "nll", "nll_stderr", "confident", ...}]}})."""
    if not curves:
        raise InputError("nothing to plot: curves is empty")
    fig = Figure(figsize=(10, 3.4))
    nll_ax, samples_ax = fig.subplots(1, 2)
    for name, curve in curves.items():
        points = sorted(curve["points"], key=lambda p: p["minutes_two_threads"])
        minutes = [p["minutes_two_threads"] for p in points]
        nll_ax.errorbar(minutes, [p["nll"] for p in points], yerr=[p["nll_stderr"] for p in points], marker="o",
                        markersize=3, capsize=2, label=name)
        samples_ax.errorbar(minutes, [p["confident"] for p in points], yerr=[p["confident_stderr"] for p in points],
                            marker="o", markersize=3, capsize=2, label=name)
    # Early snapshots sit tens of nats above the rest; a log time axis and a clipped NLL axis keep the
    # differences between finished runs (a few nats) visible.
    finished = [p["nll"] for curve in curves.values() for p in curve["points"]]
    nll_ax.set(xscale="log", xlabel="training minutes (two threads)", ylabel="held-out IWAE NLL (nats, lower is better)",
               ylim=(min(finished) - 2, min(max(finished), min(finished) + 40) + 2), title=title)
    samples_ax.set(xscale="log", xlabel="training minutes (two threads)", ylabel="judge-confident prior samples",
                   ylim=(0, 1), title="Samples a digit classifier is sure of")
    nll_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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


def _layer_names(n: int) -> list[str]:
    return ["z0 (top)"] + [f"z{i}" for i in range(1, n)]
