"""What the notebooks' "train it yourself" recipe reaches (no shipped checkpoint found).

    PYTHONPATH=. python benchmarks/quick_recipe.py [--threads 1]

Trains hvae_lite.recipes.QUICK_RECIPES["matryoshka"] on the embedded split exactly as
`load_or_train` would (into runs/bench/quick/, resumable), then scores it: held-out ELBO, layers
in use, and the digit judge on 1,000 prior samples at temperature 1.0. Writes
benchmarks/results/quick_recipe.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import RESULTS_DIR, machine, write_json
from hvae_lite.evaluate import heldout_elbo, layers_in_use
from hvae_lite.judge import judge_images
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_judge, load_or_train
from hvae_lite.recipes import QUICK_RECIPES, recipe_data
from hvae_lite.rng import seeded


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--runs", type=Path, default=BENCH_RUNS_DIR / "quick")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "quick_recipe.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = QUICK_RECIPES["matryoshka"]
    checkpoint = load_or_train("matryoshka", fast=False, progress=False, checkpoint_dir=args.runs / "none",
                               runs_dir=args.runs)
    model = checkpoint.model()
    data = recipe_data(recipe)
    torch.manual_seed(0)
    elbo, kl = heldout_elbo(model, data.test_images)
    with seeded(0):
        samples = torch.cat([model.sample(500) for _ in range(2)])
    verdict = judge_images(load_judge(progress=False), samples.clamp(0, 1))
    minutes = sum(r["seconds"] for r in checkpoint.history) / 60
    result = {"recipe": recipe.train.to_dict(), "preset": recipe.preset, "epochs": checkpoint.epoch,
              "minutes": minutes, "threads": torch.get_num_threads(), "heldout_elbo": elbo, "kl_per_layer": kl,
              "in_use": layers_in_use(kl, recipe.train.free_bits), "n_samples": len(samples),
              "confident_fraction": verdict.confident_fraction, "confident_stderr": verdict.confident_stderr,
              "class_histogram": verdict.class_histogram, "classifier_score": verdict.classifier_score,
              "machine": machine()}
    write_json(args.out, result)
    print(f"quick recipe: {minutes:.1f} min, held-out ELBO {elbo:.2f}, {sum(result['in_use'])} layers in use, "
          f"confident samples {verdict.confident_fraction:.3f}")
    return result


if __name__ == "__main__":
    main()
