"""Tests for hvae_lite.explore: layer resampling, samples per component, the top-latent map."""
import pytest
import torch

from hvae_lite.config import get_preset
from hvae_lite.data import fixed_binarize
from hvae_lite.explore import component_samples, layer_resamples, seeded, top_latent_embedding, top_latent_pca
from hvae_lite.model import HVAE


@pytest.fixture(scope="module")
def mixture_model():
    torch.manual_seed(0)
    return HVAE(get_preset("tiny", top_prior="mixture", mixture_components=3)).eval()


def test_seeded_repeats_draws_and_restores_the_rng():
    torch.manual_seed(1)
    with seeded(7):
        a = torch.rand(4)
    after = torch.rand(2)
    with seeded(7):
        b = torch.rand(4)
    torch.manual_seed(1)
    assert torch.equal(a, b) and torch.equal(torch.rand(2), after)


def test_layer_resamples_shapes_and_ends(trained_tiny, digits):
    x = digits[:2]
    n_layers = trained_tiny.n_latent_layers
    samples = layer_resamples(trained_tiny, x, [0, n_layers], n_samples=3, seed=0)
    assert samples.shape == (2, 2, 3, 1, 28, 28)
    assert ((samples >= 0) & (samples <= 1)).all()
    # keep = all layers is the reconstruction path: every latent from the posterior.
    with seeded(0):  # the first keep (0) draws first; redo it so the RNG stream matches
        trained_tiny.resample_below(x.repeat_interleave(3, 0), 0)
        features, _ = trained_tiny.top_down(6, trained_tiny.bottom_up(x.repeat_interleave(3, 0)))
        reconstruction = trained_tiny.head.sample(features, binary=False)
    assert torch.allclose(samples[1].reshape(6, 1, 28, 28), reconstruction)
    # Keeping every layer pins each digit down far more than keeping none.
    spread = samples.var(dim=2).mean(dim=(1, 2, 3, 4))
    assert spread[1] < spread[0]
    assert torch.equal(samples, layer_resamples(trained_tiny, x, [0, n_layers], n_samples=3, seed=0))


def test_component_samples(mixture_model):
    all_components = component_samples(mixture_model, n_per_component=2, seed=0)
    assert all_components.shape == (3, 2, 1, 28, 28)
    one = component_samples(mixture_model, n_per_component=2, seed=0, components=[1])
    assert torch.equal(one[0], all_components[1])  # a component's samples do not depend on the others
    assert not torch.equal(all_components[0], all_components[1])


def test_component_samples_needs_a_mixture(tiny_model):
    with pytest.raises(ValueError, match="mixture"):
        component_samples(tiny_model)


def test_top_latent_embedding_is_deterministic_pca(trained_tiny, digits):
    points = top_latent_embedding(trained_tiny, digits, batch_size=5)
    assert points.shape == (16, 2)
    assert torch.allclose(points.mean(0), torch.zeros(2), atol=1e-5)
    assert points[:, 0].var() >= points[:, 1].var()  # the first axis carries the most variance
    assert torch.allclose(points, top_latent_embedding(trained_tiny, digits), atol=1e-5)


def test_top_latent_pca_gives_each_axis_its_share_of_the_variance(trained_tiny, digits):
    embedding = top_latent_pca(trained_tiny, digits)
    assert torch.allclose(embedding.points, top_latent_embedding(trained_tiny, digits))
    first, second = embedding.variance_share
    means = trained_tiny.encode_top(fixed_binarize(digits, 0)).mean.double()
    total = means.var(0).sum().item()  # the variance of the means summed over all dimensions
    assert first == pytest.approx(embedding.points[:, 0].double().var().item() / total, rel=1e-4)
    assert second == pytest.approx(embedding.points[:, 1].double().var().item() / total, rel=1e-4)
    assert 1 >= first >= second > 0 and first + second <= 1 + 1e-9


def test_class_kept_counts_the_judges_agreement_per_image(trained_tiny, embedded):
    from hvae_lite.explore import class_kept

    class Constant(torch.nn.Module):  # a "judge" that always says 3
        def probabilities(self, images):
            return torch.nn.functional.one_hot(torch.full((len(images),), 3), 10).float()

    images, labels = embedded.test_images[:20], embedded.test_labels[:20]
    kept = class_kept(trained_tiny, Constant(), images, labels, keeps=[0, 2], n_resamples=2, batch_size=7)
    share = (labels == 3).double().mean().item()
    assert set(kept) == {0, 2}
    for mean, stderr in kept.values():
        assert mean == pytest.approx(share) and stderr >= 0


def test_per_layer_temperatures(trained_tiny):
    n = trained_tiny.n_latent_layers
    with seeded(0):
        a = trained_tiny.sample(4, temperature=[1.0] * n)
    with seeded(0):
        b = trained_tiny.sample(4, temperature=1.0)
    assert torch.equal(a, b)
    with pytest.raises(Exception, match="one per latent layer"):
        trained_tiny.sample(2, temperature=[1.0, 0.5])
