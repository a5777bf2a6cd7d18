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

from hvae_lite import results
from hvae_lite.data import MASK_KINDS
from hvae_lite.paths import CHECKPOINT_DIR, REPO_ROOT, RESULTS_DIR
from hvae_lite.results import markdown_table, plus_minus

DOCUMENTS = (REPO_ROOT / "README.md", REPO_ROOT / "benchmarks" / "README.md")
LABELS = {"matryoshka": "Matryoshka (default)", "matryoshka-ar": "+ lightweight AR head", "mixture": "mixture prior",
          "mlp-vae": "MLP VAE (floor)"}


class NotMeasured(Exception):
    """A results file the table needs does not exist (its benchmark has not been run)."""


def _load(name: str) -> dict[str, Any]:
    path = RESULTS_DIR / name
    if not path.is_file():
        raise NotMeasured(name)
    return json.loads(path.read_text())


_pm = plus_minus


def models_table() -> str:
    shipped = _load("shipped.json")
    k = shipped["protocol"]["k"]
    header = ["model", "epochs", "training (min, 1 core)", "held-out ELBO", f"IWAE-{k} NLL", "layers in use",
              "confident samples (T = 1.0 / 0.8)", "classifier score (T = 1.0)"]
    rows = []
    for name, row in shipped["models"].items():
        samples = row["samples"]
        rows.append((LABELS.get(name, name), row["epochs"], f"{row['train_seconds_with_base'] / 60:.0f}",
                     _pm(row["elbo"], row["elbo_stderr"]), _pm(row["nll_iwae"], row["nll_iwae_stderr"]),
                     f"{sum(row['in_use'])} of {len(row['in_use'])}",
                     f"{samples['1']['confident_fraction']:.2f} / {samples['0.8']['confident_fraction']:.2f}",
                     f"{samples['1']['classifier_score']:.2f}"))
    real = shipped["judge_on_real_heldout"]
    rows.append(("real held-out digits (ceiling)", "", "", "", "", "", f"{real['confident_fraction']:.2f}",
                 f"{real['classifier_score']:.2f}"))
    return markdown_table(header, rows)


def paired_table() -> str:
    shipped = _load("shipped.json")
    rows = [(pair, _pm(row["nll_difference"], row["stderr"], 2)) for pair, row in shipped["paired"].items()]
    gap = shipped["models"].get("matryoshka", {}).get("k_gap")
    if gap:
        rows.append((f"default: IWAE-{gap['k_big']} - IWAE-{gap['k_small']} (first {gap['n_images']} digits)",
                     _pm(*gap["big_minus_small"], 2)))
    return markdown_table(["comparison (per digit, same 1,000 digits)", "NLL difference (nats)"], rows)


def kl_table() -> str:
    shipped = _load("shipped.json")
    rows = {n: r for n, r in shipped["models"].items() if len(r["kl_per_layer"]) > 1}
    n_layers = max(len(r["kl_per_layer"]) for r in rows.values())
    return markdown_table(["model", "floor", *(f"z{i}" for i in range(n_layers))], [
        (LABELS.get(name, name), f"{row['free_bits_floor']:g}",
         *(f"**{v:.2f}**" if used else f"{v:.2f}" for v, used in zip(row["kl_per_layer"], row["in_use"])))
        for name, row in rows.items()])


def judge_table() -> str:
    judge = json.loads((CHECKPOINT_DIR / "judge.json").read_text())["heldout"]
    return markdown_table(["digit judge on the 1,000 held-out digits", "grey levels", "binarised"], [
        ("accuracy", f"{judge['accuracy_grey']:.3f}", f"{judge['accuracy_binarised']:.3f}"),
        ("confident (p >= 0.9)", f"{judge['confident_fraction_grey']:.3f}", f"{judge['confident_fraction_binarised']:.3f}")])


def _mixture() -> dict[str, Any]:
    """The mixture model's class structure: from the full protocol if it ran, else --structure-only."""
    try:
        return _load("shipped.json")["models"]["mixture"]["mixture"]
    except (NotMeasured, KeyError):
        return _load("mixture.json")["mixture"]


def mixture_table() -> str:
    mixture = _mixture()
    rows = [("clustering accuracy (best one-to-one matching, 1,000 held-out digits)", f"{mixture['clustering_accuracy']:.3f}"),
            ("components used (>= 1 % of held-out digits)",
             f"{len(mixture['used_components'])} of {mixture['n_components']}"),
            (f"judge purity of {mixture['samples_per_component']} samples per used component",
             _pm(mixture["purity_mean_used"], mixture["purity_stderr_used"], 3)),
            ("judge's class of each component", ", ".join(
                f"{c['component']}: {c['judge_class']} ({c['purity']:.2f})" for c in mixture["components"]))]
    for name, label in (("matryoshka", "the default model's"), ("mixture", "the mixture model's")):
        if name in mixture.get("kmeans", {}):
            runs = mixture["kmeans"][name]
            rows.append((f"baseline: k-means (10 clusters) on {label} top latents, {len(runs)} seeds",
                         f"{sum(runs) / len(runs):.3f} (from {min(runs):.3f} to {max(runs):.3f})"))
    return markdown_table(["measure", "value"], rows)


def imputation_table() -> str:
    result = _load("imputation.json")
    table = results.imputation_table(result)
    if result.get("k_check"):
        table += "\n\nThe same numbers with ten times more importance samples, on the first digits:\n\n"
        table += results.imputation_k_check_table(result)
    return table


def _target_rows() -> list[tuple[str, str, str, bool | None]]:
    """(measure, target, measured, met) for the targets of the two quality issues."""
    shipped = _load("shipped.json")
    models, paired = shipped["models"], shipped["paired"]
    rows: list[tuple[str, str, str, bool | None]] = []
    real = shipped["judge_on_real_heldout"]["confident_fraction"]
    if "matryoshka" in models:
        m = models["matryoshka"]
        k = shipped["protocol"]["k"]
        rows.append((f"default: IWAE-{k} NLL (1,000 held-out digits)", "<= 84 nats",
                     _pm(m["nll_iwae"], m["nll_iwae_stderr"]), m["nll_iwae"] <= 84))
        if "matryoshka - mlp-vae" in paired:
            gain = -paired["matryoshka - mlp-vae"]["nll_difference"]
            rows.append(("default: paired NLL gain over the converged MLP VAE", ">= 18 nats",
                         _pm(gain, paired["matryoshka - mlp-vae"]["stderr"]), gain >= 18))
        samples = m["samples"]["1"]
        need = min(0.85, 0.95 * real)
        rows.append(("default: confident prior samples, T = 1.0", f">= {need:.2f} (0.85, or 95 % of real digits' {real:.2f})",
                     _pm(samples["confident_fraction"], samples["confident_stderr"], 3), samples["confident_fraction"] >= need))
        low, high = min(samples["class_histogram"]), max(samples["class_histogram"])
        rows.append(("default: share of each class among samples", "5-15 % each", f"{100 * low:.1f}-{100 * high:.1f} %",
                     low >= 0.05 and high <= 0.15))
        rows.append(("default: layers in use", "11 of 11", f"{sum(m['in_use'])} of {len(m['in_use'])}",
                     all(m["in_use"])))
    if "matryoshka-ar" not in models:
        for measure, target in (("AR model: paired NLL gain over the default", ">= 3 nats"),
                                ("AR model: layers in use", ">= 6 of 11"),
                                ("AR model: confident prior samples, T = 1.0", ">= 0.75")):
            rows.append((measure, target, "not measured (benchmarks/shipped.py --names matryoshka-ar)", None))
    else:
        ar = models["matryoshka-ar"]
        if "matryoshka-ar - matryoshka" in paired:
            gain = -paired["matryoshka-ar - matryoshka"]["nll_difference"]
            rows.append(("AR model: paired NLL gain over the default", ">= 3 nats",
                         _pm(gain, paired["matryoshka-ar - matryoshka"]["stderr"], 2), gain >= 3))
        rows.append(("AR model: layers in use", ">= 6 of 11", f"{sum(ar['in_use'])} of {len(ar['in_use'])}",
                     sum(ar["in_use"]) >= 6))
        frac = ar["samples"]["1"]["confident_fraction"]
        rows.append(("AR model: confident prior samples, T = 1.0", ">= 0.75",
                     _pm(frac, ar["samples"]["1"]["confident_stderr"], 3), frac >= 0.75))
    quick = RESULTS_DIR / "quick_recipe.json"
    if not quick.is_file():
        rows.append(("10-minute recipe: confident samples, T = 1.0", ">= 0.6",
                     "not measured (benchmarks/quick_recipe.py)", None))
    else:
        q = json.loads(quick.read_text())
        rows.append((f"10-minute recipe ({q['minutes']:.0f} min here): confident samples, T = 1.0", ">= 0.6",
                     _pm(q["confident_fraction"], q["confident_stderr"], 3), q["confident_fraction"] >= 0.6))
    try:
        mix = _mixture()
        rows.append(("mixture: clustering accuracy", ">= 0.85", f"{mix['clustering_accuracy']:.3f}",
                     mix["clustering_accuracy"] >= 0.85))
        rows.append(("mixture: judge purity of samples per used component", ">= 0.85",
                     _pm(mix["purity_mean_used"], mix["purity_stderr_used"], 3), mix["purity_mean_used"] >= 0.85))
    except NotMeasured:
        rows.append(("mixture: clustering accuracy, purity", ">= 0.85 each", "not measured", None))
    if "mixture - matryoshka" in paired:
        cost = paired["mixture - matryoshka"]["nll_difference"]
        rows.append(("mixture: NLL cost against the default (paired)", "<= 2 nats",
                     _pm(cost, paired["mixture - matryoshka"]["stderr"], 2), cost <= 2))
    else:
        rows.append(("mixture: NLL cost against the default (paired)", "<= 2 nats",
                     "not measured (benchmarks/shipped.py --names mixture)", None))
    if not (RESULTS_DIR / "imputation.json").is_file():
        rows.append(("conditional beats iterative on log p(missing given observed); judge accuracy on completions",
                     "every occlusion kind; >= 0.90 centre, >= 0.80 bottom",
                     "not measured (benchmarks/imputation.py)", None))
    else:
        imputation = {r["kind"]: r for r in _load("imputation.json")["rows"]}
        better = [kind for kind, r in imputation.items() if r["conditional_minus_iterative"] > 0]
        kinds = len(MASK_KINDS)
        rows.append(("conditional beats iterative on log p(missing given observed)", "every occlusion kind",
                     f"{len(better)} of the {len(imputation)} kinds measured (of {kinds})",
                     False if len(better) < len(imputation) else True if len(imputation) == kinds else None))
        for kind, target in (("center", 0.90), ("bottom", 0.80)):
            if kind in imputation:
                value = imputation[kind]["judge_conditional"]
                rows.append((f"judge accuracy on conditional completions, {kind}", f">= {target:.2f}",
                             f"{value:.3f}", value >= target))
    return rows


def targets_table() -> str:
    return markdown_table(["measure", "target", "measured", "met"], [
        (measure, target, measured, "not measured" if met is None else "yes" if met else "**no**")
        for measure, target, measured, met in _target_rows()])


def quality_table(quality: dict[str, Any] | None = None) -> str:
    """The equal-budget ablations (quality.json, or the result `benchmarks/quality.py` just measured)."""
    quality = _load("quality.json") if quality is None else quality
    iwae_images = quality.get("iwae", {}).get("images", "the first 32 held-out digits")  # as quality.py wrote it
    iwae_column = "IWAE NLL (" + iwae_images.removeprefix("the ").replace(" held-out", "") + ")"
    return markdown_table(["model", "latent layers", "params", "held-out ELBO", iwae_column], [
        (r["variant"], len(r["kl_per_layer"]), f"{r['parameters'] / 1e6:.2f} M", f"{r['elbo']:.1f}",
         _pm(r["nll_iwae"], r["nll_iwae_stderr"])) for r in quality["rows"]])


def speed_table(speed: dict[str, Any] | None = None) -> str:
    """Throughput per preset (speed.json, or the result `benchmarks/speed.py` just measured)."""
    speed = _load("speed.json") if speed is None else speed
    header = ["preset", "params", "GFLOP per training image", "train images/s fp32 / bf16", "plain loop fp32 / bf16",
              "kit overhead fp32 / bf16", "achieved GFLOP/s (bf16)", "IWAE images/s", "samples/s"]
    return markdown_table(header, [
        (r["preset"], f"{r['parameters'] / 1e6:.2f} M", f"{r['gflop_per_training_image']:.2f}",
         f"{r['train_images_per_s_fp32']:.0f} / {r['train_images_per_s_bf16']:.0f}",
         f"{r['plain_train_images_per_s_fp32']:.0f} / {r['plain_train_images_per_s_bf16']:.0f}",
         f"{100 * r['kit_overhead_fp32']:+.1f} % / {100 * r['kit_overhead_bf16']:+.1f} %", f"{r['gflop_per_s_bf16']:.0f}",
         f"{r['iwae_images_per_s']:.0f}", f"{r['sampling_images_per_s']:.1f}") for r in speed["rows"]])


def ar_head_table() -> str:
    return results.ar_head_table(_load("ar_head.json"))


def _photos() -> dict[str, Any]:
    photos = _load("photos.json")
    if not photos.get("models") or photos["protocol"].get("quick"):
        raise NotMeasured("photos.json (with the shipped colour models)")
    return photos


def photos_table() -> str:
    return results.photos_table(_photos())


def photos_imputation_table() -> str:
    photos = _photos()
    if not photos["imputation"]:
        raise NotMeasured("photos.json (its imputation rows)")
    return results.photos_imputation_table(photos)


TABLES: dict[str, Callable[[], str]] = {
    "targets": targets_table, "quality": quality_table, "speed": speed_table,
    "models": models_table, "paired": paired_table, "kl": kl_table, "judge": judge_table,
    "mixture": mixture_table, "imputation": imputation_table, "ar_head": ar_head_table,
    "photos": photos_table, "photos_imputation": photos_imputation_table,
}
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


def render(text: str) -> str:
    """`text` with every generated block replaced by its table from the results files."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"unknown generated block {name!r}; known: {sorted(TABLES)}")
        try:
            table = TABLES[name]()
        except NotMeasured as missing:
            table = f"*Not measured in this version: benchmarks/results/{missing} does not exist yet.*"
        return match.group(1) + table + "\n" + match.group(4)
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
