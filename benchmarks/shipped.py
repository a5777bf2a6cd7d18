"""The evaluation protocol of the shipped models.

    PYTHONPATH=. python benchmarks/shipped.py [--names matryoshka mixture mlp-vae] [--k 200]

On all 1,000 held-out digits (fixed binarisation, seed 0, fp32): the ELBO and the IWAE-k NLL per
digit (mean +- standard error), the KL per layer and the layers in use (hvae_lite.evaluate.
layers_in_use, with the free-bits floor of training), and paired per-digit differences between
models. Also IWAE-1000 on the first 100 digits (how much a larger k tightens the bound), and the
digit judge on prior samples under each of SAMPLE_SETTINGS and on the real held-out digits (the
ceiling). The default model is also scored with the standard normal top prior it was trained with
("matryoshka-standard-prior"), so the gain of its second stage (the top prior fitted to the data)
is a paired number. The floor: a one-layer MLP VAE trained to convergence on the same split. Class
structure is benchmarks/class_structure.py's.

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
from hvae_lite.evaluate import heldout_elbo_per_image, layers_in_use, per_image_scores
from hvae_lite.judge import judge_images
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_judge, load_or_train
from hvae_lite.priors import with_standard_top_prior
from hvae_lite.recipes import MLP_BASELINE_RECIPE
from hvae_lite.results import mean_stderr, paired_difference
from hvae_lite.rng import seeded
from hvae_lite.train import Trainer

CACHE = BENCH_RUNS_DIR / "shipped"
MODELS = ("matryoshka", "matryoshka-standard-prior", "mixture")
BASELINE = "mlp-vae"
N_SAMPLES = 1000
# How prior samples are drawn: every layer at temperature 1 (the model's own prior), and the latent
# maps at 0.5 with the top vector at 1 (typical strokes, the top latent's full variety).
SAMPLE_SETTINGS = {"1": lambda n_layers: 1.0, "maps 0.5": lambda n_layers: [1.0] + [0.5] * (n_layers - 1)}


def mlp_baseline(data, quick: bool, cache_dir: Path):
    """The MLP VAE, trained once into runs/bench/shipped/mlp-vae.pt (resumed if interrupted)."""
    path = cache_dir / f"{'quick-' if quick else ''}mlp-vae.pt"
    recipe = dataclasses.replace(MLP_BASELINE_RECIPE, epochs=2) if quick else MLP_BASELINE_RECIPE
    return finished_run(path, recipe.epochs, data,
                        lambda: Trainer(MLPVAEConfig(), recipe, data, checkpoint_path=path, progress=False))


def sample_verdicts(model, judge, n: int) -> dict[str, Any]:
    """The judge on n prior samples under each of SAMPLE_SETTINGS (pixel probabilities; binary for
    an AR head)."""
    verdicts = {}
    for setting, temperature in SAMPLE_SETTINGS.items():
        if model.n_latent_layers == 1 and setting != "1":
            continue  # one latent layer (the MLP): no maps to cool
        with seeded(0):
            samples = torch.cat([model.sample(min(500, n - done), temperature(model.n_latent_layers)).cpu()
                                 for done in range(0, n, 500)])
        verdicts[setting] = judge_images(judge, samples.clamp(0, 1)).to_dict()
    return verdicts


def elbo_fields(model, data, floor: float) -> dict[str, Any]:
    """The held-out ELBO (mean +- SE), KL per layer and layers in use: `heldout_elbo_per_image`,
    the definition every manifest and notebook uses."""
    elbo, kl = heldout_elbo_per_image(model, data.test_images, seed=0)
    mean, se = mean_stderr(elbo)
    kl_mean = kl.mean(0).tolist()
    return {"elbo": mean, "elbo_stderr": se, "kl_per_layer": kl_mean, "free_bits_floor": floor,
            "in_use": layers_in_use(kl_mean, floor)}


def load(name: str, data, quick: bool, cache_dir: Path):
    """(checkpoint, model, digest, free-bits floor, manifest) of a name of MODELS or the baseline."""
    if name == BASELINE:
        checkpoint = mlp_baseline(data, quick, cache_dir)
        return checkpoint, checkpoint.model(), sha256_of(cache_dir / f"{'quick-' if quick else ''}mlp-vae.pt"), 0.0, {}
    shipped = name.removesuffix("-standard-prior")
    checkpoint = load_or_train(shipped, fast=quick, progress=False)
    manifest = {} if quick else read_manifest(shipped)
    model = checkpoint.model()
    if shipped != name:
        model = with_standard_top_prior(model)
    digest = "quick" if quick else manifest["sha256"]
    return checkpoint, model, digest, 0.0 if quick else manifest["heldout"]["free_bits_floor"], manifest


def score(name: str, data, judge, k: int, k_big: int, n_big: int, quick: bool, cache_dir: Path) -> dict[str, Any]:
    """Everything measured about one model; cached by the checkpoint's sha256."""
    checkpoint, model, digest, floor, manifest = load(name, data, quick, cache_dir)
    cache = cache_dir / f"{'quick-' if quick else ''}{name}-k{k}.pt"
    if cache.is_file():
        cached = torch.load(cache, weights_only=True)
        if cached["digest"] == digest:
            return cached["result"]
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
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"digest": digest, "result": result}, cache)
    return result


def assemble(results: dict[str, dict], judge_real: dict, k: int, quick: bool, out: Path) -> dict[str, Any]:
    """The results file: per model (without per-digit arrays), paired differences, the judge's ceiling."""
    paired = {}
    pairs = [("matryoshka", BASELINE), ("matryoshka", "matryoshka-standard-prior"), ("mixture", "matryoshka")]
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
                     "samples": f"{N_SAMPLES} prior samples per setting ('1': every layer at temperature 1; "
                                "'maps 0.5': the top vector at 1, the latent maps at 0.5), pixel probabilities",
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
    parser.add_argument("--cache", type=Path, default=CACHE, help="where per-model/per-kind results are cached")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "shipped.json")
    args = parser.parse_args(argv)
    data = load_mnist("embedded", seed=0)
    if args.quick:
        data = data.subset(300, 20)
        args.k, args.k_big, args.n_big = 3, 5, 5
    judge = load_judge(progress=False)
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
            cached[name] = torch.load(path, weights_only=True)["result"]
    return assemble(cached, judge_real, args.k, args.quick, args.out)


if __name__ == "__main__":
    main()
