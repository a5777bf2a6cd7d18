"""Gaussian helpers and the mixture prior, checked against torch.distributions."""
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from hvae_lite.distributions import DiagonalGaussian, MixturePrior, soft_clamp, sum_except_batch


def _normal(g: DiagonalGaussian) -> Normal:
    return Normal(g.mean.double(), torch.exp(0.5 * g.logvar.double()))


def _random_gaussian(shape, logvar_scale, generator):
    return DiagonalGaussian(torch.randn(shape, generator=generator, dtype=torch.float64) * 3,
                            torch.randn(shape, generator=generator, dtype=torch.float64) * logvar_scale)


@pytest.mark.parametrize("logvar_scale", [0.5, 4.0, 12.0])  # 12: |logvar| up to ~40 (variances 1e-17..1e17)
def test_kl_matches_torch(logvar_scale):
    g = torch.Generator().manual_seed(1)
    q = _random_gaussian((64, 3, 5), logvar_scale, g)
    p = _random_gaussian((64, 3, 5), logvar_scale, g)
    expected = kl_divergence(_normal(q), _normal(p))
    torch.testing.assert_close(q.kl(p), expected, rtol=1e-9, atol=1e-9)
    # Summed over units, as the model uses it: one KL per example.
    torch.testing.assert_close(sum_except_batch(q.kl(p)),
                               kl_divergence(Independent(_normal(q), 2), Independent(_normal(p), 2)))


def test_kl_in_float32_with_extreme_logvar_is_finite_and_accurate():
    q = DiagonalGaussian(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([-30.0, 25.0, 0.0]))
    p = DiagonalGaussian(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([20.0, -28.0, 30.0]))
    kl = q.kl(p)
    assert torch.isfinite(kl).all() and (kl >= 0).all()
    expected = kl_divergence(_normal(q), _normal(p)).float()
    torch.testing.assert_close(kl, expected, rtol=1e-4, atol=1e-3)


def test_kl_of_a_distribution_with_itself_is_zero():
    q = DiagonalGaussian(torch.randn(10), torch.randn(10))
    assert torch.allclose(q.kl(q), torch.zeros(10), atol=1e-6)


@pytest.mark.parametrize("logvar_scale", [0.5, 4.0, 12.0])
def test_log_prob_matches_torch(logvar_scale):
    g = torch.Generator().manual_seed(2)
    q = _random_gaussian((32, 7), logvar_scale, g)
    z = torch.randn(32, 7, generator=g, dtype=torch.float64) * 2
    torch.testing.assert_close(q.log_prob(z), _normal(q).log_prob(z), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(sum_except_batch(q.log_prob(z)), Independent(_normal(q), 1).log_prob(z))


def test_standard_like():
    z = torch.randn(4, 2, 3, 3)
    s = DiagonalGaussian.standard_like(z)
    assert s.mean.shape == s.logvar.shape == z.shape
    torch.testing.assert_close(s.log_prob(z), Normal(0.0, 1.0).log_prob(z))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sample_moments_and_temperature(temperature):
    torch.manual_seed(0)
    mean, logvar = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([0.0, math.log(4.0), math.log(0.25)])
    g = DiagonalGaussian(mean.expand(200_000, 3), logvar.expand(200_000, 3))
    z = g.sample(temperature)
    torch.testing.assert_close(z.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), temperature ** 2 * logvar.exp(), rtol=0.02, atol=0)


def test_zero_temperature_gives_the_mean_and_sampling_is_differentiable():
    mean = torch.randn(5, requires_grad=True)
    logvar = torch.randn(5, requires_grad=True)
    g = DiagonalGaussian(mean, logvar)
    assert torch.equal(g.sample(0.0), mean)
    g.sample().sum().backward()  # reparameterised: gradients reach both parameters
    assert torch.equal(mean.grad, torch.ones(5)) and logvar.grad.abs().sum() > 0


def test_soft_clamp():
    x = torch.tensor([-1e6, -3.0, 0.0, 0.5, 1e6])
    y = soft_clamp(x, 8.0)
    assert y.abs().max() <= 8.0 and y[2] == 0
    assert abs(y[3] - 0.5) < 1e-3  # near identity for small values


def _mixture(n_components=5, dim=3):
    torch.manual_seed(3)
    prior = MixturePrior(n_components, dim)
    with torch.no_grad():  # make weights and scales non-trivial
        prior.logvars.normal_(0, 1)
        prior.logits.normal_(0, 1)
    return prior


def _reference(prior: MixturePrior) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=prior.logits.detach()),
                             Independent(Normal(prior.means.detach(), torch.exp(0.5 * prior.logvars.detach())), 1))


def test_mixture_log_prob_matches_torch():
    prior = _mixture()
    z = torch.randn(50, 3) * 3
    torch.testing.assert_close(prior.log_prob(z).detach(), _reference(prior).log_prob(z), rtol=1e-5, atol=1e-5)


def test_mixture_responsibilities_sum_to_one_and_pick_the_nearest_component():
    prior = _mixture()
    z = torch.randn(50, 3) * 3
    r = prior.responsibilities(z).detach()
    assert r.shape == (50, 5) and (r >= 0).all()
    torch.testing.assert_close(r.sum(1), torch.ones(50))
    # Points at a component's mean, with the components far apart, belong to that component.
    with torch.no_grad():
        prior.means.copy_(torch.arange(5.0)[:, None] * 100)
    assert torch.equal(prior.responsibilities(prior.means.detach()).argmax(1), torch.arange(5))


def test_mixture_sample_per_component_and_overall():
    prior = _mixture()
    torch.manual_seed(0)
    z = prior.sample(20_000, component=2).detach()
    torch.testing.assert_close(z.mean(0), prior.means[2].detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), prior.logvars[2].exp().detach(), rtol=0.05, atol=0)
    z = prior.sample(20_000).detach()
    reference = _reference(prior)
    torch.testing.assert_close(z.mean(0), reference.mean, atol=0.1, rtol=0)
    assert prior.sample(4, temperature=0.0, component=1).detach().eq(prior.means[1].detach()).all()
