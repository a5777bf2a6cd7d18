"""The parameters of every notebook and of the report: their types, ranges and choices, checked by
the validation layer (`validate.py`) at the top of each notebook and by `python -m hvae_lite report`
before a kernel starts, so `-p N_EVAL -1` or `-p AR maybe` is an InputError naming the parameter,
never a report "on -1 digits".

FAST decides the mode. A parameter whose value depends on the mode defaults to None in its
notebook and takes its `full` or `fast` value here; a value given (papermill `-p N_EVAL 300`) is
used as given, in either mode. FAST itself: True (tiny stand-in models, few images: what the tests
run), False (the full run), or None (the environment decides: HVAE_LITE_FAST=1 is fast). Whatever
it resolves to is written to HVAE_LITE_FAST, so every kit function the notebook calls
(`load_or_train`, `recipe_for`, `report_checkpoint`, ...) runs in the same mode.

    FAST, SEED, N_EVAL = check_parameters("00_quickstart", FAST=FAST, SEED=SEED, N_EVAL=N_EVAL)
"""
from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import PRESETS
from .errors import InputError
from .recipes import FAST_ENV, fast_mode
from .validate import check_bool, check_float, check_int, check_seed, check_temperature

MODE = object()  # a spec default meaning "the mode decides": the value is None in the notebook


@dataclass(frozen=True)
class Param:
    """One parameter: `check(value, name)` returns the value (normalised) or raises an InputError;
    `default` is the value in the notebook's parameters cell (MODE: None there, and then `full`
    or `fast` by mode, where None keeps its own meaning, such as "all the digits")."""

    check: Callable[[Any, str], Any]
    default: Any = MODE
    full: Any = None
    fast: Any = None
    none_means: str | None = None  # what None stands for when it is a value of its own (else refused)


def count(default: Any = MODE, *, full: Any = None, fast: Any = None, minimum: int = 1, maximum: int | None = None,
          none_means: str | None = None) -> Param:
    """A whole number in [minimum, maximum]."""
    return Param(lambda v, name: check_int(v, name, minimum=minimum, maximum=maximum), default, full, fast, none_means)


def number(default: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False) -> Param:
    """A finite number in [low, high] ((low, high] with low_open)."""
    return Param(lambda v, name: check_float(v, name, low=low, high=high, low_open=low_open), default)


def flag(default: Any = MODE, *, full: Any = None, fast: Any = None, none_means: str | None = None) -> Param:
    """True or False (papermill passes True/False; the strings 'false' or 'maybe' are refused)."""
    return Param(lambda v, name: check_bool(v, name, error=InputError), default, full, fast, none_means)


def choice(options: tuple[str, ...], default: Any = MODE, *, full: Any = None, fast: Any = None) -> Param:
    """One of `options`."""
    def check(value: Any, name: str) -> str:
        if value not in options:
            raise InputError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return Param(check, default, full, fast)


def counts(default: Any = MODE, *, full: Any = None, fast: Any = None, length: int | None = None,
           minimum: int = 1, maximum: int | None = None) -> Param:
    """A tuple (or list) of whole numbers, each in [minimum, maximum]; `length` of them if given."""
    def check(value: Any, name: str) -> tuple[int, ...]:
        if not isinstance(value, (tuple, list)) or not value or (length is not None and len(value) != length):
            size = f"{length} whole numbers" if length is not None else "one or more whole numbers"
            raise InputError(f"{name} must be a tuple of {size}, e.g. {full or default!r}, got {value!r}")
        return tuple(check_int(v, f"{name}[{i}]", minimum=minimum, maximum=maximum) for i, v in enumerate(value))
    return Param(check, default, full, fast)


SEED = Param(lambda v, name: check_seed(v, name), 0)
FAST = Param(lambda v, name: check_bool(v, name, error=InputError), None, none_means="env HVAE_LITE_FAST decides")
HELD_OUT = 1000   # the embedded split's held-out digits
TRAINING = 4000   # and its training digits
MANY = 100_000    # samples, steps: beyond this a CPU takes hours, and nothing gets more correct
PATCHES = 827     # the photos split's held-out patches (notebook 9)
# The presets of 28x28 grey images: every notebook but 9 (and the report) works on MNIST digits.
PRESET_NAMES = tuple(sorted(name for name, config in PRESETS.items() if config.image_shape == (1, 28, 28)))

# Every notebook's parameters, in the order of its parameters cell.
NOTEBOOKS: dict[str, dict[str, Param]] = {
    "00_quickstart": {"FAST": FAST, "SEED": SEED, "N_SAMPLES": count(full=64, fast=16, maximum=MANY),
                      "N_TEMPERATURE": count(full=12, fast=8, maximum=MANY), "N_SHOW": count(8, maximum=HELD_OUT), "N_EVAL": count(full=1000, fast=100, maximum=HELD_OUT)},
    "01_one_latent_layer": {
        "FAST": FAST, "SEED": SEED, "EPOCHS": count(full=12, fast=1, maximum=MANY),
        "LR": number(5e-3, low=0.0, low_open=True),
        "N_TRAIN": count(full=None, fast=500, maximum=TRAINING, none_means="all 4,000 training digits"),
        "HIDDEN": counts(full=(512, 256), fast=(64,), maximum=MANY), "LATENT_DIM": count(full=32, fast=8, maximum=MANY),
        "N_TEST": count(full=None, fast=100, maximum=HELD_OUT, none_means="all 1,000 held-out digits"),
        "N_EVAL": count(full=1000, fast=100, maximum=HELD_OUT), "K": count(full=200, fast=10, maximum=MANY),
        "N_SHOW": count(8, maximum=HELD_OUT), "N_JUDGED": count(full=1000, fast=100, maximum=HELD_OUT)},
    "02_naive_stack": {
        "FAST": FAST, "SEED": SEED, "N_LIVE": count(full=1000, fast=200, maximum=TRAINING),
        "N_EVAL": count(full=300, fast=50, maximum=HELD_OUT), "N_SHOW": count(4, maximum=HELD_OUT)},
    "03_matryoshka": {"FAST": FAST, "SEED": SEED, "N_EVAL": count(full=300, fast=50, maximum=HELD_OUT),
                      "K": count(full=5, fast=1, maximum=MANY), "N_SHOW": count(4, maximum=HELD_OUT)},
    "04_autoregressive_decoder": {
        "FAST": FAST, "SEED": SEED, "PIXEL": counts((12, 14), length=2, minimum=0, maximum=27),
        "N_EVAL": count(full=500, fast=50, maximum=HELD_OUT), "N_SAMPLES": count(full=16, fast=2, maximum=MANY),
        "N_COUNTED": count(full=500, fast=10, maximum=MANY)},
    "05_what_each_layer_encodes": {
        "FAST": FAST, "SEED": SEED,
        "SHOWN": counts(full=(1, 8, 3, 7), fast=(1, 8), minimum=0, maximum=9),  # classes: one digit of each is shown
        "N_SAMPLES": count(full=6, fast=3, maximum=MANY), "N_EVAL": count(full=1000, fast=100, maximum=HELD_OUT)},
    "06_class_structure": {
        "FAST": FAST, "SEED": SEED, "N_EVAL": count(full=1000, fast=200, maximum=HELD_OUT),
        "N_PER_COMPONENT": count(full=8, fast=4, maximum=MANY), "N_JUDGED": count(full=50, fast=10, maximum=MANY),
        "N_SEEDS": count(full=5, fast=2, maximum=MANY),
        "TEMPERATURE": Param(lambda v, name: check_temperature(v, name), 0.8)},
    "07_imputation": {
        "FAST": FAST, "SEED": SEED, "N_SHOW": count(full=6, fast=3, maximum=HELD_OUT),
        "N_SAMPLES": count(full=4, fast=2, maximum=MANY), "N_STEPS": count(full=50, fast=3, maximum=MANY),
        "N_SCORE": count(full=100, fast=4, maximum=HELD_OUT), "K": count(full=10, fast=2, maximum=MANY)},
    "08_what_the_paper_claims": {"FAST": FAST, "SEED": SEED, "N_EVAL": count(full=1000, fast=100, maximum=HELD_OUT),
                                 "N_SHOW": count(full=6, fast=4, maximum=HELD_OUT)},
    "09_natural_images": {
        "FAST": FAST, "SEED": SEED, "N_SHOW": count(full=16, fast=8, maximum=PATCHES),
        "N_EVAL": count(full=PATCHES, fast=20, maximum=PATCHES), "N_AR_SAMPLES": count(full=4, fast=1, maximum=MANY),
        "N_STEPS": count(full=30, fast=3, maximum=MANY)},
    "app": {"SEED": SEED},
    "report": {
        "FAST": FAST, "DATA": choice(("embedded", "full"), "embedded"), "PRESET": choice(PRESET_NAMES, "matryoshka"),
        "DEPTH": count(None, maximum=40, none_means="the preset's latent layers"),
        "AR": flag(None, none_means="the preset's head"),
        "EPOCHS": count(None, maximum=MANY, none_means="the recipe's epochs"), "SEED": SEED,
        "USE_CHECKPOINTS": flag(True),
        # DATA "full" has 10,000 held-out digits: the upper bound is checked against DATA below.
        "N_EVAL": count(full=500, fast=100, maximum=10_000), "K": count(full=20, fast=2, maximum=MANY),
        "N_IMPUTE": count(full=100, fast=20, maximum=10_000), "N_SHOW": count(full=8, fast=4, maximum=HELD_OUT)},
    "ex01_vae_pieces": {"FAST": FAST, "SEED": SEED, "N_DIGITS": count(full=8, fast=4, maximum=HELD_OUT),
                        "KS": counts(full=(1, 10, 100), fast=(1, 10), maximum=MANY),
                        "N_REPEATS": count(full=500, fast=100, maximum=MANY)},
    "ex02_matryoshka": {"FAST": FAST, "SEED": SEED, "PRESET": choice(PRESET_NAMES, full="matryoshka-ar", fast="tiny"),
                        "AR_LAYERS": count(3, maximum=20), "N_DIGITS": count(6, maximum=HELD_OUT),
                        "N_JUDGED": count(full=300, fast=30, maximum=HELD_OUT)},
    "ex03_clusters_and_imputation": {
        "FAST": FAST, "SEED": SEED, "PRESET": choice(PRESET_NAMES, full="mixture", fast="tiny"),
        "N_DIGITS": count(full=1000, fast=200, maximum=HELD_OUT), "N_SHOW": count(4, maximum=HELD_OUT),
        "N_STEPS": count(full=60, fast=6, maximum=MANY)},
    "ex04_training_effects": {
        "FAST": FAST, "SEED": SEED, "N_TRAIN": count(full=1000, fast=200, maximum=TRAINING),
        "N_TEST": count(full=200, fast=50, maximum=HELD_OUT), "EPOCHS": count(full=2, fast=1, maximum=MANY),
        "FLOOR": number(2.0, low=0.0)},
}


def check_parameters(notebook: str, *, partial: bool = False, **values: Any) -> tuple:
    """The notebook's parameters, checked and resolved, as a named tuple in the order given.

    Each value must pass its Param's check (an InputError naming the parameter otherwise); a None
    that stands for "the mode decides" becomes the `full` or `fast` value. Every parameter of the
    notebook must be given, and no other (partial=True, for the command line: only checks the
    values given, resolves nothing and leaves the mode alone).
    """
    if notebook not in NOTEBOOKS:
        raise InputError(f"unknown notebook {notebook!r}; the notebooks with parameters are {sorted(NOTEBOOKS)}")
    spec = NOTEBOOKS[notebook]
    unknown, missing = sorted(set(values) - set(spec)), [name for name in spec if name not in values]
    if unknown or (missing and not partial):
        raise InputError(f"{notebook}: " + "; ".join(
            part for part in (f"unknown parameter(s) {unknown}" if unknown else "",
                              f"missing parameter(s) {missing}" if missing and not partial else "") if part)
            + f". Its parameters are {list(spec)}")
    fast = values.get("FAST")
    if fast is not None:
        fast = spec["FAST"].check(fast, "FAST")
    if not partial and "FAST" in spec:
        fast = fast_mode(fast)
    resolved = {}
    for name, value in values.items():
        param = spec[name]
        if name == "FAST":
            resolved[name] = fast
            continue
        if value is None and param.default is MODE and not partial:
            value = param.fast if fast else param.full
        if value is None:
            if param.none_means is None and param.default is not MODE:
                raise InputError(f"{name} must be given (None is not one of its values)")
            resolved[name] = None
            continue
        resolved[name] = param.check(value, name)
    if notebook == "report":
        _check_report(resolved, values)
    if not partial and "FAST" in spec:  # every value is valid: now every kit function called below follows FAST
        os.environ[FAST_ENV] = "1" if fast else "0"
    return namedtuple("Parameters", list(resolved))(**resolved)


def _check_report(resolved: dict[str, Any], given: dict[str, Any]) -> None:
    """The report's bounds that depend on another parameter: the held-out digits of DATA."""
    available = 10_000 if resolved.get("DATA", "embedded") == "full" else HELD_OUT
    for name in ("N_EVAL", "N_IMPUTE"):
        if resolved.get(name) is not None and resolved[name] > available:
            raise InputError(f"{name} must be <= {available} (the held-out digits of DATA="
                             f"{resolved.get('DATA', 'embedded')!r}), got {resolved[name]}")
