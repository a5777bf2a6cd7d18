"""How much an autoregressive head adds to the default model, by size of head (what was tried).

    PYTHONPATH=. python benchmarks/ar_head.py [--names k7-w32 ...] [--threads 1] [--quick]

Each variant starts from the shipped default `matryoshka` and fine-tunes with the recipe of the
shipped `matryoshka-ar` (`recipes.RECIPES`: 12 epochs, body at 2e-4, new parts at 2e-3), changing
only the head: its first masked convolution's kernel (the causal neighbourhood a pixel sees), the
number of masked layers and their width. A "frozen body" variant trains the head alone (body
learning rate 1e-6): the latents stay exactly the default's, so whatever it gains is the head's.
The shipped `matryoshka-ar` is the first row (its checkpoint, not retrained).

Scored on all 1,000 held-out digits (fixed binarisation, fp32): the ELBO per digit, paired
against the default, the KL per layer and the layers in use. The ELBO is a screening measure
(cheap: one pass); the shipped AR model gets the full IWAE protocol in shipped.py. Runs are kept
in runs/bench/ar_head/ (resumable); writes benchmarks/results/ar_head.json. `--quick`: the tiny
fast-mode models, one epoch on 300 digits, scored on 100 (a smoke test).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch

from common import RESULTS_DIR, finished_run, machine, write_json
from hvae_lite.checkpoints import save_checkpoint
from hvae_lite.data import load_mnist
from hvae_lite.evaluate import heldout_elbo_per_image, layers_in_use
from hvae_lite.paths import BENCH_RUNS_DIR, CHECKPOINT_DIR
from hvae_lite.pretrained import load_or_train
from hvae_lite.recipes import FAST_RECIPES, RECIPES, recipe_data
from hvae_lite.results import mean_stderr, paired_difference
from hvae_lite.train import Trainer

RUNS = BENCH_RUNS_DIR / "ar_head"
SHIPPED = "k3-w16 (shipped)"
# name -> (head settings, learning rate of the body); the new parts always train at the recipe's new_lr
VARIANTS: dict[str, tuple[dict[str, int], float | None]] = {
    SHIPPED: ({"ar_layers": 1, "ar_kernel": 3, "ar_width": 16}, None),
    "k7-w32": ({"ar_layers": 1, "ar_kernel": 7, "ar_width": 32}, None),
    "2 layers, k5-w32": ({"ar_layers": 2, "ar_kernel": 5, "ar_width": 32}, None),
    "2 layers, k7-w64, frozen body": ({"ar_layers": 2, "ar_kernel": 7, "ar_width": 64}, 1e-6),
}


def trained(name: str, data, runs: Path, quick: bool):
    """The variant's model: the shipped checkpoint, or a fine-tune of the default (resumed if cut short)."""
    if name == SHIPPED:
        return load_or_train("matryoshka-ar", fast=quick, progress=False)
    head, body_lr = VARIANTS[name]
    recipe = (FAST_RECIPES if quick else RECIPES)["matryoshka-ar"]
    base = CHECKPOINT_DIR / "matryoshka.pt"
    if quick:  # the fast stand-in of the default, written where the warm start can read it
        base = runs / "quick-default.pt"
        save_checkpoint(load_or_train("matryoshka", fast=True, progress=False), base)
    train_config = dataclasses.replace(recipe.train, init_from=str(base), lr=body_lr or recipe.train.lr,
                                       new_lr=recipe.train.new_lr or RECIPES["matryoshka-ar"].train.new_lr)
    path = runs / (("quick-" if quick else "") + name.replace(", ", "-").replace(" ", "-") + ".pt")
    return finished_run(path, train_config.epochs, data, lambda: Trainer(
        recipe.config.replace(**head), train_config, data, checkpoint_path=path, progress=False))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ar_head.json")
    parser.add_argument("--quick", action="store_true", help="tiny fast-mode models (a smoke test)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = recipe_data(FAST_RECIPES["matryoshka-ar"]) if args.quick else load_mnist("embedded", seed=0)
    default_model = load_or_train("matryoshka", fast=args.quick, progress=False).model()
    default_elbo, _ = heldout_elbo_per_image(default_model, data.test_images, seed=0)
    rows = []
    for name in args.names:
        checkpoint = trained(name, data, args.runs, args.quick)
        elbo_per_digit, kl_per_digit = heldout_elbo_per_image(checkpoint.model(), data.test_images, seed=0)
        kl = kl_per_digit.mean(0).tolist()
        elbo, elbo_se = mean_stderr(elbo_per_digit)
        gain, gain_se = paired_difference(elbo_per_digit, default_elbo)
        head = {key: getattr(checkpoint.config, key) for key in ("ar_layers", "ar_kernel", "ar_width")}
        rows.append({"variant": name, **head, "body_lr": checkpoint.train_config["lr"],
                     "parameters": sum(p.numel() for p in checkpoint.model().parameters()),
                     "elbo": elbo, "elbo_stderr": elbo_se, "elbo_gain_over_default": gain, "gain_stderr": gain_se,
                     "kl_per_layer": kl, "in_use": layers_in_use(kl, checkpoint.train_config["free_bits"])})
        print(f"{name}: held-out ELBO {elbo:.2f} +- {elbo_se:.2f}, gain over the default {gain:+.2f} +- {gain_se:.2f} "
              f"nats, {sum(rows[-1]['in_use'])} of {len(kl)} layers in use", flush=True)
    result = {"benchmark": "autoregressive heads of several sizes on the default model (fine-tuned, paired ELBO)",
              "protocol": {"n_images": len(data.test_images), "binarisation": "fixed (seed 0)", "measure": "ELBO, fp32",
                           "recipe": "RECIPES['matryoshka-ar'] from the shipped default; body lr as listed",
                           "quick": args.quick},
              "default_elbo": mean_stderr(default_elbo), "rows": rows, "machine": machine()}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
