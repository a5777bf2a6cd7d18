"""Interactive explorers (ipywidgets 8) over explore.py, impute.py and plots.py.

Each explorer has `.widget` (the container to display), `.figure` (the last Figure drawn),
`.caption` (what the figure shows, in words), its controls as attributes (set `.value` to drive it
from code or a test) and `.show()`. Every draw uses a fixed seed, so the same controls always give
the same picture, and the last RENDER_CACHE pictures are kept, so going back to a setting redraws at
once. Sliders redraw when released, not at every value they pass; a redraw that takes
over half a second shows "drawing..." beside the controls. Figures are sized for a projector and
shown as PNG images: that needs no matplotlib backend, and `.show()` in headless mode (env
HVAE_LITE_HEADLESS=1) also displays the current figure and caption as plain outputs, which
papermill, nbconvert and GitHub render (they do not render an Output widget's contents).
hvae_lite.app puts the three explorers on tabs for a classroom (`make app`).
"""
from __future__ import annotations

import html
import io
import os
from collections import OrderedDict
from typing import Iterator, Mapping

import ipywidgets as widgets
import torch
from IPython.display import HTML, Image, display
from matplotlib.figure import Figure
from torch import Tensor

from . import plots
from .data import MASK_KINDS, occlusion_mask
from .explore import component_samples, layer_resamples
from .errors import InputError
from .impute import impute_conditional, impute_iterative
from .model import HVAE
from .validate import check_int, check_model_images

# Inches per digit in the explorers' figures: at 100 dpi a digit is 120 pixels wide, readable from
# the back of a classroom (the static figures in the notebooks use 0.6).
PROJECTOR_SCALE = 1.2
DPI = 100
# Pictures (figure, PNG, caption) kept per explorer, by control values: a class moves back and forth
# between a few settings, and a kept picture redraws in milliseconds instead of a model pass plus
# matplotlib (about 0.5 s of one core). A figure of the explorers takes a few hundred kB.
RENDER_CACHE = 16
# Shown beside the controls while a redraw runs; the CSS animation delays its appearance by half a
# second, so quick redraws do not flicker. (Widget state reaches the browser while the kernel
# is still drawing, so no timer thread is needed.)
DRAWING = ('<style>@keyframes hvae-lite-appear {from {visibility: hidden} to {visibility: visible}}</style>'
           '<span class="hvae-lite-drawing" style="animation: hvae-lite-appear 0s linear 0.5s both; '
           'font-style: italic; color: #b45309">drawing...</span>')


def figure_image(figure: Figure, dpi: int = DPI) -> Image:
    """A Figure as an IPython PNG image: displays the same in every frontend, with any backend."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return Image(data=buffer.getvalue(), format="png")


def headless_mode(headless: bool | None = None) -> bool:
    """The argument, else env HVAE_LITE_HEADLESS == '1' (papermill, nbconvert, the tests)."""
    return os.environ.get("HVAE_LITE_HEADLESS") == "1" if headless is None else headless


def _caption_html(text: str) -> str:
    return f'<p class="hvae-lite-caption" style="font-size: 1.1em; max-width: 60em">{html.escape(text)}</p>'


def item_name(model: HVAE) -> str:
    """What one image is called in the explorers' controls and captions: a digit, or a colour patch."""
    return "digit" if model.config.image_channels == 1 else "patch"


class Explorer:
    """Controls above the figure `draw()` returns and the caption `describe()` gives; redrawn when a
    control's value is set (for a slider: when it is released). A setting drawn before comes from
    the render cache, with the attributes named in DRAWN as they were."""

    DRAWN: tuple[str, ...] = ()  # attributes draw() sets (e.g. the samples shown), kept with each picture

    def __init__(self, controls: list[widgets.Widget]):
        self.controls = controls
        self._rendered: OrderedDict[tuple, tuple[Figure, Image, str, dict]] = OrderedDict()
        for control in controls:
            if hasattr(control, "continuous_update"):
                control.continuous_update = False
            control.style.description_width = "initial"  # "keep top k" in full, not cut to fit
            control.observe(lambda _: self.redraw(), names="value")
        self.status = widgets.HTML("")
        self.output = widgets.Output()
        self.caption_label = widgets.HTML("")
        self.widget = widgets.VBox([
            widgets.HBox(controls + [self.status], layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
            self.output, self.caption_label])
        self.widget.add_class("hvae-lite-explorer")  # a handle for the browser test and for styling
        self.figure: Figure | None = None
        self.caption = ""
        self.redraw()

    def draw(self) -> Figure:
        raise NotImplementedError

    def describe(self) -> str:
        """What the current figure shows, in a sentence or two (drawn under it)."""
        raise NotImplementedError

    def redraw(self) -> None:
        key = tuple(control.value for control in self.controls)
        kept = self._rendered.get(key)
        self.status.value = DRAWING
        try:
            if kept is None:
                figure = self.draw()
                kept = (figure, figure_image(figure), self.describe(), {name: getattr(self, name) for name in self.DRAWN})
                self._rendered[key] = kept
                if len(self._rendered) > RENDER_CACHE:
                    self._rendered.popitem(last=False)
            else:
                self._rendered.move_to_end(key)
            self.figure, image, self.caption, drawn = kept
            vars(self).update(drawn)
            with self.output:
                self.output.clear_output(wait=True)
                display(image)
            self.caption_label.value = _caption_html(self.caption)
        finally:
            self.status.value = ""

    def show(self, headless: bool | None = None) -> None:
        """Display the widget; when headless, also the current figure and caption as plain outputs."""
        display(self.widget)
        if headless_mode(headless):
            self.show_static()

    def show_static(self) -> None:
        """Display the current figure and its caption as plain outputs (no widget)."""
        display(figure_image(self.figure))
        display(HTML(_caption_html(self.caption)))


class LayerExplorer(Explorer):
    """Pick a digit and k: keep its top k latent layers from the posterior, resample the rest.

    k = 0 gives prior samples (nothing of the digit kept); k = n_latent_layers reconstructions.
    In between, learners see what each layer fixes: class first, then style, then strokes.
    """

    DRAWN = ("samples",)

    def __init__(self, model: HVAE, images: Tensor, n_samples: int = 8, seed: int = 0):
        images = check_model_images(model, images, name="images")
        check_int(n_samples, "n_samples", minimum=1)
        self.model, self.images, self.n_samples, self.seed = model, images, n_samples, seed
        self.item = item_name(model)
        self.digit_slider = widgets.IntSlider(0, min=0, max=len(images) - 1, description=self.item)
        self.k_slider = widgets.IntSlider(model.n_latent_layers // 2, min=0, max=model.n_latent_layers,
                                          description="keep top k")
        self.temperature_slider = widgets.FloatSlider(1.0, min=0.1, max=1.5, step=0.1, description="temperature")
        self.samples: Tensor | None = None  # (S, C, H, W): the images shown
        super().__init__([self.digit_slider, self.k_slider, self.temperature_slider])

    def draw(self) -> Figure:
        digit, keep = self.digit_slider.value, self.k_slider.value
        x = self.images[digit:digit + 1]
        samples = layer_resamples(self.model, x, [keep], self.n_samples, self.temperature_slider.value, self.seed)
        self.samples = samples[0, 0]
        return plots.original_and_samples(x[0].cpu(), self.samples.cpu(), scale=PROJECTOR_SCALE, title=(
            f"{self.item} {digit}: top {keep} of {self.model.n_latent_layers} layers kept, the rest resampled"))

    def describe(self) -> str:
        n_layers, keep = self.model.n_latent_layers, self.k_slider.value
        kept = "none" if keep == 0 else "z0 (the top vector)" if keep == 1 else f"z0 to z{keep - 1}"
        return (f"Left, framed: {self.item} {self.digit_slider.value}. Right: {self.n_samples} images that keep its "
                f"top {keep} of {n_layers} latent layers ({kept}) from the posterior and draw the other "
                f"{n_layers - keep} from the prior at temperature {self.temperature_slider.value:.1f}. "
                f"k = 0 gives plain samples from the prior, k = {n_layers} reconstructions.")


class ClusterExplorer(Explorer):
    """Pick a component of the mixture prior and a temperature: samples from that component."""

    DRAWN = ("samples",)

    def __init__(self, model: HVAE, n_samples: int = 16, seed: int = 0):
        if getattr(getattr(model, "top", None), "mixture", None) is None:
            raise InputError("ClusterExplorer needs a model with a mixture prior (the 'mixture' preset)")
        check_int(n_samples, "n_samples", minimum=1)
        self.model, self.n_samples, self.seed = model, n_samples, seed
        n_components = model.top.mixture.means.shape[0]
        self.component_slider = widgets.IntSlider(0, min=0, max=n_components - 1, description="component")
        self.temperature_slider = widgets.FloatSlider(0.8, min=0.1, max=1.5, step=0.1, description="temperature")
        self.samples: Tensor | None = None  # (S, 1, 28, 28)
        super().__init__([self.component_slider, self.temperature_slider])

    def draw(self) -> Figure:
        component = self.component_slider.value
        self.samples = component_samples(self.model, self.n_samples, self.temperature_slider.value,
                                         self.seed, components=[component])[0]
        return plots.image_grid(self.samples.cpu(), ncols=8, title=f"component {component}", scale=PROJECTOR_SCALE)

    def describe(self) -> str:
        n_components = self.component_slider.max + 1
        return (f"{self.n_samples} samples from component {self.component_slider.value} of the {n_components} "
                f"in the mixture prior, at temperature {self.temperature_slider.value:.1f}. The model never "
                f"saw a label: if a component has found a digit class, its samples show that one class.")


class ImputationExplorer(Explorer):
    """Pick a digit, a kind of occlusion and a number of samples: each model's imputations side by side.

    models: name -> model; conditional models impute in one pass, the others iteratively (the slow
    part: 20 pseudo-Gibbs steps of 8 samples take seconds of one core with the default model).
    Each (digit, occlusion) is imputed once, with the most samples the slider offers, and the
    slider shows the first n of them; `table` holds these (`precompute()` fills it, and a table
    from an earlier run of the same models can be given, as the classroom app does).
    """

    DRAWN = ("mask", "imputations")

    def __init__(self, models: Mapping[str, HVAE], images: Tensor, n_steps: int = 20, seed: int = 0,
                 table: Mapping[str, Mapping[str, Tensor]] | None = None):
        if not models:
            raise InputError("give at least one model, e.g. {'matryoshka': model}")
        for name, model in models.items():
            images = check_model_images(model, images, name="images")
        check_int(n_steps, "n_steps", minimum=1)
        self.models, self.images, self.n_steps, self.seed = dict(models), images, n_steps, seed
        self.item = item_name(next(iter(self.models.values())))
        self.digit_slider = widgets.IntSlider(0, min=0, max=len(images) - 1, description=self.item)
        self.mask_dropdown = widgets.Dropdown(options=MASK_KINDS, value="bottom", description="occlusion")
        self.samples_slider = widgets.IntSlider(4, min=1, max=8, description="samples")
        self.mask: Tensor | None = None                   # (1, 1, H, W), 1 = observed
        self.imputations: dict[str, Tensor] = {}          # name -> (1, S, C, H, W)
        # "digit/occlusion" -> name -> (1, samples_slider.max, C, H, W), on the CPU
        self.table: dict[str, dict[str, Tensor]] = {key: dict(value) for key, value in (table or {}).items()}
        super().__init__([self.digit_slider, self.mask_dropdown, self.samples_slider])

    def _mask(self, kind: str) -> Tensor:
        """The occlusion of `kind` (1, 1, H, W); seeded, so 'squares' hides the same squares every time."""
        return occlusion_mask(kind, 1, self.images.shape[-1], generator=torch.Generator().manual_seed(self.seed))

    def keys(self) -> Iterator[tuple[int, str]]:
        """Every (digit, occlusion) the controls can ask for."""
        return ((digit, kind) for digit in range(len(self.images)) for kind in self.mask_dropdown.options)

    def completions(self, digit: int, kind: str) -> dict[str, Tensor]:
        """Each model's imputations of `digit` under `kind`: name -> (1, samples_slider.max, C, H, W),
        computed on first use and kept in `table`."""
        key = f"{digit}/{kind}"
        if key not in self.table:
            x, mask, n = self.images[digit:digit + 1], self._mask(kind), self.samples_slider.max
            self.table[key] = {
                name: (impute_conditional(model, x, mask, n, binary=False, seed=self.seed)
                       if model.config.conditional else
                       impute_iterative(model, x, mask, self.n_steps, n, binary=False, seed=self.seed)).cpu()
                for name, model in self.models.items()}
        return self.table[key]

    def precompute(self, progress: bool = False) -> dict[str, dict[str, Tensor]]:
        """Fill `table` for every digit and occlusion (the first move of any control is then quick)."""
        keys = list(self.keys())
        if progress:
            from tqdm.auto import tqdm
            keys = tqdm(keys, desc="imputations")
        for digit, kind in keys:
            self.completions(digit, kind)
        return self.table

    def draw(self) -> Figure:
        digit, kind, n = self.digit_slider.value, self.mask_dropdown.value, self.samples_slider.value
        x = self.images[digit:digit + 1]
        self.mask = self._mask(kind)
        self.imputations = {name: samples[:, :n] for name, samples in self.completions(digit, kind).items()}
        return plots.imputation_grid(x.cpu(), self.mask, self.imputations, scale=PROJECTOR_SCALE)

    def describe(self) -> str:
        missing, pixels = int((1 - self.mask).sum()), self.mask[0, 0].numel()
        methods = ", ".join(f"{name} ({'one pass of a conditional model' if model.config.conditional else f'{self.n_steps} pseudo-Gibbs steps'})"
                            for name, model in self.models.items())
        tint = " Imputed pixels are tinted amber." if self.images.shape[1] == 1 else ""
        return (f"{self.item.capitalize()} {self.digit_slider.value}, its original and the input with the "
                f"'{self.mask_dropdown.value}' occlusion ({missing} of {pixels} pixels missing, in blue); then "
                f"{self.samples_slider.value} imputations by each model: {methods}.{tint}")
