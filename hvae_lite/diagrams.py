"""Drawings that explain the model rather than plot its results: the three streams of the
Matryoshka network, and what one pixel touches in an autoregressive head. Pure functions returning
matplotlib Figures (re-exported by `hvae_lite.plots`)."""
from __future__ import annotations

import matplotlib.lines
import matplotlib.patches
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from torch import Tensor

from .errors import InputError
from .validate import check_int


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


class _Canvas:
    """Boxes, circles and arrows on one axes, in data coordinates; remembers each shape's extent so
    arrows can start and end at its edges."""

    def __init__(self, ax):
        self.ax, self.shapes = ax, {}  # name -> (x, y, half width, half height)

    def box(self, name: str, x: float, y: float, text: str, edge: str, w: float = 1.0, h: float = 0.62) -> None:
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", facecolor="white",
                                         edgecolor=edge, linewidth=1.8))
        self.ax.text(x, y, text, ha="center", va="center", fontsize=10)
        self.shapes[name] = (x, y, w / 2 + 0.05, h / 2 + 0.05)

    def circle(self, name: str, x: float, y: float, text: str, edge: str) -> None:
        self.ax.add_patch(matplotlib.patches.Circle((x, y), 0.36, facecolor="white", edgecolor=edge, lw=1.8))
        self.ax.text(x, y, text, ha="center", va="center", fontsize=12)
        self.shapes[name] = (x, y, 0.36, 0.36)

    def side(self, name: str, where: str) -> tuple[float, float]:
        x, y, hw, hh = self.shapes[name]
        return {"top": (x, y + hh), "bottom": (x, y - hh), "left": (x - hw, y), "right": (x + hw, y),
                "bottom-right": (x + 0.8 * hw, y - hh)}[where]

    def arrow(self, start, end, edge: str, dashed: bool = False, label: str | None = None, at: float = 0.5,
              offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.ax.annotate("", xy=end, xytext=start, arrowprops=dict(
            arrowstyle="-|>", color=edge, lw=1.5, linestyle="--" if dashed else "-", shrinkA=1, shrinkB=1))
        if label:
            self.ax.text(start[0] + at * (end[0] - start[0]) + offset[0], start[1] + at * (end[1] - start[1]) + offset[1],
                         label, fontsize=8, color=edge, ha="center", va="center",
                         bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.9))


# Where the diagram puts things: one row per stream (and the latents), one column per latent layer shown.
_ROWS = {"h": 5.2, "z": 3.55, "m": 2.0, "b": 0.45}
_COLUMNS = {1: 4.0, 2: 6.7, "L": 9.7}  # the top vector's column is at x = 1.3
_X_TOP, _X_DOTS, _X_END = 1.3, 8.2, 12.2


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
    canvas = _Canvas(ax)
    _draw_top_vector(canvas)
    for layer in _COLUMNS:
        _draw_latent_map(canvas, layer)
    _draw_streams(canvas)
    for name, y in (("top-down $h$\n(generator)", _ROWS["h"]), ("latents $z$", _ROWS["z"]),
                    ("merge $m$\n(inference)", _ROWS["m"]), ("bottom-up $b$\n(inference)", _ROWS["b"])):
        ax.text(-0.25, y, name, ha="right", va="center", fontsize=9)
    colour = STREAM_COLOURS
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


def _draw_top_vector(canvas: _Canvas) -> None:
    """z_0: its posterior reads the bottom-up stream's top features; its prior is N(0, I); h_0 = f(z_0)."""
    colour, x = STREAM_COLOURS, _X_TOP
    canvas.box("h0", x, _ROWS["h"], "$h_0 = f(z_0)$", colour["top-down"], w=1.7)
    canvas.circle("z0", x, _ROWS["z"], "$z_0$", colour["latent"])
    canvas.box("m0", x + 0.95, _ROWS["m"], "$m_0 = 0$", colour["merge"], w=1.1)
    canvas.box("b0", x, _ROWS["b"], "top features", colour["bottom-up"], w=1.7)
    canvas.arrow(canvas.side("z0", "top"), canvas.side("h0", "bottom"), colour["top-down"])
    canvas.arrow((x - 0.55, _ROWS["b"] + 0.36), (x - 0.2, _ROWS["z"] - 0.32), colour["merge"], dashed=True,
                 label="$q(z_0 \\mid x)$", offset=(-0.35, 0.0))
    canvas.ax.text(x - 0.95, _ROWS["z"] + 0.62, "prior $N(0, I)$", fontsize=8, color=colour["top-down"], ha="center")


def _draw_latent_map(canvas: _Canvas, layer: int | str) -> None:
    """z_i with its prior (from h_{i-1}), its posterior (from m_i), and the states h_i, m_i, b_i."""
    colour, x, i = STREAM_COLOURS, _COLUMNS[layer], str(layer)
    above = {1: "0", 2: "1", "L": "L-1"}[layer]
    canvas.box(f"h{i}", x, _ROWS["h"], f"$h_{{{i}}}$", colour["top-down"])
    canvas.circle(f"z{i}", x, _ROWS["z"], f"$z_{{{i}}}$", colour["latent"])
    canvas.box(f"m{i}", x, _ROWS["m"], f"$m_{{{i}}}$", colour["merge"])
    canvas.box(f"b{i}", x, _ROWS["b"], f"$b_{{{i}}}$", colour["bottom-up"])
    # h_{L-1} is off the picture, behind the dots
    prior_from = canvas.side(f"h{above}", "bottom-right") if layer != "L" else (_X_DOTS + 0.2, _ROWS["h"] - 0.2)
    canvas.arrow(prior_from, (x - 0.27, _ROWS["z"] + 0.24), colour["top-down"], dashed=True,
                 label=f"$p(z_{{{i}}} \\mid h_{{{above}}})$", at=0.4, offset=(0.0, 0.14))
    canvas.arrow(canvas.side(f"m{i}", "top"), canvas.side(f"z{i}", "bottom"), colour["merge"], dashed=True,
                 label=f"$q(z_{{{i}}} \\mid x, z_{{<{i}}})$")
    canvas.arrow(canvas.side(f"z{i}", "top"), canvas.side(f"h{i}", "bottom"), colour["top-down"],
                 label=f"$+\\,g_{{{i}}}$", offset=(0.28, 0.0))
    canvas.arrow(canvas.side(f"b{i}", "top"), canvas.side(f"m{i}", "bottom"), colour["bottom-up"])
    merge_reads = canvas.side(f"h{above}", "bottom") if layer != "L" else (_X_DOTS - 0.1, _ROWS["h"] - 0.3)
    canvas.arrow(merge_reads, canvas.side(f"m{i}", "left"), colour["merge"])  # the merge reads the generator's state


def _draw_streams(canvas: _Canvas) -> None:
    """The arrows along each stream, the dots for the layers left out, the output head and the image."""
    colour = STREAM_COLOURS
    for left, right in ((0, 1), (1, 2)):
        canvas.arrow(canvas.side(f"h{left}", "right"), canvas.side(f"h{right}", "left"), colour["top-down"])
        canvas.arrow(canvas.side(f"m{left}", "right"), canvas.side(f"m{right}", "left"), colour["merge"])
        canvas.arrow(canvas.side(f"b{right}", "left"), canvas.side(f"b{left}", "right"), colour["bottom-up"])
    for row, stream in (("h", "top-down"), ("m", "merge"), ("b", "bottom-up")):
        canvas.ax.text(_X_DOTS, _ROWS[row], "...", ha="center", va="center", fontsize=14, color=colour[stream])
    canvas.box("out", _X_END, _ROWS["h"], "$p(x \\mid z)$", colour["top-down"], w=1.4)
    canvas.box("x", _X_END, _ROWS["b"], "image $x$", colour["bottom-up"], w=1.4)
    canvas.arrow(canvas.side("hL", "right"), canvas.side("out", "left"), colour["top-down"], label="output head",
                 offset=(0, 0.3))
    canvas.arrow(canvas.side("x", "left"), canvas.side("bL", "right"), colour["bottom-up"])
