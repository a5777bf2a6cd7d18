"""Training objective (ELBO with KL warm-up and free bits) and the importance-weighted bound."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .model import HVAE, HVAEOutput
from .validate import check_int

N_PIXELS = 28 * 28


def kl_weight(step: int, warmup_steps: int) -> float:
    """KL warm-up: beta grows linearly from near 0 to 1 over `warmup_steps` updates.

    Early on the decoder learns to use the latents before the KL penalty can switch them off.
    """
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def lr_warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate warm-up: the factor on the learning rate of update `step` (0-based), rising
    linearly from 1 / warmup_steps to 1 over the first `warmup_steps` updates (0 = off).

    Adam-type optimisers move every weight by about the learning rate at their first updates (the
    sign of its gradient), in step across a layer's inputs: in wide layers that multiplies the
    outputs. Small first steps let the optimiser's statistics build up before full-size ones.
    """
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def free_bits_at(epoch: float, free_bits: float, start_epoch: float, end_epoch: float) -> float:
    """The free-bits floor at a (fractional) epoch: `free_bits` until `start_epoch`, then falling
    linearly to 0 at `end_epoch` (end_epoch <= 0: kept all along).

    Annealing the floor away lets the optimiser pull every posterior back onto its prior at the
    end of training, so samples from the prior look like the data the posteriors saw.
    """
    if end_epoch <= 0 or epoch <= start_epoch:
        return free_bits
    if epoch >= end_epoch:
        return 0.0
    return free_bits * (end_epoch - epoch) / (end_epoch - start_epoch)


def kl_balance_weights(kl_per_layer: Tensor, units_per_layer: Tensor) -> Tensor:
    """NVAE's KL balancing (Vahdat and Kautz 2020): per-layer weights, mean 1, proportional to each
    layer's KL per unit. (n_layers,), (n_layers,) -> (n_layers,), no gradient.

    A layer that carries little information gets a small weight, so using it is cheap: during
    warm-up this spreads information over all layers instead of a few.
    """
    share = (kl_per_layer.detach().abs() + 0.01) / units_per_layer
    return share / share.mean()


def training_loss(output: HVAEOutput, beta: float = 1.0, free_bits: float = 0.0,
                  kl_weights: Tensor | None = None, top_free_bits: float = 0.0) -> Tensor:
    """Scalar loss: reconstruction + beta * sum_i w_i * max(KL_i, floor_i), batch-averaged.

    Free bits (Kingma et al. 2016; per layer, in nats, on the batch mean) stop the optimiser from
    pushing a layer's KL below the floor, so a layer is not switched off before it has learnt
    something: floor_i = free_bits, and max(free_bits, top_free_bits) for the top vector.
    `kl_weights` (n_layers,) are balancing weights (default all 1). The ELBO reported for
    evaluation is always the plain one in `output.elbo`.
    """
    kl_per_layer = output.kl.mean(0)  # (n_layers,)
    if free_bits > 0 or top_free_bits > 0:
        floors = torch.full_like(kl_per_layer, free_bits)
        floors[0] = max(free_bits, top_free_bits)
        kl_per_layer = torch.maximum(kl_per_layer, floors)
    if kl_weights is not None:
        kl_per_layer = kl_per_layer * kl_weights
    return output.recon.mean() + beta * kl_per_layer.sum()


@torch.no_grad()
def iwae_log_likelihood(model: HVAE, x: Tensor, k: int, chunk_size: int = 100,
                        observed: Tensor | None = None, pixel_mask: Tensor | None = None) -> Tensor:
    """IWAE-k estimate of log p(x) per example: log mean_k exp(log w_k). (B, C, H, W) -> (B,).

    `observed` and `pixel_mask` are passed to the model (see `HVAE.forward`): with a pixel mask
    this estimates the marginal likelihood of the counted pixels only. The k samples are drawn in chunks of `chunk_size` copies of the batch and combined with a
    running logsumexp, so k = 1000 needs the memory of one chunk, not of all k.
    """
    check_int(k, "k (importance samples)", minimum=1)
    check_int(chunk_size, "chunk_size", minimum=1)
    total = None
    done = 0
    while done < k:
        n = min(chunk_size, k - done)
        repeated = x.repeat(n, 1, 1, 1)  # (n*B, ...): sample j of example b sits at j*B + b
        def tile(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat(n, 1, 1, 1)
        log_w = model(repeated, tile(observed), tile(pixel_mask)).log_weight.view(n, x.shape[0])
        chunk_lse = torch.logsumexp(log_w, dim=0)
        total = chunk_lse if total is None else torch.logaddexp(total, chunk_lse)
        done += n
    return total - math.log(k)


def bits_per_dim(nats: Tensor | float, n_dims: int = N_PIXELS) -> Tensor | float:
    """Convert a negative log-likelihood in nats per image to bits per dimension (sub-pixel):
    n_dims = C * H * W of the images (default 784, MNIST)."""
    return nats / (n_dims * math.log(2))
