"""GPU throughput: training images/s, achieved TFLOP/s and peak GPU memory per preset.

    PYTHONPATH=. .venv/bin/python benchmarks/gpu.py [--presets matryoshka omniglot cifar10] [--batch-size 128]
                                                    [--steps 20] [--compile] [--json gpu.json]

For each preset and each variant (fp32; bf16 autocast; bf16 + channels_last; with --compile,
bf16 + torch.compile) it times full training steps (forward, backward, Adamax update) on random
images of the preset's shape, after warm-up steps, with CUDA synchronised around the timed loop.
Each step is the trainer's: gradients clipped at TrainConfig.grad_clip, an update with a
non-finite or huge gradient skipped (and counted), and the learning rate warmed up over
--lr-warmup-steps updates (Adamax's first updates move every weight by lr at once: without it the
width-128 cifar10 preset diverges at its second update and later steps time NaN weights). A row
whose loss is not finite at the end says so (`finite: false`).
Achieved TFLOP/s = FLOPs per training step (torch.utils.flop_counter, counted once in fp32) x
steps/s: compare it with the GPU's peak to see how far from the roofline the model runs (small
convolutions at 7x7 to 32x32 stay far below it). Peak memory: torch.cuda.max_memory_allocated.
Without a CUDA GPU it says so and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from hvae_lite import files
from hvae_lite.config import TrainConfig, get_preset
from hvae_lite.model import HVAE
from hvae_lite.objectives import training_loss

VARIANTS = ("fp32", "bf16", "bf16+channels_last")


def random_batch(config, batch_size: int, device: torch.device) -> torch.Tensor:
    """Images of the preset's shape that its likelihood accepts: binary, or 8-bit levels."""
    shape = (batch_size, *config.image_shape)
    if config.likelihood == "bernoulli":
        return torch.bernoulli(torch.full(shape, 0.3, device=device))
    return torch.randint(0, 256, shape, device=device).float() / 255


def flops_per_step(model: HVAE, x: torch.Tensor) -> float:
    """FLOPs of one forward and backward pass on the batch x."""
    counter = FlopCounterMode(display=False)
    with counter:
        training_loss(model(x)).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def time_variant(name: str, variant: str, batch_size: int, steps: int, warmup: int,
                 device: torch.device, lr_warmup_steps: int = 100) -> dict[str, Any]:
    """Train steps/s, images/s and peak memory of one preset under one variant."""
    torch.manual_seed(0)
    config = get_preset(name)
    model = HVAE(config).to(device)
    x = random_batch(config, batch_size, device)
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    settings = TrainConfig()
    optimizer = torch.optim.Adamax(model.parameters(), lr=settings.lr)
    counts = {"updates": 0, "skipped": 0, "loss": float("nan")}
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in variant else nullcontext()

    def loss_of(batch):
        with amp:
            return training_loss(model(batch))

    step_loss = torch.compile(loss_of) if "compile" in variant else loss_of

    def step():
        """The trainer's update: clip, skip a non-finite or huge gradient, warm the learning rate up."""
        optimizer.zero_grad(set_to_none=True)
        loss = step_loss(x)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        counts["loss"] = loss.detach()
        if not torch.isfinite(norm) or norm > settings.skip_threshold:
            counts["skipped"] += 1
            return
        optimizer.param_groups[0]["lr"] = settings.lr * min(1.0, (counts["updates"] + 1) / max(1, lr_warmup_steps))
        optimizer.step()
        counts["updates"] += 1

    for _ in range(warmup):  # cuDNN autotuning, compilation, allocator warm-up
        step()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"preset": name, "variant": variant, "batch_size": batch_size,
            "images_per_s": steps * batch_size / seconds, "steps_per_s": steps / seconds,
            "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9,
            "skipped": counts["skipped"], "finite": bool(torch.isfinite(torch.as_tensor(counts["loss"])).item())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["matryoshka", "omniglot", "cifar10"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--compile", action="store_true", help="also time bf16 + torch.compile")
    parser.add_argument("--lr-warmup-steps", type=int, default=100, help="learning-rate warm-up of the timed run")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU is visible to this PyTorch "
              f"({torch.__version__}); nothing to measure. Run it on a machine with an NVIDIA GPU "
              "and a CUDA build of PyTorch (see README, 'Training on GPUs').")
        return 0
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, batch {args.batch_size}")
    variants = VARIANTS + (("bf16+compile",) if args.compile else ())
    rows = []
    for name in args.presets:
        config = get_preset(name)
        model = HVAE(config).to(device)
        flops = flops_per_step(model, random_batch(config, args.batch_size, device))
        del model
        for variant in variants:
            row = time_variant(name, variant, args.batch_size, args.steps, args.warmup, device, args.lr_warmup_steps)
            row["gflop_per_image"] = flops / args.batch_size / 1e9
            row["achieved_tflop_per_s"] = flops * row["steps_per_s"] / 1e12
            rows.append(row)
            print(f"{name:12s} {variant:20s} {row['images_per_s']:9.0f} images/s  "
                  f"{row['achieved_tflop_per_s']:6.2f} TFLOP/s  {row['peak_memory_gb']:6.2f} GB peak  "
                  f"({row['gflop_per_image']:.2f} GFLOP per training image; {row['skipped']} updates skipped"
                  f"{'' if row['finite'] else ', LOSS NOT FINITE'})")
            torch.cuda.empty_cache()
    if args.json:
        files.write_json(args.json, {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                                     "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
