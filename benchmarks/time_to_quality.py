"""Time to quality: held-out IWAE and judge-confident samples against training minutes.

    PYTHONPATH=. python benchmarks/time_to_quality.py --train-mlp   # the MLP VAE's run, with its snapshots
    PYTHONPATH=. python benchmarks/time_to_quality.py --curve NAME [--curve NAME ...]   # score snapshots
    PYTHONPATH=. python benchmarks/time_to_quality.py --speed       # seconds per epoch, side by side
    PYTHONPATH=. python benchmarks/time_to_quality.py --assemble    # the results file and the figure (figures/)

A curve is one training run saved at several epochs (runs/bench/time_to_quality/<curve>.epochNNN.pt,
copies of the run's checkpoint taken as it trained (the default's by hand, the quick recipe's by
benchmarks/quick_recipe.py, the MLP's by `--train-mlp`): each point is the model at that moment of a run
planned for its full length, with its learning-rate schedule, free bits and weight average at that
stage). Each snapshot is scored on the first N_DIGITS held-out digits with IWAE-K (fp32, fixed
binarisation) and by the digit judge on N_SAMPLES prior samples. The minutes axis is the snapshot's
epoch times the seconds per epoch of its recipe measured on two threads (`--speed`: every recipe
timed in one process, interleaved, so the ratios hold on a shared machine; the absolute figures are
only as good as the machine was idle: run it with nothing else running).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from common import machine, write_json
from hvae_lite.baseline import MLPVAEConfig
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.config import TrainConfig
from hvae_lite.data import load_mnist
from hvae_lite.evaluate import per_image_scores
from hvae_lite.judge import judge_images
from hvae_lite.paths import BENCH_RUNS_DIR, FIGURES_DIR, RESULTS_DIR
from hvae_lite.plots import time_to_quality
from hvae_lite.pretrained import load_judge
from hvae_lite.recipes import MLP_BASELINE_RECIPE
from hvae_lite.results import mean_stderr
from hvae_lite.rng import seeded
from hvae_lite.train import Trainer

SNAPSHOTS = BENCH_RUNS_DIR / "time_to_quality"
N_DIGITS, K, N_SAMPLES = 300, 100, 500
FIGURE = FIGURES_DIR / "time_to_quality.png"  # shown in benchmarks/README.md
MLP_SNAPSHOT_EPOCHS = (5, 10, 20, 40, 75, 150, 225, 300)
CURVES = {  # curve name -> what it is
    "default-w32": "the default recipe at width 32 (planned for 280 epochs, stopped after 45)",
    "default-w64": "the default recipe at width 64, the shipped default's own run (130 epochs)",
    "quick": "the quick recipe ('train it yourself')",
    "mlp-vae": "the one-layer MLP VAE baseline (300 epochs)",
}


def snapshots(curve: str) -> list[Path]:
    return sorted(SNAPSHOTS.glob(f"{curve}.epoch*.pt"))


def train_mlp(data) -> None:
    """The MLP baseline's recipe (as benchmarks/shipped.py trains it), snapshots at MLP_SNAPSHOT_EPOCHS."""
    run = SNAPSHOTS / "mlp-vae-run.pt"

    def snapshot(record: dict) -> None:
        if record["epoch"] in MLP_SNAPSHOT_EPOCHS:
            shutil.copyfile(run, SNAPSHOTS / f"mlp-vae.epoch{record['epoch']:03d}.pt")

    if run.is_file():
        trainer = Trainer.resume(run, data, progress=False, callback=snapshot)
    else:
        trainer = Trainer(MLPVAEConfig(), MLP_BASELINE_RECIPE, data, checkpoint_path=run, progress=False,
                          callback=snapshot)
    trainer.fit()


def score_snapshot(path: Path, data, judge) -> dict[str, Any]:
    """IWAE-K on the first N_DIGITS held-out digits and the judge on N_SAMPLES prior samples (cached)."""
    cache = path.with_suffix(f".k{K}n{N_DIGITS}.json")
    if cache.is_file():
        return json.loads(cache.read_text())
    checkpoint = load_checkpoint(path)
    model = checkpoint.model()
    scores = per_image_scores(model, data.test_images[:N_DIGITS], k=K, seed=0)
    nll, nll_se = mean_stderr(scores["nll_iwae"])
    point = {"epoch": checkpoint.epoch, "nll": nll, "nll_stderr": nll_se,
             "elbo_by_epoch": checkpoint.history[-1]["test_elbo"],
             "run_seconds": sum(r["seconds"] for r in checkpoint.history)}
    with seeded(0):
        samples = model.sample(N_SAMPLES).clamp(0, 1)
    verdict = judge_images(judge, samples)
    point.update(confident=verdict.confident_fraction, confident_stderr=verdict.confident_stderr)
    cache.write_text(json.dumps(point))
    return point


def seconds_per_epoch(path: Path, data, threads: int = 2, batches: int = 8) -> float:
    """Seconds one training epoch of the run's recipe takes here, from `batches` timed updates."""
    checkpoint = load_checkpoint(path)
    recipe = TrainConfig.from_dict({**checkpoint.train_config, "init_from": "", "ema_decay": 0.0})
    trainer = Trainer(checkpoint.config, recipe, data, progress=False)
    torch.set_num_threads(threads)
    x = data.train_images[: recipe.batch_size * batches]
    start = time.perf_counter()
    for i in range(batches):
        images = x[i * recipe.batch_size:(i + 1) * recipe.batch_size]
        batch, observed = trainer._batch(images)
        loss, _, _ = trainer._step_fn(batch, observed, 1.0, 0.0)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    per_batch = (time.perf_counter() - start) / batches
    return per_batch * len(data.train_images) / recipe.batch_size


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-mlp", action="store_true", help="train the MLP curve's run (a few minutes)")
    parser.add_argument("--curve", action="append", default=[], choices=sorted(CURVES))
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--assemble", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "time_to_quality.json")
    args = parser.parse_args(argv)
    data = load_mnist("embedded", seed=0)
    judge = load_judge(progress=False)
    speed_file = args.out.with_name("time_to_quality_speed.json")
    if args.train_mlp:
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        train_mlp(data)
    for curve in args.curve:
        for path in snapshots(curve):
            point = score_snapshot(path, data, judge)
            print(f"{curve} epoch {point['epoch']}: IWAE-{K} {point['nll']:.2f} +- {point['nll_stderr']:.2f}, "
                  f"confident {point['confident']:.3f}", flush=True)
    if args.speed:
        rounds = {curve: [] for curve in CURVES if snapshots(curve)}
        for _ in range(3):  # interleaved: each round times every recipe once
            for curve in rounds:
                rounds[curve].append(seconds_per_epoch(snapshots(curve)[0], data))
        write_json(speed_file, {"seconds_per_epoch": {c: min(v) for c, v in rounds.items()}, "rounds": rounds,
                                "threads": 2, "machine": machine(),
                                "note": "min of 3 interleaved rounds of 8 updates each (ratios hold on a shared machine; "
                                        "the absolute figures are as idle as the machine was: benchmarks/README)"})
    if not args.assemble:
        return {}
    speed = json.loads(speed_file.read_text())["seconds_per_epoch"]
    curves = {}
    for curve, what in CURVES.items():
        points = [json.loads(p.with_suffix(f".k{K}n{N_DIGITS}.json").read_text()) for p in snapshots(curve)
                  if p.with_suffix(f".k{K}n{N_DIGITS}.json").is_file()]
        if points and curve in speed:
            for point in points:
                point["minutes_two_threads"] = point["epoch"] * speed[curve] / 60
            curves[curve] = {"what": what, "seconds_per_epoch": speed[curve], "points": points}
    result = {"benchmark": "time to quality", "protocol": {
        "nll": f"IWAE-{K} on the first {N_DIGITS} held-out digits (fp32, fixed binarisation)",
        "samples": f"digit judge on {N_SAMPLES} prior samples at temperature 1 (confident: top class p >= 0.9)",
        "minutes": "epoch x seconds per epoch of the recipe on two threads (time_to_quality_speed.json)"},
        "curves": curves, "machine": machine()}
    write_json(args.out, result)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    time_to_quality(curves).savefig(FIGURE, dpi=100)
    return result


if __name__ == "__main__":
    main()
