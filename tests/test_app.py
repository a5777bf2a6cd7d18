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


def test_precomputed_imputations_are_kept_for_the_next_kernel(monkeypatch, tmp_path):
    from hvae_lite import widgets

    monkeypatch.setattr(app, "load_or_train", lambda name, **kwargs: _Tiny(name))
    first = app.ClassroomApp(fast=True, cache_dir=tmp_path)
    assert first.precompute(progress=False) == first.cache_file and first.cache_file.parent == tmp_path
    table = first.explorers["imputation"].table
    assert len(table) == 10 * len(first.explorers["imputation"].mask_dropdown.options)
    # The next kernel (same models, digits and settings) reads the file and imputes nothing.
    monkeypatch.setattr(widgets, "impute_iterative", lambda *a, **k: pytest.fail("imputed again"))
    monkeypatch.setattr(widgets, "impute_conditional", lambda *a, **k: pytest.fail("imputed again"))
    second = app.ClassroomApp(fast=True, cache_dir=tmp_path)
    assert second.cache_file == first.cache_file
    explorer = second.explorers["imputation"]
    explorer.digit_slider.value, explorer.mask_dropdown.value = 7, "squares"
    assert torch.equal(explorer.imputations["iterative"], table["7/squares"]["iterative"][:, :4])


def test_the_app_server_culls_idle_kernels_and_runs_one_thread_each():
    command = app.voila_command(port=9999)
    assert command[1:3] == ["-m", "voila"] and command[3].endswith("app.ipynb") and "--port=9999" in command
    assert "--MappingKernelManager.cull_idle_timeout=600" in command and "--MappingKernelManager.cull_connected=False" in command
    assert app.KERNEL_ENV["OMP_NUM_THREADS"] == "1"
