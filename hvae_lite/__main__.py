"""Command line: python -m hvae_lite train|evaluate|sample|report (the same models, no notebook needed).

The parser and the value readers live in cli.py; the commands are here.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .checkpoints import Checkpoint, load_checkpoint
from .cli import build_parser, parse_overrides, parse_value
from .config import RESUME_SAFE, TrainConfig, get_preset
from .data import load_data
from .errors import CheckpointError, ConfigError, HVAELiteError, InputError
from .evaluate import EVAL_BATCH, EVAL_CHUNK, evaluate
from .pretrained import open_checkpoint, shipped_path
from .train import Trainer, resolve_device
from .validate import check_int, check_temperature

MAX_GRID = 4096  # `sample` draws one picture: beyond this the digits are too small to see


_TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def _given_train_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (unset flags are None)."""
    return {k: v for k, v in vars(args).items() if k in _TRAIN_FIELDS and v is not None}


def _check_writable(out: Path) -> None:
    """Fail before training, not after the first epoch, when the checkpoint cannot be written."""
    if out.is_dir():
        raise CheckpointError(f"--out {out} is a folder; give a file name, e.g. {out / 'run.pt'}")
    folder = out.parent
    while not folder.exists():  # the save creates missing folders: the first existing one decides
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CheckpointError(f"cannot write {out}: the folder {folder} is not writable; choose another --out")


def _data_for(source: str, split_seed: int, n_train: int | None, n_test: int | None = None,
              dist: distributed.DistContext | None = None):
    """The data split, cut to n_train / n_test. Under torchrun, rank 0 fetches a data set that is
    not cached yet while the others wait, then all read the cache."""
    if dist is not None and not dist.is_main:
        dist.barrier()
    data = load_data(source, seed=split_seed)
    if dist is not None and dist.is_main:
        dist.barrier()
    for name, n, available in (("--limit-train", n_train, len(data.train_images)),
                               ("held-out digits", n_test, len(data.test_images))):
        if n is not None and n > available:
            raise InputError(f"{name} {n} is more than the {available} digits of this split")
    return data.subset(n_train, n_test)


def _resume(args: argparse.Namespace, out: Path, dist: distributed.DistContext) -> Trainer:
    """Trainer.resume with the run's own data; refuses flags that would change the run."""
    ckpt = load_checkpoint(out)
    conflicts = ["--overwrite (it would start the run afresh)"] if args.overwrite else []
    if args.preset or args.set:  # fine when they describe the very model being resumed
        asked = get_preset(args.preset or "matryoshka", **parse_overrides(args.set))
        if asked != ckpt.config:
            changed = sorted(k for k, v in asked.to_dict().items() if ckpt.config.to_dict().get(k) != v)
            conflicts.append(f"--preset/--set (a model that differs from the run's in {changed})")
    stored = TrainConfig.from_dict(ckpt.train_config)
    changes, notes = {}, []
    for name, value in _given_train_fields(args).items():
        if name == "epochs":
            continue
        if name in RESUME_SAFE:
            if value != getattr(stored, name):
                changes[name] = value
                notes.append(f"{name} {getattr(stored, name)!r} -> {value!r}")
        elif value != getattr(stored, name):
            conflicts.append(f"--{name.replace('_', '-')} {value} (the run has {getattr(stored, name)})")
    record = ckpt.data or {}
    data_flags = (("--data", args.data, record.get("source")), ("--split-seed", args.split_seed, record.get("split_seed")),
                  ("--limit-train", args.limit_train, record.get("n_train")))
    conflicts += [f"{flag} {given} (the run has {kept})" for flag, given, kept in data_flags
                  if given is not None and kept is not None and given != kept]
    if conflicts:
        raise ConfigError(f"--resume continues {out} exactly as it was started; these flags would change it: "
                          f"{', '.join(conflicts)}. Drop them, or start a new run with another --out "
                          "(or --overwrite)")
    epochs = args.epochs if args.epochs is not None else stored.epochs
    if epochs <= ckpt.epoch:
        raise ConfigError(f"{out} has already trained {ckpt.epoch} of {stored.epochs} epochs; give --epochs N with "
                          f"N > {ckpt.epoch} to train further")
    if ckpt.data is None:
        print(f"note: {out} does not record its data (an older checkpoint); resuming on the data the flags give",
              file=sys.stderr)
        data = _data_for(args.data or "embedded", args.split_seed or 0, args.limit_train, dist=dist)
    else:
        data = _data_for(record["source"], record["split_seed"] if record["split_seed"] is not None else 0,
                         record["n_train"], record["n_test"], dist=dist)
    if notes:
        print(f"resume: applying {', '.join(notes)} (where the run trains, not what it computes)", file=sys.stderr)
    if "device" in changes:
        resolve_device(changes["device"])
    return Trainer.resume(out, data, epochs=epochs, changes=changes, progress=not args.quiet)


def _start(args: argparse.Namespace, out: Path, dist: distributed.DistContext) -> Trainer:
    """A new run; every setting is checked before the data is loaded or anything is written."""
    if out.exists() and not args.overwrite and dist.is_main:
        raise CheckpointError(f"{out} already exists; --resume continues that run, --overwrite replaces it, "
                              "or choose another --out")
    config = get_preset(args.preset or "matryoshka", **parse_overrides(args.set))
    if args.init_from:  # a shipped model's name stands for its file
        args.init_from = shipped_path(args.init_from)
    train_config = TrainConfig(**_given_train_fields(args))
    resolve_device(train_config.device)
    if args.limit_train is not None:
        check_int(args.limit_train, "--limit-train", minimum=1)
    if train_config.init_from:
        open_checkpoint(train_config.init_from)  # a wrong path fails now, not after loading the data
    _check_writable(out)
    data = _data_for(args.data or "embedded", args.split_seed or 0, args.limit_train, dist=dist)
    return Trainer(config, train_config, data, checkpoint_path=out, progress=not args.quiet)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a run; under torchrun, on every rank with DistributedDataParallel."""
    dist = distributed.init_from_environment(resolve_device(args.device or TrainConfig.device))
    try:
        return _train(args, dist)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, dist: distributed.DistContext) -> int:
    say = print if dist.is_main else (lambda *a, **k: None)  # one rank speaks for all
    out = Path(args.out)
    trainer = _resume(args, out, dist) if args.resume else _start(args, out, dist)
    ranks = f" x {dist.world_size} ranks (batch {trainer.train_config.batch_size} each)" if dist.enabled else ""
    say(f"training {out if args.resume else args.preset or 'matryoshka'} on {trainer.device}{ranks} "
        f"({sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f} M parameters, "
        f"{trainer.config.n_latent_layers} latent layers) -> {out}")
    if trainer.init_note:
        say(trainer.init_note)
    history = trainer.fit(until_epoch=args.stop_after)
    if history:
        last = history[-1]
        say(f"epoch {last['epoch']}: train ELBO {last['elbo']:.2f}, held-out ELBO {last['test_elbo']:.2f} nats, "
            f"{last['images_per_s']:.0f} images/s{' in all' if dist.enabled else ''}")
    return 130 if trainer.interrupted else 0


def _heldout_images(args: argparse.Namespace, checkpoint: Checkpoint) -> torch.Tensor:
    """The held-out digits of the split the model was trained on (unless the flags say otherwise)."""
    record = checkpoint.data or {}
    source = args.data or record.get("source") or "embedded"
    split_seed = args.split_seed if args.split_seed is not None else (record.get("split_seed") or 0)
    if record and (source, split_seed) != (record["source"], record["split_seed"] or 0):
        print(f"note: the model was trained on {record}; evaluating on {source} split seed {split_seed}, whose "
              "held-out digits may include its training digits", file=sys.stderr)
    images = load_data(source, seed=split_seed).test_images
    if args.n_images is not None and args.n_images > len(images):
        raise InputError(f"--n-images {args.n_images} is more than the {len(images)} held-out digits")
    return images[:args.n_images]


def cmd_evaluate(args: argparse.Namespace) -> int:
    for name, value in (("--k", args.k), ("--n-images", args.n_images), ("--seed", args.seed),
                        ("--batch-size", args.batch_size), ("--chunk", args.chunk)):
        if value is not None:
            check_int(value, name, minimum=0 if name == "--seed" else 1)
    if args.json and Path(args.json).is_dir():
        raise InputError(f"--json {args.json} is a folder; give a file name, e.g. {Path(args.json) / 'metrics.json'}")
    device = resolve_device(args.device)
    checkpoint = open_checkpoint(args.checkpoint)
    images = _heldout_images(args, checkpoint)
    try:
        metrics = evaluate(checkpoint.model(device), images, k=args.k, batch_size=args.batch_size,
                           chunk_size=args.chunk, seed=args.seed, progress=not args.quiet)
    except torch.OutOfMemoryError:
        raise InputError(f"evaluation ran out of {device.type} memory with forward passes of {args.batch_size} images x "
                         f"{args.chunk} importance samples; give a smaller --batch-size or --chunk") from None
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure

    from .plots import image_grid  # matplotlib only when drawing

    check_int(args.n, "--n (images in one picture)", minimum=1, maximum=MAX_GRID)
    check_temperature(args.temperature, "--temperature")
    kinds = Figure().canvas.get_supported_filetypes()
    if Path(args.out).suffix.lstrip(".").lower() not in kinds:
        raise InputError(f"--out {args.out}: unknown image type; end the name with one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}")
    device = resolve_device(args.device)
    checkpoint = open_checkpoint(args.checkpoint)
    model = checkpoint.model(device)
    torch.manual_seed(args.seed)
    images = model.sample(args.n, temperature=args.temperature)
    figure = image_grid(images.cpu(), title=f"{args.n} samples, temperature {args.temperature}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report  # papermill and nbconvert only for this command

    files = run_report(args.out, {name: parse_value(value) for name, value in args.parameter},
                       progress=not args.quiet)
    print(f"wrote {files.notebook} and {files.html}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; returns the exit code: 0, 1 on any error (with a message on stderr), 2 for
    arguments argparse rejects, 130 when training was interrupted with Ctrl-C."""
    args = build_parser({"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
                         "report": cmd_report}).parse_args(argv)
    try:
        if getattr(args, "split_seed", None) is not None:
            check_int(args.split_seed, "--split-seed", minimum=0)
        return args.func(args)
    except HVAELiteError as error:
        print(f"error: {error}", file=sys.stderr)
    except OSError as error:  # a file the command reads or writes: say which and why
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot access{where}: {error.strerror or error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
