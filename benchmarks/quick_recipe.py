"""What the notebooks' "train it yourself" recipe reaches (no shipped checkpoint found), and how fast.

    PYTHONPATH=. python benchmarks/quick_recipe.py [--threads 2]

Trains hvae_lite.recipes.QUICK_RECIPES["matryoshka"] on the embedded split as `load_or_train` would
(the same recipe, data and second stage; into runs/bench/quick/, resumable), copying the run after
every epoch for the time-to-quality curve (runs/bench/time_to_quality/quick.epochNNN.pt), then
scores the finished model on all 1,000 held-out digits: the ELBO and the IWAE-200 bound per digit,
layers in use, and the digit judge on 1,000 prior samples. The minutes are the run's own wall clock
on `--threads` threads of this (shared) machine. Writes benchmarks/results/quick_recipe.json.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from common import RESULTS_DIR, machine, write_json
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.evaluate import layers_in_use, per_image_scores
from hvae_lite.judge import judge_images
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_judge
from hvae_lite.priors import with_fitted_prior_checkpoint
from hvae_lite.recipes import QUICK_RECIPES, recipe_data
from hvae_lite.results import mean_stderr
from hvae_lite.rng import seeded
from hvae_lite.train import Trainer

K = 200


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--runs", type=Path, default=BENCH_RUNS_DIR / "quick")
    parser.add_argument("--snapshots", type=Path, default=BENCH_RUNS_DIR / "time_to_quality")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "quick_recipe.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = QUICK_RECIPES["matryoshka"]
    data = recipe_data(recipe)
    run = args.runs / "matryoshka.pt"
    args.runs.mkdir(parents=True, exist_ok=True)
    args.snapshots.mkdir(parents=True, exist_ok=True)

    def snapshot(record: dict) -> None:
        shutil.copyfile(run, args.snapshots / f"quick.epoch{record['epoch']:03d}.pt")

    if run.is_file():
        trainer = Trainer.resume(run, data, progress=False, callback=snapshot)
    else:
        trainer = Trainer(recipe.config, recipe.train, data, checkpoint_path=run, progress=False, callback=snapshot)
    trainer.fit()
    checkpoint = with_fitted_prior_checkpoint(load_checkpoint(run), data.train_images, recipe.top_prior_components,
                                              seed=recipe.train.seed)
    model = checkpoint.model()
    scores = per_image_scores(model, data.test_images, k=K, seed=0)
    kl = scores["kl"].mean(0).tolist()
    with seeded(0):
        samples = torch.cat([model.sample(500) for _ in range(2)])
    verdict = judge_images(load_judge(progress=False), samples.clamp(0, 1))
    minutes = sum(r["seconds"] for r in checkpoint.history) / 60
    nll, nll_se = mean_stderr(scores["nll_iwae"])
    result = {"recipe": recipe.train.to_dict(), "preset": recipe.preset, "epochs": checkpoint.epoch,
              "second_stage": f"top prior fitted: {recipe.top_prior_components} full-covariance components",
              "minutes": minutes, "threads": args.threads, "k": K, "nll_iwae": nll, "nll_iwae_stderr": nll_se,
              "heldout_elbo": scores["elbo"].mean().item(), "kl_per_layer": kl,
              "in_use": layers_in_use(kl, recipe.train.free_bits), "n_samples": len(samples),
              "confident_fraction": verdict.confident_fraction, "confident_stderr": verdict.confident_stderr,
              "class_histogram": verdict.class_histogram, "classifier_score": verdict.classifier_score,
              "machine": machine(), "note": "minutes: the run's wall clock on a machine other jobs shared"}
    write_json(args.out, result)
    print(f"quick recipe: {minutes:.1f} min on {args.threads} threads, IWAE-{K} {nll:.2f} +- {nll_se:.2f}, "
          f"{sum(result['in_use'])} layers in use, confident samples {verdict.confident_fraction:.3f}")
    return result


if __name__ == "__main__":
    main()
