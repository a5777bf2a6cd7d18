"""Notebook prose that stays true: text formatted from the run, and claims checked by the run.

A notebook sentence that states a measured fact either takes its number from the run,

    markdown(f"The held-out ELBO is **{elbo:.1f} nats** on {n} digits.")

or sits beside a one-line check that fails loudly when the fact stops being true:

    claim(recon_ar > recon_plain, "the AR model's reconstruction term is higher", value=f"{recon_ar:.1f} vs {recon_plain:.1f}")

In full mode (`make notebooks`, the report) a claim that no longer holds raises `ClaimError`,
which stops the notebook run: the text must then be rewritten for the new models. In fast mode
(env HVAE_LITE_FAST=1: tiny, barely trained models, as in the tests) the claim is printed as
"not checked" instead, since a tiny model proves nothing either way; a claim about the committed
results files alone (`results_only=True`) is checked in every mode, so `make test` checks it.

Numbers from the benchmarks, the verdict rule and the tables live in `hvae_lite.results`.
"""
from __future__ import annotations

import textwrap
from typing import Any

from .errors import InputError
from .recipes import fast_mode


class ClaimError(AssertionError):
    """A sentence of a notebook states something the run no longer shows."""


def markdown(text: str):
    """Markdown rendered in a notebook from a (formatted) string; indentation of a triple-quoted
    string is removed first, so `markdown(f\"\"\"...\"\"\")` can sit indented in a code cell."""
    from IPython.display import Markdown

    if not isinstance(text, str):
        raise InputError(f"markdown() takes a string, got {type(text).__name__}")
    return Markdown(textwrap.dedent(text).strip())


def _describe(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return str(value)


def claim(condition: Any, statement: str, value: Any = None, *, fast: bool | None = None,
          results_only: bool = False) -> None:
    """Check one sentence of the text against the run (returns nothing, so a notebook cell that
    ends with a claim shows only its line).

    condition: the fact, as a bool (numpy and 0-d torch booleans too); statement: the sentence it
    guards, in words; value: what was measured (printed, and quoted in the error).
    Full mode: prints "[checked] statement", or raises ClaimError when the condition is false.
    Fast mode (default: env HVAE_LITE_FAST == '1'): prints "[not checked in fast mode] ..." and
    never raises, whatever the condition, unless `results_only`: a condition computed from the
    committed results files alone (hvae_lite.results), not from this run's models, holds in every
    mode and is checked in every mode.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise InputError("claim() needs the sentence it checks, as a non-empty string")
    try:
        holds = bool(condition)
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. a tensor of several booleans
        raise InputError(f"claim {statement!r}: the condition must be one true/false value ({error})") from None
    measured = "" if value is None else f" (measured: {_describe(value)})"
    if fast_mode(fast) and not results_only:
        print(f"[not checked in fast mode: tiny models] {statement}{measured}")
        return
    if not holds:
        raise ClaimError(f"the notebook says: {statement!r}, but this run does not show it{measured}. "
                         "The models or the data changed: rewrite the sentence (and this check) for what the "
                         "run shows now.")
    print(f"[checked] {statement}{measured}")
