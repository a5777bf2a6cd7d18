"""Train the shipped checkpoints with the kit's CLI, then write weights-only copies and manifests.

    PYTHONPATH=. python benchmarks/train_checkpoints.py [--names matryoshka mixture] [--retrain]

Each model is trained by `python -m hvae_lite train ...` (the recipe in hvae_lite.pretrained.RECIPES)
into runs/checkpoints/<name>.pt (full state, resumable); a finished run there is reused unless
--retrain. Then data/checkpoints/<name>.pt (weights only, float32) and <name>.json (the manifest:
command, config, split, seed, epochs, wall-clock, held-out metrics, sha256) are written.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import IWAE_IMAGES, IWAE_K, heldout_metrics, machine, write_json
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.data import load_mnist
from hvae_lite.pretrained import CHECKPOINT_DIR, CHECKPOINT_NAMES, RECIPES, REPO_ROOT, ship_checkpoint

RUN_DIR = Path("runs/checkpoints")  # relative to the repository root, as in the manifest's command


def train(name: str, retrain: bool, threads: int | None) -> float | None:
    """Run the CLI for `name` unless a finished run exists (an unfinished one is resumed);
    returns the wall-clock seconds of this call (None: reused)."""
    recipe, run = RECIPES[name], REPO_ROOT / RUN_DIR / f"{name}.pt"
    command = [sys.executable, *recipe.command(RUN_DIR / f"{name}.pt")[1:]]
    if retrain:
        run.unlink(missing_ok=True)
    elif run.is_file():
        if load_checkpoint(run).epoch >= recipe.train.epochs:
            return None
        command.append("--resume")  # continues to exactly the numbers of an uninterrupted run
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # on a shared, busy machine 1 thread beats 2 (see README)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True)
    return time.perf_counter() - start


def ship(name: str, wall_clock: float | None, k: int, n_iwae: int, threads: int | None) -> dict:
    recipe, run_path = RECIPES[name], REPO_ROOT / RUN_DIR / f"{name}.pt"
    out = CHECKPOINT_DIR / f"{name}.pt"
    digest = ship_checkpoint(run_path, out, dtype=torch.float32)
    shipped = load_checkpoint(out, expected_sha256=digest)
    data = load_mnist("embedded", seed=0)
    metrics = heldout_metrics(shipped.model(), data, k=k, n_iwae=n_iwae)
    history = shipped.history
    manifest = {
        "name": name,
        "file": f"data/checkpoints/{name}.pt",
        "sha256": digest,
        "storage": "model weights only (no optimiser state), float32",
        "command": shlex.join(recipe.command(RUN_DIR / f"{name}.pt")),
        "ship_command": f"python benchmarks/train_checkpoints.py --names {name}"
                        + (f" --threads {threads}" if threads else ""),
        "threads": threads or torch.get_num_threads(),
        "preset": recipe.preset,
        "overrides": recipe.overrides,
        "family": f"width {shipped.config.width}",
        "config": shipped.config.to_dict(),
        "train_config": shipped.train_config,
        "data": {"source": "embedded", "split_seed": 0, "n_train": len(data.train_images),
                 "n_test": len(data.test_images), "binarisation": "dynamic in training; fixed (seed 0) held out"},
        "seed": shipped.train_config["seed"],
        "epochs": shipped.epoch,
        "parameters": sum(v.numel() for v in shipped.model_state.values()),
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_clock_s": wall_clock if wall_clock is not None else sum(r["seconds"] for r in history),
        "wall_clock_note": "measured around the CLI (the last call, if it resumed an interrupted run)"
                           if wall_clock is not None else "sum of the epochs' training time (the run was reused)",
        "machine": machine(),
        "heldout": metrics,
        "history": [{key: r[key] for key in ("epoch", "elbo", "test_elbo", "test_kl", "seconds", "images_per_s")}
                    for r in history],
    }
    write_json(CHECKPOINT_DIR / f"{name}.json", manifest)
    accuracy = f", clustering accuracy {metrics['clustering_accuracy']:.3f}" if "clustering_accuracy" in metrics else ""
    iwae = f", IWAE-{k} NLL {metrics['nll_iwae']:.2f} +- {metrics['nll_iwae_stderr']:.2f} (first {n_iwae})" if k else ""
    print(f"{name}: held-out ELBO {metrics['elbo']:.2f}{iwae}{accuracy}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", default=list(CHECKPOINT_NAMES), choices=CHECKPOINT_NAMES)
    parser.add_argument("--retrain", action="store_true", help="train even if a finished run exists")
    parser.add_argument("--k", type=int, default=IWAE_K, help="IWAE samples (0: no IWAE)")
    parser.add_argument("--threads", type=int, help="torch threads for training and evaluation (default: torch's)")
    parser.add_argument("--n-iwae", type=int, default=IWAE_IMAGES)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.names:
        ship(name, train(name, args.retrain, args.threads), args.k, args.n_iwae, args.threads)


if __name__ == "__main__":
    main()
