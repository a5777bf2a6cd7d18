"""Tests for hvae_lite.app: the classroom app's tabs, with tiny untrained models in place of the shipped ones."""
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from hvae_lite import app
from hvae_lite.config import get_preset
from hvae_lite.model import HVAE
from hvae_lite.widgets import ClusterExplorer, ImputationExplorer, LayerExplorer

KINDS = {"matryoshka": {}, "mixture": {"top_prior": "mixture", "mixture_components": 3},
         "imputation": {"conditional": True}}


class _Tiny:
    """Stands in for load_or_train's Checkpoint: `.model()` builds a tiny model of the named kind."""

    def __init__(self, name):
        self.name = name

    def model(self):
        torch.manual_seed(0)
        return HVAE(get_preset("tiny", **KINDS[self.name])).eval()


@pytest.fixture
def classroom(monkeypatch):
    loaded = []
    monkeypatch.setattr(app, "load_or_train", lambda name, **kwargs: loaded.append((name, kwargs)) or _Tiny(name))
    classroom = app.ClassroomApp(fast=True)
    return classroom, loaded


def test_three_tabs_over_the_named_models(classroom):
    classroom, loaded = classroom
    assert sorted(name for name, _ in loaded) == ["imputation", "matryoshka", "mixture"]
    assert all(kwargs["fast"] is True for _, kwargs in loaded)
    assert classroom.tabs.titles == tuple(title for title, _ in app.TABS.values())
    assert classroom.tabs in classroom.widget.children
    layers, classes, imputation = classroom.explorers.values()
    assert isinstance(layers, LayerExplorer) and isinstance(classes, ClusterExplorer)
    assert isinstance(imputation, ImputationExplorer)
    assert imputation.models["conditional"].config.conditional and not imputation.models["iterative"].config.conditional
    assert layers.digit_slider.max == 9  # one held-out digit per class
    for page, explorer in zip(classroom.tabs.children, classroom.explorers.values()):
        assert explorer.widget in page.children


def test_show_headless_gives_every_figure_as_a_plain_image(classroom):
    classroom, _ = classroom
    InteractiveShell.instance()  # so display() publishes outputs that capture_output sees
    try:
        with capture_output() as captured:
            classroom.show(headless=True)
    finally:
        InteractiveShell.clear_instance()
    assert sum("image/png" in out.data for out in captured.outputs) == 3
