"""Self-describing checkpoints: written atomically, loaded without unpickling arbitrary objects;
the manifests and checksums of the shipped ones; warm starts from another checkpoint's weights."""
from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from . import files, paths
from .errors import CheckpointError, ConfigError, HVAELiteError
from .validate import resolve_device

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
    world_size: int = 1  # processes (torchrun ranks) the run trained with: a resume needs as many

    def model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The network to evaluate: the EMA weights when the run kept them, else the raw weights.
        device: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', which this machine must have."""
        device = resolve_device(device)
        model = build_model(self.config)
        load_weights(model, self.evaluation_state(), "the checkpoint")
        return model.to(device).eval()

    def evaluation_state(self) -> dict[str, torch.Tensor]:
        """The weights to evaluate and ship: the EMA copy (prefix `module.` dropped) if present."""
        if not self.ema_state:
            return self.model_state
        return {k.removeprefix("module."): v for k, v in self.ema_state.items() if k.startswith("module.")}


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """model.load_state_dict(state), or a CheckpointError that says in a few lines which tensors
    are missing, unexpected or of another shape (torch lists every one of them)."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    resized = [f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}" for k, v in own.items()
               if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    if missing or unexpected or resized:
        parts = [f"{len(items)} {what} (e.g. {', '.join(items[:2])})"
                 for what, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", resized))
                 if items]
        raise CheckpointError(f"the weights of {source} do not fit the {type(model).__name__} its config describes: "
                              f"{'; '.join(parts)} of {len(own)} tensors. The file was changed, or its config does "
                              "not match its weights; retrain it or restore it")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as error:  # e.g. a value that is not a tensor
        raise CheckpointError(f"the weights of {source} cannot be loaded into the model ({error}); "
                              "retrain it or restore it") from None


def atomic_torch_save(obj: Any, path: str | Path, *, allow_shipped: bool = False) -> None:
    """torch.save into a temporary file beside `path`, then rename (`files.write_atomic`): a crash
    never leaves half a file, an OS error (read-only folder, full disk) is a CheckpointError and
    leaves `path` untouched, and a file that is not a checkpoint, or a shipped one, is never replaced."""
    files.write_atomic(path, lambda f: torch.save(obj, f), "checkpoint", allow_shipped=allow_shipped,
                       error=CheckpointError)


def save_checkpoint(checkpoint: Checkpoint, path: str | Path, *, allow_shipped: bool = False) -> None:
    """Write `checkpoint` as plain tensors, numbers, strings, lists and dicts (atomically; never
    over a file of another kind, nor over a shipped file unless allow_shipped: `make checkpoints`)."""
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
        "world_size": checkpoint.world_size,
    }, path, allow_shipped=allow_shipped)


def load_checkpoint(path: str | Path, expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (`weights_only=True`: no code from the file is ever run).

    A file in the shipped folder (`paths.CHECKPOINT_DIR`) is verified against the sha256 of its
    manifest, wherever it is opened from (the command line, a warm start, a notebook), unless
    `expected_sha256` is given. Raises CheckpointError with what went wrong and what to do.
    """
    path = Path(path)
    if expected_sha256 is None and path.is_file() and path.resolve().parent == Path(paths.CHECKPOINT_DIR).resolve():
        expected_sha256 = read_manifest(path.stem)["sha256"]
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
        _check_fields(raw)
        config_class = model_classes(raw["model_class"])[0]
        checkpoint = Checkpoint(
            config=config_class.from_dict(raw["config"]), model_state=raw["model"],
            train_config=raw["train_config"], history=raw["history"], epoch=raw["epoch"], step=raw["step"],
            optimizer_state=raw["optimizer"], scheduler_state=raw["scheduler"], rng_state=raw["rng"],
            ema_state=raw.get("ema"), data=raw.get("data"), world_size=raw.get("world_size", _ranks_of(raw["rng"])))
    except (KeyError, TypeError, ValueError, HVAELiteError) as error:
        raise CheckpointError(f"{path} is missing or has a malformed field: {error}; retrain it or restore it") \
            from error
    return checkpoint


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


# Each field of a checkpoint file: a test of its value and the words for what it should be.
_FIELDS: dict[str, tuple[Any, str]] = {
    "model_class": (lambda v: isinstance(v, str), "a string"),
    "config": (lambda v: isinstance(v, dict), "a dict"),
    "model": (_is_tensor_dict, "a dict of named tensors"),
    "train_config": (lambda v: isinstance(v, dict), "a dict"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v), "a list of dicts"),
    "epoch": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
    "step": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
    "optimizer": (lambda v: v is None or isinstance(v, dict), "a dict or None"),
    "scheduler": (lambda v: v is None or isinstance(v, dict), "a dict or None"),
    "rng": (lambda v: v is None or _is_tensor_dict(v), "a dict of tensors or None"),
    "ema": (lambda v: v is None or _is_tensor_dict(v), "a dict of named tensors or None"),
    "data": (lambda v: v is None or isinstance(v, dict), "a dict or None"),
    "world_size": (lambda v: type(v) is int and v >= 1, "an integer >= 1"),
}
_OPTIONAL_FIELDS = ("ema", "data", "world_size")  # absent from older checkpoints


def _check_fields(raw: dict[str, Any]) -> None:
    """Every field present (but the optional ones) and of its type, or a TypeError naming it."""
    for name, (valid, what) in _FIELDS.items():
        if name not in raw:
            if name in _OPTIONAL_FIELDS:
                continue
            raise TypeError(f"it has no field {name!r}")
        if not valid(raw[name]):
            raise TypeError(f"the field {name!r} must be {what}, got {type(raw[name]).__name__}")


def _ranks_of(rng: dict[str, Any] | None) -> int:
    """The number of processes of a run saved before checkpoints recorded it: rank r > 0 keeps its
    random state under '<name>.rank<r>'."""
    ranks = [int(m.group(1)) for k in (rng or {}) if (m := re.search(r"\.rank(\d+)$", k))]
    return max(ranks, default=0) + 1


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
    digest = manifest["sha256"]
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        # A manifest without a real hash would let any file through: treated as unverified.
        raise CheckpointError(f"the manifest {path} has no valid sha256 of its checkpoint (got {digest!r}), so the "
                              f"checkpoint cannot be verified; {_RESTORE}")
    return manifest


def load_shipped(name: str, checkpoint_dir: str | Path | None = None) -> Checkpoint:
    """The shipped checkpoint `<name>.pt`, verified against the sha256 of its manifest (a missing
    manifest or a mismatch is a CheckpointError)."""
    manifest = read_manifest(name, checkpoint_dir)
    return load_checkpoint(Path(checkpoint_dir or paths.CHECKPOINT_DIR) / f"{name}.pt",
                           expected_sha256=manifest["sha256"])


def shared_weight_names(model: torch.nn.Module, source: Checkpoint) -> set[str]:
    """The names of the tensors of `model` that `source` has too, with the same shape."""
    own = model.state_dict()
    return {k for k, v in source.model_state.items() if k in own and own[k].shape == v.shape}


def warm_start(model: torch.nn.Module, source: Checkpoint) -> tuple[str, set[str]]:
    """Copy every weight of `source` (its evaluation weights) whose name and shape match `model`;
    the rest keep their initialisation. Returns a one-line summary and the names copied."""
    own, shared = model.state_dict(), shared_weight_names(model, source)
    matched = {k: v for k, v in source.evaluation_state().items() if k in shared}
    if not matched:
        raise ConfigError("init_from: the checkpoint shares no weights with this model (another architecture?)")
    model.load_state_dict(matched, strict=False)
    note = f"warm start: {len(matched)} of {len(own)} tensors copied, {len(own) - len(matched)} kept at initialisation"
    return note, set(matched)
