"""Notebook prose that stays true: text formatted from the run, claims checked by the run, results read by name.

A notebook sentence that states a measured fact either takes its number from the run,

    markdown(f"The held-out ELBO is **{elbo:.1f} nats** on {n} digits.")

or sits beside a one-line check that fails loudly when the fact stops being true:

    claim(recon_ar > recon_plain, "the AR model's reconstruction term is higher", value=f"{recon_ar:.1f} vs {recon_plain:.1f}")

In full mode (`make notebooks`, the report) a claim that no longer holds raises `ClaimError`,
which stops the notebook run: the text must then be rewritten for the new models. In fast mode
(env HVAE_LITE_FAST=1: tiny, barely trained models, as in the tests) the claim is printed as
"not checked" instead, since a tiny model proves nothing either way.

`measured(key)` reads one named measure from `benchmarks/results/*.json` through `result(name, *path)`;
the file names and the keys notebooks read live here (RESULT_FILES, MEASURES), so renaming a file
or a key is a one-line change.
"""
from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .pretrained import REPO_ROOT, fast_mode

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# result name -> file under benchmarks/results/ (written by the benchmark scripts)
RESULT_FILES = {
    "quality": "quality.json",          # held-out ELBO / IWAE of each variant at equal budget
    "speed": "speed.json",              # images/s, GFLOP/s
    "shipped": "shipped.json",          # the shipped checkpoints on the full protocol (benchmarks/shipped.py)
    "imputation": "imputation.json",    # both imputation routes on every occlusion kind
    "ar_head": "ar_head.json",          # autoregressive heads of several sizes on the default model
}


# The measures notebooks read from the results files, each by one path (see `result`): a renamed
# file, key or variant is a one-line change here. Missing files or keys read as None ("not measured").
MEASURES: dict[str, tuple[Any, ...]] = {
    # equal-budget ablations (benchmarks/quality.py): one row per variant
    "quality_rows": ("quality", "rows"),
    "quality_recipe": ("quality", "train_config"),
    "quality_iwae": ("quality", "iwae"),
    "shallow": ("quality", "rows", {"variant": "mlp-vae"}),
    "shallow_converged": ("quality", "rows", {"variant": "mlp-vae-200ep"}),
    "naive_stack": ("quality", "rows", {"variant": "no-td-path"}),
    "no_merge": ("quality", "rows", {"variant": "no-merge"}),
    "matryoshka": ("quality", "rows", {"variant": "matryoshka"}),
    "matryoshka_ar": ("quality", "rows", {"variant": "matryoshka-ar"}),
    # the shipped checkpoints on the full protocol, with the digit judge (a classifier)
    "judge_samples": ("shipped", "models", "matryoshka", "samples", "1"),
    "judge_samples_ar": ("shipped", "models", "matryoshka-ar", "samples", "1"),
    "judge_real_digits": ("shipped", "judge_on_real_heldout"),
    "shipped_default": ("shipped", "models", "matryoshka"),
    "shipped_ar": ("shipped", "models", "matryoshka-ar"),
    "ar_vs_default": ("shipped", "paired", "matryoshka-ar - matryoshka"),
    "deep_vs_converged_shallow": ("shipped", "paired", "matryoshka - mlp-vae"),
    # class structure and imputation
    "clustering": ("shipped", "models", "mixture", "mixture"),
    "imputation_rows": ("imputation", "rows"),
}


def measured(key: str, default: Any = None, results_dir: str | Path | None = None) -> Any:
    """The value of a named measure (see MEASURES), or `default` when it is not in the results yet."""
    if key not in MEASURES:
        raise ValueError(f"unknown measure {key!r}; known: {sorted(MEASURES)}")
    return result(*MEASURES[key], default=default, results_dir=results_dir)


class ClaimError(AssertionError):
    """A sentence of a notebook states something the run no longer shows."""


def markdown(text: str):
    """Markdown rendered in a notebook from a (formatted) string; indentation of a triple-quoted
    string is removed first, so `markdown(f\"\"\"...\"\"\")` can sit indented in a code cell."""
    from IPython.display import Markdown

    if not isinstance(text, str):
        raise TypeError(f"markdown() takes a string, got {type(text).__name__}")
    return Markdown(textwrap.dedent(text).strip())


def _describe(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return str(value)


def claim(condition: Any, statement: str, value: Any = None, *, fast: bool | None = None) -> None:
    """Check one sentence of the text against the run (returns nothing, so a notebook cell that
    ends with a claim shows only its line).

    condition: the fact, as a bool (numpy and 0-d torch booleans too); statement: the sentence it
    guards, in words; value: what was measured (printed, and quoted in the error).
    Full mode: prints "[checked] statement", or raises ClaimError when the condition is false.
    Fast mode (default: env HVAE_LITE_FAST == '1'): prints "[not checked in fast mode] ..." and
    never raises, whatever the condition.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError("claim() needs the sentence it checks, as a non-empty string")
    try:
        holds = bool(condition)
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. a tensor of several booleans
        raise ValueError(f"claim {statement!r}: the condition must be one true/false value ({error})") from None
    measured = "" if value is None else f" (measured: {_describe(value)})"
    if fast_mode(fast):
        print(f"[not checked in fast mode: tiny models] {statement}{measured}")
        return
    if not holds:
        raise ClaimError(f"the notebook says: {statement!r}, but this run does not show it{measured}. "
                         "The models or the data changed: rewrite the sentence (and this check) for what the "
                         "run shows now.")
    print(f"[checked] {statement}{measured}")


def clearly_less(a: float, b: float, stderr: float, n_se: float = 2.0) -> bool:
    """True when a < b by more than `n_se` standard errors of the difference (`stderr`): the
    kit's rule for writing "A is lower than B" rather than "does not clearly differ"."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(stderr)) or stderr < 0:
        raise ValueError(f"need finite values and a non-negative standard error, got {a}, {b}, {stderr}")
    return b - a > n_se * stderr


def read_results(name: str, results_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The parsed `benchmarks/results/<file>.json` of a result name, or None when the file is
    missing (not measured yet). A file that is not valid JSON raises ValueError."""
    if name not in RESULT_FILES:
        raise ValueError(f"unknown result {name!r}; known: {sorted(RESULT_FILES)}")
    path = Path(results_dir or RESULTS_DIR) / RESULT_FILES[name]
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun the benchmark that writes it") from None


def result(name: str, *path: str | int | Mapping[str, Any], default: Any = None,
           results_dir: str | Path | None = None) -> Any:
    """One value of a results file, reached by `path`, or `default` when the file or any step is missing.

    Each step is a key (str), a list index (int) or a row selector: a mapping such as
    {"variant": "matryoshka"} picks the first row of a list whose fields match.
    E.g. result("quality", "rows", {"variant": "no-merge"}, "nll_iwae").
    """
    node: Any = read_results(name, results_dir)
    for step in path:
        if node is None:
            return default
        if isinstance(step, Mapping):
            rows = node if isinstance(node, list) else []
            node = next((row for row in rows if isinstance(row, Mapping)
                         and all(row.get(k) == v for k, v in step.items())), None)
        elif isinstance(step, int) and not isinstance(step, bool):
            node = node[step] if isinstance(node, list) and -len(node) <= step < len(node) else None
        elif isinstance(step, str):
            node = node.get(step) if isinstance(node, Mapping) else None
        else:
            raise TypeError(f"a path step is a key, an index or a row selector, got {step!r}")
    return default if node is None else node


def plus_minus(mean: float, stderr: float, digits: int = 1) -> str:
    """'mean ± stderr' with `digits` decimals: how every table of the kit writes a measured mean."""
    return f"{mean:.{digits}f} ± {stderr:.{digits}f}"


def imputation_table(result: Mapping[str, Any]) -> str:
    """The imputation benchmark (benchmarks/results/imputation.json) as a Markdown table: per
    occlusion kind, both routes' log p(missing | observed) (a bound and an estimate), their paired
    difference, and the digit judge's accuracy on the original, occluded and completed digits."""
    k = result["protocol"]["k"]
    lines = [f"| occlusion | missing pixels | log p(missing given observed): conditional (IWAE-{k} bound) | "
             "iterative (estimate) | difference (paired) | judge: original / occluded / conditional / iterative |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(
            f"| {row['kind']} | {row['missing_pixels']:.0f} | "
            f"{plus_minus(row['conditional_log_lik'], row['conditional_log_lik_stderr'])} | "
            f"{plus_minus(row['iterative_log_lik'], row['iterative_log_lik_stderr'])} | "
            f"{plus_minus(row['conditional_minus_iterative'], row['difference_stderr'], 2)} | "
            f"{row['judge_original']:.3f} / {row['judge_occluded']:.3f} / {row['judge_conditional']:.3f} / "
            f"{row['judge_iterative']:.3f} |")
    return "\n".join(lines)


def imputation_k_check_table(result: Mapping[str, Any]) -> str:
    """How far each route's number moves when k grows tenfold (the `k_check` rows of the imputation
    benchmark), as a Markdown table; a lower bound can only rise with k in expectation."""
    lines = ["| occlusion | digits | conditional bound: k -> 10 k | change | iterative estimate: k -> 10 k | change |",
             "|---|---|---|---|---|---|"]
    for row in result["k_check"]:
        k, big = row["k_small"], row["k_big"]
        lines.append(
            f"| {row['kind']} | {row['n_images']} | {row['conditional_small']:.2f} (k = {k}) -> {row['conditional_big']:.2f} "
            f"(k = {big}) | {plus_minus(*row['conditional_big_minus_small'], 2)} | {row['iterative_small']:.2f} -> "
            f"{row['iterative_big']:.2f} | {plus_minus(*row['iterative_big_minus_small'], 2)} |")
    return "\n".join(lines)


def ar_head_table(result: Mapping[str, Any]) -> str:
    """The AR-head screening benchmark (benchmarks/results/ar_head.json) as a Markdown table: per
    head, its held-out ELBO, its paired gain over the default model and its layers in use."""
    default, default_se = result["default_elbo"]
    lines = ["| head: first masked kernel, masked layers, width | body | parameters | held-out ELBO | "
             "gain over the default (paired) | layers in use |",
             "|---|---|---|---|---|---|",
             f"| none (the default) | | | {plus_minus(default, default_se, 2)} | | |"]
    for row in result["rows"]:
        body = "frozen (lr 1e-6)" if row["body_lr"] < 1e-5 else f"fine-tuned (lr {row['body_lr']:g})"
        lines.append(f"| {row['variant']}: {row['ar_kernel']}x{row['ar_kernel']}, {row['ar_layers']}, {row['ar_width']} | "
                     f"{body} | {row['parameters'] / 1e6:.2f} M | {plus_minus(row['elbo'], row['elbo_stderr'], 2)} | "
                     f"{plus_minus(row['elbo_gain_over_default'], row['gain_stderr'], 2)} | "
                     f"{sum(row['in_use'])} of {len(row['in_use'])} |")
    return "\n".join(lines)
