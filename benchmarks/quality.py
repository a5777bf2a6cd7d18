"""Quality at equal budget: the baseline, the ablations, the Matryoshka model, its AR head, and depth.

    PYTHONPATH=. python benchmarks/quality.py [--epochs 10] [--depths 2 4 8 16] [--quick]

Every model is trained with the same short recipe (hvae_lite.recipes.ABLATION_RECIPE, the first landing's
shipped recipe: same epochs, batch, optimiser, warm-up, free bits) on the embedded split (seed 0) and scored with
common.heldout_metrics. The HVAE variants are the width-32 (default `matryoshka`) family. A model whose
config and recipe equal a shipped checkpoint's is not retrained: its manifest's numbers are used.
Runs are cached under runs/bench/quality/ (an interrupted run resumes). Writes
benchmarks/results/quality.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from common import IWAE_IMAGES, IWAE_K, RESULTS_DIR, heldout_metrics, machine, write_json
from hvae_lite.baseline import MLPVAEConfig
from hvae_lite.checkpoints import ModelConfig, load_checkpoint
from hvae_lite.config import HVAEConfig, TrainConfig, depth_spec, get_preset
from hvae_lite.data import DataSplit, load_mnist
from hvae_lite.paths import BENCH_RUNS_DIR, CHECKPOINT_DIR, REPO_ROOT
from hvae_lite.recipes import ABLATION_RECIPE, CHECKPOINT_NAMES
from hvae_lite.train import Trainer
from tables import quality_table


def variants(base: HVAEConfig, mlp: MLPVAEConfig, depths: list[int]) -> dict[str, ModelConfig]:
    """(a) MLP, (b) no deterministic top-down path, (c) no inference merge, (d) Matryoshka, (e) + AR, (f) depth."""
    models: dict[str, ModelConfig] = {
        "mlp-vae": mlp,
        "no-td-path": base.replace(deterministic_path=False),
        "no-merge": base.replace(inference_merge=False),
        "matryoshka": base,
        "matryoshka-ar": base.replace(ar_layers=3),
    }
    for n in depths:
        models[f"depth-{n}"] = base.replace(latent_spec=depth_spec(n))
    return models


def shipped_metrics(config: ModelConfig, train_config: TrainConfig, k: int, n_iwae: int) -> dict | None:
    """The manifest of a shipped checkpoint trained with exactly this config and recipe, if any."""
    for name in CHECKPOINT_NAMES:
        path = CHECKPOINT_DIR / f"{name}.json"
        if not path.is_file():
            continue
        manifest = json.loads(path.read_text())
        # from_dict fills in settings added since the manifest was written, at their defaults
        same_recipe = (dict(TrainConfig.from_dict(manifest["train_config"]).to_dict(), device=None)
                       == dict(train_config.to_dict(), device=None))
        same_eval = (manifest["heldout"]["iwae_k"], manifest["heldout"]["n_iwae_images"]) == (k, n_iwae)
        try:  # from_dict fills in fields added since the manifest was written
            same_config = type(config).from_dict(manifest["config"]) == config
        except (KeyError, TypeError, ValueError):  # a manifest of another kind of model
            same_config = False
        if same_config and same_recipe and same_eval:
            return manifest
    return None


def run_variant(name: str, config: ModelConfig, train_config: TrainConfig, data: DataSplit,
                run_dir: Path, k: int, n_iwae: int, progress: bool) -> dict[str, Any]:
    """Train (or resume, or reuse) one variant and score it."""
    n_params = None
    manifest = shipped_metrics(config, train_config, k, n_iwae)
    if manifest is not None:
        metrics, seconds, source = manifest["heldout"], manifest["train_seconds"], f"shipped checkpoint {manifest['name']}"
        n_params = manifest["parameters"]
        history = manifest["history"]
    else:
        path = run_dir / f"{name}.pt"
        cached = load_checkpoint(path) if path.is_file() else None
        if cached is not None and (cached.config, cached.train_config) == (config, train_config.to_dict()):
            trainer = Trainer.resume(path, data, progress=progress)
        else:
            trainer = Trainer(config, train_config, data, checkpoint_path=path, progress=progress)
        history = trainer.fit()
        metrics = heldout_metrics(trainer.model, data, k=k, n_iwae=n_iwae)
        seconds, source = sum(r["seconds"] for r in history), f"trained ({path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path})"
        n_params = sum(p.numel() for p in trainer.model.parameters())
    return {"variant": name, "config": config.to_dict(), "parameters": n_params, "epochs": len(history),
            "train_seconds": seconds, "images_per_s": sum(r["images_per_s"] for r in history) / len(history),
            "source": source, **metrics}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=ABLATION_RECIPE.epochs)
    parser.add_argument("--depths", type=int, nargs="*", default=[2, 4, 8, 16],
                        help="depth sweep (conv latent maps); 10 is the Matryoshka model itself")
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument("--mlp-long-epochs", type=int, default=200, help="epochs of the extra, long MLP row")
    parser.add_argument("--k", type=int, default=IWAE_K)
    parser.add_argument("--n-iwae", type=int, default=IWAE_IMAGES)
    parser.add_argument("--quick", action="store_true", help="tiny models, 1 epoch, 200 digits (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "quality.json")
    parser.add_argument("--run-dir", type=Path, default=BENCH_RUNS_DIR / "quality")
    args = parser.parse_args(argv)

    data = load_mnist("embedded", seed=0)
    train_config = dataclasses.replace(ABLATION_RECIPE, epochs=args.epochs)
    base, mlp = get_preset("matryoshka"), MLPVAEConfig()
    if args.quick:
        data = dataclasses.replace(data, train_images=data.train_images[:200], test_images=data.test_images[:50],
                                   test_labels=data.test_labels[:50])
        train_config = dataclasses.replace(train_config, epochs=1, batch_size=50, warmup_epochs=0.5, free_bits=0.1)
        base, mlp = get_preset("tiny"), MLPVAEConfig(hidden=(64,), latent_dim=4)
        args.mlp_long_epochs = 2
    plan = [(name, config, train_config) for name, config in variants(base, mlp, args.depths).items()]
    # The MLP trains ~70x faster per epoch: also show it given many more epochs (closer to equal time).
    long_mlp = dataclasses.replace(train_config, epochs=args.mlp_long_epochs)
    plan.insert(1, (f"mlp-vae-{args.mlp_long_epochs}ep", mlp, long_mlp))
    rows = []
    for name, config, recipe in plan:
        if args.only and name not in args.only:
            continue
        same = next((r for r in rows if (r["config"], r["epochs"]) == (config.to_dict(), recipe.epochs)), None)
        row = dict(same, variant=name) if same else run_variant(
            name, config, recipe, data, args.run_dir, args.k, args.n_iwae, progress=sys.stderr.isatty())
        rows.append(row)
        print(f"{name}: ELBO {row['elbo']:.2f}, IWAE-{args.k} NLL {row['nll_iwae']:.2f} +- {row['nll_iwae_stderr']:.2f}",
              flush=True)
        result = {"benchmark": "quality at equal budget", "family": f"HVAE width {base.width}",
                  "train_config": train_config.to_dict(), "data": {"source": "embedded", "split_seed": 0,
                  "n_train": len(data.train_images), "n_test": len(data.test_images)},
                  "iwae": {"k": args.k, "images": f"the first {args.n_iwae} held-out digits"},
                  "machine": machine(), "rows": rows}
        write_json(args.out, result)  # after every row: an interrupted run keeps what it measured
    print(quality_table(result))
    return result


if __name__ == "__main__":
    main()
