"""What the benchmark scripts share: the held-out metrics every model is scored with, and JSON output."""
from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any, Callable

import torch

from hvae_lite import files
from hvae_lite.checkpoints import Checkpoint, load_checkpoint
from hvae_lite.paths import RESULTS_DIR
from hvae_lite.data import DataSplit
from hvae_lite.objectives import bits_per_dim
from hvae_lite.evaluate import (
    active_units, clustering_accuracy, evaluate, heldout_elbo, layers_in_use, mixture_assignments, prepare_heldout,
)

# IWAE on a fixed subset: k = 500 on all 1,000 held-out digits is 500,000 forward passes, hours on 2 cores.
IWAE_K, IWAE_IMAGES = 500, 32
ELBO_SUBSET = 100  # the first 100 held-out digits, torch seed 0: a check a test can recompute in a second


@torch.no_grad()
def heldout_metrics(model: torch.nn.Module, data: DataSplit, k: int = IWAE_K,
                    n_iwae: int = IWAE_IMAGES, free_bits_floor: float = 0.0) -> dict[str, Any]:
    """ELBO, KL per layer, layers in use (given the free-bits floor of training) and active units
    on all held-out digits; IWAE-k NLL +- stderr on the first `n_iwae` (k = 0: none); clustering
    accuracy for a mixture prior. Fixed binarisation (seed 0), fp32."""
    model.eval()
    torch.manual_seed(0)
    elbo, kl = heldout_elbo(model, data.test_images)
    torch.manual_seed(0)
    subset_elbo, _ = heldout_elbo(model, data.test_images[:ELBO_SUBSET])
    metrics = {
        "elbo": elbo, "n_elbo_images": len(data.test_images), "kl_per_layer": kl, "kl_total": sum(kl),
        "free_bits_floor": free_bits_floor, "in_use": layers_in_use(kl, free_bits_floor),
        "active_units": active_units(model, prepare_heldout(model, data.test_images, 0)),
        "elbo_subset": {"elbo": subset_elbo, "n_images": ELBO_SUBSET, "torch_seed": 0},
        "iwae_k": k, "n_iwae_images": n_iwae if k else 0,
    }
    if model.config.likelihood == "logistic":  # 8-bit images: the usual unit, bits per sub-pixel
        metrics["elbo_bits_per_dim"] = bits_per_dim(-elbo, math.prod(model.config.image_shape))
    if k:  # k = 0: no IWAE (it costs k forward passes per image)
        iwae = evaluate(model, data.test_images[:n_iwae], k=k, seed=0)
        metrics.update(nll_iwae=iwae["nll_iwae"], nll_iwae_stderr=iwae["nll_iwae_stderr"],
                       elbo_on_iwae_images=iwae["elbo"], bits_per_dim=iwae["bits_per_dim"])
    if getattr(getattr(model, "top", None), "mixture", None) is not None:
        assignments = mixture_assignments(model, prepare_heldout(model, data.test_images, 0))
        metrics["clustering_accuracy"] = clustering_accuracy(assignments, data.test_labels)
    return metrics


def machine() -> dict[str, Any]:
    """The machine a result was measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.cuda.is_available()}


def write_json(path: Path, payload: dict[str, Any], allow_shipped: bool = False) -> None:
    """Atomically (hvae_lite.files); allow_shipped: a manifest in the shipped folder (make checkpoints)."""
    files.write_json(path, payload, allow_shipped=allow_shipped)
    print(f"wrote {path}")


def finished_run(path: Path, epochs: int, data: DataSplit, new_trainer: Callable[[], Any]) -> Checkpoint:
    """The training run at `path`, `epochs` long: loaded when finished, resumed when cut short,
    else started with `new_trainer()` (a Trainer that saves to `path`)."""
    from hvae_lite.train import Trainer

    if path.is_file():
        checkpoint = load_checkpoint(path)
        if checkpoint.epoch >= epochs:
            return checkpoint
        trainer = Trainer.resume(path, data, progress=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer = new_trainer()
    trainer.fit()
    return load_checkpoint(path)
