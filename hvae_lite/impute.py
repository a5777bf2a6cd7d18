"""Filling in occluded pixels, two ways, and scoring the result.

- Iterative (pseudo-Gibbs) imputation works with any unconditional model: infer z from the
  current image, redraw the missing pixels from p(x | z), keep the observed ones, repeat.
- Conditional imputation uses a model trained for it (config.conditional): its prior sees the
  masked image and the mask, so one pass through the generator gives a sample.
- `missing_log_likelihood` scores either kind: log p(x_missing | x_observed) in nats.

Masks are (B, 1, 28, 28) floats, 1 = observed, as `data.occlusion_mask` makes them. Samples come
back as (B, S, 1, 28, 28): S samples of each image, observed pixels copied from x.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from .baseline import MLPVAE
from .data import occlusion_mask
from .explore import model_device, seeded
from .model import HVAE
from .objectives import iwae_log_likelihood

Model = HVAE | MLPVAE


def _check(model: Model, x: Tensor, observed: Tensor, conditional: bool | None) -> None:
    """Raise a ValueError saying what to do if the model or mask does not fit the method."""
    if observed.shape != x.shape or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"x and observed must both be (B, 1, 28, 28), got {tuple(x.shape)} "
                         f"and {tuple(observed.shape)}")
    if not ((observed == 0) | (observed == 1)).all():
        raise ValueError("observed must hold only 0 (missing) and 1 (observed); see data.occlusion_mask")
    head = getattr(model, "head", None)
    if head is not None and head.autoregressive:
        raise ValueError("imputation needs a factorised head: an autoregressive head cannot condition a pixel "
                         "on observed pixels after it; use a model with ar_layers=0")
    if conditional is not None and model.config.conditional != conditional:
        raise ValueError("impute_conditional needs a conditional model (the 'imputation' preset)" if conditional
                         else "a conditional model imputes in one pass: use impute_conditional")


def _repeat(t: Tensor, n: int) -> Tensor:
    """(B, ...) -> (B * n, ...), copy s of example b at b * n + s."""
    return t.repeat_interleave(n, dim=0)


def _draw(model: Model, params: Tensor, binary: bool) -> Tensor:
    """x ~ p(x | z) given the head's parameters (B, 1, 28, 28); binary=False gives the mean."""
    mean = torch.sigmoid(params)  # Bernoulli probabilities or Gaussian means alike
    if not binary:
        return mean
    if model.config.likelihood == "bernoulli":
        return torch.bernoulli(mean)
    return (mean + torch.exp(model.head.log_scale) * torch.randn_like(mean)).clamp(0, 1)


@torch.no_grad()
def impute_iterative(model: Model, x: Tensor, observed: Tensor, n_steps: int = 20, n_samples: int = 1,
                     binary: bool = True, seed: int | None = 0,
                     return_chain: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Pseudo-Gibbs imputation with an unconditional factorised model.

    Missing pixels start as coin flips (binary, as a Bernoulli model expects); each step draws
    z ~ q(z | current image) and then the missing pixels from p(x | z). x, observed: (B, 1, 28, 28)
    -> samples (B, n_samples, 1, 28, 28); with binary=False the last step returns the mean of
    p(x | z) in the missing pixels (smoother pictures). return_chain: also the image after every
    step, (n_steps, B, n_samples, 1, 28, 28).
    """
    _check(model, x, observed, conditional=False)
    if n_steps < 1 or n_samples < 1:
        raise ValueError(f"n_steps and n_samples must be >= 1, got {n_steps} and {n_samples}")
    device = model_device(model)
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
    pixels from p(x | z). x, observed: (B, 1, 28, 28) -> (B, n_samples, 1, 28, 28)."""
    _check(model, x, observed, conditional=True)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    device = model_device(model)
    model.eval()
    x, observed = _repeat(x.to(device), n_samples), _repeat(observed.to(device), n_samples)
    with seeded(seed, device):
        features, _ = model.top_down(x.shape[0], observed_x=x, observed=observed, temperature=temperature)
        drawn = model.head.sample(features, binary=binary)
    return (observed * x + (1 - observed) * drawn).view(-1, n_samples, *x.shape[1:]).cpu()


@torch.no_grad()
def missing_log_likelihood(model: Model, x: Tensor, observed: Tensor, k: int = 100, chunk_size: int = 100,
                           seed: int | None = 0, log_px: Tensor | None = None) -> Tensor:
    """log p(x_missing | x_observed) per image, in nats: (B, 1, 28, 28) -> (B,).

    Conditional model: the IWAE-k bound with the mask (its reconstruction term counts only the
    missing pixels). Unconditional factorised model: IWAE-k of log p(x) minus IWAE-k of
    log p(x_observed) (the missing pixels left out of the reconstruction term). That difference
    of two bounds is an estimate, not a bound; both use the same latent samples (the same seed),
    which cancels most of their noise and, for binary pixels, keeps it <= 0 as a probability's
    log must be. seed=None draws that shared seed from the global RNG. `log_px` (B,): the IWAE-k
    log p(x) already computed with the same seed and k (it does not depend on the mask, so a
    caller scoring many masks computes it once).
    """
    _check(model, x, observed, conditional=None)
    if seed is None:  # still one seed for both bounds below
        seed = int(torch.randint(2**62, ()))
    device = model_device(model)
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
    `missing_log_likelihood`. (B, 1, 28, 28) -> (B,) on the CPU."""
    device = model_device(model)
    model.eval()
    with seeded(seed, device):
        return iwae_log_likelihood(model, x.to(device), k, chunk_size).cpu()


def imputation_scores(models: Mapping[str, Model], x: Tensor, kinds: Sequence[str], k: int = 100,
                      seed: int = 0) -> list[dict[str, float | str]]:
    """log p(x_missing | x_observed) of each model under each kind of occlusion, one row per
    (kind, model): kind, model, missing (mean number of missing pixels), nats (mean per image)
    and nats_per_pixel. Every model sees the same seeded masks. x: (B, 1, 28, 28)."""
    rows = []
    for kind in kinds:
        mask = occlusion_mask(kind, x.shape[0], generator=torch.Generator().manual_seed(seed))
        n_missing = (1 - mask).sum().item()
        for name, model in models.items():
            total = missing_log_likelihood(model, x, mask, k=k, seed=seed).sum().item()
            rows.append({"kind": kind, "model": name, "missing": n_missing / x.shape[0],
                         "nats": total / x.shape[0], "nats_per_pixel": total / max(n_missing, 1)})
    return rows
