"""Imputation, two routes, every occlusion kind (issue "Class structure ... imputations").

    PYTHONPATH=. python benchmarks/imputation.py [--kinds center bottom ...] [--k 20]

On all 1,000 held-out digits (fixed binarisation, seed 0), for each occlusion kind (one seeded
mask per digit), the conditional `imputation` model (the paper's route) against iterative
(pseudo-Gibbs, 10 steps) imputation with the unconditional default `matryoshka` model:
(a) log p(x_missing | x_observed) per digit, in nats. Conditional: the IWAE-k bound with the
    mask (a lower bound). Iterative route's model: IWAE-k of log p(x) minus IWAE-k of
    log p(x_observed), both with the same latent samples: an estimate, not a bound (a difference
    of two lower bounds can err either way). `--k-check` measures both at k and 10 k on the first
    100 digits, which shows how far each moves when the bound tightens.
(b) the digit judge's accuracy on the completed images (missing pixels filled with the model's
    pixel probabilities), beside its accuracy on the occluded input (holes black) and on the
    original digit, and the ceiling: a classifier of the judge's architecture trained on occluded
    training digits (grey holes, every kind), whose accuracy on the observed pixels alone is what
    any completion can at best carry of the class. Accuracies come with binomial standard errors;
    the two routes are compared per digit (paired), by the kit's verdict rule.
Each kind is cached in runs/bench/imputation/ (keyed by both checkpoints' sha256), so two
processes can take different kinds; every call assembles benchmarks/results/imputation.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from common import RESULTS_DIR, machine, write_json
from hvae_lite.checkpoints import Checkpoint, load_checkpoint, read_manifest, save_checkpoint
from hvae_lite.data import MASK_KINDS, fixed_binarize, heldout_masks, load_mnist
from hvae_lite.impute import full_log_likelihood, impute_conditional, impute_iterative, missing_log_likelihood
from hvae_lite.judge import judge_images, occluded, train_judge
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_judge, load_or_train
from hvae_lite.results import compare_paired, mean_stderr, paired_difference

CACHE = BENCH_RUNS_DIR / "imputation"
N_STEPS = 10
BATCH = 250
JUDGE_EPOCHS = 30  # as the shipped judge


def batched(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """Apply fn to slices of BATCH rows (bounded memory) and concatenate."""
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i:i + BATCH] for t in tensors)) for i in range(0, n, BATCH)])


def occluded_judge(quick: bool, cache_dir: Path) -> torch.nn.Module:
    """The ceiling's classifier: the judge's architecture trained on occluded training digits (cached)."""
    path = cache_dir / f"{'quick-' if quick else ''}occluded-judge.pt"
    if path.is_file():
        return load_checkpoint(path).model()
    data = load_mnist("embedded", seed=0)
    n, epochs = (300, 1) if quick else (len(data.train_images), JUDGE_EPOCHS)
    judge = train_judge(data.train_images[:n], data.train_labels[:n], epochs=epochs, seed=0, occlusions=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(Checkpoint(judge.config, judge.state_dict(), {"epochs": epochs, "seed": 0, "occlusions": True}), path)
    return judge


def _accuracy(judge, images: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """The judge's accuracy and its SE, and the per-digit correctness (for paired comparisons)."""
    verdict = judge_images(judge, images.clamp(0, 1), labels)
    correct = (torch.tensor(verdict.predictions) == labels).double()
    return {"accuracy": verdict.accuracy, "stderr": verdict.accuracy_stderr}, correct


def score_kind(kind: str, models: dict, judge, ceiling_judge, x: torch.Tensor, labels: torch.Tensor, k: int,
               log_px: torch.Tensor) -> dict[str, Any]:
    """One occlusion kind: both routes' log p(missing | observed) and the judge on their completions.
    log_px: the default model's IWAE-k log p(x), per digit, computed once in BATCH-row slices."""
    conditional, unconditional = models["imputation"], models["matryoshka"]
    mask = heldout_masks(x.shape[0], x.shape[-1], seed=0, kind=kind)
    ll = {
        "conditional": batched(lambda a, m: missing_log_likelihood(conditional, a, m, k=k, seed=0), x, mask),
        "iterative": batched(lambda a, m, p: missing_log_likelihood(unconditional, a, m, k=k, seed=0, log_px=p),
                             x, mask, log_px),
    }
    completed = {
        "conditional": batched(lambda a, m: impute_conditional(conditional, a, m, binary=False, seed=0)[:, 0], x, mask),
        "iterative": batched(lambda a, m: impute_iterative(unconditional, a, m, n_steps=N_STEPS, binary=False,
                                                           seed=0)[:, 0], x, mask),
    }
    row = {"kind": kind, "missing_pixels": (1 - mask).sum().item() / x.shape[0]}
    correct = {}
    for name, images, by in (("original", x, judge), ("occluded", x * mask, judge),
                             ("ceiling", occluded(x, mask), ceiling_judge),
                             ("conditional", completed["conditional"], judge), ("iterative", completed["iterative"], judge)):
        accuracy, correct[name] = _accuracy(by, images, labels)
        row[f"judge_{name}"], row[f"judge_{name}_stderr"] = accuracy["accuracy"], accuracy["stderr"]
    for route in ("conditional", "iterative"):
        mean, se = mean_stderr(ll[route])
        row[f"{route}_log_lik"], row[f"{route}_log_lik_stderr"] = mean, se
    likelihood = compare_paired(ll["conditional"], ll["iterative"])
    row["conditional_minus_iterative"], row["difference_stderr"] = likelihood.difference, likelihood.stderr
    row["verdict"] = likelihood.word  # the conditional route against the iterative one
    judged = compare_paired(correct["conditional"], correct["iterative"])
    row["judge_conditional_minus_iterative"] = {"difference": judged.difference, "stderr": judged.stderr,
                                                "verdict": judged.word}
    return row


def k_check(models: dict, x: torch.Tensor, k: int, kinds: list[str]) -> list[dict[str, Any]]:
    """Both routes at k and 10 k on the first 100 digits: how much each number moves with k."""
    rows, n = [], min(100, len(x))
    for kind in kinds:
        mask = heldout_masks(n, x.shape[-1], seed=0, kind=kind)  # the first n digits' masks of the full run
        row = {"kind": kind, "n_images": n, "k_small": k, "k_big": 10 * k}
        for route, name in (("conditional", "imputation"), ("iterative", "matryoshka")):
            small, big = (missing_log_likelihood(models[name], x[:n], mask, k=kk, seed=0) for kk in (k, 10 * k))
            row[f"{route}_small"], row[f"{route}_big"] = small.mean().item(), big.mean().item()
            row[f"{route}_big_minus_small"] = paired_difference(big, small)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="*", default=list(MASK_KINDS), choices=MASK_KINDS)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--k-check", nargs="*", default=[], choices=MASK_KINDS,
                        help="also measure these kinds at k and 10 k on 100 digits")
    parser.add_argument("--quick", action="store_true", help="fast-mode models, 20 digits (a smoke test)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where per-model/per-kind results are cached")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "imputation.json")
    args = parser.parse_args(argv)
    data = load_mnist("embedded", seed=0)
    n = 20 if args.quick else len(data.test_images)
    x, labels = fixed_binarize(data.test_images, 0)[:n], data.test_labels[:n]
    models = {name: load_or_train(name, fast=args.quick, progress=False).model() for name in ("imputation", "matryoshka")}
    digest = "quick" if args.quick else "-".join(read_manifest(m)["sha256"][:12] for m in ("imputation", "matryoshka"))
    judge = load_judge(progress=False)
    ceiling_judge = occluded_judge(args.quick, args.cache)
    prefix = "quick-" if args.quick else ""
    log_px = None
    for kind in args.kinds:
        path = args.cache / f"{prefix}{kind}-k{args.k}.pt"
        if path.is_file() and torch.load(path, weights_only=True)["digest"] == digest:
            continue
        if log_px is None:  # the same slices and seed as missing_log_likelihood would use
            log_px = batched(lambda a: full_log_likelihood(models["matryoshka"], a, k=args.k, seed=0), x)
        row = score_kind(kind, models, judge, ceiling_judge, x, labels, args.k, log_px)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"digest": digest, "row": row}, path)
        print(f"{kind}: conditional {row['conditional_log_lik']:.2f}, iterative {row['iterative_log_lik']:.2f} nats "
              f"(difference {row['conditional_minus_iterative']:.2f} +- {row['difference_stderr']:.2f}); judge "
              f"{row['judge_conditional']:.3f} vs {row['judge_iterative']:.3f} (occluded {row['judge_occluded']:.3f})",
              flush=True)
    rows = []
    for kind in MASK_KINDS:
        path = args.cache / f"{prefix}{kind}-k{args.k}.pt"
        if path.is_file() and (cached := torch.load(path, weights_only=True))["digest"] == digest:
            rows.append(cached["row"])
    previous = {}
    if args.out.is_file():
        previous = json.loads(args.out.read_text())
    checks = k_check(models, x, 2 if args.quick else args.k, args.k_check) if args.k_check else previous.get("k_check", [])
    result = {"benchmark": "imputation: conditional model vs iterative imputation with the default model",
              "protocol": {"n_images": n, "binarisation": "fixed (seed 0)", "masks": "one per digit, drawn from (seed 0, digit index): heldout_masks",
                           "k": args.k, "iterative_steps": N_STEPS,
                           "conditional_log_lik": "IWAE-k lower bound on log p(x_missing | x_observed)",
                           "iterative_log_lik": "IWAE-k log p(x) - IWAE-k log p(x_observed), shared samples: an estimate",
                           "judge": "accuracy of the digit judge against the true labels (binomial SE); completions "
                                    "compared per digit (paired); ceiling: the judge's architecture trained on "
                                    f"occluded training digits ({JUDGE_EPOCHS} epochs, grey holes, every kind)",
                           "quick": args.quick},
              "rows": rows, "k_check": checks, "machine": machine()}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
