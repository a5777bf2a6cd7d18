"""Tests for hvae_lite.widgets, driven from code as a learner would drive the sliders (no browser)."""
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from hvae_lite.config import get_preset
from hvae_lite.data import occlusion_mask
from hvae_lite.explore import layer_resamples
from hvae_lite.impute import impute_conditional, impute_iterative
from hvae_lite.model import HVAE
from hvae_lite.widgets import ClusterExplorer, ImputationExplorer, LayerExplorer


@pytest.fixture
def shell():
    """An IPython shell, so display() publishes outputs that capture_output can inspect."""
    yield InteractiveShell.instance()
    InteractiveShell.clear_instance()


def _png_outputs(captured):
    return [out for out in captured.outputs if "image/png" in out.data]


def test_layer_explorer_follows_its_controls(trained_tiny, digits):
    explorer = LayerExplorer(trained_tiny, digits[:3], n_samples=4)
    n_layers = trained_tiny.n_latent_layers
    explorer.k_slider.value = n_layers
    first_figure = explorer.figure
    expected = layer_resamples(trained_tiny, digits[:1], [n_layers], 4, 1.0, seed=0)[0, 0]
    assert torch.equal(explorer.samples, expected)  # keep = all: the reconstruction path
    explorer.digit_slider.value = 2
    assert explorer.figure is not first_figure
    assert not torch.allclose(explorer.samples, expected)  # another digit, other images
    assert torch.equal(explorer.samples, layer_resamples(trained_tiny, digits[2:3], [n_layers], 4, 1.0, 0)[0, 0])
    explorer.temperature_slider.value = 0.5
    explorer.k_slider.value = 0
    prior = explorer.samples
    explorer.digit_slider.value = 0
    # keep = 0 ignores the digit: the same seeded prior samples whichever digit is chosen.
    assert torch.equal(explorer.samples, prior)
    assert explorer.k_slider.max == n_layers and explorer.digit_slider.max == 2


def test_show_headless_adds_a_plain_image(trained_tiny, digits, shell):
    explorer = LayerExplorer(trained_tiny, digits[:2], n_samples=2)
    with capture_output() as captured:
        explorer.show(headless=True)
    assert len(_png_outputs(captured)) == 1
    with capture_output() as captured:
        explorer.show(headless=False)
    assert _png_outputs(captured) == [] and len(captured.outputs) == 1  # the widget alone


def test_show_reads_the_headless_environment_variable(trained_tiny, digits, shell, monkeypatch):
    explorer = LayerExplorer(trained_tiny, digits[:2], n_samples=2)
    monkeypatch.setenv("HVAE_LITE_HEADLESS", "1")
    with capture_output() as captured:
        explorer.show()
    assert len(_png_outputs(captured)) == 1


def test_cluster_explorer():
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", top_prior="mixture", mixture_components=3)).eval()
    explorer = ClusterExplorer(model, n_samples=4)
    assert explorer.samples.shape == (4, 1, 28, 28) and explorer.component_slider.max == 2
    first = explorer.samples
    explorer.component_slider.value = 1
    assert not torch.equal(explorer.samples, first)
    explorer.component_slider.value = 0
    assert torch.equal(explorer.samples, first)  # same controls, same seed, same picture


def test_cluster_explorer_needs_a_mixture(tiny_model):
    with pytest.raises(ValueError, match="mixture"):
        ClusterExplorer(tiny_model)


def test_imputation_explorer_uses_the_right_method_per_model(trained_tiny, digits):
    torch.manual_seed(0)
    conditional = HVAE(get_preset("tiny", conditional=True)).eval()
    explorer = ImputationExplorer({"iterative": trained_tiny, "conditional": conditional}, digits[:3], n_steps=2)
    explorer.samples_slider.value = 2
    explorer.mask_dropdown.value = "top"
    explorer.digit_slider.value = 1
    mask = occlusion_mask("top", 1)
    assert torch.equal(explorer.mask, mask)
    x = digits[1:2]
    assert torch.equal(explorer.imputations["iterative"],
                       impute_iterative(trained_tiny, x, mask, 2, 2, binary=False, seed=0))
    assert torch.equal(explorer.imputations["conditional"],
                       impute_conditional(conditional, x, mask, 2, binary=False, seed=0))
    assert len(explorer.figure.axes) == 1 * (2 + 2 + 2)
    with pytest.raises(ValueError, match="at least one model"):
        ImputationExplorer({}, digits[:1])
