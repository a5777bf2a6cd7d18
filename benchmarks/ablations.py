"""The ablation study: each architectural claim of the paper against a control that differs in one thing.

    PYTHONPATH=. python benchmarks/ablations.py --runs matryoshka no-td-path --seeds 0 1 2   # train + score
    PYTHONPATH=. python benchmarks/ablations.py --runs matryoshka --seeds 1 2 --elbo-only   # further seeds, ELBO only
    PYTHONPATH=. python benchmarks/ablations.py --assemble          # the results file from what is cached
    PYTHONPATH=. python benchmarks/ablations.py --quick             # tiny models, a smoke test (seconds)

Every run uses one recipe (`hvae_lite.recipes.ABLATION`: the "train it yourself" recipe, in bf16)
on the embedded split, except `held-floor`, which changes the recipe instead of the model. Variants have their parameters matched to the full model within 10 %
(the smaller ones are widened). The AR head is compared with a control fine-tuned identically
without a head, both from the same trained full model. Each run is scored on all 1,000 held-out
digits: the ELBO and the IWAE-k bound per digit (fp32, fixed binarisation), the KL per layer,
layers in use, and the digit judge on 1,000 prior samples. Contrasts are paired per digit within
a seed; across seeds, the mean of the per-seed differences with its standard error, which carries
the spread between training runs.

Runs and per-run scores are cached under runs/bench/ablations/ (an interrupted run resumes), so
two processes can work through disjoint `--runs` at once (one core each). Writes
benchmarks/results/ablations.json and ablations_per_digit.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import finished_run, machine, write_json
from speed import flops_per_training_image
from hvae_lite.checkpoints import build_model, load_checkpoint, sha256_of
from hvae_lite.config import HVAEConfig, TrainConfig, depth_spec, get_preset
from hvae_lite.data import DataSplit, load_mnist
from hvae_lite.evaluate import layers_in_use, per_image_scores
from hvae_lite.judge import judge_images
from hvae_lite.paths import BENCH_RUNS_DIR, RESULTS_DIR
from hvae_lite.pretrained import load_judge
from hvae_lite.recipes import ABLATION, ABLATION_FINE_TUNE, FAST_RECIPES
from hvae_lite.results import mean_stderr, paired_difference, verdict
from hvae_lite.rng import seeded
from hvae_lite.train import Trainer

CACHE = BENCH_RUNS_DIR / "ablations"
FAST_TRAIN = FAST_RECIPES["matryoshka"].train
K, N_SAMPLES, SEEDS = 200, 1000, (0, 1, 2)


@dataclass(frozen=True)
class Variant:
    """One row of the study: a model config, trained from scratch or fine-tuned from `base`."""

    config: HVAEConfig
    what: str                      # what differs from the full model, in words
    base: str | None = None        # fine-tuned from this variant's run of the same seed
    seeds: tuple[int, ...] = SEEDS
    recipe_changes: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields changed from the study's


def study(quick: bool = False) -> dict[str, Variant]:
    """The variants. Widths were chosen so each has 0.90-0.99 M parameters (full model: 0.92 M)."""
    full = get_preset("tiny" if quick else "matryoshka-32")
    scale = (lambda w: max(4, w // 4)) if quick else (lambda w: w)  # tiny: a quarter of the width
    one = (0,)
    return {
        "matryoshka": Variant(full, "the full model: deterministic top-down path and inference merge"),
        "no-td-path": Variant(full.replace(deterministic_path=False, width=scale(34)),
                              "no deterministic top-down path (the naive stack), widened to 34"),
        "no-merge": Variant(full.replace(inference_merge=False, width=scale(42)),
                            "no inference merge (posteriors from the bottom-up state), widened to 42"),
        "ar-head": Variant(full.replace(ar_layers=1, ar_kernel=3, ar_width=scale(16)),
                           "+ a lightweight AR head (one masked 3x3 conv), fine-tuned from the full model",
                           base="matryoshka"),
        "ar-control": Variant(full, "the full model fine-tuned exactly as ar-head, without a head",
                              base="matryoshka"),
        **{f"depth-{n}": Variant(full.replace(latent_spec=depth_spec(n), width=scale(w)),
                                 f"{n} latent maps instead of 10, widened to {w}", seeds=one)
           for n, w in ((2, 64), (4, 48), (6, 40))},
        # The recipe, not the model: free bits keep each layer's KL free below 0.5 nats; held to the end
        # instead of annealed away by epoch 10, do they open the layer the full model leaves unused?
        "held-floor": Variant(full, "free bits (0.5 nats per layer) held to the end instead of annealed away",
                              recipe_changes={"free_bits_end_epoch": 0.0}),
        # A narrower top vector leaves the global description less room: does it move into the 7x7 maps?
        "top-8": Variant(full.replace(top_latent_dim=max(1, full.top_latent_dim // 4)),
                         f"a top vector of {max(1, full.top_latent_dim // 4)} dimensions instead of "
                         f"{full.top_latent_dim}"),
    }


# The comparisons the notebooks and the README report: (name, A, B, what a positive A-B gain means).
CONTRASTS = (
    ("deterministic path", "matryoshka", "no-td-path"),
    ("inference merge", "matryoshka", "no-merge"),
    ("AR head", "ar-head", "ar-control"),
    ("extra fine-tuning alone", "ar-control", "matryoshka"),
    *((f"10 latent maps vs {n}", "matryoshka", f"depth-{n}") for n in (2, 4, 6)),
    ("free bits held to the end", "held-floor", "matryoshka"),
    ("a narrower top vector", "top-8", "matryoshka"),
)


def recipe(variant: Variant, quick: bool) -> TrainConfig:
    return dataclasses.replace(FAST_TRAIN if quick else ABLATION_FINE_TUNE if variant.base else ABLATION,
                               **variant.recipe_changes)


def run_path(name: str, seed: int, quick: bool) -> Path:
    return CACHE / f"{'quick-' if quick else ''}{name}-s{seed}.pt"


def train(name: str, seed: int, variants: dict[str, Variant], data: DataSplit, quick: bool) -> Path:
    """The finished run of one variant and seed (loaded, resumed or trained)."""
    variant, path = variants[name], run_path(name, seed, quick)
    config = dataclasses.replace(recipe(variant, quick), seed=seed)
    if variant.base is not None:
        base = run_path(variant.base, seed, quick)
        if not base.is_file() or load_checkpoint(base).epoch < recipe(variants[variant.base], quick).epochs:
            raise SystemExit(f"{name} seed {seed} is fine-tuned from {base}: run {variant.base} first")
        config = dataclasses.replace(config, init_from=str(base))
    finished_run(path, config.epochs, data,
                 lambda: Trainer(variant.config, config, data, checkpoint_path=path, progress=False))
    return path


def score(name: str, seed: int, variants: dict[str, Variant], data: DataSplit, judge, k: int, quick: bool) -> dict:
    """Per-digit ELBO and IWAE-k, KL per layer, layers in use, the judge on samples; cached by sha256."""
    path = train(name, seed, variants, data, quick)
    cache, digest = path.with_suffix(f".k{k}.pt"), sha256_of(path)
    if cache.is_file() and (cached := torch.load(cache, weights_only=True))["digest"] == digest:
        return cached["result"]
    checkpoint = load_checkpoint(path)
    model = checkpoint.model()
    start = time.perf_counter()
    scores = per_image_scores(model, data.test_images, k=k, seed=0)
    kl = scores["kl"].mean(0).tolist()
    with seeded(0):
        samples = torch.cat([model.sample(min(500, N_SAMPLES - n)).cpu() for n in range(0, N_SAMPLES, 500)])
    own = checkpoint.history
    base_seconds = base_pflop = 0.0
    if variants[name].base is not None:
        base_run = load_checkpoint(run_path(variants[name].base, seed, quick))
        base_seconds = sum(r["seconds"] for r in base_run.history)
        base_x = data.train_images[:10].bernoulli(generator=torch.Generator().manual_seed(0))
        base_pflop = (flops_per_training_image(build_model(base_run.config), base_x) / 1e9
                      * sum(r["images"] for r in base_run.history) / 1e6)
    x = data.train_images[:10].bernoulli(generator=torch.Generator().manual_seed(0))
    gflop = flops_per_training_image(build_model(checkpoint.config), x) / 1e9
    result = {
        "variant": name, "seed": seed, "parameters": sum(p.numel() for p in model.parameters()),
        "gflop_per_training_image": gflop,
        "training_pflop": gflop * sum(r["images"] for r in own) / 1e6,
        "epochs": checkpoint.epoch, "train_seconds": sum(r["seconds"] for r in own),
        "train_seconds_with_base": base_seconds + sum(r["seconds"] for r in own),
        "training_pflop_with_base": base_pflop + gflop * sum(r["images"] for r in own) / 1e6,
        "elbo": scores["elbo"].tolist(), "nll": scores["nll_iwae"].tolist(), "kl_per_layer": kl,
        "free_bits_floor": recipe(variants[name], quick).free_bits,
        "in_use": layers_in_use(kl, recipe(variants[name], quick).free_bits),
        "samples": judge_images(judge, samples.clamp(0, 1)).to_dict(),
        "heldout_elbo_by_epoch": [r["test_elbo"] for r in own], "score_seconds": time.perf_counter() - start,
    }
    torch.save({"digest": digest, "result": result}, cache)
    return result


def seed_sd(runs: dict[tuple[str, int], dict], name: str, measure: str) -> float | None:
    """The spread (sd) of a variant's mean `measure` between its training seeds: how far two runs of
    one recipe land apart by chance."""
    means = [float(np.mean(r[measure])) for (n, _), r in runs.items() if n == name and measure in r]
    return float(np.std(means, ddof=1)) if len(means) > 1 else None


def contrast(runs: dict[tuple[str, int], dict], a: str, b: str, measure: str,
             elbo_runs: dict[tuple[str, int], dict] | None = None) -> dict[str, Any] | None:
    """A - B in `measure` ('nll': IWAE NLL, lower is better; 'elbo': higher is better), paired per
    digit within each seed both have; across seeds, the mean of the per-seed differences, whose
    standard error carries the spread between training runs. With one seed, that spread is taken
    from elsewhere: for the NLL with a single IWAE-scored seed, the spread between seeds of the same
    pair's ELBO difference (`elbo_runs`: every trained seed scored by its ELBO), which is what one
    seed's difference can be off by; failing that, the full model's seeds (two independent runs
    differ by chance with variance 2 sd^2)."""
    runs = {key: r for key, r in runs.items() if measure in r}
    seeds = sorted(s for (name, s) in runs if name == a and (b, s) in runs)
    if not seeds:
        return None
    per_seed = [paired_difference(runs[(a, s)][measure], runs[(b, s)][measure]) for s in seeds]
    means = [m for m, _ in per_seed]
    higher_is_better = measure == "elbo"
    if len(seeds) > 1:
        mean, se = mean_stderr(means)
        spread = float(np.std(means, ddof=1))
    else:
        (mean, digit_se), spread = per_seed[0], None
        pair = contrast(elbo_runs, a, b, "elbo") if elbo_runs and measure != "elbo" else None
        if pair is not None and pair["seed_spread"] is not None:
            se = float(np.sqrt(digit_se ** 2 + pair["seed_spread"] ** 2))
        else:
            chance = seed_sd(runs, "matryoshka", measure) or 0.0
            se = float(np.sqrt(digit_se ** 2 + 2 * chance ** 2))
    return {"seeds": seeds, "per_seed": [{"seed": s, "difference": m, "stderr": e} for s, (m, e) in zip(seeds, per_seed)],
            "difference": mean, "stderr": se, "seed_spread": spread,
            "verdict": verdict(mean, se, higher_is_better=higher_is_better).word}


def summary(rows: list[dict]) -> dict[str, Any]:
    """One variant over its seeds: means, their spread, layers in use, the judge."""
    def across(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "seed_sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}
    scored = [r for r in rows if "nll" in r]  # IWAE-scored seeds (the others have the ELBO only)
    nll = [mean_stderr(r["nll"]) for r in scored]
    return {
        "variant": rows[0]["variant"], "seeds": [r["seed"] for r in rows], "nll_seeds": [r["seed"] for r in scored],
        "parameters": rows[0]["parameters"],
        "epochs": rows[0]["epochs"], "train_seconds": across([r["train_seconds"] for r in rows]),
        "gflop_per_training_image": rows[0]["gflop_per_training_image"],
        "training_pflop_with_base": across([r["training_pflop_with_base"] for r in rows]),
        "train_seconds_with_base": across([r["train_seconds_with_base"] for r in rows]),
        "nll": across([m for m, _ in nll]) if nll else None,
        "nll_digit_stderr": float(np.mean([e for _, e in nll])) if nll else None,
        "elbo": across([float(np.mean(r["elbo"])) for r in rows]),
        "kl_per_layer": np.mean([r["kl_per_layer"] for r in rows], 0).tolist(),
        "layers_in_use": [sum(r["in_use"]) for r in rows], "n_layers": len(rows[0]["in_use"]),
        "confident_samples": across([r["samples"]["confident_fraction"] for r in rows]),
        "confident_stderr": float(np.mean([r["samples"]["confident_stderr"] for r in rows])),
    }


def assemble(runs: dict[tuple[str, int], dict], variants: dict[str, Variant], k: int, quick: bool, out: Path,
             elbo_only: dict[tuple[str, int], dict] | None = None) -> dict:
    """The results file (no per-digit arrays) and the per-digit file beside it. `runs`: IWAE-k scored;
    `elbo_only`: further seeds scored by their ELBO only (their IWAE-1 numbers are dropped)."""
    every = {**{key: {m: v for m, v in r.items() if m != "nll"} for key, r in (elbo_only or {}).items()}, **runs}
    rows = []
    for name, variant in variants.items():
        done = [every[(name, s)] for s in variant.seeds if (name, s) in every]
        if done:
            rows.append({**summary(done), "what": variant.what, "base": variant.base,
                         "config": variant.config.to_dict(), "recipe_changes": variant.recipe_changes})
    contrasts = []
    for label, a, b in CONTRASTS:
        found = {"nll": contrast(every, a, b, "nll", every), "elbo": contrast(every, a, b, "elbo")}
        if found["elbo"] is not None:
            contrasts.append({"contrast": label, "a": a, "b": b, **found})
    result = {
        "benchmark": "ablations: each claim against a control that differs in one thing",
        "protocol": {"data": "embedded split, seed 0: 4,000 training / 1,000 held-out digits",
                     "binarisation": "fixed (seed 0)", "precision": "fp32", "k": k,
                     "nll": f"IWAE-{k} bound, negated (nats per digit, lower is better)",
                     "pairing": "per digit within a seed; across seeds the mean of per-seed differences, "
                                "its standard error carries the spread between training runs",
                     "samples": f"{N_SAMPLES} prior samples at temperature 1, judge confident = top class p >= 0.9",
                     "elbo_only": "seeds outside a row's nll_seeds are scored by their per-digit ELBO only (IWAE "
                                  "scoring costs about 25 minutes of a core per run): their ELBO contrasts are "
                                  "paired over every seed; an NLL contrast with one IWAE-scored seed takes its "
                                  "seed term from the spread of the same pair's ELBO difference between seeds",
                     "quick": quick},
        "recipe": {"from_scratch": (FAST_TRAIN if quick else ABLATION).to_dict(),
                   "fine_tune": (FAST_TRAIN if quick else ABLATION_FINE_TUNE).to_dict()},
        "rows": rows, "contrasts": contrasts, "machine": machine(),
    }
    write_json(out, result)
    per_digit = {f"{name}-s{seed}": {**({"nll": [round(v, 3) for v in r["nll"]]} if "nll" in r else {}),
                                     "elbo": [round(v, 3) for v in r["elbo"]]}
                 for (name, seed), r in sorted(every.items())}
    write_json(out.with_name(out.stem + "_per_digit.json"), per_digit)
    return result


def cached_runs(variants: dict[str, Variant], k: int, quick: bool) -> dict[tuple[str, int], dict]:
    """Every scored run whose cache matches its checkpoint."""
    runs = {}
    for name, variant in variants.items():
        for seed in variant.seeds:
            path = run_path(name, seed, quick)
            cache = path.with_suffix(f".k{k}.pt")
            if path.is_file() and cache.is_file():
                cached = torch.load(cache, weights_only=True)
                if cached["digest"] == sha256_of(path):
                    runs[(name, seed)] = cached["result"]
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], help="variants to train and score (default: none)")
    parser.add_argument("--seeds", nargs="*", type=int, help="seeds (default: each variant's own)")
    parser.add_argument("--k", type=int, default=K)
    parser.add_argument("--assemble", action="store_true", help="write the results files from the cache")
    parser.add_argument("--elbo-only", action="store_true",
                        help="score the runs by their per-digit ELBO only (seconds, not the IWAE's minutes)")
    parser.add_argument("--quick", action="store_true", help="tiny models, 300 digits, k = 3 (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ablations.json")
    args = parser.parse_args(argv)
    variants = study(args.quick)
    if unknown := set(args.runs) - set(variants):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {sorted(variants)}")
    data = load_mnist("embedded", seed=0)
    if args.quick:
        data, args.k = data.subset(300, 30), 3
        args.assemble = True
        args.runs = args.runs or list(variants)
    judge = load_judge(progress=False)
    for name in args.runs:
        for seed in args.seeds if args.seeds is not None else variants[name].seeds:
            k = 1 if args.elbo_only else args.k
            result = score(name, seed, variants, data, judge, k, args.quick)
            nll = mean_stderr(result["nll"])
            print(f"{name} seed {seed}: ELBO {float(np.mean(result['elbo'])):.2f}, IWAE-{k} NLL {nll[0]:.2f} +- {nll[1]:.2f}, in use "
                  f"{sum(result['in_use'])}/{len(result['in_use'])}, {result['train_seconds']:.0f} s", flush=True)
    if args.assemble:
        out = args.out.with_name("ablations_quick.json") if args.quick else args.out
        return assemble(cached_runs(variants, args.k, args.quick), variants, args.k, args.quick, out,
                        elbo_only=cached_runs(variants, 1, args.quick))
    return {}


if __name__ == "__main__":
    main()
