"""Class structure without labels: does a model's top latent find the digit classes?

    PYTHONPATH=. python benchmarks/class_structure.py --shipped mixture matryoshka
    PYTHONPATH=. python benchmarks/class_structure.py --checkpoint runs/x.pt --name trial-x
    PYTHONPATH=. python benchmarks/class_structure.py --quick          # tiny models (a smoke test)

For each model, on all 1,000 held-out digits (fixed binarisation): the clustering accuracy of its
mixture components (best one-to-one matching of components to classes; the component of a digit is
the most responsible one at its top-latent posterior mean, and, for comparison, the one with the
highest responsibility averaged over posterior samples), the components in use, the digit judge's
purity of samples per component, and the share of keep-top-k resamples that keep the true class
(which layers hold the class). Beside it, the baselines a mixture must beat, all on the same
top-latent means: k-means (10 restarts), EM with 10 full-covariance Gaussians, chance under one-to-one
matching (random assignments), k-means on the pixels, and how much of the class is there at all: a
logistic-regression probe trained with 10 labels per class (5 draws). And how much a fitted prior's
clustering owes to its EM start: the default's second stage refitted from 10 starts on the same
posterior samples (clustering and training log-likelihood of each). Writes
benchmarks/results/class_structure.json (one entry per model name, merged with what is there).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import machine, write_json
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.data import load_mnist
from hvae_lite.distributions import em_fit
from hvae_lite.evaluate import clustering_accuracy, kmeans_clusters, prepare_heldout, top_latent_means
from hvae_lite.explore import class_kept, component_samples
from hvae_lite.judge import judge_images
from hvae_lite.paths import RESULTS_DIR
from hvae_lite.pretrained import load_judge, load_or_train
from hvae_lite.priors import aggregate_posterior_samples
from hvae_lite.results import mean_stderr
from hvae_lite.rng import seeded

KEEPS = (1, 2, 3, 4, 6, 8, 11)
N_RESAMPLES, PER_COMPONENT, SEEDS, EM_STARTS = 4, 100, range(5), 10


@torch.no_grad()
def assignments(model, images: torch.Tensor, n_samples: int = 0) -> torch.Tensor:
    """Each image's mixture component: most responsible at the posterior mean (n_samples = 0), or
    with the highest responsibility averaged over n_samples posterior samples."""
    mixture = model.top.mixture
    x = prepare_heldout(model, images, 0)
    if n_samples == 0:
        return mixture.responsibilities(top_latent_means(model, images)).argmax(1)
    with seeded(0):
        q = model.encode_top(x)
        total = sum(mixture.responsibilities(q.sample()) for _ in range(n_samples))
    return total.argmax(1)


def baselines(model, data) -> dict[str, Any]:
    """What the top latents hold, found without the model's own prior (and with 100 labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture

    train, test = top_latent_means(model, data.train_images).numpy(), top_latent_means(model, data.test_images).numpy()
    y_train, y_test = data.train_labels.numpy(), data.test_labels.numpy()
    rng = np.random.default_rng(0)
    probe = []
    for seed in SEEDS:  # 10 labelled digits per class, drawn 5 times
        labelled = np.concatenate([rng.choice(np.flatnonzero(y_train == c), 10, replace=False) for c in range(10)])
        probe.append(LogisticRegression(max_iter=5000).fit(train[labelled], y_train[labelled]).score(test, y_test))
    pixels = data.train_images.flatten(1).numpy(), data.test_images.flatten(1).numpy()
    return {
        "kmeans_top_latents": [clustering_accuracy(kmeans_clusters(train, test, seed=s), y_test) for s in SEEDS],
        "gmm_full_top_latents": [clustering_accuracy(GaussianMixture(10, covariance_type="full", reg_covar=1e-4,
                                                                     random_state=s).fit(train).predict(test), y_test)
                                 for s in SEEDS],
        "kmeans_pixels": [clustering_accuracy(kmeans_clusters(*pixels, seed=s), y_test) for s in SEEDS],
        "random_assignments": [clustering_accuracy(np.random.default_rng(s).integers(0, 10, len(y_test)), y_test)
                               for s in SEEDS],
        "probe_10_labels_per_class": probe,
    }


def em_starts(model, data) -> dict[str, list[float]]:
    """The fitted top prior's recipe (the default's second stage: EM for 10 full-covariance Gaussians on
    10 posterior samples per training digit) from each of EM_STARTS starts, on the same samples: the
    held-out clustering of each fit and its training log-likelihood per sample (which picks a start
    without labels). Shows how much of a fitted prior's clustering is its start."""
    z = aggregate_posterior_samples(model, data.train_images, 10, 0).double().numpy()
    test = top_latent_means(model, data.test_images).double().numpy()
    fits = [em_fit(z, 10, "full", seed) for seed in range(EM_STARTS)]
    return {"clustering": [clustering_accuracy(fit.predict(test), data.test_labels.numpy()) for fit in fits],
            "train_log_lik": [float(fit.score(z)) for fit in fits]}


def structure(model, judge, data) -> dict[str, Any]:
    """Clustering, component purity and the class kept by keep-top-k resamples, for one model."""
    result: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    keeps = [k for k in KEEPS if k <= model.n_latent_layers]
    kept = class_kept(model, judge, data.test_images, data.test_labels, keeps, n_resamples=N_RESAMPLES)
    result["class_kept"] = {str(k): {"share": m, "stderr": e} for k, (m, e) in kept.items()}
    if model.top.mixture is not None:
        n = model.top.mixture.n_components
        mean_assign = assignments(model, data.test_images)
        counts = torch.bincount(mean_assign, minlength=n)
        used = [int(c) for c in torch.nonzero(counts >= 0.01 * len(mean_assign)).flatten()]
        samples = component_samples(model, PER_COMPONENT, seed=0)
        components = []
        for c in range(n):
            verdict = judge_images(judge, samples[c].clamp(0, 1))
            histogram = verdict.class_histogram
            components.append({"component": c, "heldout_share": counts[c].item() / len(mean_assign),
                               "judge_class": int(np.argmax(histogram)), "purity": max(histogram)})
        purity, purity_se = mean_stderr([components[c]["purity"] for c in used])
        result.update({
            "clustering_accuracy": clustering_accuracy(mean_assign, data.test_labels),
            "clustering_accuracy_expected": clustering_accuracy(assignments(model, data.test_images, 20),
                                                                 data.test_labels),
            "n_components": n, "used_components": used, "purity_mean_used": purity, "purity_stderr_used": purity_se,
            "samples_per_component": PER_COMPONENT, "components": components})
    result["baselines"] = baselines(model, data)
    result["em_starts"] = em_starts(model, data)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shipped", nargs="*", default=[], help="shipped checkpoint names")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint file (with --name)")
    parser.add_argument("--name", help="the name its results are stored under")
    parser.add_argument("--quick", action="store_true", help="fast-mode models, 100 digits (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "class_structure.json")
    args = parser.parse_args(argv)
    data = load_mnist("embedded", seed=0)
    models = {name: load_or_train(name, fast=args.quick, progress=False).model() for name in args.shipped}
    if args.checkpoint is not None:
        models[args.name or args.checkpoint.stem] = load_checkpoint(args.checkpoint).model()
    if args.quick:
        data = data.subset(300, 100)
        args.out = args.out.with_name("class_structure_quick.json")
    judge = load_judge(progress=False)
    scored = {}
    for name, model in models.items():
        row = scored[name] = structure(model, judge, data)
        print(f"{name}: clustering {row.get('clustering_accuracy', float('nan')):.3f}, class kept at k=1 "
              f"{row['class_kept']['1']['share']:.3f}, k-means on top latents "
              f"{np.mean(row['baselines']['kmeans_top_latents']):.3f}", flush=True)
    # Read the file only now, so two processes scoring different models (minutes each) both keep theirs.
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"models": {}}
    result["models"].update(scored)
    result.update({"protocol": {
        "data": "embedded split, seed 0: 1,000 held-out digits (fixed binarisation, seed 0)",
        "clustering": "best one-to-one matching of components (or clusters) to classes (Hungarian)",
        "class_kept": f"judge's class of {N_RESAMPLES} keep-top-k resamples (lower layers from the prior, T = 1) "
                      "equals the true label; share per digit, mean and SE over digits",
        "purity": f"judge on {PER_COMPONENT} samples per component: share of the most common class",
        "baselines": "on the same top-latent posterior means; 5 seeds each; probe: 10 labels per class, 5 draws",
        "em_starts": f"the fitted prior's recipe (EM, 10 full-covariance Gaussians, 10 posterior samples per "
                     f"training digit, posterior seed 0) from EM starts 0-{EM_STARTS - 1}: held-out clustering at "
                     "the top-latent means and training log-likelihood per sample of each fit"},
        "machine": machine()})
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
