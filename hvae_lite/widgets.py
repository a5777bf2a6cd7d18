"""Interactive explorers (ipywidgets 8) over explore.py, impute.py and plots.py.

Each explorer has `.widget` (the container to display), `.figure` (the last Figure drawn), its
controls as attributes (set `.value` to drive it from code or a test) and `.show()`. Every draw
uses a fixed seed, so the same controls always give the same picture. Figures are shown as PNG
images: that needs no matplotlib backend, and `.show()` in headless mode (env
HVAE_LITE_HEADLESS=1) also displays the current figure as a plain output, which papermill,
nbconvert and GitHub render (they do not render an Output widget's contents).
"""
from __future__ import annotations

import io
import os
from typing import Mapping

import ipywidgets as widgets
import torch
from IPython.display import Image, display
from matplotlib.figure import Figure
from torch import Tensor

from . import plots
from .data import MASK_KINDS, occlusion_mask
from .explore import component_samples, layer_resamples
from .errors import InputError
from .impute import impute_conditional, impute_iterative
from .model import HVAE
from .validate import check_int, check_model_images


def figure_image(figure: Figure, dpi: int = 80) -> Image:
    """A Figure as an IPython PNG image: displays the same in every frontend, with any backend."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return Image(data=buffer.getvalue(), format="png")


class Explorer:
    """Controls above an Output that shows the figure `draw()` returns; redrawn on every change."""

    def __init__(self, controls: list[widgets.Widget]):
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox(controls), self.output])
        self.figure: Figure | None = None
        for control in controls:
            control.observe(lambda _: self.redraw(), names="value")
        self.redraw()

    def draw(self) -> Figure:
        raise NotImplementedError

    def redraw(self) -> None:
        self.figure = self.draw()
        with self.output:
            self.output.clear_output(wait=True)
            display(figure_image(self.figure))

    def show(self, headless: bool | None = None) -> None:
        """Display the widget; when headless, also the current figure as a plain image output."""
        if headless is None:
            headless = os.environ.get("HVAE_LITE_HEADLESS") == "1"
        display(self.widget)
        if headless:
            display(figure_image(self.figure))


class LayerExplorer(Explorer):
    """Pick a digit and k: keep its top k latent layers from the posterior, resample the rest.

    k = 0 gives prior samples (nothing of the digit kept); k = n_latent_layers reconstructions.
    In between, learners see what each layer fixes: class first, then style, then strokes.
    """

    def __init__(self, model: HVAE, images: Tensor, n_samples: int = 8, seed: int = 0):
        images = check_model_images(model, images, name="images")
        check_int(n_samples, "n_samples", minimum=1)
        self.model, self.images, self.n_samples, self.seed = model, images, n_samples, seed
        self.digit_slider = widgets.IntSlider(0, min=0, max=len(images) - 1, description="digit")
        self.k_slider = widgets.IntSlider(model.n_latent_layers // 2, min=0, max=model.n_latent_layers,
                                          description="keep top k")
        self.temperature_slider = widgets.FloatSlider(1.0, min=0.1, max=1.5, step=0.1, description="temperature")
        self.samples: Tensor | None = None  # (S, 1, 28, 28): the images shown
        super().__init__([self.digit_slider, self.k_slider, self.temperature_slider])

    def draw(self) -> Figure:
        digit, keep = self.digit_slider.value, self.k_slider.value
        x = self.images[digit:digit + 1]
        samples = layer_resamples(self.model, x, [keep], self.n_samples, self.temperature_slider.value, self.seed)
        self.samples = samples[0, 0]
        return plots.layer_resample_grid(samples, [keep], x.cpu(), title=(
            f"digit {digit}: top {keep} of {self.model.n_latent_layers} layers kept, the rest resampled"))


class ClusterExplorer(Explorer):
    """Pick a component of the mixture prior and a temperature: samples from that component."""

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
        return plots.image_grid(self.samples, ncols=8, title=f"component {component}")


class ImputationExplorer(Explorer):
    """Pick a digit, a kind of occlusion and a number of samples: each model's imputations side by side.

    models: name -> model; conditional models impute in one pass, the others iteratively.
    """

    def __init__(self, models: Mapping[str, HVAE], images: Tensor, n_steps: int = 20, seed: int = 0):
        if not models:
            raise InputError("give at least one model, e.g. {'matryoshka': model}")
        for name, model in models.items():
            images = check_model_images(model, images, name="images")
        check_int(n_steps, "n_steps", minimum=1)
        self.models, self.images, self.n_steps, self.seed = dict(models), images, n_steps, seed
        self.digit_slider = widgets.IntSlider(0, min=0, max=len(images) - 1, description="digit")
        self.mask_dropdown = widgets.Dropdown(options=MASK_KINDS, value="bottom", description="occlusion")
        self.samples_slider = widgets.IntSlider(4, min=1, max=8, description="samples")
        self.mask: Tensor | None = None                   # (1, 1, 28, 28), 1 = observed
        self.imputations: dict[str, Tensor] = {}          # name -> (1, S, 1, 28, 28)
        super().__init__([self.digit_slider, self.mask_dropdown, self.samples_slider])

    def draw(self) -> Figure:
        x = self.images[self.digit_slider.value:self.digit_slider.value + 1]
        generator = torch.Generator().manual_seed(self.seed)
        self.mask = occlusion_mask(self.mask_dropdown.value, 1, x.shape[-1], generator=generator)
        n = self.samples_slider.value
        self.imputations = {
            name: (impute_conditional(model, x, self.mask, n, binary=False, seed=self.seed)
                   if model.config.conditional else
                   impute_iterative(model, x, self.mask, self.n_steps, n, binary=False, seed=self.seed))
            for name, model in self.models.items()}
        return plots.imputation_grid(x.cpu(), self.mask, self.imputations)
