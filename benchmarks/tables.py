"""Markdown tables generated from the results files, written into README.md and benchmarks/README.md.

    PYTHONPATH=. python benchmarks/tables.py          # rewrite every generated block in place
    PYTHONPATH=. python benchmarks/tables.py --check  # exit 1 if a block differs from the results

A generated block sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; NAME is
one of TABLES. tests/test_benchmarks.py fails when a block and the results files disagree, so no
number in the documentation is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCUMENTS = (HERE.parent / "README.md", HERE / "README.md")
CHECKPOINTS = HERE.parent / "data" / "checkpoints"
LABELS = {"matryoshka": "Matryoshka (default)", "matryoshka-ar": "+ lightweight AR head", "mixture": "mixture prior",
          "mlp-vae": "MLP VAE (floor)"}


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def _pm(mean: float, se: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def models_table() -> str:
    shipped = _load("shipped.json")
    k = shipped["protocol"]["k"]
    lines = [f"| model | epochs | training (min, 1 core) | held-out ELBO | IWAE-{k} NLL | layers in use | "
             "confident samples (T = 1.0 / 0.8) | classifier score (T = 1.0) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in shipped["models"].items():
        samples = row["samples"]
        lines.append(
            f"| {LABELS.get(name, name)} | {row['epochs']} | {row['train_seconds_with_base'] / 60:.0f} | "
            f"{_pm(row['elbo'], row['elbo_stderr'])} | {_pm(row['nll_iwae'], row['nll_iwae_stderr'])} | "
            f"{sum(row['in_use'])} of {len(row['in_use'])} | {samples['1']['confident_fraction']:.2f} / "
            f"{samples['0.8']['confident_fraction']:.2f} | {samples['1']['classifier_score']:.2f} |")
    real = shipped["judge_on_real_heldout"]
    lines.append(f"| real held-out digits (ceiling) | | | | | | {real['confident_fraction']:.2f} | "
                 f"{real['classifier_score']:.2f} |")
    return "\n".join(lines)


def paired_table() -> str:
    shipped = _load("shipped.json")
    lines = ["| comparison (per digit, same 1,000 digits) | NLL difference (nats) |", "|---|---|"]
    for pair, row in shipped["paired"].items():
        lines.append(f"| {pair} | {_pm(row['nll_difference'], row['stderr'], 2)} |")
    gap = shipped["models"].get("matryoshka", {}).get("k_gap")
    if gap:
        lines.append(f"| default: IWAE-{gap['k_big']} - IWAE-{gap['k_small']} (first {gap['n_images']} digits) | "
                     f"{_pm(*gap['big_minus_small'], 2)} |")
    return "\n".join(lines)


def kl_table() -> str:
    shipped = _load("shipped.json")
    rows = {n: r for n, r in shipped["models"].items() if len(r["kl_per_layer"]) > 1}
    n_layers = max(len(r["kl_per_layer"]) for r in rows.values())
    lines = ["| model | floor | " + " | ".join(f"z{i}" for i in range(n_layers)) + " |",
             "|---|---|" + "---|" * n_layers]
    for name, row in rows.items():
        cells = [f"**{v:.2f}**" if used else f"{v:.2f}" for v, used in zip(row["kl_per_layer"], row["in_use"])]
        lines.append(f"| {LABELS.get(name, name)} | {row['free_bits_floor']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def judge_table() -> str:
    judge = json.loads((CHECKPOINTS / "judge.json").read_text())["heldout"]
    return ("| digit judge on the 1,000 held-out digits | grey levels | binarised |\n|---|---|---|\n"
            f"| accuracy | {judge['accuracy_grey']:.3f} | {judge['accuracy_binarised']:.3f} |\n"
            f"| confident (p >= 0.9) | {judge['confident_fraction_grey']:.3f} | "
            f"{judge['confident_fraction_binarised']:.3f} |")


def mixture_table() -> str:
    mixture = _load("shipped.json")["models"]["mixture"]["mixture"]
    lines = ["| measure | value |", "|---|---|",
             f"| clustering accuracy (best one-to-one matching, 1,000 held-out digits) | "
             f"{mixture['clustering_accuracy']:.3f} |",
             f"| components used (>= 1 % of held-out digits) | {len(mixture['used_components'])} of "
             f"{mixture['n_components']} |",
             f"| judge purity of {mixture['samples_per_component']} samples per used component | "
             f"{_pm(mixture['purity_mean_used'], mixture['purity_stderr_used'], 3)} |",
             "| judge's class of each component | " + ", ".join(
                 f"{c['component']}: {c['judge_class']} ({c['purity']:.2f})" for c in mixture["components"]) + " |"]
    return "\n".join(lines)


def imputation_table() -> str:
    result = _load("imputation.json")
    k = result["protocol"]["k"]
    lines = [f"| occlusion | missing pixels | log p(missing given observed): conditional (IWAE-{k} bound) | "
             "iterative (estimate) | difference (paired) | judge: original / occluded / conditional / iterative |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(
            f"| {row['kind']} | {row['missing_pixels']:.0f} | {_pm(row['conditional_log_lik'], row['conditional_log_lik_stderr'])} | "
            f"{_pm(row['iterative_log_lik'], row['iterative_log_lik_stderr'])} | "
            f"{_pm(row['conditional_minus_iterative'], row['difference_stderr'], 2)} | "
            f"{row['judge_original']:.3f} / {row['judge_occluded']:.3f} / {row['judge_conditional']:.3f} / "
            f"{row['judge_iterative']:.3f} |")
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "models": models_table, "paired": paired_table, "kl": kl_table, "judge": judge_table,
    "mixture": mixture_table, "imputation": imputation_table,
}
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- /generated:(?P=name) -->)", re.S)


def render(text: str) -> str:
    """`text` with every generated block replaced by its table from the results files."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"unknown generated block {name!r}; known: {sorted(TABLES)}")
        return match.group(1) + TABLES[name]() + match.group(4)
    return BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for path in DOCUMENTS:
        text = path.read_text()
        fresh = render(text)
        if fresh != text:
            stale.append(path)
            if not args.check:
                path.write_text(fresh)
                print(f"rewrote the generated tables of {path}")
    if args.check and stale:
        print("stale generated tables in " + ", ".join(map(str, stale)) + ": run benchmarks/tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
