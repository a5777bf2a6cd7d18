"""The evaluation protocol of the shipped checkpoints (issue "Models worth learning from").

    PYTHONPATH=. python benchmarks/shipped.py [--names matryoshka matryoshka-ar mixture mlp-vae] [--k 200]

On all 1,000 held-out digits (fixed binarisation, seed 0, fp32): the ELBO and the IWAE-k NLL per
digit (mean +- standard error), the KL per layer and the layers in use (hvae_lite.evaluate.
layers_in_use, with the free-bits floor of training), and paired per-digit differences between
models. Also IWAE-1000 on the first 100 digits (how much a larger k tightens the bound), and the
digit judge on prior samples (temperature 1.0 and 0.8) and on the real held-out digits (the
ceiling). For the mixture model: clustering accuracy and the judge's purity of samples per
component. The floor: a one-layer MLP VAE trained to convergence on the same split.

Each model's per-digit numbers are cached in runs/bench/shipped/ (keyed by the checkpoint's
sha256), so two processes can score different models at once (`--names`, one core each); every
call then assembles benchmarks/results/shipped.json and benchmarks/results/per_digit.json from
whatever is cached. `--quick` scores the fast-mode models on 20 digits (a smoke test).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch

from common import RESULTS_DIR, finished_run, machine, write_json
from hvae_lite.baseline import MLPVAEConfig
from hvae_lite.checkpoints import read_manifest, sha256_of
from hvae_lite.data import load_mnist
from hvae_lite.evaluate import (clustering_accuracy, heldout_elbo_per_image, kmeans_assignments, layers_in_use,
                                mixture_assignments, per_image_scores, prepare_heldout)
from hvae_lite.explore import component_samples
from hvae_lite.judge import judge_images
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_judge, load_or_train
from hvae_lite.recipes import MLP_BASELINE_RECIPE
from hvae_lite.results import mean_stderr, paired_difference
from hvae_lite.rng import seeded
from hvae_lite.train import Trainer

CACHE = BENCH_RUNS_DIR / "shipped"
MODELS = ("matryoshka", "matryoshka-ar", "mixture")
BASELINE = "mlp-vae"
TEMPERATURES = (1.0, 0.8)
N_SAMPLES = 1000
PER_COMPONENT = 100
KMEANS_SEEDS = 5


def mlp_baseline(data, quick: bool, cache_dir: Path):
    """The MLP VAE, trained once into runs/bench/shipped/mlp-vae.pt (resumed if interrupted)."""
    path = cache_dir / f"{'quick-' if quick else ''}mlp-vae.pt"
    recipe = dataclasses.replace(MLP_BASELINE_RECIPE, epochs=2) if quick else MLP_BASELINE_RECIPE
    return finished_run(path, recipe.epochs, data,
                        lambda: Trainer(MLPVAEConfig(), recipe, data, checkpoint_path=path, progress=False))


def sample_verdicts(model, judge, n: int) -> dict[str, Any]:
    """The judge on n prior samples at each temperature (pixel probabilities; binary for an AR head)."""
    verdicts = {}
    for temperature in TEMPERATURES:
        with seeded(0):
            samples = torch.cat([model.sample(min(500, n - done), temperature).cpu() for done in range(0, n, 500)])
        verdicts[f"{temperature:g}"] = judge_images(judge, samples.clamp(0, 1)).to_dict()
    return verdicts


def mixture_structure(model, judge, data, n_per_component: int) -> dict[str, Any]:
    """Clustering accuracy on the held-out digits and the judge's purity of samples per component."""
    x = prepare_heldout(model, data.test_images, 0)
    assignments = mixture_assignments(model, x)
    counts = torch.bincount(assignments, minlength=model.top.mixture.means.shape[0])
    used = [int(c) for c in torch.nonzero(counts >= 0.01 * len(x)).flatten()]  # >= 1 % of the digits
    samples = component_samples(model, n_per_component, seed=0)
    components = []
    for c in range(samples.shape[0]):
        verdict = judge_images(judge, samples[c].clamp(0, 1))
        histogram = verdict.class_histogram
        components.append({"component": c, "weight": torch.softmax(model.top.mixture.logits, 0)[c].item(),
                           "heldout_share": counts[c].item() / len(x), "judge_class": max(range(10), key=histogram.__getitem__),
                           "purity": max(histogram), "confident_fraction": verdict.confident_fraction})
    purity, purity_se = mean_stderr([components[c]["purity"] for c in used])
    return {"clustering_accuracy": clustering_accuracy(assignments, data.test_labels), "n_components": len(components),
            "used_components": used, "purity_mean_used": purity, "purity_stderr_used": purity_se,
            "samples_per_component": n_per_component, "components": components}


def elbo_fields(model, data, floor: float) -> dict[str, Any]:
    """The held-out ELBO (mean +- SE), KL per layer and layers in use: `heldout_elbo_per_image`,
    the definition every manifest and notebook uses."""
    elbo, kl = heldout_elbo_per_image(model, data.test_images, seed=0)
    mean, se = mean_stderr(elbo)
    kl_mean = kl.mean(0).tolist()
    return {"elbo": mean, "elbo_stderr": se, "kl_per_layer": kl_mean, "free_bits_floor": floor,
            "in_use": layers_in_use(kl_mean, floor)}


def kmeans_baseline(data, quick: bool) -> dict[str, Any]:
    """Clustering accuracy of k-means (10 clusters, KMEANS_SEEDS starts) on the top latents of the
    default model and of the mixture model: what the mixture prior must beat."""
    baseline = {"seeds": list(range(KMEANS_SEEDS))}
    for name in ("matryoshka", "mixture"):
        model = load_or_train(name, fast=quick, progress=False).model()
        baseline[name] = [clustering_accuracy(kmeans_assignments(model, data.train_images, data.test_images, seed=seed),
                                              data.test_labels) for seed in baseline["seeds"]]
    return baseline


def refreshed(name: str, result: dict[str, Any], data, quick: bool, cache_dir: Path) -> dict[str, Any]:
    """A cached result with the cheap parts measured again: the ELBO (one pass; its definition is
    the kit's `heldout_elbo_per_image`) and, for the mixture model, the k-means baseline."""
    checkpoint = mlp_baseline(data, quick, cache_dir) if name == BASELINE else load_or_train(name, fast=quick, progress=False)
    result = {**result, **elbo_fields(checkpoint.model(), data, result["free_bits_floor"])}
    if "mixture" in result:
        result["mixture"] = {**result["mixture"], "kmeans": kmeans_baseline(data, quick)}
    return result


def score(name: str, data, judge, k: int, k_big: int, n_big: int, quick: bool, cache_dir: Path) -> dict[str, Any]:
    """Everything measured about one model; cached by the checkpoint's sha256."""
    if name == BASELINE:
        checkpoint = mlp_baseline(data, quick, cache_dir)
        digest, floor, manifest = sha256_of(cache_dir / f"{'quick-' if quick else ''}mlp-vae.pt"), 0.0, {}
    else:
        checkpoint = load_or_train(name, fast=quick, progress=False)
        manifest = {} if quick else read_manifest(name)
        digest = "quick" if quick else manifest["sha256"]
        floor = 0.0 if quick else manifest["heldout"]["free_bits_floor"]
    model = checkpoint.model()
    cache = cache_dir / f"{'quick-' if quick else ''}{name}-k{k}.pt"
    if cache.is_file():
        cached = torch.load(cache, weights_only=True)
        if cached["digest"] == digest:  # the IWAE and sample numbers; the ELBO is one cheap pass, always fresh
            return {**cached["result"], **elbo_fields(model, data, floor)}
    scores = per_image_scores(model, data.test_images, k=k, seed=0)
    nll, nll_se = mean_stderr(scores["nll_iwae"])
    result = {
        "name": name, "parameters": sum(p.numel() for p in model.parameters()),
        **elbo_fields(model, data, floor), "nll_iwae": nll, "nll_iwae_stderr": nll_se, "k": k,
        "n_images": len(data.test_images), "per_digit_nll": scores["nll_iwae"].tolist(),
        "samples": sample_verdicts(model, judge, 50 if quick else N_SAMPLES),
        "train_seconds": manifest.get("train_seconds", sum(r["seconds"] for r in checkpoint.history)),
        "train_seconds_with_base": manifest.get("train_seconds_with_base",
                                                sum(r["seconds"] for r in checkpoint.history)),
        "epochs": checkpoint.epoch,
    }
    if name == "matryoshka":  # how far the k-sample bound is from converged: a bigger k on fewer digits
        big = per_image_scores(model, data.test_images[:n_big], k=k_big, seed=0)["nll_iwae"]
        result["k_gap"] = {"n_images": n_big, "k_small": k, "k_big": k_big,
                           "nll_small": mean_stderr(scores["nll_iwae"][:n_big]),
                           "nll_big": mean_stderr(big),
                           "big_minus_small": paired_difference(big, scores["nll_iwae"][:n_big])}
    if getattr(getattr(model, "top", None), "mixture", None) is not None:
        result["mixture"] = mixture_structure(model, judge, data, 10 if quick else PER_COMPONENT)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"digest": digest, "result": result}, cache)
    return result


def assemble(results: dict[str, dict], judge_real: dict, k: int, quick: bool, out: Path) -> dict[str, Any]:
    """The results file: per model (without per-digit arrays), paired differences, the judge's ceiling."""
    paired = {}
    pairs = [("matryoshka", BASELINE), ("matryoshka-ar", "matryoshka"), ("mixture", "matryoshka")]
    for a, b in pairs:
        if a in results and b in results:
            mean, se = paired_difference(results[a]["per_digit_nll"], results[b]["per_digit_nll"])
            paired[f"{a} - {b}"] = {"nll_difference": mean, "stderr": se,
                                    "meaning": f"IWAE-{k} NLL of {a} minus that of {b}, per digit (negative: {a} is better)"}
    summary = {
        "benchmark": "the shipped checkpoints, full held-out protocol",
        "protocol": {"data": "embedded split, seed 0: 4,000 training / 1,000 held-out digits",
                     "binarisation": "fixed (seed 0)", "precision": "fp32", "k": k,
                     "nll": "IWAE-k bound, negated: an upper bound on -log p(x), in nats",
                     "samples": f"{N_SAMPLES} prior samples per temperature, pixel probabilities (binary for the AR head)",
                     "judge": "confident = top class probability >= 0.9 (hvae_lite.judge)", "quick": quick},
        "judge_on_real_heldout": judge_real,
        "models": {name: {k_: v for k_, v in r.items() if k_ != "per_digit_nll"} for name, r in results.items()},
        "paired": paired,
        "machine": machine(),
    }
    write_json(out, summary)
    write_json(out.with_name("per_digit.json" if not quick else "per_digit_quick.json"),
               {name: r["per_digit_nll"] for name, r in results.items()})
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="*", default=[*MODELS, BASELINE], choices=[*MODELS, BASELINE])
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--k-big", type=int, default=1000)
    parser.add_argument("--n-big", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="fast-mode models, 20 digits, small k (smoke test)")
    parser.add_argument("--structure-only", action="store_true",
                        help="only the mixture model's class structure (no IWAE), into results/mixture.json")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where per-model/per-kind results are cached")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "shipped.json")
    args = parser.parse_args(argv)
    data = load_mnist("embedded", seed=0)
    if args.quick:
        data = data.subset(300, 20)
        args.k, args.k_big, args.n_big = 3, 5, 5
    judge = load_judge(progress=False)
    if args.structure_only:  # minutes, not the hour of IWAE-200: clustering and purity only
        model = load_or_train("mixture", fast=args.quick, progress=False).model()
        structure = mixture_structure(model, judge, data, 10 if args.quick else PER_COMPONENT)
        structure["kmeans"] = kmeans_baseline(data, args.quick)
        write_json(args.out.with_name("mixture.json"), {"mixture": structure, "machine": machine()})
        return structure
    judge_real = judge_images(judge, data.test_images, data.test_labels).to_dict()
    for name in args.names:
        result = score(name, data, judge, args.k, args.k_big, args.n_big, args.quick, args.cache)
        print(f"{name}: ELBO {result['elbo']:.2f} +- {result['elbo_stderr']:.2f}, IWAE-{args.k} NLL "
              f"{result['nll_iwae']:.2f} +- {result['nll_iwae_stderr']:.2f}, in use {sum(result['in_use'])}/"
              f"{len(result['in_use'])}, confident samples {result['samples']['1']['confident_fraction']:.3f}", flush=True)
    prefix = "quick-" if args.quick else ""
    cached = {}
    for name in [*MODELS, BASELINE]:
        path = args.cache / f"{prefix}{name}-k{args.k}.pt"
        if path.is_file():
            cached[name] = refreshed(name, torch.load(path, weights_only=True)["result"], data, args.quick, args.cache)
    return assemble(cached, judge_real, args.k, args.quick, args.out)


if __name__ == "__main__":
    main()
