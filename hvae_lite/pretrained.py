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

from .checkpoints import Checkpoint, load_checkpoint, save_checkpoint, sha256_of
from .config import HVAEConfig, get_preset
from .data import DataSplit, load_mnist
from .errors import CheckpointError, InputError
from .judge import DigitJudge, train_judge
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
               "grad_clip", "seed", "init_from", "new_lr", "mixture_init_epoch")
_CLI_SWITCHES = ("kl_balance", "amp")
_CLI_FIELDS = _CLI_VALUES + _CLI_SWITCHES


@dataclass(frozen=True)
class Recipe:
    """How one named checkpoint is trained: a preset (with overrides) and a TrainConfig."""

    preset: str
    train: TrainConfig
    overrides: dict[str, Any] = field(default_factory=dict)  # HVAEConfig fields changed from the preset
    base: str | None = None      # warm start from this named checkpoint (its trained weights)
    n_train: int | None = None   # use only the first n training digits (fast mode); None = all 4,000
    n_test: int | None = None    # held-out digits scored after each epoch; None = all 1,000

    @property
    def config(self) -> HVAEConfig:
        return get_preset(self.preset, **self.overrides)

    def command(self, out: str | Path) -> list[str]:
        """The `python -m hvae_lite train` command line that trains this recipe into `out`."""
        if self.n_train is not None or self.n_test is not None:
            raise InputError("the command line always trains on the whole embedded split")
        default = TrainConfig()
        unexposed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _CLI_FIELDS
                     and getattr(self.train, f.name) != getattr(default, f.name)]
        if unexposed:
            raise InputError(f"the command line cannot set {unexposed}: keep their defaults in a shipped recipe")
        args = ["python", "-m", "hvae_lite", "train", "--preset", self.preset, "--out", str(out), "--quiet"]
        for key, value in self.overrides.items():
            args += ["--set", f"{key}={value}"]
        for name in _CLI_VALUES:
            if getattr(self.train, name) != getattr(default, name):
                args += [f"--{name.replace('_', '-')}", str(getattr(self.train, name))]
        return args + [f"--{name.replace('_', '-')}" for name in _CLI_SWITCHES if getattr(self.train, name)]


# The shipped recipes (benchmarks/README.md has what each reaches and how long it took on one core).
# The default and the mixture model train 100 epochs: a 10-epoch warm-up with NVAE's KL balancing
# spreads information over all layers, free bits (0.5 nats) hold each layer open and are annealed
# away by epoch 60 so every posterior ends close to its prior, and an EMA of the weights is what is
# evaluated and shipped. The AR and imputation models start from the trained default (`base`).
_LONG = TrainConfig(epochs=100, lr=2e-3, warmup_epochs=10.0, kl_balance=True, free_bits=0.5,
                    free_bits_end_epoch=60.0, ema_decay=0.998, amp=True)
_FINE_TUNE = TrainConfig(epochs=12, lr=2e-4, warmup_epochs=0.0, ema_decay=0.995, amp=True,
                         init_from="runs/checkpoints/matryoshka.pt", new_lr=2e-3)
RECIPES: dict[str, Recipe] = {
    "matryoshka": Recipe("matryoshka", _LONG),
    "mixture": Recipe("mixture", dataclasses.replace(_LONG, mixture_init_epoch=10)),
    "matryoshka-ar": Recipe("matryoshka-ar", _FINE_TUNE, base="matryoshka"),
    "imputation": Recipe("imputation", _FINE_TUNE, base="matryoshka"),
}

# "Train it yourself" (no shipped checkpoint): the same ideas in about 10 minutes on a laptop CPU
# (fp32: bf16 autocast is slow on CPUs without bf16 instructions).
_QUICK = TrainConfig(epochs=12, batch_size=16, lr=2e-3, warmup_epochs=3.0, kl_balance=True, free_bits=0.5,
                     free_bits_end_epoch=10.0, ema_decay=0.95)
_QUICK_FINE_TUNE = TrainConfig(epochs=5, lr=2e-4, warmup_epochs=0.0, ema_decay=0.99, new_lr=2e-3)
QUICK_RECIPES: dict[str, Recipe] = {
    "matryoshka": Recipe("matryoshka", _QUICK),
    "mixture": Recipe("mixture", dataclasses.replace(_QUICK, mixture_init_epoch=3)),
    "matryoshka-ar": Recipe("matryoshka-ar", _QUICK_FINE_TUNE, base="matryoshka"),
    "imputation": Recipe("imputation", _QUICK_FINE_TUNE, base="matryoshka"),
}

# Fast mode: the same kinds of model on the tiny preset, one epoch on 300 digits (seconds).
_FAST_TRAIN = TrainConfig(epochs=1, batch_size=50, warmup_epochs=0.5, free_bits=0.1)
FAST_RECIPES: dict[str, Recipe] = {
    "matryoshka": Recipe("tiny", _FAST_TRAIN, n_train=300, n_test=100),
    "matryoshka-ar": Recipe("tiny", _FAST_TRAIN, {"ar_layers": 1, "ar_kernel": 3}, "matryoshka", 300, 100),
    "mixture": Recipe("tiny", _FAST_TRAIN, {"top_prior": "mixture"}, n_train=300, n_test=100),
    "imputation": Recipe("tiny", _FAST_TRAIN, {"conditional": True}, "matryoshka", 300, 100),
}


def _check_name(name: str) -> None:
    if name not in CHECKPOINT_NAMES:
        raise InputError(f"unknown checkpoint {name!r}; choose one of {CHECKPOINT_NAMES}")


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
    fix = "restore it from the repository (git checkout -- FILE) or rebuild it with `make checkpoints`"
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"the manifest {path} is not valid JSON ({error}); {fix}") from error
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise CheckpointError(f"the manifest {path} has no 'sha256' of its checkpoint; {fix}")
    return manifest


def recipe_for(name: str, fast: bool | None = None) -> Recipe:
    """The recipe `load_or_train` trains `name` with when no shipped file exists: the fast one
    (tests, CI) or the 10-minute one (QUICK_RECIPES), never the hour-long shipped recipe."""
    _check_name(name)
    return FAST_RECIPES[name] if fast_mode(fast) else QUICK_RECIPES[name]


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
    recipe = recipe_for(name, fast)
    runs, prefix = Path(runs_dir or RUNS_DIR), "fast-" if fast_mode(fast) else ""
    cache = runs / f"{prefix}{name}.pt"
    if recipe.base is not None:  # a fine-tune: first the model it starts from (loaded, or trained and cached)
        load_or_train(recipe.base, fast=fast, device=device, progress=progress, checkpoint_dir=checkpoint_dir,
                      runs_dir=runs_dir)
        base_shipped = Path(checkpoint_dir or CHECKPOINT_DIR) / f"{recipe.base}.pt"
        base_file = base_shipped if not fast_mode(fast) and base_shipped.is_file() else runs / f"{prefix}{recipe.base}.pt"
        recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, init_from=str(base_file)))
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
    save_checkpoint(Checkpoint(run.config, state, run.train_config, run.history, run.epoch, run.step,
                               data=run.data), out_path)
    return sha256_of(out_path)


JUDGE_QUICK_EPOCHS = 5  # when no shipped judge exists: about a minute, roughly 97% accurate


def load_judge(*, progress: bool = True, checkpoint_dir: str | Path | None = None,
               runs_dir: str | Path | None = None) -> DigitJudge:
    """The digit judge (hvae_lite.judge) in eval mode: the shipped `judge.pt`, verified against its
    manifest, in every mode (it is small and independent of the model being judged); if absent,
    a quickly trained one, cached under runs/pretrained/judge.pt."""
    shipped = Path(checkpoint_dir or CHECKPOINT_DIR) / "judge.pt"
    if shipped.is_file():
        manifest_path = shipped.with_suffix(".json")
        if not manifest_path.is_file():
            raise CheckpointError(f"no manifest at {manifest_path}: restore it from the repository")
        digest = json.loads(manifest_path.read_text())["sha256"]
        return load_checkpoint(shipped, expected_sha256=digest).model()
    cache = Path(runs_dir or RUNS_DIR) / "judge.pt"
    if cache.is_file():
        return load_checkpoint(cache).model()
    if progress:
        print(f"no shipped judge at {shipped}: training one for {JUDGE_QUICK_EPOCHS} epochs (about a minute)")
    data = load_mnist("embedded", seed=0)
    judge = train_judge(data.train_images, data.train_labels, epochs=JUDGE_QUICK_EPOCHS)
    save_checkpoint(Checkpoint(judge.config, judge.state_dict(), {"epochs": JUDGE_QUICK_EPOCHS, "seed": 0}), cache)
    return judge
