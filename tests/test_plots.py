"""Tests for hvae_lite.plots: pure functions that return Figures, drawn headless."""
import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hvae_lite import plots


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _images(*shape, seed=0):
    return torch.rand(*shape, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_image_grid_and_kl_per_layer_still_work():
    assert len(plots.image_grid(_images(5), ncols=3).axes) == 6
    fig = plots.kl_per_layer([3.0, 1.0, 0.5])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["z0 (top)", "z1", "z2"]


def test_training_curves_plots_each_epoch_and_layer():
    history = [{"epoch": e, "elbo": -100.0 + e, "test_elbo": -105.0 + e, "kl": [1.0, 2.0, 3.0],
                "test_kl": [1.0 * e, 2.0, 3.0]} for e in (1, 2, 3)]
    fig = plots.training_curves(history)
    ax_elbo, ax_kl = fig.axes
    assert [list(line.get_ydata()) for line in ax_elbo.lines] == [[-99.0, -98.0, -97.0], [-104.0, -103.0, -102.0]]
    assert len(ax_kl.lines) == 3 and list(ax_kl.lines[0].get_ydata()) == [1.0, 2.0, 3.0]
    # A run with free bits also draws its floor, epoch by epoch (dashed, labelled).
    floored = [{**record, "free_bits": 0.5 - 0.25 * i} for i, record in enumerate(history)]
    floor = plots.training_curves(floored).axes[1].lines[-1]
    assert list(floor.get_ydata()) == [0.5, 0.25, 0.0] and floor.get_label() == "free-bits floor"
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([])


def test_compare_bars_axis_starts_where_the_differences_show():
    ax = plots.compare_bars({"mlp": 110.0, "deep": 90.0, "deep+ar": 88.0}, {"mlp": 1.0}).axes[0]
    low, high = ax.get_ylim()
    assert 80 < low < 88 and 111 < high < 120  # not from 0: a 2-nat difference at 90 is visible
    assert any("not 0" in t.get_text() for t in ax.texts)
    elbo = plots.compare_bars({"a": -89.0, "b": -91.5}).axes[0]  # negative values: the axis ends below 0
    assert -89.0 < elbo.get_ylim()[1] < 0 and elbo.get_ylim()[0] < -91.5
    assert plots.compare_bars({"a": 3.0, "b": 5.0, "c": 9.0}).axes[0].get_ylim()[0] == 0  # 0 is near: kept
    assert plots.compare_bars({"a": 110.0, "b": 90.0}, from_zero=True).axes[0].get_ylim()[0] == 0
    assert not plots.compare_bars({"a": 3.0, "b": 9.0}).axes[0].texts
    with pytest.raises(ValueError, match="finite numbers, one per model"):
        plots.compare_bars({"a": float("nan")})


def test_kl_comparison_puts_two_models_side_by_side():
    fig = plots.kl_comparison({"plain": [3.0, 1.0, 0.5], "ar": [2.0, 0.2, 0.6]}, title="t")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [3.0, 1.0, 0.5, 2.0, 0.2, 0.6]
    assert ax.patches[0].get_x() < ax.patches[3].get_x() < ax.patches[1].get_x()  # layer 0: plain, then ar
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["in use from 1 nat", "plain", "ar"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z0 (top)", "z1", "z2"]
    with pytest.raises(ValueError, match="same number of latent layers"):
        plots.kl_comparison({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ValueError, match="empty"):
        plots.kl_comparison({})


def test_compare_bars_heights_order_and_whiskers():
    fig = plots.compare_bars({"mlp": 110.0, "deep": 90.0, "deep+ar": 88.0}, {"mlp": 1.0, "deep": 0.5}, title="NLL")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [110.0, 90.0, 88.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mlp", "deep", "deep+ar"]
    whiskers = ax.containers[0].lines[2][0].get_segments()  # one per bar, from value - err to value + err
    assert [round(float(w[1][1] - w[0][1]), 6) for w in whiskers] == [2.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="empty"):
        plots.compare_bars({})


def test_layer_resample_grid_layout():
    samples, originals = _images(3, 2, 4), _images(2, seed=1)
    fig = plots.layer_resample_grid(samples, [0, 2, 5], originals, title="t")
    assert len(fig.axes) == 3 * 2 * 5  # rows: keeps; columns: (original + 4 samples) per digit
    shown = fig.axes[1].images[0].get_array()  # row 0, digit 0, first sample
    assert np.allclose(shown, samples[0, 0, 0, 0].numpy())
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["k=0", "k=2", "k=5"]
    with pytest.raises(ValueError, match="keep values"):
        plots.layer_resample_grid(samples, [0, 1])


def test_component_samples_one_row_per_component():
    fig = plots.component_samples(_images(4, 3))
    assert len(fig.axes) == 12
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["c=0", "c=1", "c=2", "c=3"]
    labelled = plots.component_samples(_images(2, 3), row_labels=["c=0: judge 7 (62%)", "c=1: judge 1 (98%)"])
    assert [t.get_text() for ax in labelled.axes for t in ax.texts] == ["c=0: judge 7 (62%)", "c=1: judge 1 (98%)"]
    with pytest.raises(ValueError, match="row_labels must be 2 names"):
        plots.component_samples(_images(2, 3), row_labels=["only one"])


def test_component_samples_carry_temperature_and_judge_labels():
    labels = plots.judge_row_labels([7, 1], [0.62, 0.98])
    assert labels == ["c=0: judge 7 (62%)", "c=1: judge 1 (98%)"]
    fig = plots.component_samples(_images(2, 3), row_labels=labels, temperature=0.8)
    assert fig._suptitle.get_text().endswith("(temperature 0.8)")
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == labels
    with pytest.raises(ValueError, match="one judge class and one share per component"):
        plots.judge_row_labels([7], [0.5, 0.5])
    with pytest.raises(ValueError, match="temperature"):
        plots.component_samples(_images(2, 3), temperature=-1.0)


def test_embedding_scatter_names_each_axis_share_of_variance():
    points, labels = torch.randn(20, 2, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 2
    ax = plots.embedding_scatter(points, labels, variance_share=(0.31, 0.12)).axes[0]
    assert ax.get_xlabel() == "principal axis 1 (31% of the variance)"
    assert ax.get_ylabel() == "principal axis 2 (12% of the variance)"
    assert plots.embedding_scatter(points, labels).axes[0].get_xlabel() == "axis 1"
    with pytest.raises(ValueError, match="two fractions"):
        plots.embedding_scatter(points, labels, variance_share=(0.5, 1.5))


def test_causality_maps_colour_each_kind_of_pixel_and_name_them():
    changed = torch.zeros(28, 28, dtype=torch.bool)
    changed[13:15, 10:20] = True
    reads = torch.zeros(28, 28, dtype=torch.bool)
    reads[10:12, 12:17] = True
    fig = plots.causality_maps(changed, reads, (12, 14))
    left, right = fig.axes
    codes = left.images[0].get_array()
    assert codes[12, 14] == 2 and codes[13, 10] == 1 and codes[0, 0] == 0  # pixel j, changed, neither
    assert right.images[0].get_array()[10, 12] == 1 and right.images[0].get_array()[20, 20] == 0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["pixel j", "logit changes (left)",
                                                                  "input read (right)", "neither"]
    assert len(_png(fig)) > 1000
    with pytest.raises(ValueError, match="pixel row"):
        plots.causality_maps(changed, reads, (28, 0))
    with pytest.raises(ValueError, match="same shape"):
        plots.causality_maps(changed, reads[:10], (1, 1))


def test_architecture_diagram_draws_the_three_streams_and_the_latents():
    fig = plots.architecture_diagram()
    texts = [t.get_text() for t in fig.axes[0].texts]
    for name in ("$h_0 = f(z_0)$", "$z_0$", "$z_{1}$", "$z_{L}$", "$m_{1}$", "$b_{1}$", "$b_{L}$", "$p(x \\mid z)$",
                 "$q(z_{1} \\mid x, z_{<1})$", "$p(z_{1} \\mid h_{0})$", "$q(z_0 \\mid x)$", "$+\\,g_{1}$"):
        assert name in texts, name
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("top-down") for label in legend) and any(label.startswith("merge") for label in legend)
    assert len(_png(fig)) > 10_000


def test_embedding_scatter_one_series_per_label():
    points = torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(30) % 3
    fig = plots.embedding_scatter(points, labels)
    collections = fig.axes[0].collections
    assert len(collections) == 3
    assert np.allclose(collections[1].get_offsets(), points[labels == 1].numpy())
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.embedding_scatter(torch.randn(30, 3), labels)


def test_imputation_grid_colours_missing_pixels():
    x = torch.zeros(2, 1, 28, 28)
    mask = torch.ones(2, 1, 28, 28)
    mask[..., 14:, :] = 0
    imputations = {"iterative": _images(2, 3), "conditional": _images(2, 2, seed=1)}
    fig = plots.imputation_grid(x, mask, imputations)
    assert len(fig.axes) == 2 * (2 + 3 + 2)
    masked = fig.axes[1].images[0].get_array()  # (28, 28, 3)
    assert np.allclose(masked[20, 5], plots.MISSING_COLOUR) and np.allclose(masked[5, 5], 0)
    imputed = fig.axes[2].images[0].get_array()
    assert np.allclose(imputed[5, 5], imputations["iterative"][0, 0, 0, 5, 5].item())  # observed: grey
    assert not np.allclose(imputed[20, 5], imputed[20, 5].mean())  # an imputed pixel is tinted
    assert [ax.get_title(loc="left") for ax in fig.axes[:7]] == ["original", "input", "iterative", "", "",
                                                                 "conditional", ""]
    key = {t.get_text(): h.get_facecolor()[:3] for t, h in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    assert np.allclose(key["missing (hidden from the model)"], plots.MISSING_COLOUR)
    assert np.allclose(key["ink imputed in the missing region"], plots.IMPUTED_COLOUR)
    assert not plots.imputation_grid(x, mask, imputations, legend=False).legends
    assert len(_png(fig)) > 1000


def test_imputation_grid_row_labels_name_each_row():
    x, mask = torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28)
    fig = plots.imputation_grid(x, mask, {"a": _images(2, 1)}, row_labels=["center", "top"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["center"] and [t.get_text() for t in fig.axes[3].texts] == ["top"]
    with pytest.raises(ValueError, match="row_labels must be 2 names"):
        plots.imputation_grid(x, mask, {"a": _images(2, 1)}, row_labels=["center"])


def test_training_curves_fall_back_to_training_kl():
    history = [{"epoch": 1, "elbo": -100.0, "kl": [4.0, 1.0]}, {"epoch": 2, "elbo": -90.0, "kl": [5.0, 2.0]}]
    ax_elbo, ax_kl = plots.training_curves(history).axes
    assert len(ax_elbo.lines) == 1 and [list(line.get_ydata()) for line in ax_kl.lines] == [[4.0, 5.0], [1.0, 2.0]]
    assert not ax_kl.get_title().startswith("held-out")


def test_original_and_samples_puts_the_framed_original_beside_a_grid():
    fig = plots.original_and_samples(_images(1)[0], _images(6), ncols=4, title="t")
    original, *samples = fig.axes
    assert len(samples) == 8 and sum(len(ax.images) > 0 for ax in samples) == 6  # 2 rows of 4, 2 cells empty
    assert original.spines["left"].get_edgecolor()[:3] == pytest.approx((1.0, 0.498, 0.055), abs=1e-2)  # orange
    assert original.get_position().height > 1.5 * samples[0].get_position().height  # spans both rows
    with pytest.raises(ValueError, match=r"original must have 1 leading axes before \(C, H, W\)"):
        plots.original_and_samples(_images(1), _images(6))


def test_kl_comparison_threshold_and_class_kept_curve():
    from hvae_lite.plots import class_kept_curve, kl_comparison

    fig = kl_comparison({"a": [3.0, 0.2, 1.5], "b": [0.1, 0.1, 4.0]})
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and {"a", "b"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [1.0]  # the "in use" threshold
    fig = class_kept_curve({"m": {1: (0.6, 0.02), 11: (0.97, 0.01)}})
    lines = fig.axes[0].get_lines()
    assert list(lines[0].get_xdata()) == [1, 11] and list(lines[0].get_ydata()) == [0.6, 0.97]
    with pytest.raises(Exception, match="empty"):
        class_kept_curve({})


def test_time_to_quality_draws_each_recipe_against_minutes():
    from hvae_lite.plots import time_to_quality

    def point(minutes, nll):
        return {"minutes_two_threads": minutes, "nll": nll, "nll_stderr": 0.5, "confident": 0.5, "confident_stderr": 0.02}

    fig = time_to_quality({"quick": {"what": "q", "points": [point(9.0, 90.0), point(3.0, 101.0)]},
                           "mlp": {"what": "m", "points": [point(1.0, 105.0)]}})
    nll_ax, samples_ax = fig.axes
    first = nll_ax.get_lines()[0]
    assert list(first.get_xdata()) == [3.0, 9.0] and list(first.get_ydata()) == [101.0, 90.0]  # sorted by minutes
    assert nll_ax.get_xscale() == "log" and nll_ax.get_ylim()[0] == pytest.approx(88.0)
    assert {t.get_text() for t in nll_ax.get_legend().get_texts()} == {"quick", "mlp"}
    assert samples_ax.get_ylim() == (0, 1)
    with pytest.raises(Exception, match="empty"):
        time_to_quality({})
