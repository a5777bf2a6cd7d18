"""Trained models for the notebooks and the report: load the shipped checkpoint, or train it (and cache it).

`load_or_train("matryoshka")` returns a `Checkpoint` in seconds when the shipped folder
(`paths.CHECKPOINT_DIR`) holds the file (verified against the sha256 in its manifest), and
otherwise trains it with its quick recipe (`recipes.recipe_for`), caching the result under
`paths.PRETRAINED_RUNS_DIR` so the next call loads it. In fast mode (tests, CI notebooks: env
HVAE_LITE_FAST=1) it trains a tiny model on a few hundred digits in seconds instead, and never
reads the shipped files. `report_checkpoint` is the report's one decision: a shipped model or one
trained here. `load_judge` does the same for the digit judge.

Shipped checkpoints hold model weights only (no optimiser state), stored as float32 or, to keep
the repository small, float16/bfloat16 (cast back to float32 on load).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch

from . import paths
from .config import TrainConfig
from .checkpoints import Checkpoint, ModelConfig, load_checkpoint, load_shipped, save_checkpoint, sha256_of
from .errors import CheckpointError, ConfigError
from .data import load_mnist
from .judge import DigitJudge, train_judge
from .priors import with_fitted_prior_checkpoint
from .recipes import CHECKPOINT_NAMES, RECIPES, Recipe, check_name, fast_mode, recipe_data, recipe_for
from .train import Trainer


def _same_recipe(checkpoint: Checkpoint, recipe: Recipe) -> bool:
    """Does a cached run belong to this recipe? (the device it ran on does not matter)"""
    try:  # from_dict fills in settings added since the run was cached, at their defaults
        cached = dict(TrainConfig.from_dict(checkpoint.train_config).to_dict(), device=None)
    except (ConfigError, TypeError):
        return False
    wanted = dict(recipe.train.to_dict(), device=None)
    return checkpoint.config == recipe.config and cached == wanted


def load_or_train(name: str, *, fast: bool | None = None, device: str = "auto", progress: bool = True,
                  checkpoint_dir: str | Path | None = None, runs_dir: str | Path | None = None) -> Checkpoint:
    """The named model as a Checkpoint (weights in float32; `.model(device)` builds it).

    Not fast: the shipped `CHECKPOINT_DIR/<name>.pt`, verified against its manifest; if it is
    absent, a cached run under PRETRAINED_RUNS_DIR; else trains the quick recipe (minutes, with a
    warning that says why) and caches it.
    Fast (default: env HVAE_LITE_FAST == '1'): a tiny model trained in seconds, cached likewise.
    An interrupted training resumes from its cached epoch on the next call.
    """
    check_name(name)
    shipped_dir = Path(checkpoint_dir or paths.CHECKPOINT_DIR)
    shipped = shipped_dir / f"{name}.pt"
    if not fast_mode(fast) and shipped.is_file():
        return _as_float32(load_shipped(name, shipped_dir))
    recipe = recipe_for(name, fast)
    runs, prefix = Path(runs_dir or paths.PRETRAINED_RUNS_DIR), "fast-" if fast_mode(fast) else ""
    cache = runs / f"{prefix}{name}.pt"
    if recipe.base is not None:  # a fine-tune: first the model it starts from (loaded, or trained and cached)
        load_or_train(recipe.base, fast=fast, device=device, progress=progress, checkpoint_dir=checkpoint_dir,
                      runs_dir=runs_dir)
        base_shipped = shipped_dir / f"{recipe.base}.pt"
        base_file = base_shipped if not fast_mode(fast) and base_shipped.is_file() else runs / f"{prefix}{recipe.base}.pt"
        recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, init_from=str(base_file)))
    data = recipe_data(recipe)
    trainer = None
    if cache.is_file():
        cached = load_checkpoint(cache)
        if _same_recipe(cached, recipe):
            if cached.epoch >= recipe.train.epochs:
                return _second_stage(recipe, cache, data)
            trainer = Trainer.resume(cache, data, progress=progress)
    if trainer is None:
        if not fast_mode(fast):
            warnings.warn(f"no shipped checkpoint {shipped} and no cached run {cache}: training {name!r} "
                          f"with its quick recipe, which takes minutes on a CPU (a clone has the shipped files in "
                          f"data/checkpoints/, an installed package in hvae_lite/shipped/)", stacklevel=2)
        train_config = dataclasses.replace(recipe.train, device=device)
        trainer = Trainer(recipe.config, train_config, data, checkpoint_path=cache, progress=progress)
    trainer.fit()
    if trainer.interrupted:  # Ctrl-C: the run so far, without its second stage
        return trainer.checkpoint()
    return _second_stage(recipe, cache, data)


def _second_stage(recipe: Recipe, run: Path, data) -> Checkpoint:
    """The finished run at `run`, with its top prior fitted to the training digits when the recipe
    asks for it (cached beside the run, named by the run's sha256)."""
    if not recipe.top_prior_components:
        return load_checkpoint(run)
    fitted = run.with_name(f"{run.stem}.prior-{sha256_of(run)[:12]}.pt")
    if not fitted.is_file():
        checkpoint = with_fitted_prior_checkpoint(load_checkpoint(run), data.train_images,
                                                  recipe.top_prior_components, seed=recipe.train.seed)
        save_checkpoint(checkpoint, fitted)
    return load_checkpoint(fitted)


def open_checkpoint(name_or_path: str | Path) -> Checkpoint:
    """A checkpoint given by its path or, where no such file exists, a shipped model by its name
    (one of recipes.CHECKPOINT_NAMES, e.g. "matryoshka"): the shipped file, verified against its
    manifest, weights in float32. What the command line's `evaluate`, `sample` and `--init-from` take."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in CHECKPOINT_NAMES:
        return _as_float32(load_shipped(str(name_or_path)))
    try:
        return load_checkpoint(path)
    except CheckpointError as error:
        if path.exists():
            raise
        raise CheckpointError(f"{error}; or name a shipped model: {', '.join(CHECKPOINT_NAMES)}") from None


def shipped_path(name_or_path: str) -> str:
    """`name_or_path` itself, or the shipped file of a model named by CHECKPOINT_NAMES when no such
    file exists here (for settings that store a path, such as TrainConfig.init_from)."""
    if not Path(name_or_path).exists() and name_or_path in CHECKPOINT_NAMES:
        return str(Path(paths.CHECKPOINT_DIR) / f"{name_or_path}.pt")
    return name_or_path


def _as_float32(checkpoint: Checkpoint) -> Checkpoint:
    state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint.model_state.items()}
    return dataclasses.replace(checkpoint, model_state=state)


def ship_checkpoint(run_path: str | Path, out_path: str | Path, dtype: torch.dtype = torch.float32, *,
                    prior_images: torch.Tensor | None = None, prior_components: int = 0, seed: int = 0) -> str:
    """Write the weights-only copy of a training checkpoint (its evaluation weights in `dtype`,
    history kept, no optimiser, scheduler or RNG state) to `out_path`; returns its sha256.
    prior_components > 0: the recipe's second stage first, the top prior fitted to `prior_images`
    (hvae_lite.priors), on the weights as stored."""
    run = load_checkpoint(run_path)
    stored = {k: v.to(dtype).float() if v.is_floating_point() else v for k, v in run.evaluation_state().items()}
    run = Checkpoint(run.config, stored, run.train_config, run.history, run.epoch, run.step, data=run.data)
    if prior_components:
        run = with_fitted_prior_checkpoint(run, prior_images, prior_components, seed=seed)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in run.model_state.items()}
    save_checkpoint(dataclasses.replace(run, model_state=state), out_path, allow_shipped=True)  # `make checkpoints` writes the shipped files
    return sha256_of(out_path)


JUDGE_QUICK_EPOCHS = 5  # when no shipped judge exists: about a minute, roughly 97% accurate


def load_judge(*, progress: bool = True, checkpoint_dir: str | Path | None = None,
               runs_dir: str | Path | None = None) -> DigitJudge:
    """The digit judge (hvae_lite.judge) in eval mode: the shipped `judge.pt`, verified against its
    manifest, in every mode (it is small and independent of the model being judged); if absent,
    a quickly trained one, cached under PRETRAINED_RUNS_DIR/judge.pt."""
    shipped_dir = Path(checkpoint_dir or paths.CHECKPOINT_DIR)
    if (shipped_dir / "judge.pt").is_file():
        return load_shipped("judge", shipped_dir).model()
    cache = Path(runs_dir or paths.PRETRAINED_RUNS_DIR) / "judge.pt"
    if cache.is_file():
        return load_checkpoint(cache).model()
    if progress:
        print(f"no shipped judge in {shipped_dir}: training one for {JUDGE_QUICK_EPOCHS} epochs (about a minute)")
    data = load_mnist("embedded", seed=0)
    judge = train_judge(data.train_images, data.train_labels, epochs=JUDGE_QUICK_EPOCHS)
    save_checkpoint(Checkpoint(judge.config, judge.state_dict(), {"epochs": JUDGE_QUICK_EPOCHS, "seed": 0}), cache)
    return judge


def report_checkpoint(config: ModelConfig, *, epochs: int | None = None, seed: int = 0,
                      data_source: str = "embedded", use_checkpoints: bool = True, fast: bool | None = None,
                      device: str = "auto", progress: bool = False) -> tuple[Checkpoint, str]:
    """A trained model of `config` and where it came from (the report's one decision).

    With `use_checkpoints`, a named checkpoint whose config, seed and epochs are the ones asked for
    is loaded (`load_or_train`: the shipped file, else its quick recipe's run, or in fast mode its
    tiny stand-in). Otherwise the model is trained here with the default model's `recipe_for`
    settings (the quick recipe, or the fast one in fast mode, on its few hundred digits), `epochs`
    (None: that recipe's) and `seed` (training only: the held-out split is always seed 0's).
    """
    base = recipe_for("matryoshka", fast)
    if use_checkpoints and data_source == "embedded":
        for name in CHECKPOINT_NAMES:
            recipe = _loaded_recipe(name, fast)
            if recipe.config == config and seed == recipe.train.seed and epochs in (None, recipe.train.epochs):
                return load_or_train(name, fast=fast, device=device, progress=progress), f"checkpoint {name!r}"
    train_config = dataclasses.replace(base.train, epochs=epochs or base.train.epochs, seed=seed, device=device)
    data = load_mnist(data_source, seed=0)  # one held-out split for every report, whatever the seed
    if fast_mode(fast):
        data = data.subset(base.n_train, base.n_test)
    trainer = Trainer(config, train_config, data, progress=progress)
    trainer.fit()
    return trainer.checkpoint(), f"trained here ({train_config.epochs} epochs on {len(data.train_images)} digits)"


def _loaded_recipe(name: str, fast: bool | None) -> Recipe:
    """The recipe of the model `load_or_train(name)` returns: the shipped one where its file is
    here (not in fast mode), else the one it would train (`recipe_for`)."""
    if not fast_mode(fast) and (Path(paths.CHECKPOINT_DIR) / f"{name}.pt").is_file():
        return RECIPES[name]
    return recipe_for(name, fast)


def mixture_variant(config: ModelConfig, fast: bool | None = None) -> ModelConfig:
    """The mixture-prior model that goes with `config` in the report: a factorised head and the
    `mixture` checkpoint's top prior (its size, components and covariance), so that the default
    preset finds that checkpoint instead of training a mixture model of its own."""
    mixture = _loaded_recipe("mixture", fast).config
    return config.replace(top_prior="mixture", ar_layers=0, top_latent_dim=mixture.top_latent_dim,
                          mixture_components=mixture.mixture_components,
                          mixture_covariance=mixture.mixture_covariance)
