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
    # Imputed once with the most samples the slider offers (8); the slider shows the first 2.
    assert torch.equal(explorer.imputations["iterative"],
                       impute_iterative(trained_tiny, x, mask, 2, 8, binary=False, seed=0)[:, :2])
    assert torch.equal(explorer.imputations["conditional"],
                       impute_conditional(conditional, x, mask, 8, binary=False, seed=0)[:, :2])
    assert len(explorer.figure.axes) == 1 * (2 + 2 + 2)
    with pytest.raises(ValueError, match="at least one model"):
        ImputationExplorer({}, digits[:1])


def test_controls_redraw_only_when_released(trained_tiny, digits):
    explorer = ImputationExplorer({"iterative": trained_tiny}, digits[:2], n_steps=1)
    sliders = [explorer.digit_slider, explorer.samples_slider]
    assert all(slider.continuous_update is False for slider in sliders)
    assert explorer.mask_dropdown.style.description_width == "initial"


def test_drawing_state_shows_while_a_redraw_runs_and_clears_after(trained_tiny, digits, monkeypatch):
    explorer = LayerExplorer(trained_tiny, digits[:2], n_samples=2)
    assert explorer.status.value == ""
    seen_while_drawing = []
    draw = explorer.draw

    def recording_draw():
        seen_while_drawing.append(explorer.status.value)
        return draw()

    monkeypatch.setattr(explorer, "draw", recording_draw)
    explorer.digit_slider.value = 1
    assert "drawing..." in seen_while_drawing[0] and "0.5s" in seen_while_drawing[0]  # shown after half a second
    assert explorer.status.value == ""

    def failing_draw():
        raise RuntimeError("out of memory")

    monkeypatch.setattr(explorer, "draw", failing_draw)
    with pytest.raises(RuntimeError):
        explorer.k_slider.value = 0  # a setting not drawn before (a drawn one comes from the render cache)
    assert explorer.status.value == ""  # a failed redraw does not leave "drawing..." up


def test_captions_say_what_the_figure_shows(trained_tiny, digits):
    n_layers = trained_tiny.n_latent_layers
    layers = LayerExplorer(trained_tiny, digits[:3], n_samples=4)
    layers.digit_slider.value, layers.k_slider.value = 2, 0
    assert layers.caption.startswith("Left, framed: digit 2.") and f"top 0 of {n_layers} latent layers (none)" in layers.caption
    assert layers.caption in layers.caption_label.value
    torch.manual_seed(0)
    clusters = ClusterExplorer(HVAE(get_preset("tiny", top_prior="mixture", mixture_components=3)).eval(), n_samples=4)
    clusters.component_slider.value = 2
    assert clusters.caption.startswith("4 samples from component 2 of the 3")
    imputation = ImputationExplorer({"iterative": trained_tiny}, digits[:2], n_steps=1)
    imputation.mask_dropdown.value = "left"
    assert "'left' occlusion (392 of 784 pixels missing" in imputation.caption and "1 pseudo-Gibbs steps" in imputation.caption


def test_figures_are_sized_for_a_projector(trained_tiny, digits):
    layers = LayerExplorer(trained_tiny, digits[:2], n_samples=8)
    width, height = layers.figure.get_size_inches()
    assert height >= 2 and width >= 6  # 2 rows of 4 samples beside the original, not a thumbnail strip
    assert len(layers.figure.axes) == 1 + 8


def test_show_headless_also_gives_the_caption(trained_tiny, digits, shell):
    explorer = LayerExplorer(trained_tiny, digits[:2], n_samples=2)
    with capture_output() as captured:
        explorer.show(headless=True)
    html = [out.data["text/html"] for out in captured.outputs if "text/html" in out.data and "image/png" not in out.data]
    assert any(explorer.caption.split(".")[0] in text for text in html)


def test_a_setting_drawn_before_comes_back_from_the_render_cache(trained_tiny, digits, monkeypatch):
    explorer = LayerExplorer(trained_tiny, digits[:2], n_samples=2)
    first_figure, first_samples = explorer.figure, explorer.samples
    explorer.digit_slider.value = 1
    assert explorer.figure is not first_figure
    monkeypatch.setattr(explorer, "draw", lambda: pytest.fail("drawn again"))
    explorer.digit_slider.value = 0  # back: the kept picture, and the samples it shows
    assert explorer.figure is first_figure and explorer.samples is first_samples
    assert explorer.caption.startswith("Left, framed: digit 0.")


def test_imputations_are_computed_once_per_digit_and_occlusion_and_can_be_given(trained_tiny, digits, monkeypatch):
    from hvae_lite import widgets

    explorer = ImputationExplorer({"iterative": trained_tiny}, digits[:2], n_steps=1)
    table = explorer.precompute()
    assert sorted(table) == sorted(f"{d}/{kind}" for d in range(2) for kind in explorer.mask_dropdown.options)
    assert table["1/top"]["iterative"].shape == (1, 8, 1, 28, 28)
    monkeypatch.setattr(widgets, "impute_iterative", lambda *a, **k: pytest.fail("imputed again"))
    explorer.samples_slider.value, explorer.mask_dropdown.value = 3, "top"
    assert torch.equal(explorer.imputations["iterative"], table["0/top"]["iterative"][:, :3])
    given = ImputationExplorer({"iterative": trained_tiny}, digits[:2], n_steps=1, table=table)  # nothing imputed
    given.digit_slider.value = 1
    assert torch.equal(given.imputations["iterative"], table["1/bottom"]["iterative"][:, :4])
