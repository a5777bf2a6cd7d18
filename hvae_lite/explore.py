"""What a trained model has learnt, as tensors: layer-by-layer resampling, samples per mixture
component, a 2-D map of the top latents. plots.py draws them; widgets.py puts controls on them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .data import iterate_minibatches
from .errors import InputError
from .evaluate import prepare_heldout
from .model import HVAE, layer_temperatures
from .rng import seeded  # noqa: F401  (re-exported: notebooks and modules import it from here)
from .validate import check_images, check_int, check_model_images, check_temperature


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def layer_resamples(model: HVAE, x: Tensor, keeps: Sequence[int], n_samples: int = 8,
                    temperature: float | Sequence[float] = 1.0, seed: int | None = 0) -> Tensor:
    """For each k in `keeps`, keep the posterior latents of the top k layers of each image and
    sample the layers below from the prior at `temperature` (one, or one per layer).

    x: (B, C, H, W) -> (len(keeps), B, n_samples, C, H, W), e.g. (B, 1, 28, 28) digits or
    (B, 3, 32, 32) colour patches: the mean of p(x | z) (pixel probabilities of a Bernoulli head,
    expected levels of a logistic one; an autoregressive head draws its pixels). k = 0 gives prior
    samples, k = L + 1 = model.n_latent_layers (every layer z_0..z_L kept) reconstructions.
    """
    x = check_model_images(model, x)
    keeps = list(keeps)
    if not keeps:
        raise InputError("keeps is empty: give at least one number of top layers to keep, e.g. [0, 3]")
    for keep in keeps:
        check_int(keep, "each keep (top layers kept)", minimum=0, maximum=model.n_latent_layers)
    check_int(n_samples, "n_samples", minimum=1)
    layer_temperatures(temperature, model.n_latent_layers)
    device = model_device(model)
    x = x.to(device)
    model.eval()
    rows = []
    with seeded(seed, device):
        repeated = x.repeat_interleave(n_samples, dim=0)  # (B * S, ...): sample s of image b at b*S + s
        for keep in keeps:
            rows.append(model.resample_below(repeated, keep, temperature).view(x.shape[0], n_samples, *x.shape[1:]))
    return torch.stack(rows).cpu()


@torch.no_grad()
def class_kept(model: HVAE, judge: torch.nn.Module, images: Tensor, labels: Tensor, keeps: Sequence[int],
               n_resamples: int = 4, temperature: float | Sequence[float] = 1.0, seed: int = 0,
               batch_size: int = 100) -> dict[int, tuple[float, float]]:
    """Which layers hold the class: for each k in `keeps`, keep the top k layers of each image,
    resample the rest `n_resamples` times, and count how often the digit judge still sees the true
    label. Returns {k: (share kept, standard error)}; each image's share of its resamples is one
    observation, so the error counts images, not correlated resamples of one image.
    images: (N, 1, 28, 28) in [0, 1] (binarised with evaluation's fixed seed), labels: (N,)."""
    images = check_model_images(model, prepare_heldout(model, check_images(images, name="images",
                                                                           shape=model.config.image_shape), seed))
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),):
        raise InputError(f"labels must be one per image, shape ({len(images)},), got {tuple(labels.shape)}")
    check_int(n_resamples, "n_resamples", minimum=1)
    kept: dict[int, list[Tensor]] = {}
    for start in range(0, len(images), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        samples = layer_resamples(model, x, keeps, n_resamples, temperature, seed=seed + start)
        for keep, rows in zip(keeps, samples):  # rows: (B, S, C, H, W)
            predicted = judge.probabilities(rows.flatten(0, 1).clamp(0, 1)).argmax(1).view(len(x), n_resamples)
            kept.setdefault(keep, []).append((predicted == y[:, None]).double().mean(1))
    result = {}
    for keep, shares in kept.items():
        share = torch.cat(shares)
        result[keep] = (share.mean().item(), (share.std() / len(share) ** 0.5).item() if len(share) > 1 else float("nan"))
    return result


@torch.no_grad()
def component_samples(model: HVAE, n_per_component: int = 8, temperature: float = 1.0,
                      seed: int | None = 0, components: Sequence[int] | None = None) -> Tensor:
    """Samples whose top latent comes from each mixture component (default: all of them), as
    pixel probabilities: (len(components), n, 1, 28, 28). Component c is drawn with seed + c,
    so its samples do not depend on which other components are asked for."""
    if getattr(getattr(model, "top", None), "mixture", None) is None:
        raise InputError("this model has no mixture prior on its top latent (use the 'mixture' preset)")
    check_int(n_per_component, "n_per_component", minimum=1)
    check_temperature(temperature)
    model.eval()
    device = model_device(model)
    n_components = model.top.mixture.means.shape[0]
    components = range(n_components) if components is None else list(components)
    if len(components) == 0:
        raise InputError(f"components is empty: give some of 0..{n_components - 1}, or None for all")
    for c in components:
        check_int(c, "each component", minimum=0, maximum=n_components - 1)
    rows = []
    for c in components:
        with seeded(None if seed is None else seed + c, device):
            rows.append(model.sample(n_per_component, temperature, component=c))
    return torch.stack(rows).cpu()


@dataclass(frozen=True)
class Embedding:
    """A 2-D PCA map of the top latents and how much of their variance each axis holds."""

    points: Tensor                      # (N, 2): the posterior means projected on the two principal axes
    variance_share: tuple[float, float]  # share of the total variance of the means along axis 1 and axis 2


@torch.no_grad()
def top_latent_pca(model: HVAE, images: Tensor, batch_size: int = 500) -> Embedding:
    """A 2-D map of the top latent: posterior means q(z_0 | x) projected on their two principal
    axes, with the share of the means' variance that each axis holds (what a PCA plot leaves out).

    images: (N, 1, 28, 28) -> Embedding(points (N, 2), variance_share). Exact (SVD, no random
    projection), with each axis's sign fixed so the same model always gives the same picture.
    Needs N >= 2 images in [0, 1] (grey ones get evaluation's fixed binarisation) and a top latent
    of at least 2 dimensions.
    """
    images = prepare_heldout(model, check_images(images, name="images", shape=model.config.image_shape), seed=0)
    if len(images) < 2:
        raise InputError(f"a 2-D map needs at least 2 images, got {len(images)}")
    if model.top.dim < 2:
        raise InputError(f"a 2-D map needs a top latent of at least 2 dimensions; this model's has {model.top.dim}")
    check_int(batch_size, "batch_size", minimum=1)
    model.eval()
    device = model_device(model)
    means = torch.cat([model.encode_top(batch.to(device)).mean.cpu()
                       for batch in iterate_minibatches(images, batch_size, shuffle=False)])
    centred = means.double() - means.double().mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2].T                                               # (D, 2)
    axes = axes * torch.sign(axes[axes.abs().argmax(0), [0, 1]])  # largest loading positive
    variance = singular ** 2                                      # variance along each principal axis (times N - 1)
    total = variance.sum().item()
    share = tuple(float(v / total) if total > 0 else 0.0 for v in variance[:2])
    return Embedding((centred @ axes).float(), share)


def top_latent_embedding(model: HVAE, images: Tensor, batch_size: int = 500) -> Tensor:
    """The points of `top_latent_pca`: (N, 1, 28, 28) images -> (N, 2)."""
    return top_latent_pca(model, images, batch_size).points
