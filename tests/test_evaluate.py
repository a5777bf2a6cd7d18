"""Held-out evaluation: metrics, active units, mixture assignments, clustering accuracy."""
import math

import numpy as np
import pytest
import torch

from hvae_lite.config import get_preset
from hvae_lite.data import fixed_binarize, heldout_masks
from hvae_lite.distributions import DiagonalGaussian
from hvae_lite.evaluate import (active_units, clustering_accuracy, evaluate, heldout_elbo, heldout_elbo_per_image,
                                heldout_observed, kmeans_assignments, kmeans_clusters, mixture_assignments, per_image_scores,
                                top_latent_means)
from hvae_lite.model import HVAE
from hvae_lite.objectives import bits_per_dim


@pytest.fixture(scope="module")
def grey_images(embedded):
    return embedded.test_images[:12]


def test_evaluate_fields_and_consistency(trained_tiny, grey_images):
    metrics = evaluate(trained_tiny, grey_images, k=20, batch_size=5, chunk_size=8)
    assert set(metrics) == {"n_images", "k", "elbo", "nll_iwae", "nll_iwae_stderr", "bits_per_dim",
                            "kl_per_layer", "active_units"}
    assert metrics["n_images"] == 12 and metrics["k"] == 20
    assert metrics["elbo"] < 0 < metrics["nll_iwae"]
    assert metrics["nll_iwae"] < -metrics["elbo"]  # IWAE-20 is a tighter bound than the ELBO
    assert 0 < metrics["nll_iwae_stderr"] < metrics["nll_iwae"]
    assert metrics["bits_per_dim"] == pytest.approx(bits_per_dim(metrics["nll_iwae"]))
    assert len(metrics["kl_per_layer"]) == len(metrics["active_units"]) == trained_tiny.n_latent_layers
    assert all(kl > -1e-4 for kl in metrics["kl_per_layer"])
    # Seeded: the same call gives the same numbers, whatever the global RNG did in between.
    torch.manual_seed(123)
    assert evaluate(trained_tiny, grey_images, k=20, batch_size=5, chunk_size=8) == metrics


@pytest.mark.filterwarnings("ignore:var\\(\\)")  # active units of one image: none
def test_evaluate_stderr_of_one_image_is_none_and_bad_images_raise(trained_tiny, grey_images):
    one = evaluate(trained_tiny, grey_images[:1], k=2)
    assert one["nll_iwae_stderr"] is None and one["active_units"] == [0] * trained_tiny.n_latent_layers
    with pytest.raises(ValueError, match="images must have shape"):
        evaluate(trained_tiny, grey_images.view(-1, 784), k=2)


def test_evaluate_conditional_model(grey_images):
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", conditional=True))
    metrics = evaluate(model, grey_images[:4], k=3)
    assert math.isfinite(metrics["nll_iwae"]) and metrics["nll_iwae"] > 0


def test_heldout_elbo(trained_tiny, grey_images):
    elbo, kl = heldout_elbo(trained_tiny, grey_images, batch_size=5)
    assert isinstance(elbo, float) and elbo < 0 and len(kl) == trained_tiny.n_latent_layers
    metrics = evaluate(trained_tiny, grey_images, k=1)
    assert elbo == pytest.approx(metrics["elbo"], abs=5.0)  # both are one-sample ELBOs of the same images


def test_active_units_counts_the_units_whose_posterior_mean_varies(digits):
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny")).eval()
    # A fresh model's zero-initialised heads make every conv posterior equal to its N(0, I) prior.
    # Let only 3 of the 4 top units (and 1 of the 2 channels of the first map) read x.
    with torch.no_grad():
        model.top.posterior_head.weight[:3].mul_(1000)  # bottom-up features vary little at init
        model.top.posterior_head.weight[3:].zero_()
        model.top.posterior_head.bias.zero_()
        model.layers[0].posterior_head.weight[0].normal_(0, 1.0)
    counts = active_units(model, digits, batch_size=7)
    assert counts[0] == 3
    assert counts[1] == 7 * 7  # channel 0: one unit per position of the 7x7 map
    assert counts[2:] == [0] * (model.n_latent_layers - 2)
    assert active_units(model, digits, threshold=1e9) == [0] * model.n_latent_layers


def test_mixture_assignments(digits, trained_tiny):
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", top_prior="mixture", mixture_components=3)).eval()
    assignments = mixture_assignments(model, digits, batch_size=5)
    assert assignments.shape == (16,) and assignments.dtype == torch.long
    assert 0 <= assignments.min() and assignments.max() < 3
    z = model.encode_top(digits).mean
    assert torch.equal(assignments, model.top.mixture.responsibilities(z).argmax(1))
    with pytest.raises(ValueError, match="no mixture prior"):
        mixture_assignments(trained_tiny, digits)


def test_kmeans_assignments_separate_clearly_different_images(trained_tiny, digits):
    blank, strokes = torch.zeros(10, 1, 28, 28), digits[:10]
    images, labels = torch.cat([blank, strokes]), torch.tensor([0] * 10 + [1] * 10)
    assert top_latent_means(trained_tiny, images).shape == (20, trained_tiny.config.top_latent_dim)
    assignments = kmeans_assignments(trained_tiny, images, images, n_clusters=2, seed=0)
    assert assignments.shape == (20,) and clustering_accuracy(assignments, labels) == 1.0
    assert torch.equal(assignments, kmeans_assignments(trained_tiny, images, images, n_clusters=2, seed=0))
    with pytest.raises(ValueError, match="at least n_clusters"):
        kmeans_assignments(trained_tiny, images[:3], images, n_clusters=5)


def test_kmeans_clusters_keeps_the_best_of_its_restarts():
    # Ten overlapping blobs: single k-means++ starts end in different local optima; the best of ten
    # restarts (smallest within-cluster sum of squares) is at least as good as a typical single start.
    rng = np.random.default_rng(0)
    points = np.concatenate([c + 0.5 * rng.standard_normal((40, 2)) for c in rng.uniform(0, 10, (10, 2))])

    def within(assignment):
        return sum(((points[assignment == c] - points[assignment == c].mean(0)) ** 2).sum() for c in np.unique(assignment))

    singles = sorted(within(kmeans_clusters(points, points, 10, seed=s, restarts=1)) for s in range(10))
    best = kmeans_clusters(points, points, 10, seed=0, restarts=10)
    assert singles[-1] > singles[0] + 1 and within(best) <= singles[len(singles) // 2]
    assert np.array_equal(best, kmeans_clusters(points, points, 10, seed=0, restarts=10))
    with pytest.raises(ValueError, match="restarts"):
        kmeans_clusters(points, points, restarts=0)



def test_clustering_accuracy_perfect_under_any_permutation():
    labels = np.repeat(np.arange(10), 5)
    permutation = np.random.default_rng(0).permutation(10)
    assert clustering_accuracy(permutation[labels], labels) == 1.0
    assert clustering_accuracy(torch.as_tensor(permutation[labels]), torch.as_tensor(labels)) == 1.0


def test_clustering_accuracy_known_confusion():
    # clusters x labels counts: c0 = (2, 1), c1 = (0, 2), c2 = (0, 1). Best match c0->0, c1->1: 4 of 6.
    assignments = [0, 0, 0, 1, 1, 2]
    labels = [0, 0, 1, 1, 1, 1]
    assert clustering_accuracy(assignments, labels) == pytest.approx(4 / 6)
    # One cluster for everything: only its best label counts.
    assert clustering_accuracy([0] * 6, labels) == pytest.approx(4 / 6)
    assert clustering_accuracy([0, 1, 2, 3, 4, 5], labels) == pytest.approx(2 / 6)


@pytest.mark.parametrize("assignments, labels, message", [
    ([0, 1], [0, 1, 1], "equal-length, non-empty 1-D"),
    ([[0, 1]], [[0, 1]], "equal-length, non-empty 1-D"),
    ([], [], "equal-length, non-empty 1-D"),
    ([0, -1], [0, 1], "non-negative integers"),
    ([0.5, 1.0], [0, 1], "non-negative integers"),
])
def test_clustering_accuracy_bad_input(assignments, labels, message):
    with pytest.raises(ValueError, match=message):
        clustering_accuracy(assignments, labels)


def test_layers_in_use_is_one_definition():
    from hvae_lite.evaluate import layers_in_use
    # A layer on (or just above) a 0.5-nat free-bits floor is not in use; 1 nat is needed even without one.
    assert layers_in_use([6.8, 0.5, 0.9, 1.0, 1.2], free_bits_floor=0.5) == [True, False, False, True, True]
    assert layers_in_use([0.99, 1.0], free_bits_floor=0.0) == [False, True]
    assert layers_in_use(torch.tensor([2.0, 2.4, 2.6]), free_bits_floor=2.0) == [False, False, True]
    with pytest.raises(ValueError, match="free_bits_floor"):
        layers_in_use([1.0], free_bits_floor=-1)


def test_paired_difference_cancels_shared_noise():
    from hvae_lite.results import mean_stderr, paired_difference
    generator = torch.Generator().manual_seed(0)
    shared = 20 * torch.randn(400, generator=generator, dtype=torch.float64)  # per-digit difficulty
    a = 90 + shared + torch.randn(400, generator=generator, dtype=torch.float64)
    b = 92 + shared + torch.randn(400, generator=generator, dtype=torch.float64)
    diff, diff_se = paired_difference(a, b)
    _, a_se = mean_stderr(a)
    assert diff == pytest.approx(-2.0, abs=0.3)
    assert diff_se < a_se / 5
    assert diff_se == pytest.approx(math.sqrt(2 / 400), rel=0.2)
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference(a, b[:10])


def test_per_image_scores_agree_with_evaluate(trained_tiny, grey_images):
    from hvae_lite.evaluate import per_image_scores
    scores = per_image_scores(trained_tiny, grey_images, k=5, batch_size=4, chunk_size=3)
    metrics = evaluate(trained_tiny, grey_images, k=5, batch_size=4, chunk_size=3)
    assert scores["nll_iwae"].shape == scores["elbo"].shape == (len(grey_images),)
    assert scores["nll_iwae"].mean().item() == pytest.approx(metrics["nll_iwae"])


# ----------------------------------------------------------------------------- held-out masks (issue 18)


@pytest.fixture(scope="module")
def conditional_tiny():
    torch.manual_seed(0)
    return HVAE(get_preset("tiny", conditional=True)).eval()


def test_an_images_mask_does_not_depend_on_how_many_images_or_the_batch(conditional_tiny, embedded):
    masks = heldout_masks(600, 28, seed=3)
    assert torch.equal(heldout_masks(7, 28, seed=3), masks[:7])
    assert torch.equal(heldout_masks(300, 28, seed=3)[123], masks[123])
    assert not torch.equal(masks[0], masks[100])  # no period: image 0 and image 100 differ
    assert not torch.equal(heldout_masks(7, 28, seed=4), masks[:7])  # another seed, other masks
    torch.manual_seed(123)  # the caller's random state does not matter
    assert torch.equal(heldout_observed(conditional_tiny, 600, 3), masks)
    assert heldout_observed(HVAE(get_preset("tiny")), 600, 3) is None  # an unconditional model sees every pixel
    # Every kind of gap occurs, each mask as occlusion_mask makes it.
    assert len({tuple(m.flatten().tolist()) for m in masks}) > 100
    assert set(heldout_masks(50, 28, seed=0, kind="center").unique(dim=0).shape[:1]) == {1}


def test_the_heldout_elbo_of_a_conditional_model_does_not_depend_on_the_batch_size(conditional_tiny, embedded, monkeypatch):
    """Only the masks and the binarisation decide it: with the latent noise switched off (every
    sample is its posterior's mean), image i's ELBO is the same for any batch size."""
    images = embedded.test_images[:503]
    monkeypatch.setattr(DiagonalGaussian, "sample", lambda self, temperature=1.0: self.mean)
    per_batch = {b: heldout_elbo_per_image(conditional_tiny, images, seed=5, batch_size=b) for b in (7, 100, 500)}
    for elbo, kl in per_batch.values():
        torch.testing.assert_close(elbo, per_batch[500][0], rtol=0, atol=1e-4)
        torch.testing.assert_close(kl, per_batch[500][1], rtol=0, atol=1e-4)
    monkeypatch.undo()
    # With the noise: the means agree within their Monte Carlo error.
    means = [heldout_elbo(conditional_tiny, images, seed=5, batch_size=b)[0] for b in (7, 100, 500)]
    spread = heldout_elbo_per_image(conditional_tiny, images, seed=5)[0].std().item() / len(images) ** 0.5
    assert max(means) - min(means) < 4 * spread


@pytest.mark.parametrize("conditional", [False, True])
def test_iwae_with_one_sample_is_the_elbo_in_expectation(conditional, embedded):
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", conditional=conditional)).eval()
    images = embedded.test_images[:40]
    elbo = heldout_elbo_per_image(model, images, seed=0)[0]
    # IWAE-1 is one ELBO sample per image: averaged over images and seeds, it estimates the mean ELBO.
    iwae = torch.stack([-per_image_scores(model, images, k=1, seed=s)["nll_iwae"] for s in range(1, 11)])
    difference = iwae.mean(0) - elbo  # per image: only the latent draws differ (same masks, same binarisation)
    assert abs(difference.mean().item()) < 4 * difference.std().item() / len(images) ** 0.5 + 1e-6


def test_active_units_uses_the_callers_seed_for_the_masks(conditional_tiny, embedded, monkeypatch):
    x = fixed_binarize(embedded.test_images[:40], 0)
    seen = []
    forward = HVAE.forward

    def spy(self, x, observed=None, pixel_mask=None):
        seen.append(observed.clone())
        return forward(self, x, observed, pixel_mask)

    monkeypatch.setattr(HVAE, "forward", spy)
    active_units(conditional_tiny, x, batch_size=15, seed=7)
    assert torch.equal(torch.cat(seen), heldout_masks(40, 28, seed=7))
    seen.clear()
    active_units(conditional_tiny, x, seed=8)
    assert torch.equal(torch.cat(seen), heldout_masks(40, 28, seed=8))
