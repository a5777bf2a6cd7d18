"""Speed: training, IWAE evaluation and sampling throughput, FLOPs, memory, and the kit's overhead.

    PYTHONPATH=. python benchmarks/speed.py [--presets matryoshka-32 matryoshka-ar matryoshka] [--reps 3] [--quick]

For each preset: FLOPs per training image (torch.utils.flop_counter), training images/s in fp32
and under bf16 autocast, each interleaved step by step with the same forward/backward written as
a plain PyTorch loop over the same modules (`plain_negative_elbo`: no HVAEOutput, no LayerStats,
no log-densities), so the kit's overhead is a ratio measured under the same machine load. Then,
on the first preset, what helps: channels_last, torch.set_num_threads, inference_mode for IWAE.
Sampling images/s with and without the AR head. Writes benchmarks/results/speed.json.
"""
from __future__ import annotations

import argparse
import resource
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS_DIR, machine, write_json
from hvae_lite.blocks import LEAK
from hvae_lite.config import get_preset
from hvae_lite.data import fixed_binarize, load_mnist
from hvae_lite.model import HVAE
from hvae_lite.objectives import iwae_log_likelihood, training_loss
from tables import speed_table


def _clamp(logvar: torch.Tensor) -> torch.Tensor:
    return 8.0 * torch.tanh(logvar / 8.0)  # distributions.soft_clamp, inlined


def _kl(qm, qlv, pm, plv):
    return 0.5 * (plv - qlv + (qlv.exp() + (qm - pm) ** 2) * torch.exp(-plv) - 1.0)


def plain_negative_elbo(model: HVAE, x: torch.Tensor) -> torch.Tensor:
    """The model's negative ELBO as one flat function of its modules (default Matryoshka options:
    normal top prior, conditional layer priors, residual posteriors, deterministic path, merge)."""
    b = model.bottom_up.stem(x)
    states = []
    for res, block in zip(model.bottom_up.resolutions, model.bottom_up.blocks):
        b = b if b.shape[-1] == res else F.adaptive_avg_pool2d(b, res)
        b = b + block(b)
        states.append(b)
    top = model.bottom_up.to_top(F.leaky_relu(b, LEAK).flatten(1))
    mean, logvar = model.top.posterior_head(top).float().chunk(2, 1)
    logvar = _clamp(logvar)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    kl = 0.5 * (logvar.exp() + mean ** 2 - 1.0 - logvar).sum(1)
    h = model.top.to_state(z).view(x.shape[0], model.config.width, model.top.res, model.top.res)
    merge = torch.zeros_like(h)
    for layer, b in zip(model.layers, states[::-1]):
        if h.shape[-1] != layer.resolution:
            h = F.interpolate(h, size=(layer.resolution,) * 2, mode="nearest")
            merge = F.interpolate(merge, size=(layer.resolution,) * 2, mode="nearest")
        prior_mean, prior_logvar = layer.prior_head(h).float().chunk(2, 1)
        prior_logvar = _clamp(prior_logvar)
        merge = merge + layer.merge(torch.cat([h, b, merge], 1))
        q_mean, q_logvar = layer.posterior_head(merge).float().chunk(2, 1)
        q_mean, q_logvar = prior_mean + q_mean, prior_logvar + _clamp(q_logvar)
        z = q_mean + torch.exp(0.5 * q_logvar) * torch.randn_like(q_mean)
        kl = kl + _kl(q_mean, q_logvar, prior_mean, prior_logvar).flatten(1).sum(1)
        h = h + layer.update(torch.cat([h, z], 1))
    h = F.interpolate(h, size=x.shape[-2:], mode="nearest")
    h = h + model.out_block(h)
    logits = model.head.to_params(F.leaky_relu(h, LEAK))
    if model.head.autoregressive:
        logits = logits + model.head._autoregressive_logits(h, x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return (recon + kl).mean()


def kit_negative_elbo(model: HVAE, x: torch.Tensor) -> torch.Tensor:
    return training_loss(model(x), beta=1.0, free_bits=0.0)


def _train_step(model, optimizer, loss_fn: Callable, x, amp: bool) -> float:
    """One timed update (zero_grad, forward under autocast if amp, backward, step): seconds."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = loss_fn(model, x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def interleaved(model, x, reps: int, amp: bool, fns: dict[str, Callable]) -> dict[str, float]:
    """Images/s of each loss function, stepping them in turn (one warm-up step each) so that a
    change in machine load hits all of them alike. Reports the median step."""
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-4)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(reps + 1):
        for name, fn in fns.items():
            seconds = _train_step(model, optimizer, fn, x, amp)
            if rep > 0:
                times[name].append(seconds)
    return {name: len(x) / sorted(t)[len(t) // 2] for name, t in times.items()}


def flops_per_training_image(model: HVAE, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        kit_negative_elbo(model, x).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def iwae_images_per_s(model: HVAE, x: torch.Tensor, k: int, inference: bool) -> float:
    """Importance samples scored per second (one sample = one image through the model)."""
    context = torch.inference_mode() if inference else nullcontext()  # iwae_log_likelihood is no_grad already
    with context:
        iwae_log_likelihood(model, x[:2], k=2)  # warm-up
        start = time.perf_counter()
        iwae_log_likelihood(model, x, k=k, chunk_size=k)
    return len(x) * k / (time.perf_counter() - start)


def sampling_images_per_s(model: HVAE, n: int) -> float:
    start = time.perf_counter()
    model.sample(n)
    return n / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def bench_preset(name: str, x: torch.Tensor, reps: int, n_samples: int, k: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = HVAE(get_preset(name))
    # Correctness of the plain loop: same seed, same loss as the kit.
    torch.manual_seed(1)
    kit = kit_negative_elbo(model, x).item()
    torch.manual_seed(1)
    plain = plain_negative_elbo(model, x).item()
    flops = flops_per_training_image(model, x[:10])
    row: dict[str, Any] = {"preset": name, "parameters": sum(p.numel() for p in model.parameters()),
                           "batch": len(x), "plain_loss_matches_kit": abs(kit - plain) < 1e-3 * abs(kit),
                           "gflop_per_training_image": flops / 1e9}
    for precision, amp in (("fp32", False), ("bf16", True)):
        rates = interleaved(model, x, reps, amp, {"kit": kit_negative_elbo, "plain": plain_negative_elbo})
        row[f"train_images_per_s_{precision}"] = rates["kit"]
        row[f"plain_train_images_per_s_{precision}"] = rates["plain"]
        row[f"kit_overhead_{precision}"] = rates["plain"] / rates["kit"] - 1  # 0.05 = the kit is 5% slower
        row[f"gflop_per_s_{precision}"] = rates["kit"] * flops / 1e9
    model.eval()
    row["iwae_images_per_s"] = iwae_images_per_s(model, x[:10], k, inference=False)
    row["sampling_images_per_s"] = sampling_images_per_s(model, n_samples)
    row["peak_rss_mb_so_far"] = peak_rss_mb()
    return row


def what_helps(name: str, x: torch.Tensor, reps: int, k: int) -> dict[str, Any]:
    """channels_last, thread count and inference_mode, each against its plain counterpart."""
    torch.manual_seed(0)
    model = HVAE(get_preset(name))
    found: dict[str, Any] = {"preset": name}
    rates = interleaved(model, x, reps, False, {"contiguous": kit_negative_elbo})
    channels_last = model.to(memory_format=torch.channels_last)
    rates.update({"channels_last": interleaved(channels_last, x.contiguous(memory_format=torch.channels_last),
                                               reps, False, {"cl": kit_negative_elbo})["cl"]})
    found["train_images_per_s_fp32"] = rates
    model = model.to(memory_format=torch.contiguous_format)
    threads = torch.get_num_threads()
    by_threads = {}
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        by_threads[str(n)] = interleaved(model, x, reps, False, {"kit": kit_negative_elbo})["kit"]
    torch.set_num_threads(threads)
    found["train_images_per_s_by_threads"] = by_threads
    model.eval()
    found["iwae_images_per_s"] = {"no_grad": iwae_images_per_s(model, x[:10], k, inference=False),
                                  "inference_mode": iwae_images_per_s(model, x[:10], k, inference=True)}
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["matryoshka-32", "matryoshka-ar", "matryoshka"])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3, help="timed steps per measurement (median reported)")
    parser.add_argument("--k", type=int, default=100, help="importance samples per image in the IWAE timing")
    parser.add_argument("--samples", type=int, default=16, help="images per sampling timing")
    parser.add_argument("--quick", action="store_true", help="tiny preset, batch 8, one step (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "speed.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.batch, args.reps, args.k, args.samples = ["tiny"], 8, 1, 4, 2
    x = fixed_binarize(load_mnist("embedded", seed=0).train_images[: args.batch])
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    rows = []
    for name in args.presets:
        rows.append(bench_preset(name, x, args.reps, args.samples, args.k))
        print(f"{name}: {rows[-1]['train_images_per_s_bf16']:.0f} images/s (bf16), kit overhead "
              f"{100 * rows[-1]['kit_overhead_bf16']:+.1f}%", flush=True)
    helps = what_helps(args.presets[0], x, args.reps, args.k)
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    result = {"benchmark": "speed", "machine": machine(), "load_average_before": load_before,
              "load_average_after": load_after, "batch": args.batch, "reps": args.reps, "iwae_k": args.k,
              "rows": rows, "what_helps": helps}
    print(speed_table(result))
    print(helps)
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
