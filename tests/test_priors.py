"""Tests for the full-covariance mixture prior and fitting the top prior to the aggregate posterior."""
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from hvae_lite.config import get_preset
from hvae_lite.distributions import MixturePrior
from hvae_lite.errors import ConfigError, InputError
from hvae_lite.evaluate import heldout_elbo
from hvae_lite.model import HVAE
from hvae_lite.priors import aggregate_posterior_samples, fit_mixture_to_encoder, with_fitted_top_prior


def _full_mixture(n_components=4, dim=3, seed=0):
    torch.manual_seed(seed)
    prior = MixturePrior(n_components, dim, covariance="full")
    with torch.no_grad():
        for parameter in (prior.means, prior.logvars, prior.logits, prior.off_diagonal):
            parameter.normal_()
    return prior


def _reference(prior: MixturePrior) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=prior.logits.detach()),
                             MultivariateNormal(prior.means.detach(), scale_tril=prior.scale_tril().detach()))


def test_full_mixture_log_prob_matches_torch():
    prior = _full_mixture()
    z = torch.randn(64, 3) * 3
    torch.testing.assert_close(prior.log_prob(z).detach(), _reference(prior).log_prob(z), rtol=1e-5, atol=1e-5)


def test_full_mixture_samples_have_the_components_covariance():
    prior = _full_mixture()
    torch.manual_seed(1)
    z = prior.sample(40_000, component=1).detach()
    factor = prior.scale_tril()[1].detach()
    torch.testing.assert_close(torch.cov(z.T), factor @ factor.T, rtol=0.05, atol=0.05)
    assert prior.sample(3, temperature=0.0, component=2).detach().eq(prior.means[2].detach()).all()


def test_only_the_strictly_lower_part_of_off_diagonal_counts():
    prior = _full_mixture()
    z = torch.randn(8, 3)
    before = prior.log_prob(z).detach()
    with torch.no_grad():
        prior.off_diagonal.add_(torch.triu(torch.ones(3, 3)))  # diagonal and upper part: ignored
    torch.testing.assert_close(prior.log_prob(z).detach(), before)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_fit_reaches_the_likelihood_of_the_true_mixture(covariance):
    truth = _full_mixture(3, 2, seed=4)
    if covariance == "diagonal":
        with torch.no_grad():
            truth.off_diagonal.zero_()
    reference = _reference(truth)
    torch.manual_seed(0)
    train, test = reference.sample((6000,)), reference.sample((2000,))
    fitted = MixturePrior(3, 2, covariance=covariance)
    fitted.fit(train, seed=0)
    gap = reference.log_prob(test).mean() - fitted.log_prob(test).detach().mean()
    assert abs(gap.item()) < 0.05  # nats per point: EM finds the generating mixture


def test_unknown_covariance_is_a_config_error():
    with pytest.raises(ConfigError, match="covariance"):
        MixturePrior(2, 2, covariance="spherical")
    with pytest.raises(ConfigError, match="mixture_covariance"):
        get_preset("tiny", mixture_covariance="spherical")


def test_aggregate_posterior_samples_are_seeded_and_shaped(trained_tiny, digits):
    a = aggregate_posterior_samples(trained_tiny, digits[:10], samples_per_image=3, seed=5)
    b = aggregate_posterior_samples(trained_tiny, digits[:10], samples_per_image=3, seed=5)
    assert a.shape == (30, trained_tiny.config.top_latent_dim) and torch.equal(a, b)


def test_fitted_top_prior_keeps_every_other_weight_and_raises_the_elbo(trained_tiny, embedded):
    images = embedded.train_images[:300]
    fitted = with_fitted_top_prior(trained_tiny, images, n_components=3, covariance="full")
    assert fitted.config.top_prior == "mixture" and fitted.config.mixture_covariance == "full"
    own = trained_tiny.state_dict()
    for name, value in fitted.state_dict().items():
        if not name.startswith("top.mixture."):
            assert torch.equal(value, own[name]), name
    # The fit lowers the top layer's cross-entropy term, so the training digits' ELBO rises.
    before, _ = heldout_elbo(trained_tiny, images)
    after, _ = heldout_elbo(fitted, images)
    assert after > before


def test_fitting_needs_a_mixture_and_enough_samples(tiny_model, digits):
    with pytest.raises(ConfigError, match="mixture"):
        fit_mixture_to_encoder(tiny_model, digits[:10])
    mixture_model = HVAE(get_preset("tiny", top_prior="mixture", mixture_components=10))
    with pytest.raises(InputError, match="at least 20"):
        fit_mixture_to_encoder(mixture_model, digits[:1], samples_per_image=1)
    with pytest.raises(ConfigError, match="conditional"):
        with_fitted_top_prior(HVAE(get_preset("tiny", conditional=True)), digits[:10])
