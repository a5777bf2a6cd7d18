"""Fitting the top prior to where the encoder puts the data (the aggregate posterior).

A VAE trained with a standard-normal top prior rarely fills that prior: the encoder's top latents of
the training digits, pooled (the *aggregate posterior* q(z_0) = mean_x q(z_0 | x)), occupy a
correlated, lumpy region of it, and a prior sample that falls in an empty part (a "hole") decodes to
no digit in particular. Refitting the prior to q(z_0) after training (a mixture of Gaussians, by EM
on posterior samples) fixes both: samples come from where the digits are, and the held-out ELBO
rises, because its top-layer term E_x KL(q(z_0|x) || p) = -H + cross-entropy(q(z_0), p) is exactly
what the fit lowers. The same fit starts a mixture prior that is then trained with the model.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from .checkpoints import Checkpoint
from .data import fixed_binarize, iterate_minibatches
from .errors import ConfigError, InputError
from .model import HVAE
from .rng import seeded
from .validate import check_images, check_int


@torch.no_grad()
def aggregate_posterior_samples(model: HVAE, images: Tensor, samples_per_image: int = 10, seed: int = 0,
                                batch_size: int = 500) -> Tensor:
    """Samples of the top latent from q(z_0 | x) for every image (grey ones get a fixed, seeded
    binarisation): (N * samples_per_image, D), on the CPU."""
    images = check_images(images, name="images", shape=model.config.image_shape)
    check_int(samples_per_image, "samples_per_image", minimum=1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x_all = fixed_binarize(images, seed) if model.config.likelihood == "bernoulli" else images
    samples = []
    with seeded(seed, device):
        for x in iterate_minibatches(x_all, batch_size, shuffle=False):
            posterior = model.encode_top(x.to(device))
            for _ in range(samples_per_image):
                samples.append(posterior.sample().cpu())
    model.train(was_training)
    return torch.cat(samples)


def fit_mixture_to_encoder(model: HVAE, images: Tensor, seed: int = 0, samples_per_image: int = 10) -> None:
    """Fit the model's mixture top prior, in place, to its aggregate posterior on `images` (EM)."""
    mixture = getattr(model.top, "mixture", None)
    if mixture is None:
        raise ConfigError("the model has no mixture top prior (top_prior='mixture') to fit")
    z = aggregate_posterior_samples(model, images, samples_per_image, seed)
    if len(z) < 2 * mixture.n_components:
        raise InputError(f"fitting {mixture.n_components} components needs at least {2 * mixture.n_components} "
                         f"posterior samples, got {len(z)}: give more images")
    mixture.fit(z, seed)


def with_fitted_top_prior(model: HVAE, images: Tensor, n_components: int = 10, covariance: str = "full",
                          seed: int = 0, samples_per_image: int = 10) -> HVAE:
    """A copy of `model` whose top prior is a mixture fitted to its aggregate posterior on `images`;
    every other weight is the model's own. Works for a model trained with any top prior."""
    check_int(n_components, "n_components", minimum=1)
    if model.config.conditional:
        raise ConfigError("a conditional (imputation) model's top prior depends on the observed pixels: "
                          "there is no single top prior to fit")
    config = dataclasses.replace(model.config, top_prior="mixture", mixture_components=n_components,
                                 mixture_covariance=covariance)
    fitted = HVAE(config).to(next(model.parameters()).device)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("top.mixture.")}
    missing, _ = fitted.load_state_dict(own, strict=False)
    if any(not k.startswith("top.mixture.") for k in missing):
        raise ConfigError(f"the fitted copy lacks weights of the model: {missing[:3]}...")
    fit_mixture_to_encoder(fitted, images, seed, samples_per_image)
    return fitted.eval()


def with_fitted_prior_checkpoint(checkpoint: Checkpoint, images: Tensor, n_components: int,
                                 covariance: str = "full", seed: int = 0) -> Checkpoint:
    """A weights-only checkpoint of a trained run (its evaluation weights) whose top prior is a
    mixture fitted to the aggregate posterior on `images` (`with_fitted_top_prior`); the run's
    history and settings are kept. The second stage of the shipped default's recipe."""
    fitted = with_fitted_top_prior(checkpoint.model(), images, n_components, covariance, seed)
    return Checkpoint(fitted.config, fitted.state_dict(), checkpoint.train_config, checkpoint.history,
                      checkpoint.epoch, checkpoint.step, data=checkpoint.data)


def with_standard_top_prior(model: HVAE) -> HVAE:
    """A copy of `model` with the standard normal top prior N(0, I) (the first stage of a model whose
    top prior was fitted afterwards): every weight but the mixture's is the model's own."""
    config = dataclasses.replace(model.config, top_prior="normal", mixture_covariance="diagonal")
    plain = HVAE(config).to(next(model.parameters()).device)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("top.mixture.")})
    return plain.eval()
