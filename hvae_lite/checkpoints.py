"""Self-describing checkpoints: written atomically, loaded without unpickling arbitrary objects."""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .baseline import MLPVAE, MLPVAEConfig
from .config import HVAEConfig
from .judge import DigitJudge, JudgeConfig
from .model import HVAE

# The model classes a checkpoint may hold, by the name of their config class.
MODEL_CLASSES = {"HVAEConfig": (HVAEConfig, HVAE), "MLPVAEConfig": (MLPVAEConfig, MLPVAE),
                 "JudgeConfig": (JudgeConfig, DigitJudge)}
ModelConfig = HVAEConfig | MLPVAEConfig | JudgeConfig


def build_model(config: ModelConfig) -> HVAE | MLPVAE | DigitJudge:
    """A fresh, randomly initialised model for `config`."""
    return MODEL_CLASSES[type(config).__name__][1](config)

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, of another format, or fails its checksum."""


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

    def model(self, device: str | torch.device = "cpu") -> HVAE | MLPVAE | DigitJudge:
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
    """torch.save into a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    }, path)


def load_checkpoint(path: str | Path, expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (`weights_only=True`: no code from the file is ever run).

    Raises CheckpointError with what went wrong and what to do about it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one (python -m hvae_lite train) or check the path")
    if expected_sha256 is not None and (actual := sha256_of(path)) != expected_sha256:
        raise CheckpointError(f"{path} fails its checksum (sha256 {actual[:12]}..., expected "
                              f"{expected_sha256[:12]}...): the file is corrupt or was replaced; "
                              "retrain it or restore it from the repository")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated zip, a pickle with code in it, not a torch file at all
        raise CheckpointError(f"{path} is not a readable hvae_lite checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]}); retrain it or restore it") from error
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an hvae_lite checkpoint of format {FORMAT_VERSION}")
    try:
        config_class = MODEL_CLASSES[raw["model_class"]][0]
        checkpoint = Checkpoint(
            config=config_class.from_dict(raw["config"]), model_state=raw["model"],
            train_config=raw["train_config"], history=raw["history"], epoch=raw["epoch"], step=raw["step"],
            optimizer_state=raw["optimizer"], scheduler_state=raw["scheduler"], rng_state=raw["rng"],
            ema_state=raw.get("ema"))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is missing or has a malformed field: {error}") from error
    return checkpoint
