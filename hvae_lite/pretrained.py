"""Pretrained models for the notebooks: load the shipped checkpoint, or train it (and cache it).

`load_or_train("matryoshka")` returns a `Checkpoint` in seconds when CHECKPOINT_DIR holds the
file (verified against the sha256 in its manifest), and otherwise trains it with the same recipe
the shipped file was made with, caching the result under RUNS_DIR so the next call loads it. In fast mode (tests, CI notebooks: env HVAE_LITE_FAST=1) it trains a tiny model on a
few hundred digits in seconds instead, and never reads the shipped files.

Where the files are, looked up once here and nowhere else:
- in a clone (an editable install, or the package on PYTHONPATH): CHECKPOINT_DIR is the source
  tree's `data/checkpoints/`, RUNS_DIR its gitignored `runs/pretrained/`;
- in an installed package (a wheel, `pip install .`): the same files ship as package data in
  `hvae_lite/shipped/` (pyproject.toml maps `data/checkpoints/` there), and RUNS_DIR is the
  user's cache directory (e.g. `~/.cache/hvae_lite/pretrained` on Linux), never site-packages.

Shipped checkpoints hold model weights only (no optimiser state), stored as float32 or, to keep
the repository small, float16/bfloat16 (cast back to float32 on load).
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import torch

from .checkpoints import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint, sha256_of
from .config import HVAEConfig, get_preset
from .data import DataSplit, load_mnist
from .train import TrainConfig, Trainer

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# A clone has its pyproject.toml beside the package; an installed package sits in site-packages.
IN_SOURCE_TREE = (REPO_ROOT / "pyproject.toml").is_file()
CHECKPOINT_DIR = REPO_ROOT / "data" / "checkpoints" if IN_SOURCE_TREE else PACKAGE_DIR / "shipped"
# Where load_or_train caches what it trains: gitignored in a clone, the user's cache when installed.
RUNS_DIR = REPO_ROOT / "runs" / "pretrained" if IN_SOURCE_TREE else platformdirs.user_cache_path("hvae_lite") / "pretrained"
CHECKPOINT_NAMES = ("matryoshka", "matryoshka-ar", "mixture", "imputation")
FAST_ENV = "HVAE_LITE_FAST"
# TrainConfig fields `python -m hvae_lite train` has flags for: valued flags, then switches.
_CLI_VALUES = ("epochs", "batch_size", "lr", "warmup_epochs", "free_bits", "free_bits_end_epoch", "ema_decay",
               "grad_clip", "seed", "init_from", "mixture_init_epoch")
_CLI_SWITCHES = ("kl_balance", "amp")
_CLI_FIELDS = _CLI_VALUES + _CLI_SWITCHES


@dataclass(frozen=True)
class Recipe:
    """How one named checkpoint is trained: a preset (with overrides) and a TrainConfig."""

    preset: str
    train: TrainConfig
    overrides: dict[str, Any] = field(default_factory=dict)  # HVAEConfig fields changed from the preset
    n_train: int | None = None   # use only the first n training digits (fast mode); None = all 4,000
    n_test: int | None = None    # held-out digits scored after each epoch; None = all 1,000

    @property
    def config(self) -> HVAEConfig:
        return get_preset(self.preset, **self.overrides)

    def command(self, out: str | Path) -> list[str]:
        """The `python -m hvae_lite train` command line that trains this recipe into `out`."""
        if self.n_train is not None or self.n_test is not None:
            raise ValueError("the command line always trains on the whole embedded split")
        default = TrainConfig()
        unexposed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _CLI_FIELDS
                     and getattr(self.train, f.name) != getattr(default, f.name)]
        if unexposed:
            raise ValueError(f"the command line cannot set {unexposed}: keep their defaults in a shipped recipe")
        args = ["python", "-m", "hvae_lite", "train", "--preset", self.preset, "--out", str(out), "--quiet"]
        for key, value in self.overrides.items():
            args += ["--set", f"{key}={value}"]
        for name in _CLI_VALUES:
            if getattr(self.train, name) != getattr(default, name):
                args += [f"--{name.replace('_', '-')}", str(getattr(self.train, name))]
        return args + [f"--{name.replace('_', '-')}" for name in _CLI_SWITCHES if getattr(self.train, name)]


# The shipped recipes: the width-32 family (the width-64 author shape trains ~3x slower), per-layer
# free bits (without them several layers go unused); benchmarks/README.md has the measurements.
_RECIPE_TRAIN = TrainConfig(epochs=10, lr=2e-3, warmup_epochs=3.0, free_bits=0.5, amp=True)
RECIPES: dict[str, Recipe] = {
    "matryoshka": Recipe("cpu", _RECIPE_TRAIN),
    "matryoshka-ar": Recipe("cpu-ar", _RECIPE_TRAIN),
    "mixture": Recipe("mixture", _RECIPE_TRAIN),
    "imputation": Recipe("imputation", _RECIPE_TRAIN),
}

# Fast mode: the same kinds of model on the tiny preset, one epoch on 300 digits (seconds).
_FAST_TRAIN = TrainConfig(epochs=1, batch_size=50, warmup_epochs=0.5, free_bits=0.1)
FAST_RECIPES: dict[str, Recipe] = {
    "matryoshka": Recipe("tiny", _FAST_TRAIN, n_train=300, n_test=100),
    "matryoshka-ar": Recipe("tiny", _FAST_TRAIN, {"ar_layers": 2}, n_train=300, n_test=100),
    "mixture": Recipe("tiny", _FAST_TRAIN, {"top_prior": "mixture"}, n_train=300, n_test=100),
    "imputation": Recipe("tiny", _FAST_TRAIN, {"conditional": True}, n_train=300, n_test=100),
}


def _check_name(name: str) -> None:
    if name not in CHECKPOINT_NAMES:
        raise ValueError(f"unknown checkpoint {name!r}; choose one of {CHECKPOINT_NAMES}")


def fast_mode(fast: bool | None = None) -> bool:
    """The argument, else env HVAE_LITE_FAST == '1'."""
    return os.environ.get(FAST_ENV) == "1" if fast is None else fast


def read_manifest(name: str, checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """The manifest `<name>.json` of a shipped checkpoint: command, config, data split, seed,
    epochs, wall-clock, held-out metrics and the sha256 of the .pt file."""
    _check_name(name)
    path = Path(checkpoint_dir or CHECKPOINT_DIR) / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"no manifest at {path}: run `make checkpoints` or restore it from the repository")
    return json.loads(path.read_text())


def recipe_for(name: str, fast: bool | None = None, checkpoint_dir: str | Path | None = None) -> Recipe:
    """The recipe `load_or_train` trains `name` with: fast, else the manifest's, else RECIPES."""
    _check_name(name)
    if fast_mode(fast):
        return FAST_RECIPES[name]
    manifest_path = Path(checkpoint_dir or CHECKPOINT_DIR) / f"{name}.json"
    if manifest_path.is_file():
        manifest = read_manifest(name, checkpoint_dir)
        return Recipe(manifest["preset"], TrainConfig.from_dict(manifest["train_config"]),
                      manifest.get("overrides", {}))
    return RECIPES[name]


def recipe_data(recipe: Recipe, split_seed: int = 0) -> DataSplit:
    """The embedded split, cut to the recipe's number of digits."""
    data = load_mnist("embedded", seed=split_seed)
    return dataclasses.replace(data, train_images=data.train_images[:recipe.n_train],
                               train_labels=data.train_labels[:recipe.n_train],
                               test_images=data.test_images[:recipe.n_test],
                               test_labels=data.test_labels[:recipe.n_test])


def _same_recipe(checkpoint: Checkpoint, recipe: Recipe) -> bool:
    """Does a cached run belong to this recipe? (the device it ran on does not matter)"""
    cached = dict(checkpoint.train_config, device=None)
    wanted = dict(recipe.train.to_dict(), device=None)
    return checkpoint.config == recipe.config and cached == wanted


def load_or_train(name: str, *, fast: bool | None = None, device: str = "auto", progress: bool = True,
                  checkpoint_dir: str | Path | None = None, runs_dir: str | Path | None = None) -> Checkpoint:
    """The named model as a Checkpoint (weights in float32; `.model(device)` builds it).

    Not fast: the shipped `CHECKPOINT_DIR/<name>.pt`, verified against its manifest; if it is
    absent, a cached run under RUNS_DIR; else trains the recipe (minutes, with a warning that says
    why) and caches it.
    Fast (default: env HVAE_LITE_FAST == '1'): a tiny model trained in seconds, cached likewise.
    An interrupted training resumes from its cached epoch on the next call.
    """
    _check_name(name)
    shipped = Path(checkpoint_dir or CHECKPOINT_DIR) / f"{name}.pt"
    if not fast_mode(fast) and shipped.is_file():
        manifest = read_manifest(name, checkpoint_dir)
        return _as_float32(load_checkpoint(shipped, expected_sha256=manifest["sha256"]))
    recipe = recipe_for(name, fast, checkpoint_dir)
    cache = Path(runs_dir or RUNS_DIR) / f"{'fast-' if fast_mode(fast) else ''}{name}.pt"
    data = recipe_data(recipe)
    trainer = None
    if cache.is_file():
        cached = load_checkpoint(cache)
        if _same_recipe(cached, recipe):
            if cached.epoch >= recipe.train.epochs:
                return cached
            trainer = Trainer.resume(cache, data, progress=progress)
    if trainer is None:
        if not fast_mode(fast):
            warnings.warn(f"no shipped checkpoint {shipped} and no cached run {cache}: training {name!r} "
                          f"with its recipe, which takes minutes on a CPU (a clone has the shipped files in "
                          f"data/checkpoints/, an installed package in hvae_lite/shipped/)", stacklevel=2)
        train_config = dataclasses.replace(recipe.train, device=device)
        trainer = Trainer(recipe.config, train_config, data, checkpoint_path=cache, progress=progress)
    trainer.fit()
    return trainer.checkpoint()


def _as_float32(checkpoint: Checkpoint) -> Checkpoint:
    state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint.model_state.items()}
    return dataclasses.replace(checkpoint, model_state=state)


def ship_checkpoint(run_path: str | Path, out_path: str | Path, dtype: torch.dtype = torch.float32) -> str:
    """Write the weights-only copy of a training checkpoint (model state in `dtype`, history kept,
    no optimiser, scheduler or RNG state) to `out_path`; returns its sha256."""
    run = load_checkpoint(run_path)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in run.evaluation_state().items()}
    save_checkpoint(Checkpoint(run.config, state, run.train_config, run.history, run.epoch, run.step), out_path)
    return sha256_of(out_path)
