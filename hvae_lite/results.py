"""Results: reading the benchmark results files, the measures notebooks use, the one verdict rule
and the one Markdown table renderer (notebooks, benchmarks and the README tables all use these).

`measured(key)` reads one named measure from `benchmarks/results/*.json` through
`result(name, *path)`; the file names and the keys notebooks read live here (RESULT_FILES,
MEASURES), so renaming a file or a key is a one-line change.

`verdict(difference, stderr)` turns a difference and its standard error into "better", "worse"
or "not distinguishable" (more than two standard errors either way, or not): a raw `>` between
two noisy numbers is not a verdict. `compare_paired` computes the paired difference first.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import paths
from .errors import InputError

# result name -> file under benchmarks/results/ (written by the benchmark scripts)
RESULT_FILES = {
    "ablations": "ablations.json",            # the ablation study (benchmarks/ablations.py)
    "speed": "speed.json",                    # images/s, GFLOP/s
    "shipped": "shipped.json",                # the shipped models on the full protocol (benchmarks/shipped.py)
    "class_structure": "class_structure.json",  # clustering, purity, class kept against k, baselines
    "imputation": "imputation.json",          # both imputation routes on every occlusion kind
    "imputation_study": "imputation_study.json",  # the conditional model from scratch vs its rival, 3 seeds
    "time_to_quality": "time_to_quality.json",  # held-out IWAE and samples against training minutes
    "quick_recipe": "quick_recipe.json",      # the 10-minute "train it yourself" recipe
    "photos": "photos.json",                  # the colour models on the held-out photo patches (benchmarks/photos.py)
}

# The measures notebooks read from the results files, each by one path (see `result`): a renamed
# file, key or variant is a one-line change here. Missing files or keys read as None ("not measured").
MEASURES: dict[str, tuple[Any, ...]] = {
    # the ablation study: one row per variant, one contrast per claim
    "ablation_rows": ("ablations", "rows"),
    "ablation_contrasts": ("ablations", "contrasts"),
    "ablation_protocol": ("ablations", "protocol"),
    "study_full": ("ablations", "rows", {"variant": "matryoshka"}),
    "study_naive_stack": ("ablations", "rows", {"variant": "no-td-path"}),
    "study_no_merge": ("ablations", "rows", {"variant": "no-merge"}),
    "study_ar_head": ("ablations", "rows", {"variant": "ar-head"}),
    "study_ar_control": ("ablations", "rows", {"variant": "ar-control"}),
    "contrast_path": ("ablations", "contrasts", {"contrast": "deterministic path"}),
    "contrast_merge": ("ablations", "contrasts", {"contrast": "inference merge"}),
    "contrast_ar": ("ablations", "contrasts", {"contrast": "AR head"}),
    "contrast_fine_tune": ("ablations", "contrasts", {"contrast": "extra fine-tuning alone"}),
    # the shipped models on the full protocol, with the digit judge (a classifier)
    "shipped_default": ("shipped", "models", "matryoshka"),
    "shipped_standard_prior": ("shipped", "models", "matryoshka-standard-prior"),
    "shipped_mixture": ("shipped", "models", "mixture"),
    "judge_samples": ("shipped", "models", "matryoshka", "samples", "1"),
    "judge_samples_cool": ("shipped", "models", "matryoshka", "samples", "maps 0.5"),
    "judge_samples_standard_prior": ("shipped", "models", "matryoshka-standard-prior", "samples", "1"),
    "judge_real_digits": ("shipped", "judge_on_real_heldout"),
    "deep_vs_converged_shallow": ("shipped", "paired", "matryoshka - mlp-vae"),
    "fitted_prior_gain": ("shipped", "paired", "matryoshka - matryoshka-standard-prior"),
    "mixture_vs_default": ("shipped", "paired", "mixture - matryoshka"),
    # class structure and imputation
    "class_structure_mixture": ("class_structure", "models", "mixture"),
    "class_structure_default": ("class_structure", "models", "matryoshka"),
    "imputation_rows": ("imputation", "rows"),
    "imputation_k_check": ("imputation", "k_check"),
    # planning a run
    "time_to_quality": ("time_to_quality", "curves"),
    "quick_recipe": ("quick_recipe",),
    # natural images (benchmarks/photos.py): bits/dim per model, paired differences, imputation per kind
    "photos_models": ("photos", "models"),
    "photos_ar_gain": ("photos", "paired", "photos-ar - photos-control"),
    "photos_ar": ("photos", "models", "photos-ar"),
    "photos_imputation_rows": ("photos", "imputation"),
}


def read_results(name: str, results_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The parsed `benchmarks/results/<file>.json` of a result name, or None when the file is
    missing (not measured yet). A file that is not valid JSON raises InputError (a ValueError)."""
    if name not in RESULT_FILES:
        raise InputError(f"unknown result {name!r}; known: {sorted(RESULT_FILES)}")
    path = Path(results_dir or paths.RESULTS_DIR) / RESULT_FILES[name]
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON ({error}); rerun the benchmark that writes it") from None


def result(name: str, *path: str | int | Mapping[str, Any], default: Any = None,
           results_dir: str | Path | None = None) -> Any:
    """One value of a results file, reached by `path`, or `default` when the file or any step is missing.

    Each step is a key (str), a list index (int) or a row selector: a mapping such as
    {"variant": "matryoshka"} picks the first row of a list whose fields match.
    E.g. result("ablations", "rows", {"variant": "no-merge"}, "nll").
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
            raise InputError(f"a path step is a key, an index or a row selector, got {step!r}")
    return default if node is None else node


def measured(key: str, default: Any = None, results_dir: str | Path | None = None) -> Any:
    """The value of a named measure (see MEASURES), or `default` when it is not in the results yet."""
    if key not in MEASURES:
        raise InputError(f"unknown measure {key!r}; known: {sorted(MEASURES)}")
    return result(*MEASURES[key], default=default, results_dir=results_dir)


# ----------------------------------------------------------------------------- statistics and the verdict


def mean_stderr(values: Tensor | np.ndarray | list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN for a single value)."""
    v = torch.as_tensor(np.asarray(values, dtype=np.float64))
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else float("nan")


def paired_difference(a: Tensor | np.ndarray | list[float], b: Tensor | np.ndarray | list[float]) -> tuple[float, float]:
    """Mean and standard error of a - b over the same items (paired): the per-item noise that
    both share cancels, so the error bar is much smaller than either one's own."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"paired values need two equal-length 1-D arrays, got {a.shape} and {b.shape}")
    return mean_stderr(a - b)


VERDICT_WORDS = ("better", "worse", "not distinguishable")


@dataclass(frozen=True)
class Verdict:
    """A comparison of A with B: the difference A - B, its standard error, and what it says."""

    difference: float   # A - B in the measure's units
    stderr: float       # standard error of that difference (paired where possible)
    word: str           # "better" | "worse" | "not distinguishable": A against B

    def __str__(self) -> str:
        return f"{self.difference:+.2f} ± {self.stderr:.2f}: {self.word}"


def verdict(difference: float, stderr: float, *, higher_is_better: bool = True, n_se: float = 2.0) -> Verdict:
    """The kit's one verdict rule: A is "better" than B when it is ahead by more than `n_se`
    standard errors of the difference, "worse" when behind by more, else "not distinguishable".
    difference: A - B; higher_is_better=False for losses and NLLs (lower is better)."""
    values = {"difference": difference, "stderr": stderr, "n_se": n_se}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(value):
            raise InputError(f"verdict needs a finite {name}, got {value!r}")
    if stderr < 0 or n_se < 0:
        raise InputError(f"verdict needs a standard error and n_se >= 0, got stderr={stderr}, n_se={n_se}")
    ahead = float(difference) if higher_is_better else -float(difference)
    word = "better" if ahead > n_se * stderr else "worse" if ahead < -n_se * stderr else "not distinguishable"
    return Verdict(float(difference), float(stderr), word)


def compare_paired(a_per_item: Tensor | np.ndarray | list[float], b_per_item: Tensor | np.ndarray | list[float], *,
                   higher_is_better: bool = True, n_se: float = 2.0) -> Verdict:
    """The verdict on A against B measured on the same items (e.g. per-digit ELBOs of two models on
    the same held-out digits): the paired difference, its standard error, and `verdict`."""
    if len(a_per_item) < 2:
        raise InputError(f"a paired comparison needs at least 2 items, got {len(a_per_item)}")
    difference, stderr = paired_difference(a_per_item, b_per_item)
    return verdict(difference, stderr, higher_is_better=higher_is_better, n_se=n_se)


# ----------------------------------------------------------------------------- tables


def plus_minus(mean: float, stderr: float, digits: int = 1) -> str:
    """'mean ± stderr' with `digits` decimals: how every table of the kit writes a measured mean."""
    return f"{mean:.{digits}f} ± {stderr:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The kit's one Markdown table renderer: a header row, the separator, one line per row
    (cells already formatted as text; anything else goes through str)."""
    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"

    header = [str(cell) for cell in header]
    lines = [line(header), "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(cell) for cell in row]
        if len(cells) != len(header):
            raise InputError(f"a table row has {len(cells)} cells for {len(header)} columns: {cells}")
        lines.append(line(cells))
    return "\n".join(lines)


def imputation_table(result: Mapping[str, Any]) -> str:
    """The imputation benchmark (benchmarks/results/imputation.json) as a Markdown table: per
    occlusion kind, both routes' log p(missing | observed) (a bound and an estimate), their paired
    difference and the verdict on the conditional route, and the digit judge's accuracy on the
    original, occluded and completed digits beside the ceiling (a classifier of the observed pixels)."""
    k = result["protocol"]["k"]
    header = ["occlusion", "missing pixels", f"log p(missing given observed): conditional (IWAE-{k} bound)",
              "iterative (estimate)", "conditional - iterative (paired)", "judge: original / occluded / "
              "ceiling / conditional / iterative (SE about 0.015)"]
    return markdown_table(header, [
        (row["kind"], f"{row['missing_pixels']:.0f}",
         plus_minus(row["conditional_log_lik"], row["conditional_log_lik_stderr"]),
         plus_minus(row["iterative_log_lik"], row["iterative_log_lik_stderr"]),
         plus_minus(row["conditional_minus_iterative"], row["difference_stderr"], 2) + ": " + imputation_verdict(row),
         " / ".join(f"{row[f'judge_{name}']:.3f}" if f"judge_{name}" in row else "not measured"
                    for name in ("original", "occluded", "ceiling", "conditional", "iterative")))
        for row in result["rows"]])


def imputation_verdict(row: Mapping[str, Any]) -> str:
    """The verdict stored with a row, or the kit's rule applied to its difference (files written
    before verdicts were stored)."""
    return row.get("verdict") or verdict(row["conditional_minus_iterative"], row["difference_stderr"]).word


def imputation_k_check_table(result: Mapping[str, Any]) -> str:
    """How far each route's number moves when k grows (the `k_check` rows of the imputation
    benchmark, one per pair of k), as a Markdown table; a lower bound can only rise with k in expectation."""
    header = ["occlusion", "digits", "conditional bound: k -> larger k", "change", "iterative estimate: k -> larger k",
              "change"]
    return markdown_table(header, [
        (row["kind"], row["n_images"],
         f"{row['conditional_small']:.2f} (k = {row['k_small']}) -> {row['conditional_big']:.2f} (k = {row['k_big']})",
         plus_minus(*row["conditional_big_minus_small"], 2),
         f"{row['iterative_small']:.2f} -> {row['iterative_big']:.2f}", plus_minus(*row["iterative_big_minus_small"], 2))
        for row in result["k_check"]])


def _across_seeds(stat: Mapping[str, Any] | None, digits: int = 1) -> str:
    """'mean (sd s)' of a measure over training seeds, the mean alone for one, 'not scored' for none."""
    if stat is None:
        return "not scored"
    sd = stat.get("seed_sd")
    return f"{stat['mean']:.{digits}f}" + (f" (sd {sd:.{digits}f})" if sd is not None else "")


def ablation_table(result: Mapping[str, Any]) -> str:
    """The ablation study (benchmarks/results/ablations.json), one row per variant: what differs,
    size, compute, layers in use per seed, and the held-out scores averaged over its seeds."""
    k = result["protocol"]["k"]
    header = ["variant", "what differs from the full model", "parameters", "training compute: PFLOP (minutes, "
              "1 core of a shared machine)", "seeds", "layers in use (per seed)", "held-out ELBO", f"IWAE-{k} NLL",
              "confident samples"]
    return markdown_table(header, [
        (row["variant"], row["what"], f"{row['parameters'] / 1e6:.2f} M",
         f"{row['training_pflop_with_base']['mean']:.3f} ({row['train_seconds_with_base']['mean'] / 60:.0f})",
         len(row["seeds"]),
         " / ".join(f"{n}" for n in row["layers_in_use"]) + f" of {row['n_layers']}",
         _across_seeds(row["elbo"]), _nll_cell(row), _across_seeds(row["confident_samples"], 2))
        for row in result["rows"]])


def _nll_cell(row: Mapping[str, Any]) -> str:
    """The NLL of a row over its IWAE-scored seeds, saying how many when not every seed was."""
    cell = _across_seeds(row.get("nll"))
    scored, seeds = row.get("nll_seeds", row["seeds"]), row["seeds"]
    return cell if len(scored) == len(seeds) or row.get("nll") is None else f"{cell} (seed {', '.join(map(str, scored))})"


def contrast_table(result: Mapping[str, Any], measure: str = "nll") -> str:
    """Each contrast of the ablation study: A - B in `measure` ('nll' or 'elbo'), per seed (paired
    over the held-out digits) and across seeds (mean, its standard error, the seed spread), and the
    verdict of the kit's rule on the across-seed numbers."""
    name = "IWAE NLL (lower is better)" if measure == "nll" else "held-out ELBO (higher is better)"
    header = ["contrast (A against B)", f"A - B in {name}, per seed (± paired SE over digits)",
              "mean ± SE", "seed spread (sd)", "verdict on A"]
    rows = []
    for row in result["contrasts"]:
        c = row[measure]
        if c is None:
            continue
        rows.append((f"{row['contrast']}: {row['a']} against {row['b']}",
                     "; ".join(plus_minus(s["difference"], s["stderr"], 2) for s in c["per_seed"]),
                     plus_minus(c["difference"], c["stderr"], 2),
                     "" if c["seed_spread"] is None else f"{c['seed_spread']:.2f}",
                     c["verdict"]))
    return markdown_table(header, rows)


def contrast_sentence(contrast: Mapping[str, Any], measure: str = "nll") -> str:
    """One contrast of the ablation study in words, e.g. "matryoshka - no-td-path in IWAE NLL:
    -2.81 ± 0.40 nats over 3 seeds (seed spread 0.52): matryoshka is better"."""
    c = contrast[measure]
    name = "IWAE NLL (lower is better)" if measure == "nll" else "held-out ELBO (higher is better)"
    seeds = len(c["seeds"])
    spread = f", seed spread {c['seed_spread']:.2f}" if c.get("seed_spread") is not None else ""
    a, b = contrast["a"], contrast["b"]
    outcome = f"{a} and {b} are not distinguishable" if c["verdict"] == "not distinguishable" else f"{a} is {c['verdict']}"
    return (f"{a} - {b} in {name}: {c['difference']:+.2f} ± {c['stderr']:.2f} nats over {seeds} seed"
            f"{'s' if seeds > 1 else ''}{spread}: {outcome}")


PHOTO_MODELS = {"photos": "Matryoshka, discretised logistics", "photos-control": "+ 15 more epochs (the control)",
                "photos-ar": "+ colour AR head, the same 15 epochs"}


def photos_table(result: Mapping[str, Any]) -> str:
    """The natural-image benchmark (benchmarks/results/photos.json) as a Markdown table: per colour
    model, its held-out bits/dim (ELBO and IWAE-k, mean ± standard error over patches), layers in use
    and training time."""
    k = result["protocol"]["k"]
    header = ["model", "held-out ELBO (bits/dim)", f"IWAE-{k} (bits/dim)", "layers in use", "epochs",
              "training (min, 1 core)"]
    rows = []
    for name, label in PHOTO_MODELS.items():
        row = result["models"].get(name)
        if row is None:
            continue
        minutes = f"{row['train_seconds'] / 60:.0f}" if row.get("train_seconds") else ""
        rows.append((f"{name}: {label}", plus_minus(*row["elbo_bpd"], 3), plus_minus(*row["iwae_bpd"], 3),
                     f"{row['layers_in_use']} of {row['n_layers']}", row.get("epochs") or "", minutes))
    for pair, entry in result["paired"].items():
        rows.append((f"paired, per patch: {pair}", plus_minus(*entry["elbo_bpd"], 3) + f" ({entry['elbo_bpd_verdict']})",
                     plus_minus(*entry["iwae_bpd"], 3) + f" ({entry['iwae_bpd_verdict']})", "", "", ""))
    return markdown_table(header, rows)


def photos_imputation_table(result: Mapping[str, Any]) -> str:
    """Imputation of occluded photo patches (the `imputation` rows of photos.json): per occlusion
    kind, bits per missing sub-pixel of each route and their paired difference with its verdict
    (lower is better; the verdict is the conditional model's)."""
    k = result["protocol"]["imputation_k"]
    header = ["occlusion", "missing sub-pixels", f"conditional (IWAE-{k} bound)", "iterative (estimate)",
              "conditional - iterative (paired)", "conditional is"]
    return markdown_table(header, [
        (row["kind"], f"{row['missing_subpixels']:.0f}", plus_minus(*row["conditional_bpd"], 3),
         plus_minus(*row["iterative_bpd"], 3), plus_minus(*row["conditional_minus_iterative"], 3), row["verdict"])
        for row in result["imputation"]])
