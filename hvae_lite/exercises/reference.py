"""Reference answers to the exercises, written the way a student would write them.

Each function is, character for character, the answer cell of a solution notebook in
notebooks/exercises/solutions/ (a test keeps the two identical). The tests also check that
each agrees with the kit's own implementation.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

__all__ = ["reparameterize", "gaussian_kl", "bernoulli_elbo", "iwae_bound", "causal_mask",
           "top_down_update", "merge_step", "clustering_accuracy", "imputation_step", "free_bits_kl"]


def reparameterize(mean, logvar, eps):
    """z = mean + std * eps, with std = exp(logvar / 2). All tensors have the same shape."""
    return mean + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mean_q, logvar_q, mean_p, logvar_p):
    """KL(q || p) of two diagonal Gaussians, summed over all dimensions but the batch: (B, ...) -> (B,)."""
    kl = 0.5 * (logvar_p - logvar_q
                + (torch.exp(logvar_q) + (mean_q - mean_p) ** 2) / torch.exp(logvar_p)
                - 1.0)
    return kl.flatten(1).sum(1)


def bernoulli_elbo(logits, x, kl):
    """ELBO per image: log p(x | z) - sum of the layers' KLs.

    logits, x: (B, 1, H, W) (x binary); kl: (B, n_layers) -> (B,).
    """
    log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return log_px.flatten(1).sum(1) - kl.sum(1)


def iwae_bound(log_weights):
    """IWAE-k bound: log (1/k) sum_j exp(log w_j). log_weights: (k, B) -> (B,)."""
    k = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(k)


def causal_mask(kernel_size, mask_type):
    """(kernel_size, kernel_size) mask of 0s and 1s for a PixelCNN convolution of type "A" or "B"."""
    mask = torch.ones(kernel_size, kernel_size)
    centre = kernel_size // 2
    first_hidden = centre if mask_type == "A" else centre + 1
    mask[centre, first_hidden:] = 0  # the centre row: the current pixel (type A) and everything right
    mask[centre + 1:, :] = 0         # every row below
    return mask


def top_down_update(h, z, g):
    """h_i = h_{i-1} + g([h_{i-1}, z_i]). h: (B, W, R, R), z: (B, C, R, R) -> (B, W, R, R)."""
    return h + g(torch.cat([h, z], dim=1))


def merge_step(h, b, m, r, head):
    """m_i = m_{i-1} + r([h, b, m_{i-1}]); the posterior's (mean, logvar) = head(m_i) split in two.

    h, b, m: (B, W, R, R) -> (m_i (B, W, R, R), mean (B, C, R, R), logvar (B, C, R, R)).
    """
    m_new = m + r(torch.cat([h, b, m], dim=1))
    mean, logvar = head(m_new).chunk(2, dim=1)
    return m_new, mean, logvar


def clustering_accuracy(assignments, labels):
    """Fraction of examples right under the best one-to-one matching of clusters to labels."""
    assignments, labels = np.asarray(assignments), np.asarray(labels)
    counts = np.zeros((assignments.max() + 1, labels.max() + 1))
    np.add.at(counts, (assignments, labels), 1)  # counts[c, l]: examples in cluster c with label l
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def imputation_step(model, x, observed):
    """One pseudo-Gibbs step: infer z from the current guess, redraw the missing pixels from p(x | z).

    x: (B, 1, 28, 28) binary, its missing pixels holding the current guess; observed: 1 = seen.
    """
    with torch.no_grad():
        probs = torch.sigmoid(model(x).params)
    draw = torch.bernoulli(probs)
    return observed * x + (1 - observed) * draw


def free_bits_kl(kl, floor):
    """The KL each layer is charged under free bits: max(batch-mean KL, floor). kl: (B, n_layers) -> (n_layers,)."""
    return torch.clamp(kl.mean(0), min=floor)
