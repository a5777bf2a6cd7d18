"""Held-out evaluation: ELBO, IWAE-k NLL, per-layer KL, which layers are in use, active units, clustering accuracy."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .data import fixed_binarize, heldout_masks, iterate_minibatches
from .errors import InputError
from .model import HVAE
from .objectives import bits_per_dim, iwae_log_likelihood
from .results import mean_stderr
from .rng import seeded
from .validate import check_images, check_int, check_model_images


@torch.no_grad()
def heldout_elbo_per_image(model: HVAE, images: torch.Tensor, seed: int = 0,
                           batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out ELBO of each image (N,) and its KL per layer (N, L), in nats, fp32: the
    evaluation binarisation and the latent draws both come from `seed` (the caller's random
    state is left alone), so every notebook, manifest and benchmark that scores the same model
    on the same images gets the same numbers. images: (N, C, H, W) in [0, 1]."""
    images = check_images(images, name="images", shape=model.config.image_shape)
    check_int(batch_size, "batch_size", minimum=1)
    model.eval()
    device = next(model.parameters()).device
    x_all, masks = prepare_heldout(model, images, seed), heldout_observed(model, len(images), seed)
    elbos, kls = [], []
    with seeded(seed, device):
        for start in range(0, len(x_all), batch_size):
            x = x_all[start:start + batch_size].to(device)
            out = model(x, _slice(masks, start, len(x), device))
            elbos.append(out.elbo.double().cpu())
            kls.append(out.kl.double().cpu())
    return torch.cat(elbos), torch.cat(kls)


def heldout_elbo(model: HVAE, images: torch.Tensor, seed: int = 0, batch_size: int = 500) -> tuple[float, list[float]]:
    """Mean held-out ELBO (nats) and mean KL per layer: the means of `heldout_elbo_per_image`."""
    elbo, kl = heldout_elbo_per_image(model, images, seed, batch_size)
    return elbo.mean().item(), kl.mean(0).tolist()


def prepare_heldout(model: HVAE, images: torch.Tensor, seed: int) -> torch.Tensor:
    """Held-out images as the likelihood wants them: a fixed binarisation for a Bernoulli model
    (binary images pass unchanged). Every function that scores a data set goes through here."""
    if model.config.likelihood == "bernoulli":
        return fixed_binarize(images, seed)
    return images


def heldout_observed(model: HVAE, n_images: int, seed: int) -> torch.Tensor | None:
    """The occlusion masks a conditional model is scored with (None for any other model): drawn
    once per image from `seed` (`data.heldout_masks`), so image i keeps its mask whatever the batch
    size or the number of images. Every function that scores a data set goes through here."""
    if not model.config.conditional:
        return None
    return heldout_masks(n_images, model.config.image_shape[-1], seed)


def _slice(masks: torch.Tensor | None, start: int, n: int, device: torch.device) -> torch.Tensor | None:
    return None if masks is None else masks[start:start + n].to(device)


# IWAE forward passes of 25 images x 10 importance samples: on a CPU about twice as fast per sample
# as 100 x 100 (a 10,000-image batch whose activations do not fit the caches; measured 11 s against
# 20 s for IWAE-100 on 20 digits with the default model, one thread). The memory of one pass is small.
EVAL_BATCH, EVAL_CHUNK = 25, 10


@torch.no_grad()
def per_image_scores(model: HVAE, images: Tensor, k: int, batch_size: int = EVAL_BATCH, chunk_size: int = EVAL_CHUNK,
                     seed: int = 0, progress: bool = False) -> dict[str, Tensor]:
    """Per held-out image, in fp32 on a fixed (seeded) binarisation: `elbo` (N,), `nll_iwae` (N,)
    (the IWAE-k bound, negated: an upper bound on -log p(x)) and `kl` (N, n_layers).
    Each forward pass holds batch_size * chunk_size copies of images (see EVAL_BATCH).

    Per-image values let two models be compared digit by digit (`results.compare_paired`).
    """
    images = check_images(images, name="images", shape=model.config.image_shape)
    for name, value in (("k (importance samples)", k), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        check_int(value, name, minimum=1)
    elbo, kl = heldout_elbo_per_image(model, images, seed)  # the one held-out ELBO of the kit
    device = next(model.parameters()).device
    x_all, masks = prepare_heldout(model, images, seed), heldout_observed(model, len(images), seed)
    starts = range(0, len(x_all), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"IWAE-{k}")
    log_likelihoods = []
    with seeded(seed, device):
        for start in starts:
            x = x_all[start:start + batch_size].to(device)
            log_likelihoods.append(iwae_log_likelihood(model, x, k, chunk_size, _slice(masks, start, len(x), device)).cpu())
    return {"elbo": elbo, "nll_iwae": -torch.cat(log_likelihoods).double(), "kl": kl}


@torch.no_grad()
def evaluate(model: HVAE, images: Tensor, k: int = 1000, batch_size: int = EVAL_BATCH, chunk_size: int = EVAL_CHUNK,
             seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """The kit's held-out metrics, in fp32, on a fixed (seeded) binarisation of `images`.

    Returns nats (positive NLLs): elbo (mean, negative), nll_iwae (IWAE-k) with its standard
    error over examples, bits_per_dim (the IWAE NLL per sub-pixel, in bits: the usual unit for
    8-bit images), kl per layer, active units per layer.
    """
    images = check_images(images, name="images", shape=model.config.image_shape)  # numpy arrays too
    scores = per_image_scores(model, images, k, batch_size, chunk_size, seed, progress)
    nll, nll_stderr = mean_stderr(scores["nll_iwae"])
    with seeded(seed, next(model.parameters()).device):
        units = active_units(model, prepare_heldout(model, images, seed), batch_size=batch_size, seed=seed)
    return {
        "n_images": len(images),
        "k": k,
        "elbo": scores["elbo"].mean().item(),
        "nll_iwae": nll,
        "nll_iwae_stderr": nll_stderr if len(images) > 1 else None,  # None (valid JSON): one image
        "bits_per_dim": bits_per_dim(nll, math.prod(model.config.image_shape)),
        "kl_per_layer": scores["kl"].mean(0).tolist(),
        "active_units": units,
    }


IN_USE_MIN_KL = 1.0        # nats: a layer carrying less than this is not "in use"
IN_USE_ABOVE_FLOOR = 0.5   # nats above the free-bits floor it was trained with


def layers_in_use(kl_per_layer: list[float] | Tensor, free_bits_floor: float = 0.0) -> list[bool]:
    """The kit's one definition of a latent layer in use: its held-out KL is at least 1 nat AND at
    least 0.5 nats above the free-bits floor it was trained with (the largest floor of the run).

    A layer sitting on the free-bits floor is held there by the training loss, not by the data,
    so it does not count.
    """
    kl = [float(v) for v in (kl_per_layer.tolist() if isinstance(kl_per_layer, Tensor) else kl_per_layer)]
    if free_bits_floor < 0 or not math.isfinite(free_bits_floor):
        raise InputError(f"free_bits_floor must be a finite number >= 0, got {free_bits_floor}")
    return [v >= IN_USE_MIN_KL and v >= free_bits_floor + IN_USE_ABOVE_FLOOR for v in kl]


@torch.no_grad()
def active_units(model: HVAE, x: Tensor, threshold: float = 0.01, batch_size: int = 500,
                 seed: int = 0) -> list[int]:
    """Per latent layer, how many units' posterior means vary across the data (Cov_x E_q[z] > threshold).

    A unit whose posterior mean ignores x carries no information: Burda et al.'s measure.
    The conv layers' posteriors depend on the samples above them; we take one sample, as in training
    (from the caller's random state; `evaluate` seeds it). x: (N, C, H, W), binary for a Bernoulli
    model; a conditional model sees the held-out masks of `seed` (`heldout_observed`).
    """
    x = check_model_images(model, x)
    check_int(batch_size, "batch_size", minimum=1)
    device = next(model.parameters()).device
    masks = heldout_observed(model, len(x), seed)
    means: list[list[Tensor]] = [[] for _ in range(model.n_latent_layers)]
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size].to(device)
        out = model(batch, _slice(masks, start, len(batch), device))
        for i, layer in enumerate(out.layers):
            means[i].append(layer.posterior.mean.flatten(1).cpu())
    if len(x) == 1:  # one image: no unit can vary (and torch's unbiased variance would be NaN)
        return [0] * len(means)
    return [int((torch.cat(m).var(0) > threshold).sum()) for m in means]


@torch.no_grad()
def top_latent_means(model: HVAE, images: Tensor, batch_size: int = 500) -> Tensor:
    """Posterior means of the top latent, images (N, C, H, W) in [0, 1] (grey ones get evaluation's
    fixed binarisation) -> (N, D), on the CPU."""
    images = prepare_heldout(model, check_images(images, name="images", shape=model.config.image_shape), seed=0)
    check_int(batch_size, "batch_size", minimum=1)
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.encode_top(batch.to(device)).mean.cpu()
                      for batch in iterate_minibatches(images, batch_size, shuffle=False)])


@torch.no_grad()
def mixture_assignments(model: HVAE, images: Tensor, batch_size: int = 500) -> Tensor:
    """The mixture component each image's top latent (posterior mean) most likely came from:
    images (N, 1, 28, 28) in [0, 1] (grey ones get evaluation's fixed binarisation) -> (N,)."""
    if getattr(getattr(model, "top", None), "mixture", None) is None:
        raise InputError("this model has no mixture prior on its top latent (use top_prior='mixture')")
    device = next(model.parameters()).device
    z = top_latent_means(model, images, batch_size)
    return torch.cat([model.top.mixture.responsibilities(chunk.to(device)).argmax(1).cpu()
                      for chunk in z.split(batch_size)])


def kmeans_clusters(train: np.ndarray, points: np.ndarray, n_clusters: int = 10, seed: int = 0,
                    restarts: int = 10) -> np.ndarray:
    """k-means (scikit-learn) on `train` (N_train, D), run to convergence from `restarts` k-means++
    starts drawn from `seed`, keeping the start with the smallest within-cluster sum of squares (k-means's
    own objective: no labels); each row of `points` (N, D) goes to its nearest centre -> (N,) indices.
    The one k-means of the kit (notebook 6's baseline and benchmarks/class_structure.py)."""
    from sklearn.cluster import KMeans

    check_int(n_clusters, "n_clusters", minimum=1)
    check_int(restarts, "restarts", minimum=1)
    if len(train) < n_clusters:
        raise InputError(f"k-means needs at least n_clusters = {n_clusters} training points, got {len(train)}")
    return KMeans(n_clusters, n_init=restarts, random_state=seed).fit(train).predict(points)


def kmeans_assignments(model: HVAE, train_images: Tensor, images: Tensor, n_clusters: int = 10,
                       seed: int = 0) -> Tensor:
    """Clusters without a mixture prior, for comparison with `mixture_assignments`: `kmeans_clusters`
    on the top-latent posterior means of `train_images`; each of `images` goes to its nearest centre.
    (N_train, C, H, W), (N, C, H, W) -> (N,) cluster indices."""
    train = top_latent_means(model, train_images).numpy()
    return torch.from_numpy(kmeans_clusters(train, top_latent_means(model, images).numpy(), n_clusters, seed)).long()


def clustering_accuracy(assignments: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian algorithm).

    With more clusters than labels, unmatched clusters count as errors.
    """
    assignments, labels = np.asarray(assignments), np.asarray(labels)
    if assignments.shape != labels.shape or assignments.ndim != 1 or len(labels) == 0:
        raise InputError(f"need two equal-length, non-empty 1-D arrays, got {assignments.shape} and {labels.shape}")
    for name, values in (("assignments", assignments), ("labels", labels)):
        if values.dtype.kind not in "iu" or values.min() < 0:
            raise InputError(f"{name} must be non-negative integers (cluster and class indices), got {values.dtype} "
                             f"values from {values.min()} to {values.max()}")
    # Only the values that occur matter: renumber them 0..n-1, so a label of 10**9 costs nothing.
    cluster_ids, clusters = np.unique(assignments, return_inverse=True)
    label_ids, classes = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(cluster_ids), len(label_ids)), dtype=np.int64)
    np.add.at(counts, (clusters, classes), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))
