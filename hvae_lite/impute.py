"""Filling in occluded pixels, two ways, and scoring the result.

- Iterative (pseudo-Gibbs) imputation works with any unconditional model: infer z from the
  current image, redraw the missing pixels from p(x | z), keep the observed ones, repeat.
- Conditional imputation uses a model trained for it (config.conditional): its prior sees the
  masked image and the mask, so one pass through the generator gives a sample.
- `missing_log_likelihood` scores either kind: log p(x_missing | x_observed) in nats.
- `occlusion_gallery` completes the same digits under every occlusion kind with each route,
  for a side-by-side figure (`plots.imputation_grid(..., row_labels=...)`).

Images x are (B, C, H, W) as the model wants them (MNIST: (B, 1, 28, 28); CIFAR-10:
(B, 3, 32, 32)). Masks are (B, 1, H, W) floats, 1 = observed, one per image for all its colour
channels, as `data.occlusion_mask` makes them. Samples come back as (B, S, C, H, W): S samples
of each image, observed pixels copied from x.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .baseline import MLPVAE
from .data import MASK_KINDS, heldout_masks, occlusion_mask
from .errors import InputError
from .model import HVAE
from .objectives import iwae_log_likelihood
from .rng import seeded
from .validate import check_images, check_int, check_mask, check_model_images, check_temperature

Model = HVAE | MLPVAE


def _check(model: Model, x: Tensor, observed: Tensor, conditional: bool | None) -> tuple[Tensor, Tensor]:
    """The images and mask, checked (binary images for a Bernoulli model, a 0/1 mask of their shape),
    or an InputError saying what to do if they or the model do not fit the method."""
    x = check_model_images(model, x)
    observed = check_mask(observed, x)
    head = getattr(model, "head", None)
    if head is not None and head.autoregressive:
        raise InputError("imputation needs a factorised head: an autoregressive head cannot condition a pixel "
                         "on observed pixels after it; use a model with ar_layers=0")
    if conditional is not None and model.config.conditional != conditional:
        raise InputError("impute_conditional needs a conditional model (the 'imputation' preset)" if conditional
                         else "a conditional model imputes in one pass: use impute_conditional")
    return x, observed


def _repeat(t: Tensor, n: int) -> Tensor:
    """(B, ...) -> (B * n, ...), copy s of example b at b * n + s."""
    return t.repeat_interleave(n, dim=0)


def _draw(model: Model, params: Tensor, binary: bool) -> Tensor:
    """x ~ p(x | z) given the output parameters (B, C * P, H, W) -> (B, C, H, W); binary=False
    gives the mean."""
    head = getattr(model, "head", None)
    if head is None:  # the MLP baseline: Bernoulli logits
        return torch.bernoulli(torch.sigmoid(params)) if binary else torch.sigmoid(params)
    return head.draw(params) if binary else head.mean(params)


@torch.no_grad()
def impute_iterative(model: Model, x: Tensor, observed: Tensor, n_steps: int = 20, n_samples: int = 1,
                     binary: bool = True, seed: int | None = 0,
                     return_chain: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Pseudo-Gibbs imputation with an unconditional factorised model.

    Missing pixels start as coin flips (binary, as a Bernoulli model expects); each step draws
    z ~ q(z | current image) and then the missing pixels from p(x | z). x: (B, C, H, W), observed:
    (B, 1, H, W) -> samples (B, n_samples, C, H, W); with binary=False the last step returns the
    mean of p(x | z) in the missing pixels (smoother pictures). return_chain: also the image after
    every step, (n_steps, B, n_samples, C, H, W). Coin-flip pixels (0 or 1) are valid values of
    every likelihood, 8-bit ones included.
    """
    x, observed = _check(model, x, observed, conditional=False)
    check_int(n_steps, "n_steps", minimum=1)
    check_int(n_samples, "n_samples", minimum=1)
    device = next(model.parameters()).device
    model.eval()
    x, observed = _repeat(x.to(device), n_samples), _repeat(observed.to(device), n_samples)
    chain = []
    with seeded(seed, device):
        current = observed * x + (1 - observed) * torch.bernoulli(torch.full_like(x, 0.5))
        for step in range(n_steps):
            params = model(current).params  # one posterior sample z, then p(x | z)
            drawn = _draw(model, params, binary or step < n_steps - 1)
            current = observed * x + (1 - observed) * drawn
            chain.append(current)
    shape = (-1, n_samples, *x.shape[1:])
    samples = current.view(shape).cpu()
    if return_chain:
        return samples, torch.stack([c.view(shape) for c in chain]).cpu()
    return samples


@torch.no_grad()
def impute_conditional(model: HVAE, x: Tensor, observed: Tensor, n_samples: int = 1, temperature: float = 1.0,
                       binary: bool = True, seed: int | None = 0) -> Tensor:
    """Samples from a conditional model: z from the prior p(z | masked x, mask), then the missing
    pixels from p(x | z). x: (B, C, H, W), observed: (B, 1, H, W) -> (B, n_samples, C, H, W)."""
    x, observed = _check(model, x, observed, conditional=True)
    check_int(n_samples, "n_samples", minimum=1)
    check_temperature(temperature)
    device = next(model.parameters()).device
    model.eval()
    x, observed = _repeat(x.to(device), n_samples), _repeat(observed.to(device), n_samples)
    with seeded(seed, device):
        features, _ = model.top_down(x.shape[0], observed_x=x, observed=observed, temperature=temperature)
        drawn = model.head.sample(features, binary=binary)
    return (observed * x + (1 - observed) * drawn).view(-1, n_samples, *x.shape[1:]).cpu()


@dataclass(frozen=True)
class OcclusionGallery:
    """Images under several occlusion kinds, completed by each route. Row r shows image
    r // len(kinds) under kinds[r % len(kinds)]: x (R, C, H, W), observed (R, 1, H, W),
    completions route -> (R, S, C, H, W), row_labels (R,) the kind of each row."""
    x: Tensor
    observed: Tensor
    completions: dict[str, Tensor]
    row_labels: list[str]


def occlusion_gallery(models: Mapping[str, Model], images: Tensor, kinds: Sequence[str] = MASK_KINDS,
                      n_samples: int = 2, n_steps: int = 20, seed: int = 0) -> OcclusionGallery:
    """Every image of `images` (N, C, H, W) under every kind of `kinds`, completed by every model:
    a conditional model in one pass (`impute_conditional`), an unconditional one by pseudo-Gibbs
    (`impute_iterative`, n_steps). Completions show pixel probabilities (binary=False); all routes
    see the same masks (seeded). models: route name -> model, e.g. {"iterative": default,
    "conditional": imputer}."""
    if not models:
        raise InputError("give at least one model, e.g. {'iterative': model}")
    if isinstance(kinds, str) or not kinds or any(kind not in MASK_KINDS for kind in kinds):
        raise InputError(f"kinds must be a non-empty list of mask kinds from {MASK_KINDS}, got {kinds!r}")
    shapes = {model.config.image_shape for model in models.values()}
    if len(shapes) > 1:
        raise InputError(f"the models read images of different shapes {sorted(shapes)}: compare models of one data set")
    images = check_images(images, name="images", shape=shapes.pop())  # e.g. (3, 32, 32) for CIFAR-10 models
    n_kinds, size = len(kinds), images.shape[-1]
    x = images.repeat_interleave(n_kinds, dim=0)
    generator = torch.Generator().manual_seed(seed)
    observed = torch.cat([occlusion_mask(kind, 1, size, generator=generator)
                          for _ in range(images.shape[0]) for kind in kinds])
    completions = {}
    for route, model in models.items():
        if model.config.conditional:
            completions[route] = impute_conditional(model, x, observed, n_samples=n_samples, binary=False, seed=seed)
        else:
            completions[route] = impute_iterative(model, x, observed, n_steps=n_steps, n_samples=n_samples,
                                                  binary=False, seed=seed)
    return OcclusionGallery(x, observed, completions, [kinds[r % n_kinds] for r in range(x.shape[0])])


@torch.no_grad()
def missing_log_likelihood(model: Model, x: Tensor, observed: Tensor, k: int = 100, chunk_size: int = 100,
                           seed: int | None = 0, log_px: Tensor | None = None) -> Tensor:
    """log p(x_missing | x_observed) per image, in nats: x (B, C, H, W), observed (B, 1, H, W) -> (B,).

    Conditional model: the IWAE-k bound with the mask (its reconstruction term counts only the
    missing pixels). Unconditional factorised model: IWAE-k of log p(x) minus IWAE-k of
    log p(x_observed) (the missing pixels left out of the reconstruction term). That difference
    of two bounds is an estimate, not a bound; both use the same latent samples (the same seed),
    which cancels most of their noise and, for binary pixels, keeps it <= 0 as a probability's
    log must be. seed=None draws that shared seed from the global RNG. `log_px` (B,): the IWAE-k
    log p(x) already computed with the same seed and k (it does not depend on the mask, so a
    caller scoring many masks computes it once).
    """
    x, observed = _check(model, x, observed, conditional=None)
    check_int(k, "k (importance samples)", minimum=1)
    check_int(chunk_size, "chunk_size", minimum=1)
    if seed is None:  # still one seed for both bounds below
        seed = int(torch.randint(2**62, ()))
    device = next(model.parameters()).device
    model.eval()
    x, observed = x.to(device), observed.to(device)
    if model.config.conditional:
        with seeded(seed, device):
            return iwae_log_likelihood(model, x, k, chunk_size, observed=observed).cpu()
    if log_px is None:
        log_px = full_log_likelihood(model, x, k, chunk_size, seed)
    with seeded(seed, device):
        log_p_observed = iwae_log_likelihood(model, x, k, chunk_size, pixel_mask=observed)
    return log_px.cpu() - log_p_observed.cpu()


@torch.no_grad()
def full_log_likelihood(model: Model, x: Tensor, k: int = 100, chunk_size: int = 100, seed: int = 0) -> Tensor:
    """IWAE-k log p(x) with the latent samples of `seed`: the first term of the unconditional
    `missing_log_likelihood`. (B, C, H, W) -> (B,) on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    with seeded(seed, device):
        return iwae_log_likelihood(model, x.to(device), k, chunk_size).cpu()


def imputation_scores(models: Mapping[str, Model], x: Tensor, kinds: Sequence[str], k: int = 100,
                      seed: int = 0) -> list[dict[str, float | str]]:
    """log p(x_missing | x_observed) of each model under each kind of occlusion, one row per
    (kind, model): kind, model, missing (mean number of missing sub-pixels), nats (mean per image)
    and nats_per_pixel (per missing sub-pixel: a missing RGB pixel counts 3). Every model sees the
    same masks, drawn once per image from `seed` (`data.heldout_masks`). x: (B, C, H, W)."""
    if not models:
        raise InputError("give at least one model, e.g. {'matryoshka': model}")
    if isinstance(kinds, str) or not kinds or any(kind not in MASK_KINDS for kind in kinds):
        raise InputError(f"kinds must be a non-empty list of mask kinds from {MASK_KINDS}, got {kinds!r}")
    rows = []
    for kind in kinds:
        mask = heldout_masks(x.shape[0], x.shape[-1], seed, kind=kind)  # one per image, whatever N
        n_missing = (1 - mask).sum().item() * x.shape[1]
        for name, model in models.items():
            total = missing_log_likelihood(model, x, mask, k=k, seed=seed).sum().item()
            rows.append({"kind": kind, "model": name, "missing": n_missing / x.shape[0],
                         "nats": total / x.shape[0], "nats_per_pixel": total / max(n_missing, 1)})
    return rows
