"""The classroom app: the three explorers on tabs, over the shipped models, with no code to read.

`notebooks/app.ipynb` calls `ClassroomApp().show()`; `make app` serves that notebook with Voila
(code cells hidden), so students only see the controls, the figures and their captions.
"""
from __future__ import annotations

import ipywidgets as widgets
from IPython.display import display

from .data import fixed_binarize, load_embedded_mnist
from .pretrained import load_or_train
from .recipes import fast_mode
from .widgets import ClusterExplorer, Explorer, ImputationExplorer, LayerExplorer, headless_mode

# (tab title, what to try): one line above each explorer.
TABS = {
    "layers": ("What each layer encodes",
               "Pick a digit, then move 'keep top k' from 0 to the end: which layers fix the class, which the style?"),
    "classes": ("Classes without labels",
                "Step through the components: does each one draw a single digit class? Lower the temperature "
                "for more typical samples."),
    "imputation": ("Filling in occluded digits",
                   "Hide part of a digit and compare how the two models fill it in; more samples show how sure "
                   "each model is."),
}

# ipywidgets gives every tab the same width and cuts longer titles: let each title take its width.
_TAB_STYLE = "<style>.jupyter-widgets.jupyter-widget-tab.hvae-lite-tabs > .lm-TabBar .lm-TabBar-tab {flex: 0 0 auto}</style>"


class ClassroomApp:
    """Layer, class and imputation explorers on tabs (`.explorers`, `.tabs`; display `.widget`), over the shipped
    checkpoints (fast mode: tiny models trained in seconds), for ten held-out digits, one per class."""

    def __init__(self, fast: bool | None = None, seed: int = 0):
        fast = fast_mode(fast)
        models = {name: load_or_train(name, fast=fast, progress=False).model()
                  for name in ("matryoshka", "mixture", "imputation")}
        data = load_embedded_mnist(seed=0)
        first_of_class = [int((data.test_labels == c).nonzero()[0]) for c in range(10)]
        digits = fixed_binarize(data.test_images[first_of_class], seed=seed)  # (10, 1, 28, 28): 0..9
        self.explorers: dict[str, Explorer] = {
            "layers": LayerExplorer(models["matryoshka"], digits, n_samples=8, seed=seed),
            "classes": ClusterExplorer(models["mixture"], n_samples=16, seed=seed),
            "imputation": ImputationExplorer({"iterative": models["matryoshka"], "conditional": models["imputation"]},
                                             digits, n_steps=3 if fast else 20, seed=seed),
        }
        pages = [widgets.VBox([widgets.HTML(f"<p style='font-size: 1.1em'><b>Try:</b> {TABS[key][1]}</p>"),
                               explorer.widget]) for key, explorer in self.explorers.items()]
        self.tabs = widgets.Tab(children=pages, titles=[TABS[key][0] for key in self.explorers])
        self.tabs.add_class("hvae-lite-tabs")
        self.widget = widgets.VBox([widgets.HTML(_TAB_STYLE), self.tabs])

    def show(self, headless: bool | None = None) -> None:
        """Display the tabs; when headless (env HVAE_LITE_HEADLESS=1), also every explorer's figure and
        caption as plain outputs."""
        display(self.widget)
        if headless_mode(headless):
            for explorer in self.explorers.values():
                explorer.show_static()
