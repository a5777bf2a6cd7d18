"""Train the shipped checkpoints with the kit's CLI, then write weights-only copies and manifests.

    PYTHONPATH=. python benchmarks/train_checkpoints.py [--names matryoshka mixture] [--retrain] [--threads 1]
    PYTHONPATH=. python benchmarks/train_checkpoints.py --judge     # the digit judge
    PYTHONPATH=. python benchmarks/train_checkpoints.py --names photos photos-ar photos-control photos-imputation \
        --threads 1 --machine-note "..."                             # the natural-image models

Each model is trained by `python -m hvae_lite train ...` (the recipe in hvae_lite.recipes.RECIPES)
into runs/checkpoints/<name>.pt (full state, resumable); a finished run there is reused unless
--retrain. A fine-tune (a recipe with a `base`) needs its base's run first: ask for both, base
first. The study's models ("study-*") are the ablation study's seed-0 runs: with --from-study they
are taken from benchmarks/ablations.py's run folder (after checking that each was trained with its
recipe) instead of being trained again. Then data/checkpoints/<name>.pt (weights only, float16: the
EMA weights when the run kept them; with the recipe's second stage, the top prior fitted to the
training digits) and <name>.json (the manifest: command, config, split, seed, epochs, training time,
held-out ELBO and KL per layer, sha256) are written. The full evaluation protocol is
benchmarks/shipped.py (digits) and benchmarks/photos.py (natural images).
"""
from __future__ import annotations

import argparse
import shutil
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import heldout_metrics, machine, write_json
from hvae_lite.checkpoints import Checkpoint, load_checkpoint, save_checkpoint, sha256_of
from hvae_lite.data import load_data, load_mnist
from hvae_lite.judge import JudgeConfig, judge_images, train_judge
from hvae_lite.paths import CHECKPOINT_DIR, CHECKPOINT_RUNS, REPO_ROOT
from hvae_lite.pretrained import ship_checkpoint
from hvae_lite.config import TrainConfig
from hvae_lite.recipes import CHECKPOINT_NAMES, RECIPES

RUN_DIR = Path(CHECKPOINT_RUNS)  # relative to the repository root, as in the manifest's command
STORAGE = torch.float16  # half the bytes of float32; every number in a manifest is measured on the stored weights
JUDGE_EPOCHS, JUDGE_SEED = 30, 0


def train(name: str, retrain: bool, threads: int | None) -> float | None:
    """Run the CLI for `name` unless a finished run exists (an unfinished one is resumed);
    returns the wall-clock seconds of this call (None: reused)."""
    recipe, run = RECIPES[name], REPO_ROOT / RUN_DIR / f"{name}.pt"
    command = [sys.executable, *recipe.command(RUN_DIR / f"{name}.pt")[1:]]
    if recipe.base is not None and not (REPO_ROOT / recipe.train.init_from).is_file():
        raise SystemExit(f"{name} starts from {recipe.train.init_from}: train {recipe.base} first")
    if retrain:
        run.unlink(missing_ok=True)
    elif run.is_file():
        if load_checkpoint(run).epoch >= recipe.train.epochs:
            return None
        command = [sys.executable, "-m", "hvae_lite", "train", "--out", str(RUN_DIR / f"{name}.pt"),
                   "--quiet", "--resume"]  # continues to exactly the numbers of an uninterrupted run
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # on a shared, busy machine 1 thread beats 2 (see README)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True)
    return time.perf_counter() - start


def from_study(name: str) -> None:
    """Copy the ablation study's seed-0 run of a study model to runs/checkpoints/<name>.pt, after
    checking that it was trained with exactly the recipe (its starting checkpoint aside)."""
    from ablations import run_path  # benchmarks/ablations.py: where the study keeps its runs

    variant = name.removeprefix("study-")
    source, recipe = run_path(variant, 0, quick=False), RECIPES[name]
    run = load_checkpoint(source)
    trained = TrainConfig.from_dict({**run.train_config, "init_from": recipe.train.init_from}).to_dict()
    if run.config != recipe.config or trained != recipe.train.to_dict() or run.epoch < recipe.train.epochs:
        raise SystemExit(f"{source} was not trained with the recipe of {name}: train it with --names {name}")
    target = REPO_ROOT / RUN_DIR / f"{name}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def free_bits_floor(name: str) -> float:
    """The largest free-bits floor the model (and the model it started from) was trained with."""
    recipe = RECIPES[name]
    return max(recipe.train.free_bits, free_bits_floor(recipe.base) if recipe.base else 0.0)


def ship(name: str, wall_clock: float | None, threads: int | None, machine_note: str = "") -> dict:
    recipe, run_path = RECIPES[name], REPO_ROOT / RUN_DIR / f"{name}.pt"
    out = CHECKPOINT_DIR / f"{name}.pt"
    data = load_data(recipe.data, seed=0)
    digest = ship_checkpoint(run_path, out, dtype=STORAGE, prior_images=data.train_images,
                             prior_components=recipe.top_prior_components, seed=recipe.train.seed)
    shipped = load_checkpoint(out, expected_sha256=digest)
    floor = free_bits_floor(name)
    metrics = heldout_metrics(shipped.model(), data, k=0, free_bits_floor=floor)
    history = shipped.history
    own_seconds = sum(r["seconds"] for r in history)
    base_seconds = read_base_seconds(recipe.base)
    manifest = {
        "name": name,
        "file": str(out.relative_to(REPO_ROOT)),
        "sha256": digest,
        "storage": "model weights only (no optimiser state), float16"
                   + ("; the exponential moving average of the weights" if recipe.train.ema_decay else ""),
        "command": shlex.join(recipe.command(RUN_DIR / f"{name}.pt")),
        "second_stage": (f"the top prior fitted to the {len(data.train_images)} training digits: a mixture of "
                         f"{recipe.top_prior_components} full-covariance Gaussians by EM on 10 posterior samples "
                         "per digit (hvae_lite.priors.with_fitted_prior_checkpoint)"
                         if recipe.top_prior_components else None),
        "ship_command": f"python benchmarks/train_checkpoints.py --names {name}"
                        + (f" --threads {threads}" if threads else ""),
        "threads": threads or torch.get_num_threads(),
        "preset": recipe.preset,
        "overrides": recipe.overrides,
        "base": recipe.base,
        "config": shipped.config.to_dict(),
        "train_config": shipped.train_config,
        "data": {"source": recipe.data, "split_seed": data.split_seed, "n_train": len(data.train_images),
                 "n_test": len(data.test_images),
                 **({"binarisation": "dynamic in training; fixed (seed 0) held out"} if shipped.config.likelihood == "bernoulli"
                    else {"pixels": "8-bit levels as they are (no binarisation)"})},
        "seed": shipped.train_config["seed"],
        "epochs": shipped.epoch,
        "parameters": sum(v.numel() for v in shipped.model_state.values()),
        "train_seconds": own_seconds,
        "train_seconds_with_base": own_seconds + base_seconds,
        "wall_clock_s": wall_clock if wall_clock is not None else own_seconds,
        "wall_clock_note": "measured around the CLI (the last call, if it resumed an interrupted run)"
                           if wall_clock is not None else "sum of the epochs' training time (the run was reused)",
        "machine": {**machine(), "note": machine_note} if machine_note else machine(),
        "heldout": metrics,
        "history": [{key: r[key] for key in ("epoch", "elbo", "test_elbo", "test_kl", "kl", "free_bits", "seconds",
                                            "images_per_s") if key in r}
                    for r in history],
    }
    write_json(CHECKPOINT_DIR / f"{name}.json", manifest, allow_shipped=True)
    print(f"{name}: held-out ELBO {metrics['elbo']:.2f}, layers in use {sum(metrics['in_use'])}/{len(metrics['in_use'])}, "
          f"{own_seconds / 60:.0f} min of training (+{base_seconds / 60:.0f} min for its base)")
    return manifest


def read_base_seconds(base: str | None) -> float:
    if base is None:
        return 0.0
    manifest = json.loads((CHECKPOINT_DIR / f"{base}.json").read_text())
    return manifest["train_seconds_with_base"]


def ship_judge(threads: int | None) -> dict:
    """Train the digit judge on the 4,000 training digits only and ship it with its manifest."""
    data = load_mnist("embedded", seed=0)
    config = JudgeConfig()
    start = time.perf_counter()
    judge = train_judge(data.train_images, data.train_labels, epochs=JUDGE_EPOCHS, seed=JUDGE_SEED, config=config)
    seconds = time.perf_counter() - start
    out = CHECKPOINT_DIR / "judge.pt"
    save_checkpoint(Checkpoint(config, judge.state_dict(), {"epochs": JUDGE_EPOCHS, "seed": JUDGE_SEED}), out,
                    allow_shipped=True)
    grey = judge_images(judge, data.test_images, data.test_labels)
    binary = judge_images(judge, torch.bernoulli(data.test_images, generator=torch.Generator().manual_seed(0)),
                          data.test_labels)
    manifest = {
        "name": "judge", "file": str(out.relative_to(REPO_ROOT)), "sha256": sha256_of(out),
        "what": "a CNN digit classifier trained on the 4,000 training digits only (shifts, rotations, scalings, "
                "random binarisation); it scores generated digits",
        "command": "python benchmarks/train_checkpoints.py --judge" + (f" --threads {threads}" if threads else ""),
        "config": config.to_dict(), "epochs": JUDGE_EPOCHS, "seed": JUDGE_SEED, "train_seconds": seconds,
        "machine": machine(),
        "heldout": {"n_images": len(data.test_images), "accuracy_grey": grey.accuracy,
                    "accuracy_binarised": binary.accuracy, "confident_fraction_grey": grey.confident_fraction,
                    "confident_fraction_binarised": binary.confident_fraction,
                    "classifier_score_grey": grey.classifier_score},
    }
    write_json(CHECKPOINT_DIR / "judge.json", manifest, allow_shipped=True)
    print(f"judge: held-out accuracy {grey.accuracy:.3f} (grey) / {binary.accuracy:.3f} (binarised), "
          f"confident on {grey.confident_fraction:.3f} of real held-out digits, {seconds / 60:.1f} min")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="*", default=list(CHECKPOINT_NAMES), choices=CHECKPOINT_NAMES)
    parser.add_argument("--judge", action="store_true", help="train and ship the digit judge (only)")
    parser.add_argument("--retrain", action="store_true", help="train even if a finished run exists")
    parser.add_argument("--threads", type=int, help="torch threads for training and evaluation (default: torch's)")
    parser.add_argument("--from-study", action="store_true",
                        help="take the study-* models from the ablation study's runs instead of training them")
    parser.add_argument("--machine-note", default="", help="how busy the machine was (written into the manifest)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.judge:
        ship_judge(args.threads)
        return
    for name in args.names:
        if args.from_study and name.startswith("study-"):
            from_study(name)
        ship(name, train(name, args.retrain, args.threads), args.threads, args.machine_note)


if __name__ == "__main__":
    main()
