"""Command line: python -m hvae_lite train|evaluate|sample|report (the same models, no notebook needed).

The parser and the value readers live in cli.py; the commands are here.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from . import distributed, files
from .checkpoints import Checkpoint, load_checkpoint
from .cli import build_parser, parse_overrides, parse_value
from .config import RESUME_SAFE, TrainConfig, get_preset
from .data import load_data
from .errors import CheckpointError, ConfigError, HVAELiteError, InputError
from .evaluate import evaluate
from .pretrained import open_checkpoint, shipped_path
from .train import Trainer
from .validate import check_int, check_seed, check_temperature, resolve_device

MAX_GRID = 4096  # `sample` draws one picture: beyond this the digits are too small to see


_TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def _given_train_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (unset flags are None)."""
    return {k: v for k, v in vars(args).items() if k in _TRAIN_FIELDS and v is not None}


# The kinds of model `evaluate` and `sample` work with (the digit judge is a classifier).
GENERATIVE = ("HVAEConfig", "MLPVAEConfig")


def _generative_model(path: str, command: str) -> Checkpoint:
    """The checkpoint at `path` (verified when shipped), refused when it holds no generative model."""
    checkpoint = open_checkpoint(path)
    kind = type(checkpoint.config).__name__
    if kind not in GENERATIVE:
        what = "the digit judge (a classifier that scores samples)" if kind == "JudgeConfig" else f"a {kind} model"
        raise CheckpointError(f"{path} holds {what}, not a generative model: `{command}` takes a checkpoint written by "
                              "`python -m hvae_lite train` (or a shipped model such as data/checkpoints/matryoshka.pt)")
    return checkpoint


@contextlib.contextmanager
def _run_lock(out: Path, dist: distributed.DistContext) -> Iterator[None]:
    """One training per --out: rank 0 holds the output's lock for the whole run and tells the
    other ranks whether it got it, so a refused job stops on every rank."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if dist.is_main:
            try:
                stack.enter_context(files.output_lock(out, error=CheckpointError))
            except CheckpointError as error:
                refusal = str(error)
        refusal = dist.from_main(refusal)
        if refusal is not None:
            raise CheckpointError(refusal)
        yield


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


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if out.is_file() and not overwrite:  # every rank sees the same file, so every rank stops
        raise CheckpointError(f"{out} already exists; --resume continues that run, --overwrite replaces it, "
                              "or choose another --out")


def _start(args: argparse.Namespace, out: Path, dist: distributed.DistContext) -> Trainer:
    """A new run; every setting is checked before the data is loaded or anything is written."""
    _refuse_existing(out, args.overwrite)  # again, now that this process holds the lock
    if args.seed is not None:
        check_seed(args.seed, "--seed", error=ConfigError)
    config = get_preset(args.preset or "matryoshka", **parse_overrides(args.set))
    if args.init_from:  # a shipped model's name stands for its file
        args.init_from = shipped_path(args.init_from)
    train_config = TrainConfig(**_given_train_fields(args))
    resolve_device(train_config.device)
    if args.limit_train is not None:
        check_int(args.limit_train, "--limit-train", minimum=1)
    if train_config.init_from:
        open_checkpoint(train_config.init_from)  # a wrong path fails now, not after loading the data
    data = _data_for(args.data or "embedded", args.split_seed or 0, args.limit_train, dist=dist)
    return Trainer(config, train_config, data, checkpoint_path=out, progress=not args.quiet)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a run; under torchrun, on every rank with DistributedDataParallel."""
    if args.stop_after is not None:
        check_int(args.stop_after, "--stop-after", minimum=1, error=ConfigError)
    dist = distributed.init_from_environment(resolve_device(args.device or TrainConfig.device))
    try:
        with distributed.stop_on_sigterm() as stop:
            return _train(args, dist, stop)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, dist: distributed.DistContext, stop: distributed.StopSignal) -> int:
    say = print if dist.is_main else (lambda *a, **k: None)  # one rank speaks for all
    out = Path(args.out)
    if not args.resume:
        _refuse_existing(out, args.overwrite)
    # Before the lock (which creates the folder): a folder, a shipped file, another kind of file.
    files.check_target(out, "checkpoint", error=CheckpointError)
    with _run_lock(out, dist):
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
    if not trainer.interrupted:
        return 0
    if dist.is_main:
        kept = f"{out} holds epoch {trainer.epoch}" if trainer.epoch else "nothing was saved (no epoch finished)"
        print(f"stopped by {stop.name or 'Ctrl-C'}: {kept}; continue with python -m hvae_lite train --resume "
              f"--out {out}", file=sys.stderr)
    return stop.exit_code


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
    for name, value in (("--k", args.k), ("--n-images", args.n_images), ("--batch-size", args.batch_size),
                        ("--chunk", args.chunk)):
        if value is not None:
            check_int(value, name, minimum=1)
    check_seed(args.seed, "--seed")
    # The output is checked before minutes of work: never a folder, a shipped file or another kind of file.
    target = files.check_target(args.json, "json") if args.json else None
    device = resolve_device(args.device)
    checkpoint = _generative_model(args.checkpoint, "evaluate")
    images = _heldout_images(args, checkpoint)
    with files.output_lock(target) if target else contextlib.nullcontext():
        try:
            metrics = evaluate(checkpoint.model(device), images, k=args.k, batch_size=args.batch_size,
                               chunk_size=args.chunk, seed=args.seed, progress=not args.quiet)
        except torch.OutOfMemoryError:
            raise InputError(f"evaluation ran out of {device.type} memory with forward passes of {args.batch_size} "
                             f"images x {args.chunk} importance samples; give a smaller --batch-size or --chunk") from None
        if bad := files.non_finite(metrics):
            raise CheckpointError(f"{args.checkpoint} gives non-finite metrics ({', '.join(bad[:4])} NaN or infinite): "
                                  "its weights are broken (e.g. huge or NaN values); retrain it or restore it")
        text = json.dumps(metrics, indent=2, allow_nan=False)
        print(text)
        if target:
            files.write_json(target, metrics)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure

    from .plots import image_grid  # matplotlib only when drawing

    check_int(args.n, "--n (images in one picture)", minimum=1, maximum=MAX_GRID)
    check_temperature(args.temperature, "--temperature")
    check_seed(args.seed, "--seed")
    kinds = Figure().canvas.get_supported_filetypes()
    if Path(args.out).suffix.lstrip(".").lower() not in kinds:
        raise InputError(f"--out {args.out}: unknown image type; end the name with one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}")
    target = files.check_target(args.out, "image")
    device = resolve_device(args.device)
    model = _generative_model(args.checkpoint, "sample").model(device)
    with files.output_lock(target):
        torch.manual_seed(args.seed)
        images = model.sample(args.n, temperature=args.temperature)
        if not torch.isfinite(images).all():
            raise CheckpointError(f"{args.checkpoint} draws non-finite pixels (NaN or infinity): its weights are broken; "
                                  "retrain it or restore it")
        figure = image_grid(images.cpu(), title=f"{args.n} samples, temperature {args.temperature}")
        files.save_figure(figure, target, dpi=120, bbox_inches="tight")
    print(f"wrote {target}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .parameters import check_parameters
    from .report import run_report  # papermill and nbconvert only for this command

    given: dict[str, Any] = {}
    for name, value in args.parameter:
        if name in given:
            raise InputError(f"-p {name} is given twice; give each parameter once")
        given[name] = parse_value(value)
    check_parameters("report", partial=True, **given)  # before a kernel starts: the same checks as the notebook's
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; the report needs a folder (it writes report.ipynb and report.html)")
    files.check_target(out / "report.ipynb", "notebook")
    files.check_target(out / "report.html", "html")
    with files.output_lock(out / "report.ipynb"):
        written = run_report(out, given, progress=not args.quiet)
    print(f"wrote {written.notebook} and {written.html}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; returns the exit code: 0, 1 on any error (with a message on stderr), 2 for
    arguments argparse rejects, 130 when training was interrupted with Ctrl-C, 143 when stopped by SIGTERM."""
    args = build_parser({"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
                         "report": cmd_report}).parse_args(argv)
    try:
        if getattr(args, "split_seed", None) is not None:
            check_seed(args.split_seed, "--split-seed")
        return args.func(args)
    except HVAELiteError as error:
        print(f"error: {error}", file=sys.stderr)
    except OSError as error:  # a file the command reads or writes: say which and why
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot access{where}: {error.strerror or error}", file=sys.stderr)
    except distributed.Terminated:  # SIGTERM before training began or after it ended (else _train says it)
        print("stopped by SIGTERM", file=sys.stderr)
        return 128 + 15
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
