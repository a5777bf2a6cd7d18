"""Imputation, two routes, every occlusion kind (issue "Class structure ... imputations").

    PYTHONPATH=. python benchmarks/imputation.py [--kinds center bottom ...] [--k 20]
    PYTHONPATH=. python benchmarks/imputation.py --pair study-imputation study-matryoshka \
        --out benchmarks/results/imputation_study_s0.json   # the pair trained alike from scratch, seed 0
    PYTHONPATH=. python benchmarks/imputation.py --assemble-study --out benchmarks/results/imputation_study.json

On all 1,000 held-out digits (fixed binarisation, seed 0), for each occlusion kind (one seeded
mask per digit), the conditional `imputation` model (the paper's route) against iterative
(pseudo-Gibbs, 10 steps) imputation with the unconditional default `matryoshka` model:
(a) log p(x_missing | x_observed) per digit, in nats. Conditional: the IWAE-k bound with the
    mask (a lower bound). Iterative route's model: IWAE-k of log p(x) minus IWAE-k of
    log p(x_observed), both with the same latent samples: an estimate, not a bound (a difference
    of two lower bounds can err either way). `--k-check` measures both at k and 10 k (or at the two
    k of `--k-check-ks`) on the first 100 digits (`--k-check-digits`), which shows how far each
    moves when the bound tightens; rows for other pairs of k are kept.
(b) the digit judge's accuracy on the completed images (missing pixels filled with the model's
    pixel probabilities), beside its accuracy on the occluded input (holes black) and on the
    original digit, and the ceiling: a classifier of the judge's architecture trained on occluded
    training digits (grey holes, every kind), whose accuracy on the observed pixels alone is what
    any completion can at best carry of the class. Accuracies come with binomial standard errors;
    the two routes are compared per digit (paired), by the kit's verdict rule.
`--pair` scores another conditional model against another unconditional one (shipped names or
checkpoint files), e.g. the study's pair, both trained from scratch by the same recipe (the shipped
pair is a fine-tune of the default against the default), or further seeds of it. Each kind is cached in runs/bench/imputation/ (keyed by the pair
and both checkpoints' sha256), so two processes can take different kinds; every call assembles the
results file (benchmarks/results/imputation.json for the shipped pair).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import RESULTS_DIR, machine, write_json
from hvae_lite.checkpoints import Checkpoint, load_checkpoint, read_manifest, save_checkpoint, sha256_of
from hvae_lite.data import MASK_KINDS, fixed_binarize, heldout_masks, load_mnist
from hvae_lite.impute import full_log_likelihood, impute_conditional, impute_iterative, missing_log_likelihood
from hvae_lite.judge import judge_images, occluded, train_judge
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_judge, load_or_train
from hvae_lite.recipes import CHECKPOINT_NAMES
from hvae_lite.results import compare_paired, mean_stderr, paired_difference, verdict

CACHE = BENCH_RUNS_DIR / "imputation"
PAIR = ("imputation", "matryoshka")  # the shipped pair: the conditional model, the iterative route's model
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


def k_check(models: dict, x: torch.Tensor, k_small: int, k_big: int, kinds: list[str], digests: dict[str, str],
            cache: Path, prefix: str = "", n_digits: int = 100) -> list[dict[str, Any]]:
    """Both routes at k_small and k_big on the first n_digits digits: how much each number moves with k.
    Each route's scores are cached under its own checkpoint's digest (a new conditional model
    leaves the iterative route's costly check valid)."""
    rows, n = [], min(n_digits, len(x))
    for kind in kinds:
        mask = heldout_masks(n, x.shape[-1], seed=0, kind=kind)  # the first n digits' masks of the full run
        row = {"kind": kind, "n_images": n, "k_small": k_small, "k_big": k_big,
               "digest": "-".join(digests[name] for name in ("imputation", "matryoshka"))}
        for route, name in (("iterative", "matryoshka"), ("conditional", "imputation")):
            path = cache / f"{prefix}check-{kind}-{route}-n{n}-k{k_small}-{k_big}.pt"
            if path.is_file() and (cached := torch.load(path, weights_only=True))["digest"] == digests[name]:
                small, big = cached["small"], cached["big"]
            else:
                small, big = (missing_log_likelihood(models[name], x[:n], mask, k=kk, seed=0) for kk in (k_small, k_big))
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"digest": digests[name], "small": small, "big": big}, path)
            row[f"{route}_small"], row[f"{route}_big"] = small.mean().item(), big.mean().item()
            row[f"{route}_big_minus_small"] = list(paired_difference(big, small))  # as the JSON file holds it
        rows.append(row)
    return rows


def assemble_study(out: Path) -> dict[str, Any]:
    """Per-seed results of a pair trained alike (`<out stem>_s<seed>.json` beside `out`, one `--pair`
    call each) into one file: per occlusion kind, each seed's paired difference and the judge, and
    across seeds the mean difference with the standard error of the seed spread and the kit's verdict
    (with one seed, that seed's paired numbers)."""
    runs = {seed: json.loads(path.read_text()) for seed in range(10)
            if (path := out.with_name(f"{out.stem}_s{seed}.json")).is_file()}
    if not runs:
        raise SystemExit(f"no per-seed results {out.stem}_s<seed>.json beside {out}: score the pairs with --pair first")
    kinds = []
    for kind in MASK_KINDS:
        per_seed = [{"seed": seed, "difference": row["conditional_minus_iterative"], "stderr": row["difference_stderr"],
                     "verdict": row["verdict"], "judge_verdict": row["judge_conditional_minus_iterative"]["verdict"],
                     "judge_conditional": row["judge_conditional"],
                     "judge_iterative": row["judge_iterative"]}
                    for seed, run in runs.items() for row in run["rows"] if row["kind"] == kind]
        if len(per_seed) < len(runs):
            continue
        differences = [s["difference"] for s in per_seed]
        mean, se = mean_stderr(differences) if len(runs) > 1 else (differences[0], per_seed[0]["stderr"])
        kinds.append({"kind": kind, "per_seed": per_seed, "difference": mean, "stderr": se,
                      "seed_spread": float(np.std(differences, ddof=1)) if len(runs) > 1 else None,
                      "verdict": verdict(mean, se).word,
                      **{key: float(np.mean([s[key] for s in per_seed])) for key in ("judge_conditional", "judge_iterative")}})
    first = runs[min(runs)]
    result = {"benchmark": "imputation, the conditional model against the iterative route with a rival trained alike, "
                           "per training seed and across seeds", "pairs": {str(seed): run["pair"] for seed, run in runs.items()},
              "protocol": {**first["protocol"], "across_seeds": "mean of the per-seed paired differences; SE from their "
                                                                "spread (one seed: its paired SE); verdict: two SE"},
              "kinds": kinds, "machine": machine()}
    write_json(out, result)
    return result


def load_pair(names: dict[str, str], quick: bool, parser: argparse.ArgumentParser) -> tuple[dict, dict[str, str]]:
    """The models and digests of a pair, keyed by role ("imputation": the conditional model,
    "matryoshka": the iterative route's model); each is a shipped name or a checkpoint file (.pt)."""
    models, digests = {}, {}
    for role, spec in names.items():
        if spec.endswith(".pt"):
            if not Path(spec).is_file():
                parser.error(f"--pair: no checkpoint file {spec}")
            checkpoint, digests[role] = load_checkpoint(spec), sha256_of(spec)[:12]
        elif spec in CHECKPOINT_NAMES:
            checkpoint = load_or_train(spec, fast=quick, progress=False)
            digests[role] = "quick" if quick else read_manifest(spec)["sha256"][:12]
        else:
            parser.error(f"--pair: {spec!r} is neither a checkpoint file (.pt) nor one of {', '.join(CHECKPOINT_NAMES)}")
        if checkpoint.config.conditional != (role == "imputation"):
            parser.error(f"--pair needs a conditional model, then an unconditional one; {spec} is not")
        models[role] = checkpoint.model()
    return models, digests


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="*", default=list(MASK_KINDS), choices=MASK_KINDS)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--k-check", nargs="*", default=[], choices=MASK_KINDS,
                        help="also measure these kinds at two k (--k-check-ks) on the first digits (--k-check-digits)")
    parser.add_argument("--k-check-ks", nargs=2, type=int, metavar=("SMALL", "BIG"),
                        help="the two k of --k-check (default: k and 10 k)")
    parser.add_argument("--k-check-digits", type=int, default=100, help="the first digits --k-check scores")
    parser.add_argument("--pair", nargs=2, default=list(PAIR), metavar=("CONDITIONAL", "UNCONDITIONAL"),
                        help="the conditional model and the iterative route's model (shipped names or .pt files)")
    parser.add_argument("--assemble-study", action="store_true",
                        help="only gather the per-seed files <out stem>_s<seed>.json into --out (across seeds)")
    parser.add_argument("--quick", action="store_true", help="fast-mode models, 20 digits (a smoke test)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where per-model/per-kind results are cached")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "imputation.json")
    args = parser.parse_args(argv)
    if args.assemble_study:
        return assemble_study(args.out)
    k_pair = args.k_check_ks or ((2, 20) if args.quick else (args.k, 10 * args.k))
    if not 0 < k_pair[0] < k_pair[1]:
        parser.error(f"--k-check-ks needs 0 < SMALL < BIG, got {k_pair[0]} {k_pair[1]}")
    if args.k_check_digits < 2:
        parser.error(f"--k-check-digits needs at least 2 digits (a standard error), got {args.k_check_digits}")
    data = load_mnist("embedded", seed=0)
    n = 20 if args.quick else len(data.test_images)
    x, labels = fixed_binarize(data.test_images, 0)[:n], data.test_labels[:n]
    names = dict(zip(PAIR, args.pair))
    models, digests = load_pair(names, args.quick, parser)
    digest = "-".join(digests[m] for m in ("imputation", "matryoshka"))
    judge = load_judge(progress=False)
    ceiling_judge = occluded_judge(args.quick, args.cache)
    prefix = ("quick-" if args.quick else "") + ("" if tuple(args.pair) == PAIR else
                                                 "-".join(Path(spec).stem for spec in args.pair) + "-")
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
    # Rows of earlier calls stay unless they scored other checkpoints or are measured again now.
    checks = [row for row in previous.get("k_check", []) if row.get("digest") == digest]
    if args.k_check:
        new = k_check(models, x, *k_pair, args.k_check, digests, args.cache, prefix, args.k_check_digits)
        measured = {(row["kind"], row["k_small"], row["k_big"]) for row in new}
        checks = [row for row in checks if (row["kind"], row["k_small"], row["k_big"]) not in measured] + new
        checks.sort(key=lambda row: (MASK_KINDS.index(row["kind"]), row["k_small"]))
    result = {"benchmark": f"imputation: the conditional model {names['imputation']} vs iterative imputation "
                           f"with {names['matryoshka']}", "pair": args.pair,
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
