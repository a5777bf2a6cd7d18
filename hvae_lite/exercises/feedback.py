"""The machinery every checker shares: call the student's function safely, compare, explain.

A checker never raises. Whatever goes wrong (an exception in the student's code, a wrong
shape, a wrong value) becomes a `CheckResult` with a message a student can act on.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one checker: `passed`, and a message in plain words."""

    exercise: str
    passed: bool
    message: str

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"


class Mistake(Exception):
    """Raised inside a checker to stop at the first problem found; becomes a failed CheckResult."""


@dataclass(frozen=True)
class Diagnosis:
    """A typical wrong answer: what it would have returned, and what to tell the student if they match."""

    value: Tensor
    hint: str


def checker(exercise: str, success: str, *, function: bool = True) -> Callable:
    """Turn `body(student_fn)` (which raises `Mistake` on the first problem) into a safe checker.

    The checker returns a CheckResult and prints it unless `quiet=True`. function=False: it checks
    a value the student wrote (e.g. a prediction), not a function.
    """
    def wrap(body: Callable[[Callable], None]) -> Callable[..., CheckResult]:
        @functools.wraps(body)
        def check(student_fn: Callable, quiet: bool = False) -> CheckResult:
            try:
                if function and not callable(student_fn):
                    raise Mistake(f"pass your function itself, e.g. check(my_function) without (); got "
                                  f"{repr(student_fn)[:40]}, which is not a function.")
                with torch.random.fork_rng(devices=[]):  # the checks draw random inputs; keep the student's RNG state
                    torch.manual_seed(0)
                    body(student_fn)
                result = CheckResult(exercise, True, success)
            except Mistake as mistake:
                result = CheckResult(exercise, False, str(mistake))
            except Exception as error:  # noqa: BLE001 - a checker must never crash the notebook
                result = CheckResult(exercise, False, f"the check could not finish ({type(error).__name__}: "
                                                      f"{error}). Look at what your function returns.")
            if not quiet:
                print(result)
            return result
        return check
    return wrap


def call(student_fn: Callable, *args: Any, case: str, error_hint: str = "") -> Any:
    """Call the student's function; turn any exception into a Mistake that says what happened."""
    try:
        return student_fn(*args)
    except NotImplementedError:
        raise Mistake("not implemented yet: replace `raise NotImplementedError()` with your code, "
                      "run that cell, then run this check again.") from None
    except Exception as error:  # noqa: BLE001 - explained to the student instead
        if isinstance(error, NameError):
            hint = " Did you run the cells above it (the imports) first?"
        elif isinstance(error, RuntimeError) and error_hint:  # torch's shape errors
            hint = f" Hint: {error_hint}"
        else:
            hint = ""
        raise Mistake(f"your function raised {type(error).__name__} for {case}: {str(error).rstrip('.')}.{hint}") from None


def as_tensor(value: Any, what: str, case: str) -> Tensor:
    """The student's output as a float tensor; a Mistake if it is not one."""
    if isinstance(value, Tensor):
        return value.detach().float()
    if value is None:
        raise Mistake(f"your function returned None for {case}: did you forget `return`?")
    raise Mistake(f"{what} should be a torch tensor, got {type(value).__name__} for {case}.")


def fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def expect_close(got: Any, want: Tensor, case: str, *, what: str = "your result", shape_name: str = "",
                 shape_hint: str = "", diagnoses: Sequence[Diagnosis] = (), nonfinite_hint: str = "",
                 explain: Callable[[Tensor], str | None] | None = None,
                 rtol: float = 1e-4, atol: float = 1e-4) -> Tensor:
    """Compare the student's tensor with the reference: type, shape, finiteness, then values.

    On a wrong value, the first matching `Diagnosis` (a typical wrong answer computed on the
    same input) names the likely mistake; failing that, `explain(got)` may name a property the
    answer violates (a negative KL, ...); otherwise the message shows where it differs.
    """
    got = as_tensor(got, what, case)
    want = want.detach().float()
    if got.shape != want.shape:
        expected = f"{shape_name} = {fmt_shape(want.shape)}" if shape_name else fmt_shape(want.shape)
        hint = f" {shape_hint}" if shape_hint else ""
        raise Mistake(f"wrong shape for {case}: expected {expected}, got {fmt_shape(got.shape)}.{hint}")
    if not torch.isfinite(got).all():
        hint = f" {nonfinite_hint}" if nonfinite_hint else ""
        raise Mistake(f"{what} contains NaN or infinity for {case}.{hint}")
    if torch.allclose(got, want, rtol=rtol, atol=atol):
        return got
    for diagnosis in diagnoses:
        value = diagnosis.value.detach().float()
        if value.shape == got.shape and torch.allclose(got, value, rtol=rtol, atol=atol, equal_nan=True):
            raise Mistake(f"{what} is wrong for {case}: {diagnosis.hint}")
    property_hint = explain(got) if explain is not None else None
    if property_hint:
        raise Mistake(f"{what} is wrong for {case}: {property_hint}")
    pattern = _pattern(got, want)
    if pattern:
        raise Mistake(f"{what} is wrong for {case}: {pattern}")
    error = (got - want).abs()
    index = tuple(int(i) for i in torch.unravel_index(error.argmax(), error.shape))
    where = f" at index {index}" if index else ""
    raise Mistake(f"{what} is wrong for {case}: expected {want[index].item():.6g}{where}, "
                  f"got {got[index].item():.6g}.")


def _pattern(got: Tensor, want: Tensor) -> str | None:
    """A wrong answer no diagnosis names, but whose error has a shape: the same factor or the same
    offset everywhere (e.g. a mean where a sum belongs, a constant left out)."""
    if got.numel() < 2 or not torch.isfinite(want).all():
        return None
    scale = want.abs().max().item() or 1.0
    offset = got - want
    if offset.abs().max() > 1e-4 * scale and (offset - offset.mean()).abs().max() < 1e-4 * scale:
        return (f"every value is off by the same amount ({offset.mean().item():+.4g}): a constant term is "
                "missing or extra, or the wrong constant was subtracted.")
    nonzero = want.abs() > 1e-6 * scale
    if nonzero.sum() >= 2:
        ratio = got[nonzero] / want[nonzero]
        r = ratio.mean().item()
        if abs(r - 1) > 1e-3 and (ratio - r).abs().max() < 1e-4 * max(1.0, abs(r)):
            return (f"every value is {r:.4g} times the expected one: a constant factor. Did you average where "
                    "the formula sums (or sum where it averages), or drop or add a factor such as 1/2?")
    return None
