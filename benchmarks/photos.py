"""Natural images (issue 19): the shipped colour models on every held-out photo patch.

    PYTHONPATH=. python benchmarks/photos.py [--k 100] [--imputation-k 20] [--kinds center squares bottom right]
    PYTHONPATH=. python benchmarks/photos.py --quick      # the tiny fast-mode models on 50 patches (a smoke test)

The models (hvae_lite.recipes.RECIPES): `photos` (the Matryoshka network with a discretised-logistic
mixture), `photos-ar` (its colour autoregressive head, fine-tuned from it), `photos-control` (the
same fine-tune without a head: the control that differs from photos-ar in the head alone) and
`photos-imputation` (the conditional model, trained from scratch on every occlusion kind with its
loss on the missing pixels, as the paper trains it). All 827 held-out patches (photographs never
trained on), fp32, latent draws from seed 0:
(a) bits per sub-pixel (bits/dim) of each patch: the ELBO and the IWAE-k bound (k >= 100), and the
    paired differences between models, each with its standard error and the kit's verdict rule;
(b) the held-out KL per layer and the layers in use (`evaluate.layers_in_use`, given the free-bits
    floor of training);
(c) imputation: for each occlusion kind (one mask per patch, `data.heldout_masks`), bits per missing
    sub-pixel of log p(x_missing | x_observed): the conditional model's IWAE-k bound against the
    iterative route's model (`photos`: IWAE-k log p(x) - IWAE-k log p(x_observed), shared latent
    samples: an estimate, not a bound), paired per patch.
Each model's scores and each imputation kind are cached in runs/bench/photos/ (keyed by the
checkpoints' sha256), so the script resumes and two processes can share the work; every call writes
benchmarks/results/photos.json from what is cached.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from common import RESULTS_DIR, machine, write_json
from hvae_lite.checkpoints import read_manifest
from hvae_lite.data import heldout_masks
from hvae_lite.evaluate import layers_in_use, per_image_scores
from hvae_lite.impute import full_log_likelihood, missing_log_likelihood
from hvae_lite.paths import BENCH_RUNS_DIR
from hvae_lite.pretrained import load_or_train
from hvae_lite.recipes import RECIPES, recipe_data, recipe_for
from hvae_lite.results import mean_stderr, paired_difference, verdict

CACHE = BENCH_RUNS_DIR / "photos"
MODELS = ("photos", "photos-ar", "photos-control", "photos-imputation")
SCORED = ("photos", "photos-ar", "photos-control")   # bits/dim of whole patches (the conditional model scores gaps)
PAIRS = (("photos-ar", "photos-control"), ("photos-control", "photos"), ("photos-ar", "photos"))
KINDS = ("center", "squares", "bottom", "right")     # occluded squares and halves
BATCH, CHUNK = 50, 10                                 # imputation: 50 patches x 10 samples per forward pass


def digest(name: str, quick: bool) -> str:
    return "quick" if quick else read_manifest(name)["sha256"][:16]


def cached(path: Path, key: str, compute) -> Any:
    """`compute()`, stored at `path` under `key` (a checkpoint digest); reused while the key matches."""
    if path.is_file() and (stored := torch.load(path, weights_only=True))["key"] == key:
        return stored["value"]
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "value": value}, path)
    return value


def to_bits(nats: torch.Tensor, n_dims: float | torch.Tensor) -> torch.Tensor:
    return nats / (n_dims * math.log(2))


def model_scores(name: str, model, images: torch.Tensor, k: int, floor: float) -> dict[str, Any]:
    """Per patch: ELBO and IWAE-k bits/dim; the KL per layer and the layers in use."""
    scores = per_image_scores(model, images, k, seed=0)
    dims = math.prod(model.config.image_shape)
    kl = scores["kl"].mean(0).tolist()
    return {"elbo_bpd": to_bits(-scores["elbo"], dims).tolist(), "iwae_bpd": to_bits(scores["nll_iwae"], dims).tolist(),
            "kl_per_layer": kl, "free_bits_floor": floor, "in_use": layers_in_use(kl, floor)}


def imputation_kind(kind: str, conditional, unconditional, x: torch.Tensor, k: int,
                    log_px: torch.Tensor) -> dict[str, list[float]]:
    """Per patch, bits per missing sub-pixel of each route under one occlusion kind."""
    mask = heldout_masks(len(x), x.shape[-1], seed=0, kind=kind)
    missing = (1 - mask).flatten(1).sum(1) * x.shape[1]  # sub-pixels
    routes = {"conditional": [], "iterative": []}
    for start in range(0, len(x), BATCH):
        rows = slice(start, start + BATCH)
        routes["conditional"].append(missing_log_likelihood(conditional, x[rows], mask[rows], k=k, chunk_size=CHUNK,
                                                            seed=0))
        routes["iterative"].append(missing_log_likelihood(unconditional, x[rows], mask[rows], k=k, chunk_size=CHUNK,
                                                          seed=0, log_px=log_px[rows]))
    return {route: to_bits(-torch.cat(values).double(), missing).tolist() for route, values in routes.items()} | {
        "missing_subpixels": missing.mean().item()}


def summary(values: list[float]) -> list[float]:
    return list(mean_stderr(values))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=100, help="importance samples of the IWAE bound on whole patches")
    parser.add_argument("--imputation-k", type=int, default=20, help="importance samples for the missing pixels")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), help="occlusion kinds (data.MASK_KINDS)")
    parser.add_argument("--models", nargs="*", default=list(SCORED), choices=SCORED, help="models to score now")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="fast-mode models, 50 patches, k = 5 (a smoke test)")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "photos.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    k, imputation_k = (5, 2) if args.quick else (args.k, args.imputation_k)
    data = recipe_data(recipe_for("photos", fast=args.quick)) if args.quick else recipe_data(RECIPES["photos"])
    images = data.test_images
    prefix = "quick-" if args.quick else ""
    if not args.quick:  # scores are keyed by the shipped files: fail now, not after training stand-ins
        for name in MODELS:
            read_manifest(name)
    checkpoints = {name: load_or_train(name, fast=args.quick, progress=False) for name in MODELS}
    models = {name: checkpoint.model() for name, checkpoint in checkpoints.items()}
    for name in args.models:
        floor = max(RECIPES[name].train.free_bits, RECIPES[RECIPES[name].base].train.free_bits if RECIPES[name].base else 0)
        cached(args.cache / f"{prefix}{name}-k{k}.pt", digest(name, args.quick),
               lambda: model_scores(name, models[name], images, k, floor))
        print(f"{name}: scored", flush=True)
    pair_key = "-".join(digest(name, args.quick) for name in ("photos", "photos-imputation"))
    log_px = None
    for kind in args.kinds:
        def compute():
            nonlocal log_px
            if log_px is None:  # the same slices and seed as missing_log_likelihood's
                log_px = torch.cat([full_log_likelihood(models["photos"], images[i:i + BATCH], k=imputation_k,
                                                        chunk_size=CHUNK, seed=0) for i in range(0, len(images), BATCH)])
            return imputation_kind(kind, models["photos-imputation"], models["photos"], images, imputation_k, log_px)
        cached(args.cache / f"{prefix}impute-{kind}-k{imputation_k}.pt", pair_key, compute)
        print(f"imputation {kind}: scored", flush=True)

    # Assemble the results file from whatever is cached for the current checkpoints.
    per_patch, rows = {}, {}
    for name in SCORED:
        path = args.cache / f"{prefix}{name}-k{k}.pt"
        if path.is_file() and (stored := torch.load(path, weights_only=True))["key"] == digest(name, args.quick):
            per_patch[name] = stored["value"]
    for name, scores in per_patch.items():
        manifest = {} if args.quick else read_manifest(name)
        rows[name] = {"elbo_bpd": summary(scores["elbo_bpd"]), "iwae_bpd": summary(scores["iwae_bpd"]),
                      "kl_per_layer": scores["kl_per_layer"], "in_use": scores["in_use"],
                      "layers_in_use": sum(scores["in_use"]), "n_layers": len(scores["in_use"]),
                      "train_seconds": manifest.get("train_seconds"), "epochs": manifest.get("epochs"),
                      "parameters": sum(p.numel() for p in models[name].parameters())}
    paired = {}
    for a, b in PAIRS:
        if a in per_patch and b in per_patch:
            entry = {}
            for measure in ("elbo_bpd", "iwae_bpd"):
                difference, stderr = paired_difference(per_patch[a][measure], per_patch[b][measure])
                entry[measure] = [difference, stderr]
                entry[f"{measure}_verdict"] = verdict(difference, stderr, higher_is_better=False).word
            paired[f"{a} - {b}"] = entry
    imputation = []
    for kind in KINDS:
        path = args.cache / f"{prefix}impute-{kind}-k{imputation_k}.pt"
        if not (path.is_file() and (stored := torch.load(path, weights_only=True))["key"] == pair_key):
            continue
        scores = stored["value"]
        difference, stderr = paired_difference(scores["conditional"], scores["iterative"])
        imputation.append({"kind": kind, "missing_subpixels": scores["missing_subpixels"],
                           "conditional_bpd": summary(scores["conditional"]), "iterative_bpd": summary(scores["iterative"]),
                           "conditional_minus_iterative": [difference, stderr],
                           "verdict": verdict(difference, stderr, higher_is_better=False).word})
    result = {
        "benchmark": "natural images: colour models on the held-out photo patches (bits/dim, layers in use, imputation)",
        "protocol": {"n_images": len(images), "data": "photos: 32x32 patches of photographs never trained on",
                     "k": k, "imputation_k": imputation_k, "precision": "fp32", "seed": 0,
                     "bpd": "bits per sub-pixel: -log2 p / (3 * 32 * 32); lower is better",
                     "paired": "per patch, A - B, standard error over patches (patches overlap by half: optimistic)",
                     "imputation": "bits per missing sub-pixel of log p(x_missing | x_observed); conditional: IWAE-k "
                                   "bound; iterative route's model (photos): IWAE-k log p(x) - IWAE-k log p(x_observed), "
                                   "shared samples, an estimate", "quick": args.quick},
        "models": rows, "paired": paired, "imputation": imputation,
        "per_patch": {name: {"elbo_bpd": s["elbo_bpd"], "iwae_bpd": s["iwae_bpd"]} for name, s in per_patch.items()},
        "machine": machine(),
    }
    write_json(args.out, result)
    for name, row in rows.items():
        print(f"{name}: ELBO {row['elbo_bpd'][0]:.3f}, IWAE-{k} {row['iwae_bpd'][0]:.3f} bits/dim, "
              f"{row['layers_in_use']} of {row['n_layers']} layers in use")
    for pair, entry in paired.items():
        print(f"{pair}: IWAE {entry['iwae_bpd'][0]:+.3f} +- {entry['iwae_bpd'][1]:.3f} bits/dim ({entry['iwae_bpd_verdict']})")
    for row in imputation:
        print(f"{row['kind']}: conditional {row['conditional_bpd'][0]:.3f}, iterative {row['iterative_bpd'][0]:.3f} "
              f"bits per missing sub-pixel ({row['verdict']})")
    return result


if __name__ == "__main__":
    main()
