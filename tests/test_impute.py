"""Tests for hvae_lite.impute: masks respected, shapes, seeds, the missing-pixel log-likelihood."""
import pytest
import torch

from hvae_lite.baseline import MLPVAE, MLPVAEConfig
from hvae_lite.config import get_preset
from hvae_lite.data import heldout_masks, occlusion_mask
from hvae_lite.impute import (imputation_scores, impute_conditional, impute_iterative, missing_log_likelihood,
                              occlusion_gallery)
from hvae_lite.model import HVAE


@pytest.fixture(scope="module")
def conditional_model():
    torch.manual_seed(0)
    return HVAE(get_preset("tiny", conditional=True)).eval()


def _mask(kind, n=4, seed=0):
    return occlusion_mask(kind, n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["bottom", "squares", "pixels"])
def test_iterative_keeps_observed_pixels_and_fills_missing_ones(trained_tiny, digits, kind):
    x, mask = digits[:4], _mask(kind)
    samples, chain = impute_iterative(trained_tiny, x, mask, n_steps=3, n_samples=2, return_chain=True)
    assert samples.shape == (4, 2, 1, 28, 28) and chain.shape == (3, 4, 2, 1, 28, 28)
    observed = mask.unsqueeze(1).expand_as(samples).bool()
    assert torch.equal(samples[observed], x.unsqueeze(1).expand_as(samples)[observed])
    assert torch.equal(chain[-1], samples)
    assert ((samples == 0) | (samples == 1)).all()  # binary draws by default
    assert not torch.equal(samples[:, 0], samples[:, 1])  # two samples differ in the missing pixels


def test_iterative_mean_output_and_reproducibility(trained_tiny, digits):
    x, mask = digits[:4], _mask("top")
    a = impute_iterative(trained_tiny, x, mask, n_steps=2, n_samples=2, binary=False, seed=3)
    b = impute_iterative(trained_tiny, x, mask, n_steps=2, n_samples=2, binary=False, seed=3)
    c = impute_iterative(trained_tiny, x, mask, n_steps=2, n_samples=2, binary=False, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    missing = a[(1 - mask).unsqueeze(1).expand_as(a).bool()]
    assert ((missing > 0) & (missing < 1)).any()  # probabilities, not draws


def test_seed_leaves_global_rng_alone(trained_tiny, digits):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    impute_iterative(trained_tiny, digits[:2], _mask("top", 2), n_steps=1, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_conditional_imputation(conditional_model, digits):
    x, mask = digits[:4], _mask("center")
    samples = impute_conditional(conditional_model, x, mask, n_samples=3, seed=1)
    assert samples.shape == (4, 3, 1, 28, 28)
    observed = mask.unsqueeze(1).expand_as(samples).bool()
    assert torch.equal(samples[observed], x.unsqueeze(1).expand_as(samples)[observed])
    assert torch.equal(samples, impute_conditional(conditional_model, x, mask, n_samples=3, seed=1))


def test_wrong_models_and_masks_raise(trained_tiny, conditional_model, digits):
    x, mask = digits[:2], _mask("top", 2)
    with pytest.raises(ValueError, match="conditional"):
        impute_conditional(trained_tiny, x, mask)
    with pytest.raises(ValueError, match="impute_conditional"):
        impute_iterative(conditional_model, x, mask)
    torch.manual_seed(0)
    ar_model = HVAE(get_preset("tiny", ar_layers=2))
    with pytest.raises(ValueError, match="autoregressive"):
        impute_iterative(ar_model, x, mask)
    with pytest.raises(ValueError, match="autoregressive"):
        missing_log_likelihood(ar_model, x, mask, k=2)
    with pytest.raises(ValueError, match=r"observed must have the shape of the images"):
        impute_iterative(trained_tiny, x, mask[:1])
    with pytest.raises(ValueError, match="only 0"):
        impute_iterative(trained_tiny, x, mask * 0.5)
    with pytest.raises(ValueError, match=">= 1"):
        impute_iterative(trained_tiny, x, mask, n_steps=0)


def test_missing_log_likelihood_unconditional(trained_tiny, tiny_model, digits):
    x = digits[:8]
    half = missing_log_likelihood(trained_tiny, x, _mask("bottom", 8), k=8)
    assert half.shape == (8,) and torch.isfinite(half).all() and (half <= 0).all()
    # Nothing missing: log p(nothing | everything) = 0 exactly (the same latent samples for both bounds).
    assert torch.equal(missing_log_likelihood(trained_tiny, x, torch.ones_like(x), k=4), torch.zeros(8))
    # Seeing more (only the bottom-right quadrant missing) leaves less to guess.
    quadrant = torch.ones_like(x)
    quadrant[..., 14:, 14:] = 0
    assert missing_log_likelihood(trained_tiny, x, quadrant, k=8).mean() > half.mean()
    # A trained model predicts the missing half better than an untrained one.
    assert half.mean() > missing_log_likelihood(tiny_model.eval(), x, _mask("bottom", 8), k=8).mean()
    assert torch.equal(half, missing_log_likelihood(trained_tiny, x, _mask("bottom", 8), k=8))


def test_missing_log_likelihood_conditional_and_baseline(conditional_model, digits):
    x, mask = digits[:4], _mask("right")
    log_p = missing_log_likelihood(conditional_model, x, mask, k=4)
    assert log_p.shape == (4,) and torch.isfinite(log_p).all() and (log_p <= 0).all()
    torch.manual_seed(0)
    mlp = MLPVAE(MLPVAEConfig(hidden=(32,), latent_dim=4)).eval()
    log_p = missing_log_likelihood(mlp, x, mask, k=4)
    assert log_p.shape == (4,) and torch.isfinite(log_p).all() and (log_p <= 0).all()
    samples = impute_iterative(mlp, x, mask, n_steps=2)
    assert torch.equal(samples[:, 0] * mask, x * mask)


def test_imputation_scores_one_row_per_kind_and_model(trained_tiny, conditional_model, digits):
    x = digits[:4]
    rows = imputation_scores({"iterative": trained_tiny, "conditional": conditional_model}, x,
                             ["bottom", "pixels"], k=2)
    assert [(r["kind"], r["model"]) for r in rows] == [("bottom", "iterative"), ("bottom", "conditional"),
                                                        ("pixels", "iterative"), ("pixels", "conditional")]
    assert rows[0]["missing"] == 14 * 28
    expected = missing_log_likelihood(trained_tiny, x, _mask("bottom", 4), k=2).mean().item()  # "bottom": no randomness
    assert rows[0]["nats"] == pytest.approx(expected)
    assert rows[0]["nats_per_pixel"] == pytest.approx(expected / (14 * 28))
    pixels = missing_log_likelihood(conditional_model, x, heldout_masks(4, 28, 0, kind="pixels"), k=2).mean().item()
    assert rows[3]["nats"] == pytest.approx(pixels)  # random kinds: one mask per image, as every scorer draws them


def test_a_precomputed_log_px_gives_the_same_estimate(trained_tiny, digits):
    from hvae_lite.impute import full_log_likelihood, missing_log_likelihood
    from hvae_lite.data import occlusion_mask
    mask = occlusion_mask("bottom", len(digits))
    direct = missing_log_likelihood(trained_tiny, digits, mask, k=4, seed=3)
    reused = missing_log_likelihood(trained_tiny, digits, mask, k=4, seed=3,
                                    log_px=full_log_likelihood(trained_tiny, digits, k=4, seed=3))
    assert torch.equal(direct, reused)


def test_occlusion_gallery_shows_each_image_under_each_kind_with_each_route(trained_tiny, conditional_model, digits):
    models = {"iterative": trained_tiny, "conditional": conditional_model}
    gallery = occlusion_gallery(models, digits[:2], kinds=["top", "pixels"], n_samples=2, n_steps=2, seed=1)
    assert gallery.row_labels == ["top", "pixels", "top", "pixels"]
    assert torch.equal(gallery.x[2], digits[1]) and torch.equal(gallery.x[3], digits[1])
    assert torch.equal(gallery.observed[0], _mask("top", 1)[0])  # the same mask for both routes
    for route, model in models.items():
        samples = gallery.completions[route]
        assert samples.shape == (4, 2, 1, 28, 28)
        observed = gallery.observed.unsqueeze(1).expand_as(samples).bool()
        assert torch.equal(samples[observed], gallery.x.unsqueeze(1).expand_as(samples)[observed])
    expected = impute_conditional(conditional_model, gallery.x, gallery.observed, n_samples=2, binary=False, seed=1)
    assert torch.equal(gallery.completions["conditional"], expected)
    with pytest.raises(ValueError, match="mask kinds"):
        occlusion_gallery(models, digits[:2], kinds=["diagonal"])


def test_occlusion_gallery_takes_the_models_image_shape():
    """Colour images for a colour model (not checked against the MNIST shape)."""
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", image_size=32, image_channels=3, likelihood="logistic", latent_spec="8x1,16x1",
                            logistic_components=2)).eval()
    images = torch.rand(2, 3, 32, 32).mul(255).round().div(255)
    gallery = occlusion_gallery({"iterative": model}, images, kinds=["center"], n_samples=1, n_steps=1)
    assert gallery.completions["iterative"].shape == (2, 1, 3, 32, 32)
    with pytest.raises(ValueError, match="images must have shape"):
        occlusion_gallery({"iterative": model}, torch.rand(2, 1, 28, 28), kinds=["center"])
