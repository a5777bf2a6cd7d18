"""Images of any size and channel count: today's MNIST models unchanged, the 8-bit likelihood,
the colour autoregressive head, and colour images through masks, imputation and plots."""
import json
import math
from pathlib import Path

import pytest
import torch

from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.config import HVAEConfig, allowed_resolutions, get_preset, parse_latent_spec
from hvae_lite.data import check_images, occlusion_mask
from hvae_lite.impute import imputation_scores, impute_conditional, impute_iterative, missing_log_likelihood
from hvae_lite.likelihoods import discretized_logistic_mixture_log_prob
from hvae_lite.model import HVAE
from hvae_lite.plots import image_grid, imputation_grid, layer_resample_grid

ROOT = Path(__file__).resolve().parent.parent
# Every MNIST preset of the kit before images of other sizes existed (main at 46db2bf): its config
# and the name and shape of every tensor of its state dict. Checkpoints trained then must still load.
SAVED = json.loads((Path(__file__).parent / "data" / "mnist_state_dicts.json").read_text())
SHIPPED = sorted((ROOT / "data" / "checkpoints").glob("*.pt"))


def _colour(**changes) -> HVAEConfig:
    """The tiny preset on 32x32 RGB images with 8-bit pixels."""
    values = dict(image_size=32, image_channels=3, likelihood="logistic", latent_spec="8x2,16x2",
                  logistic_components=3)
    return get_preset("tiny", **{**values, **changes})


def _pixels(*shape, seed=0) -> torch.Tensor:
    """Random 8-bit images in [0, 1]."""
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


# ----------------------------------------------------------------------------- MNIST unchanged


@pytest.mark.parametrize("name", sorted(SAVED))
def test_mnist_presets_keep_their_state_dict_names_and_shapes(name):
    config = HVAEConfig.from_dict(SAVED[name]["config"])  # the old fields; new ones take their defaults
    assert config.image_shape == (1, 28, 28)
    state = {k: list(v.shape) for k, v in HVAE(config).state_dict().items()}
    assert state == SAVED[name]["state"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoints_load_strictly(path):
    checkpoint = load_checkpoint(path)
    model = checkpoint.model()  # load_state_dict is strict: every name and shape must match
    if not isinstance(checkpoint.config, HVAEConfig):
        return  # another kind of model (e.g. the digit judge): its loading is what is checked
    config = checkpoint.config
    if config.likelihood == "bernoulli":
        x = torch.bernoulli(torch.full((2, *config.image_shape), 0.3))
    else:  # 8-bit levels (the colour models)
        x = torch.randint(0, 256, (2, *config.image_shape), generator=torch.Generator().manual_seed(0)) / 255
    observed = occlusion_mask("center", 2, config.image_size) if config.conditional else None
    assert torch.isfinite(model(x, observed).elbo).all()


def test_there_are_shipped_checkpoints_to_check():
    assert SHIPPED, "data/checkpoints/*.pt: the strict-loading test above checks nothing without them"


# ----------------------------------------------------------------------------- config


def test_latent_resolutions_divide_the_image_size_by_powers_of_two():
    assert allowed_resolutions(28) == [7, 14, 28]
    assert allowed_resolutions(32) == [1, 2, 4, 8, 16, 32]
    assert parse_latent_spec("4x1,8x2,32x1", image_size=32) == [(4, 1), (8, 2), (32, 1)]
    with pytest.raises(ValueError, match=r"resolution must be 1, 2, 4, 8, 16 or 32 \(images of side 32\)"):
        parse_latent_spec("7x2", image_size=32)
    with pytest.raises(ValueError, match="resolution must be 7, 14 or 28"):
        HVAEConfig(latent_spec="8x2")
    assert _colour().resolutions == [8, 8, 16, 16] and _colour().image_shape == (3, 32, 32)


@pytest.mark.parametrize("changes, message", [
    (dict(image_size=0), "image_size must be a positive integer"),
    (dict(image_channels=0), "image_channels must be a positive integer"),
    (dict(likelihood="poisson"), "likelihood='poisson'"),
    (dict(logistic_components=0), "logistic_components must be >= 1"),
    (dict(likelihood="gaussian", ar_layers=2), "discrete pixels"),
    (dict(ar_layers=2, ar_width=2), r"ar_width \(2\) must be >= image_channels \(3\)"),
])
def test_bad_image_configs_say_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        _colour(**changes)


def test_omniglot_and_cifar10_presets_have_the_stated_shapes():
    omniglot = get_preset("omniglot")
    assert omniglot.resolutions == [7] * 3 + [14] * 3 + [28] * 5 and omniglot.latent_channels == 6
    assert omniglot.image_shape == (1, 28, 28) and omniglot.likelihood == "bernoulli"
    cifar = get_preset("cifar10")
    assert cifar.image_shape == (3, 32, 32) and cifar.likelihood == "logistic" and cifar.ar_layers > 0
    for config in (omniglot, cifar):
        model = HVAE(config.replace(width=8, ar_width=6, top_latent_dim=4))  # the shape, at a small width
        x = torch.bernoulli(torch.full((2, *config.image_shape), 0.5))
        assert model(x).elbo.shape == (2,)


def test_a_model_checks_the_shape_of_its_images():
    model = HVAE(_colour())
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 32, 32\), got \(2, 1, 28, 28\)"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"channels last: use x.permute\(0, 3, 1, 2\)"):
        model(torch.zeros(2, 32, 32, 3))
    with pytest.raises(ValueError, match=r"observed must have shape \(B, 1, 32, 32\)"):
        model(_pixels(2, 3, 32, 32), torch.ones(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"flat images: use x.view\(-1, 3, 32, 32\)"):
        check_images(torch.zeros(2, 3072), shape=(3, 32, 32))


# ----------------------------------------------------------------------------- 8-bit likelihood


@pytest.mark.parametrize("log_scale", [-6.0, -3.0, -1.0, 0.5])
def test_discretized_logistic_mixture_is_normalised_over_the_256_levels(log_scale):
    torch.manual_seed(0)
    k, n_params = 4, 5  # components; parameter sets tried at once
    logits = torch.randn(n_params, k)
    means = torch.rand(n_params, k) * 2.4 - 1.2  # some beyond [-1, 1]: the tails go to the end bins
    log_scales = log_scale + 0.5 * torch.randn(n_params, k)
    params = torch.cat([logits, means, log_scales], 1).double()          # (n_params, 3K)
    levels = torch.arange(256, dtype=torch.float64) / 255                # (256,)
    # Every level under every parameter set: x (256, n_params, 1, 1) with params (256, n_params, 3K, 1, 1).
    x = levels.view(256, 1, 1, 1).expand(256, n_params, 1, 1)
    log_p = discretized_logistic_mixture_log_prob(
        x, params.view(1, n_params, 3 * k, 1, 1).expand(256, -1, -1, 1, 1))  # (256, n_params, 1, 1)
    total = log_p.exp().sum(0).flatten()
    assert torch.allclose(total, torch.ones(n_params, dtype=total.dtype), atol=1e-4), total
    assert torch.isfinite(log_p).all()


def test_discretized_logistic_matches_the_logistic_cdf():
    """One component: P(x) is the logistic's mass over x's bin (the end bins take the tails),
    with the CDF from torch.distributions."""
    mean, scale = 0.1, 0.05
    f64 = dict(dtype=torch.float64)
    logistic = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(torch.tensor(0.0, **f64), torch.tensor(1.0, **f64)),
        [torch.distributions.transforms.SigmoidTransform().inv,
         torch.distributions.transforms.AffineTransform(mean, scale)])
    levels = torch.tensor([0.0, 100.0, 140.0, 255.0], **f64) / 255
    centre = 2 * levels - 1
    cdf = logistic.cdf
    expected = torch.stack([cdf(centre[0] + 1 / 255), cdf(centre[1] + 1 / 255) - cdf(centre[1] - 1 / 255),
                            cdf(centre[2] + 1 / 255) - cdf(centre[2] - 1 / 255), 1 - cdf(centre[3] - 1 / 255)])
    params = torch.tensor([0.0, mean, math.log(scale)], **f64).view(1, 1, 3, 1, 1).expand(4, 1, 3, 1, 1)
    log_p = discretized_logistic_mixture_log_prob(levels.view(4, 1, 1, 1), params).flatten()
    assert torch.allclose(log_p.double(), expected.log(), rtol=1e-4)


def test_logistic_model_reports_bits_per_dim():
    from hvae_lite.evaluate import evaluate

    torch.manual_seed(0)
    metrics = evaluate(HVAE(_colour()), _pixels(4, 3, 32, 32), k=2, batch_size=4)
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_iwae"] / (3 * 32 * 32 * math.log(2)))
    assert 7 < metrics["bits_per_dim"] < 10  # an untrained model: about uniform (8 bits) or worse


def test_logistic_samples_are_8_bit_images():
    torch.manual_seed(0)
    model = HVAE(_colour())
    sample = model.sample(3, binary=True)
    assert sample.shape == (3, 3, 32, 32)
    assert torch.equal(sample * 255, (sample * 255).round()) and 0 <= sample.min() and sample.max() <= 1
    mean = model.sample(3)
    assert mean.shape == (3, 3, 32, 32) and 0 <= mean.min() and mean.max() <= 1


# ----------------------------------------------------------------------------- colour AR head


def _colour_ar_head(**changes):
    """The colour AR head with random output weights: it starts at zero (the factorised head),
    where no path from x would show."""
    torch.manual_seed(0)
    head = HVAE(_colour(ar_layers=3, **changes)).head
    torch.nn.init.normal_(head.ar_out.weight, std=0.1)
    return head


def _order(c, i, j, channels=3, size=32):
    """Position of sub-pixel (c, i, j) in raster order, channels in order within a pixel."""
    return (i * size + j) * channels + c


@pytest.mark.parametrize("likelihood", ["logistic", "bernoulli"])
@pytest.mark.parametrize("sub_pixel", [(0, 0, 0), (1, 0, 0), (2, 5, 7), (0, 31, 31), (2, 31, 31)])
def test_colour_ar_head_is_causal_in_raster_and_channel_order(likelihood, sub_pixel):
    head = _colour_ar_head(likelihood=likelihood)
    features = torch.randn(1, head.to_params.in_channels, 32, 32)
    x = _pixels(1, 3, 32, 32).requires_grad_()
    c, i, j = sub_pixel
    params = head._per_channel(head.params(features, x))  # (1, C, P, H, W)
    params[0, c, :, i, j].sum().backward()
    depends = (x.grad[0] != 0)                                        # (C, H, W)
    order = torch.tensor([[[_order(cc, ii, jj) for jj in range(32)] for ii in range(32)] for cc in range(3)])
    assert not depends[order >= _order(c, i, j)].any(), "depends on itself or a later sub-pixel"
    if _order(c, i, j) > 0:
        assert depends[order < _order(c, i, j)].any(), "reads none of the sub-pixels before it"


def _naive_colour_sample(head, features):
    """Sub-pixel by sub-pixel with the whole image every time: slow and obviously right."""
    size, channels = features.shape[-1], head.channels
    x = torch.zeros(features.shape[0], channels, size, size)
    for i in range(size):
        for j in range(size):
            for c in range(channels):
                x[:, c, i, j] = head.draw(head.params(features, x)[:, :, i, j])[:, c]
    return x


def test_colour_ar_sampling_matches_the_naive_loop():
    head = _colour_ar_head()
    features = torch.randn(2, head.to_params.in_channels, 8, 8)  # a small image keeps the loop short
    torch.manual_seed(1)
    fast = head.sample(features)
    torch.manual_seed(1)
    assert torch.equal(fast, _naive_colour_sample(head, features))


# ----------------------------------------------------------------------------- masks, imputation, plots


def test_masks_of_32x32_images():
    assert (1 - occlusion_mask("center", 2, 32)).sum() == 2 * 16 * 16
    assert torch.equal(occlusion_mask("left", 1, 32)[0, 0, :, :16], torch.zeros(32, 16))
    assert occlusion_mask("squares", 3, 32, torch.Generator().manual_seed(0)).shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="image_size must be >= 2"):
        occlusion_mask("center", 1, 1)


@pytest.fixture(scope="module")
def colour_models():
    torch.manual_seed(0)
    return {"iterative": HVAE(_colour()).eval(), "conditional": HVAE(_colour(conditional=True)).eval()}


def test_imputation_of_colour_images_keeps_the_observed_pixels(colour_models):
    x = _pixels(2, 3, 32, 32)
    for kind in ("center", "top"):
        observed = occlusion_mask(kind, 2, 32)
        iterative = impute_iterative(colour_models["iterative"], x, observed, n_steps=2, n_samples=2)
        conditional = impute_conditional(colour_models["conditional"], x, observed, n_samples=2)
        for samples in (iterative, conditional):
            assert samples.shape == (2, 2, 3, 32, 32)
            seen = observed.bool().expand(2, 3, 32, 32)
            assert torch.equal(samples[:, 0][seen], x[seen])
            assert not torch.equal(samples[:, 0][~seen], x[~seen])
            assert torch.equal(samples * 255, (samples * 255).round())  # 8-bit draws
    with pytest.raises(ValueError, match=r"observed \(B, 1, 32, 32\)"):
        impute_iterative(colour_models["iterative"], x, torch.ones(2, 3, 32, 32))


def test_missing_log_likelihood_and_scores_of_colour_images(colour_models):
    x = _pixels(2, 3, 32, 32)
    observed = occlusion_mask("center", 2, 32)
    for model in colour_models.values():
        log_p = missing_log_likelihood(model, x, observed, k=2)
        assert log_p.shape == (2,) and torch.isfinite(log_p).all() and (log_p < 0).all()
    rows = imputation_scores(colour_models, x, ["center", "bottom"], k=2)
    assert [r["missing"] for r in rows] == [3 * 16 * 16] * 2 + [3 * 16 * 32] * 2
    for row in rows:  # an untrained 8-bit model: about log(1/256) nats per missing sub-pixel
        assert -8 < row["nats_per_pixel"] < -4


def test_plots_draw_colour_images():
    x = _pixels(2, 3, 32, 32)
    observed = occlusion_mask("center", 2, 32)
    grid = image_grid(x)
    assert grid.axes[0].images[0].get_array().shape == (32, 32, 3)
    figure = imputation_grid(x, observed, {"a": x.unsqueeze(1).repeat(1, 2, 1, 1, 1)})
    assert len(figure.axes) == 2 * 4
    masked = figure.axes[1].images[0].get_array()
    assert masked.shape == (32, 32, 3) and (masked[16, 16] != x[0, :, 16, 16].numpy()).any()
    assert layer_resample_grid(x.view(1, 2, 1, 3, 32, 32), [3], originals=x).axes


def test_the_imputation_explorer_shows_colour_images(colour_models):
    from hvae_lite.widgets import ImputationExplorer

    explorer = ImputationExplorer(colour_models, _pixels(2, 3, 32, 32), n_steps=1)
    explorer.samples_slider.value = 1
    explorer.mask_dropdown.value = "center"
    assert explorer.mask.shape == (1, 1, 32, 32) and (1 - explorer.mask).sum() == 16 * 16
    assert {name: s.shape for name, s in explorer.imputations.items()} == {
        "iterative": (1, 1, 3, 32, 32), "conditional": (1, 1, 3, 32, 32)}
