"""Self-describing checkpoints: written atomically, loaded without unpickling arbitrary objects;
the manifests and checksums of the shipped ones; warm starts from another checkpoint's weights."""
from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from . import paths
from .errors import CheckpointError, ConfigError, HVAELiteError

__all__ = ["Checkpoint", "CheckpointError", "atomic_torch_save", "build_model", "load_checkpoint", "load_shipped",
           "read_manifest", "save_checkpoint", "sha256_of", "warm_start"]

# The model classes a checkpoint may hold, by the name of their config class: the module that
# defines both, and the model class. Imported only when a checkpoint of that kind is built or
# read, so saving or loading an HVAE never imports the digit judge or the baseline.
MODEL_CLASSES = {"HVAEConfig": ("model", "HVAE"), "MLPVAEConfig": ("baseline", "MLPVAE"),
                 "JudgeConfig": ("judge", "DigitJudge")}


class ModelConfig(Protocol):
    """What every model config of MODEL_CLASSES offers (HVAEConfig, MLPVAEConfig, JudgeConfig)."""

    def to_dict(self) -> dict[str, Any]: ...


def model_classes(config_name: str) -> tuple[type, type]:
    """(config class, model class) for the name of a config class in MODEL_CLASSES."""
    if config_name not in MODEL_CLASSES:
        raise CheckpointError(f"unknown kind of model {config_name!r}; the kit knows {sorted(MODEL_CLASSES)}")
    module_name, model_name = MODEL_CLASSES[config_name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, config_name), getattr(module, model_name)


def build_model(config: ModelConfig) -> torch.nn.Module:
    """A fresh, randomly initialised model for `config`."""
    return model_classes(type(config).__name__)[1](config)


FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint file holds; `model()` rebuilds the network from the file alone."""

    config: ModelConfig
    model_state: dict[str, torch.Tensor]
    train_config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict of metrics per epoch
    epoch: int = 0                                                # epochs completed
    step: int = 0                                                 # optimiser updates completed
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    rng_state: dict[str, torch.Tensor] | None = None
    ema_state: dict[str, torch.Tensor] | None = None              # AveragedModel state (EMA runs only)
    data: dict[str, Any] | None = None  # DataSplit.describe(): source, split_seed, n_train, n_test

    def model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The network to evaluate: the EMA weights when the run kept them, else the raw weights."""
        model = build_model(self.config)
        model.load_state_dict(self.evaluation_state())
        return model.to(device).eval()

    def evaluation_state(self) -> dict[str, torch.Tensor]:
        """The weights to evaluate and ship: the EMA copy (prefix `module.` dropped) if present."""
        if not self.ema_state:
            return self.model_state
        return {k.removeprefix("module."): v for k, v in self.ema_state.items() if k.startswith("module.")}


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save into a temporary file beside `path`, then rename: a crash never leaves half a file.

    Temporary files of earlier saves that were killed (`.NAME.*.tmp`) are removed first. An OS
    error (read-only folder, full disk) becomes a CheckpointError; `path` is then untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a file name for the checkpoint, e.g. {path / 'run.pt'}")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "the file system is read-only"}.get(error.errno, error.strerror or str(error))
        kept = " (the previous file there is unchanged)" if path.exists() else ""
        raise CheckpointError(f"cannot write {path}: {reason}{kept}; free some space or choose a writable "
                              "folder") from error
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write `checkpoint` as plain tensors, numbers, strings, lists and dicts."""
    atomic_torch_save({
        "format_version": FORMAT_VERSION,
        "model_class": type(checkpoint.config).__name__,
        "config": checkpoint.config.to_dict(),
        "model": checkpoint.model_state,
        "train_config": checkpoint.train_config,
        "history": checkpoint.history,
        "epoch": checkpoint.epoch,
        "step": checkpoint.step,
        "optimizer": checkpoint.optimizer_state,
        "scheduler": checkpoint.scheduler_state,
        "rng": checkpoint.rng_state,
        "ema": checkpoint.ema_state,
        "data": checkpoint.data,
    }, path)


def load_checkpoint(path: str | Path, expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (`weights_only=True`: no code from the file is ever run).

    Raises CheckpointError with what went wrong and what to do about it.
    """
    path = Path(path)
    if not path.is_file():
        fix = "give the checkpoint file inside it" if path.is_dir() else "train one (python -m hvae_lite train)"
        raise CheckpointError(f"no checkpoint at {path}{' (a folder)' if path.is_dir() else ''}: {fix} or check the path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is an empty file (a save that never finished?); retrain it or restore it")
    if expected_sha256 is not None and (actual := sha256_of(path)) != expected_sha256:
        raise CheckpointError(f"{path} fails its checksum (sha256 {actual[:12]}..., expected "
                              f"{expected_sha256[:12]}...): the file is corrupt or was replaced; "
                              "retrain it or restore it from the repository")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False, which would run code from the file: never.
        raise CheckpointError(f"{path} is not a readable hvae_lite checkpoint: it holds Python objects other than "
                              "tensors, numbers, strings, lists and dicts (not written by hvae_lite, or tampered "
                              "with), and was refused without running anything from it; use a checkpoint written "
                              "by hvae_lite") from error
    except Exception as error:  # a truncated zip, not a torch file at all, an unreadable file
        raise CheckpointError(f"{path} is not a readable hvae_lite checkpoint (truncated, corrupt or another kind "
                              f"of file: {type(error).__name__}); retrain it or restore it") from error
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an hvae_lite checkpoint of format {FORMAT_VERSION}")
    try:
        config_class = model_classes(raw["model_class"])[0]
        checkpoint = Checkpoint(
            config=config_class.from_dict(raw["config"]), model_state=raw["model"],
            train_config=raw["train_config"], history=raw["history"], epoch=raw["epoch"], step=raw["step"],
            optimizer_state=raw["optimizer"], scheduler_state=raw["scheduler"], rng_state=raw["rng"],
            ema_state=raw.get("ema"), data=raw.get("data"))
    except (KeyError, TypeError, ValueError, HVAELiteError) as error:
        raise CheckpointError(f"{path} is missing or has a malformed field: {error}") from error
    return checkpoint


_RESTORE = "restore it from the repository (git checkout -- FILE) or rebuild it with `make checkpoints`"


def read_manifest(name: str, checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """The manifest `<name>.json` of a shipped checkpoint (the models, and `judge`): command,
    config, data split, seed, epochs, wall-clock, held-out metrics and the sha256 of the .pt file."""
    folder = Path(checkpoint_dir or paths.CHECKPOINT_DIR)
    path = folder / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise CheckpointError(f"no manifest at {path} (manifests there: {known or 'none'}): run `make checkpoints` "
                              "or restore it from the repository")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"the manifest {path} is not valid JSON ({error}); {_RESTORE}") from error
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise CheckpointError(f"the manifest {path} has no 'sha256' of its checkpoint; {_RESTORE}")
    return manifest


def load_shipped(name: str, checkpoint_dir: str | Path | None = None) -> Checkpoint:
    """The shipped checkpoint `<name>.pt`, verified against the sha256 of its manifest (a missing
    manifest or a mismatch is a CheckpointError)."""
    manifest = read_manifest(name, checkpoint_dir)
    return load_checkpoint(Path(checkpoint_dir or paths.CHECKPOINT_DIR) / f"{name}.pt",
                           expected_sha256=manifest["sha256"])


def warm_start(model: torch.nn.Module, source: Checkpoint) -> tuple[str, set[str]]:
    """Copy every weight of `source` (its evaluation weights) whose name and shape match `model`;
    the rest keep their initialisation. Returns a one-line summary and the names copied."""
    own = model.state_dict()
    matched = {k: v for k, v in source.evaluation_state().items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError("init_from: the checkpoint shares no weights with this model (another architecture?)")
    model.load_state_dict(matched, strict=False)
    note = f"warm start: {len(matched)} of {len(own)} tensors copied, {len(own) - len(matched)} kept at initialisation"
    return note, set(matched)
