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
from typing import Any, Callable

from hvae_lite import results
from hvae_lite.data import MASK_KINDS
from hvae_lite.paths import CHECKPOINT_DIR, REPO_ROOT, RESULTS_DIR
from hvae_lite.recipes import RECIPES
from hvae_lite.results import markdown_table, plus_minus

DOCUMENTS = (REPO_ROOT / "README.md", REPO_ROOT / "benchmarks" / "README.md")
LABELS = {"matryoshka": "Matryoshka (default)", "matryoshka-standard-prior": "the default with its first-stage N(0, I) top prior",
          "mixture": "mixture prior (trained)", "mlp-vae": "MLP VAE (floor)"}


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
              "confident samples (T = 1 / maps at 0.5)", "classifier score (T = 1)"]
    rows = []
    for name, row in shipped["models"].items():
        samples = row["samples"]
        rows.append((LABELS.get(name, name), row["epochs"], f"{row['train_seconds_with_base'] / 60:.0f}",
                     _pm(row["elbo"], row["elbo_stderr"]), _pm(row["nll_iwae"], row["nll_iwae_stderr"]),
                     f"{sum(row['in_use'])} of {len(row['in_use'])}",
                     f"{samples['1']['confident_fraction']:.2f} / "
                     + (f"{samples['maps 0.5']['confident_fraction']:.2f}" if "maps 0.5" in samples else "-"),
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


def _mean_range(runs: list[float]) -> str:
    return f"{sum(runs) / len(runs):.3f} (from {min(runs):.3f} to {max(runs):.3f})"


def _em_starts(starts: dict[str, list[float]]) -> str:
    """Clustering over EM starts, and that of the start with the highest training likelihood."""
    scores, likelihoods = starts["clustering"], starts["train_log_lik"]
    likeliest = max(range(len(scores)), key=likelihoods.__getitem__)
    return f"{_mean_range(scores)}; the likeliest start {scores[likeliest]:.3f}"


def class_structure_table() -> str:
    """Per model of class_structure.json: clustering, purity, the class kept at k = 1, and the baselines."""
    result = _load("class_structure.json")
    rows = []
    for name, row in result["models"].items():
        if "-seed" in name:  # further runs of a shipped recipe: mixture_seeds_table
            continue
        if "clustering_accuracy" in row:
            rows.append((name, "mixture prior: clustering accuracy (posterior mean / expected responsibilities)",
                         f"{row['clustering_accuracy']:.3f} / {row['clustering_accuracy_expected']:.3f}"))
            rows.append((name, f"judge purity of {row['samples_per_component']} samples per used component "
                               f"({len(row['used_components'])} of {row['n_components']} used)",
                         _pm(row["purity_mean_used"], row["purity_stderr_used"], 3)))
        kept = row["class_kept"]
        rows.append((name, "true class kept by keep-top-k resamples, k = " + " / ".join(kept),
                     " / ".join(f"{v['share']:.2f}" for v in kept.values())))
        labels = {"kmeans_top_latents": "k-means (10 restarts) on the top-latent means",
                  "gmm_full_top_latents": "EM, 10 full-covariance Gaussians, on the top-latent means",
                  "kmeans_pixels": "k-means on the pixels", "random_assignments": "random assignments (chance)",
                  "probe_10_labels_per_class": "logistic regression on the top-latent means, 10 labels per class"}
        for key, label in labels.items():
            rows.append((name, f"baseline: {label}, 5 seeds", _mean_range(row["baselines"][key])))
        if "em_starts" in row:
            rows.append((name, f"EM from {len(row['em_starts']['clustering'])} starts, the fitted prior's recipe "
                               "(posterior samples of the training digits)", _em_starts(row["em_starts"])))
    return markdown_table(["model", "measure (1,000 held-out digits)", "value"], rows)


KL_HISTORY_EPOCHS = (1, 10, 20, 30, 40, 50, 60, 78, 100, 130)


def kl_history_table() -> str:
    """The shipped default's held-out KL per layer through its training (its checkpoint's history),
    beside the free-bits floor of each epoch: whether the layers that end unused were ever used."""
    from hvae_lite.checkpoints import load_checkpoint

    path = CHECKPOINT_DIR / "matryoshka.pt"
    if not path.is_file():
        raise NotMeasured("the shipped default (data/checkpoints/matryoshka.pt)")
    history = {row["epoch"]: row for row in load_checkpoint(path).history}
    n_layers = len(history[max(history)]["test_kl"])
    header = ["epoch", "free-bits floor", *(f"z{i}" for i in range(n_layers))]
    rows = [(epoch, f"{history[epoch]['free_bits']:.2f}", *(f"{kl:.2f}" for kl in history[epoch]["test_kl"]))
            for epoch in KL_HISTORY_EPOCHS if epoch in history]
    return markdown_table(header, rows)


def mixture_seeds_table() -> str:
    """The `mixture` recipe run with other seeds (class_structure.json's "mixture-seedN" rows) beside
    the shipped run (seed 0): the seed also draws the EM start of the mixture it begins from."""
    models = _load("class_structure.json")["models"]
    runs = {0: models.get("mixture"), **{int(name.rsplit("seed", 1)[1]): row for name, row in models.items()
                                         if name.startswith("mixture-seed")}}
    rows = [(f"{seed}{' (shipped)' if seed == 0 else ''}",
             f"{row['clustering_accuracy']:.3f} / {row['clustering_accuracy_expected']:.3f}",
             _pm(row["purity_mean_used"], row["purity_stderr_used"], 3),
             _pm(row["class_kept"]["1"]["share"], row["class_kept"]["1"]["stderr"], 3),
             f"{sum(row['baselines']['kmeans_top_latents']) / len(row['baselines']['kmeans_top_latents']):.3f}")
            for seed, row in sorted(runs.items()) if row is not None]
    return markdown_table(["seed", "clustering accuracy (posterior mean / expected responsibilities)",
                           "judge purity per used component", "keep-top-1 keeps the class",
                           "k-means on its top latents"], rows)


def ablations_table() -> str:
    return results.ablation_table(_load("ablations.json"))


def contrasts_table() -> str:
    result = _load("ablations.json")
    return results.contrast_table(result, "nll") + "\n\n" + results.contrast_table(result, "elbo")


def time_to_quality_table() -> str:
    result = _load("time_to_quality.json")
    rows = [(curve["what"], point["epoch"], f"{point['minutes_two_threads']:.1f}", _pm(point["nll"], point["nll_stderr"]),
             _pm(point["confident"], point["confident_stderr"], 2))
            for curve in result["curves"].values() for point in curve["points"]]
    return markdown_table(["run", "epoch", "minutes (two threads)", result["protocol"]["nll"].split(" on ")[0],
                           "confident samples"], rows)


def imputation_table() -> str:
    result = _load("imputation.json")
    table = results.imputation_table(result)
    if result.get("k_check"):
        table += "\n\nThe same numbers with more importance samples, on the first digits:\n\n"
        table += results.imputation_k_check_table(result)
    return table


def imputation_study_table() -> str:
    """The conditional model from scratch against the iterative route with a rival trained alike
    (imputation_study.json), per kind and seed and across seeds, beside the shipped pair's difference."""
    study = _load("imputation_study.json")
    shipped = ({row["kind"]: row for row in _load("imputation.json")["rows"]}
               if (RESULTS_DIR / "imputation.json").is_file() else {})
    seeds = ", ".join(study["pairs"])
    rows = [(k["kind"], "; ".join(_pm(s["difference"], s["stderr"], 2) for s in k["per_seed"]),
             _pm(k["difference"], k["stderr"], 2) if k["seed_spread"] is not None else "one seed", k["verdict"],
             f"{k['judge_conditional']:.3f} / {k['judge_iterative']:.3f}",
             f"{shipped[k['kind']]['conditional_minus_iterative']:.2f}" if k["kind"] in shipped else "not measured")
            for k in study["kinds"]]
    return markdown_table(["occlusion", f"conditional - iterative, nats, per seed ({seeds}; ± paired SE over digits)",
                           "mean ± SE over seeds", "verdict on the conditional route",
                           "judge: conditional / iterative (mean over seeds)", "shipped pair (fine-tuned, width 64)"], rows)


def _row(measure: str, target: str, value: str, met: bool | None) -> tuple[str, str, str, bool | None]:
    return measure, target, value, met


def _default_targets(rows: list) -> None:
    """Issue "spend the budget": the shipped default."""
    shipped = _load("shipped.json")
    models, paired, k = shipped["models"], shipped["paired"], shipped["protocol"]["k"]
    if "matryoshka" not in models:
        return
    m = models["matryoshka"]
    rows.append(_row(f"default: IWAE-{k} NLL (1,000 held-out digits)", "<= 82 nats",
                     _pm(m["nll_iwae"], m["nll_iwae_stderr"]), m["nll_iwae"] <= 82))
    if "matryoshka - mlp-vae" in paired:
        gain = -paired["matryoshka - mlp-vae"]["nll_difference"]
        rows.append(_row("default: paired NLL gain over the converged MLP VAE", ">= 21 nats",
                         _pm(gain, paired["matryoshka - mlp-vae"]["stderr"]), gain >= 21))
    for setting, label in (("1", "T = 1"), ("maps 0.5", "top vector at T = 1, maps at 0.5")):
        if setting not in m["samples"]:
            continue
        samples = m["samples"][setting]
        rows.append(_row(f"default: judge-confident prior samples, {label}", ">= 0.85",
                         _pm(samples["confident_fraction"], samples["confident_stderr"], 3),
                         samples["confident_fraction"] >= 0.85))
    rows.append(_row("default: layers in use", "11 of 11", f"{sum(m['in_use'])} of {len(m['in_use'])}", all(m["in_use"])))


def _quick_targets(rows: list) -> None:
    try:
        quick = _load("quick_recipe.json")
    except NotMeasured:
        rows.append(_row("quick recipe: held-out IWAE in <= 10 minutes on two threads", "<= 86 nats",
                         "not measured (benchmarks/quick_recipe.py)", None))
        return
    if "nll_iwae" not in quick:  # a file from before quick_recipe.py scored the IWAE bound
        rows.append(_row("quick recipe: held-out IWAE in <= 10 minutes on two threads", "<= 86 nats",
                         f"not measured: only the ELBO ({quick['heldout_elbo']:.1f} nats, "
                         f"{quick['minutes']:.1f} min on {quick['threads']} thread)", None))
        return
    # The minutes on two threads: the recipe's epochs at its seconds per epoch timed side by side with the
    # other recipes (time_to_quality.json); the run's own wall clock is one shared thread's.
    try:
        quick_curve = _load("time_to_quality.json")["curves"].get("quick")
    except NotMeasured:
        quick_curve = None
    minutes, threads = ((quick["epochs"] * quick_curve["seconds_per_epoch"] / 60, "two threads") if quick_curve else
                        (quick["minutes"], f"{quick['threads']} thread{'s' if quick['threads'] > 1 else ''}"))
    rows.append(_row(f"quick recipe: held-out IWAE-{quick['k']} NLL, {minutes:.1f} min on {threads}",
                     "<= 86 nats in <= 10 minutes", _pm(quick["nll_iwae"], quick["nll_iwae_stderr"]),
                     quick["nll_iwae"] <= 86 and minutes <= 10))


def _study_targets(rows: list) -> None:
    """Issue "experiments that show the paper": the study's budget keeps the full model's layers in use."""
    try:
        study = {row["variant"]: row for row in _load("ablations.json")["rows"]}
    except NotMeasured:
        return
    if "matryoshka" in study:
        used = study["matryoshka"]["layers_in_use"]
        rows.append(_row("ablation study: layers the full model keeps in use, each seed", ">= 8 of 11",
                         " / ".join(map(str, used)), min(used) >= 8))


def _class_targets(rows: list) -> None:
    """Issue "class structure and imputation": the mixture model and the conditional model."""
    try:
        models = _load("class_structure.json")["models"]
    except NotMeasured:
        rows.append(_row("mixture: clustering accuracy, purity, class kept at k = 1", ">= 0.85 / 0.85 / 0.90",
                         "not measured (benchmarks/class_structure.py)", None))
        models = {}
    mixture, default = models.get("mixture"), models.get("matryoshka")
    if mixture is not None:
        accuracy = mixture["clustering_accuracy"]
        others = [f"seed {name.rsplit('seed', 1)[1]} {row['clustering_accuracy']:.3f}"
                  for name, row in sorted(models.items()) if name.startswith("mixture-seed")]
        rows.append(_row("mixture: clustering accuracy", ">= 0.85",
                         f"{accuracy:.3f}" + (f" (seed 0; {', '.join(others)})" if others else ""), accuracy >= 0.85))
        if default is not None:
            kmeans = sum(default["baselines"]["kmeans_top_latents"]) / len(default["baselines"]["kmeans_top_latents"])
            rows.append(_row("mixture: clustering accuracy above k-means on the default's top latents", ">= 0.10",
                             f"{accuracy - kmeans:+.3f} (k-means {kmeans:.3f})", accuracy - kmeans >= 0.10))
        rows.append(_row("mixture: judge purity of samples per used component", ">= 0.85",
                         _pm(mixture["purity_mean_used"], mixture["purity_stderr_used"], 3),
                         mixture["purity_mean_used"] >= 0.85))
    if default is not None and "clustering_accuracy" in default:  # the default's fitted top prior (second stage)
        accuracy = default["clustering_accuracy"]
        kmeans = sum(default["baselines"]["kmeans_top_latents"]) / len(default["baselines"]["kmeans_top_latents"])
        spread = f" (EM start 0; 10 starts: {_em_starts(default['em_starts'])})" if "em_starts" in default else ""
        rows.append(_row("default's fitted top prior: clustering accuracy", ">= 0.85", f"{accuracy:.3f}{spread}",
                         accuracy >= 0.85))
        rows.append(_row("default's fitted top prior: above k-means on the same top latents", ">= 0.10",
                         f"{accuracy - kmeans:+.3f} (k-means {kmeans:.3f})", accuracy - kmeans >= 0.10))
        rows.append(_row("default's fitted top prior: judge purity of samples per used component", ">= 0.85",
                         _pm(default["purity_mean_used"], default["purity_stderr_used"], 3),
                         default["purity_mean_used"] >= 0.85))
    for name, row in models.items():
        if name in ("mixture", "matryoshka"):
            kept = row["class_kept"]["1"]
            rows.append(_row(f"{name}: keep-top-1 resamples keep the true class", ">= 0.90",
                             _pm(kept["share"], kept["stderr"], 3), kept["share"] >= 0.90))
    try:
        imputation = _load("imputation.json")
    except NotMeasured:
        rows.append(_row("conditional beats iterative on log p(missing given observed)", "every occlusion kind",
                         "not measured (benchmarks/imputation.py)", None))
        return
    kinds = {r["kind"]: r for r in imputation["rows"]}
    better = [kind for kind, r in kinds.items() if results.imputation_verdict(r) == "better"]
    rows.append(_row("conditional beats iterative on log p(missing given observed) (verdict rule, paired)",
                     "every occlusion kind", f"{len(better)} of the {len(kinds)} kinds measured (of {len(MASK_KINDS)})",
                     len(better) == len(MASK_KINDS)))
    if (RESULTS_DIR / "imputation_study.json").is_file():
        study = _load("imputation_study.json")
        better = [k["kind"] for k in study["kinds"] if k["verdict"] == "better"]
        n = len(study["pairs"])
        rows.append(_row(f"the same, trained from scratch with its rival's budget (study scale, {n} seed{'s' * (n > 1)})",
                         "every occlusion kind", f"{len(better)} of the {len(study['kinds'])} kinds measured "
                         f"(of {len(MASK_KINDS)})", len(better) == len(MASK_KINDS)))
    if all("judge_ceiling" in r for r in kinds.values()):
        ratios = {kind: r["judge_conditional"] / r["judge_ceiling"] for kind, r in kinds.items()}
        worst = min(ratios, key=ratios.get)
        rows.append(_row("judge on conditional completions / the occluded-input classifier's accuracy",
                         ">= 0.90 on every kind", f"lowest: {worst} {ratios[worst]:.2f}", min(ratios.values()) >= 0.90))


PHOTO_MODELS = tuple(name for name, recipe in RECIPES.items() if recipe.data == "photos")


def _photo_targets(rows: list) -> None:
    """Issue "natural images": the colour models on the held-out photo patches."""
    photos = _photos()
    models, gain = photos["models"], photos["paired"].get("photos-ar - photos-control")
    if gain is not None:
        difference, stderr = gain["iwae_bpd"]
        rows.append(_row(f"photos: AR head vs the identically fine-tuned control, IWAE-{photos['protocol']['k']} "
                         "(paired, per patch)", "<= -0.2 bits/dim", f"{_pm(difference, stderr, 3)} bits/dim",
                         difference <= -0.2 and gain["iwae_bpd_verdict"] == "better"))
    if "photos-ar" in models:
        ar = models["photos-ar"]
        rows.append(_row("photos-ar: layers in use", ">= 6", f"{ar['layers_in_use']} of {ar['n_layers']}",
                         ar["layers_in_use"] >= 6))
    if photos["imputation"]:
        better = [row["kind"] for row in photos["imputation"] if row["verdict"] == "better"]
        rows.append(_row("photos: conditional beats iterative on the missing sub-pixels", "every kind measured",
                         f"{len(better)} of {len(photos['imputation'])} kinds", len(better) == len(photos["imputation"])))
    hours = {name: json.loads((CHECKPOINT_DIR / f"{name}.json").read_text())["train_seconds_with_base"] / 3600
             for name in PHOTO_MODELS if (CHECKPOINT_DIR / f"{name}.json").is_file()}
    if hours:
        slowest = max(hours, key=hours.get)
        rows.append(_row("photos: training time of each colour checkpoint (one core, with its base)", "<= 2 h",
                         f"longest: {slowest} {hours[slowest]:.2f} h", hours[slowest] <= 2))


def _target_rows() -> list[tuple[str, str, str, bool | None]]:
    """(measure, target, measured, met) for the targets of the open issues."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for section in (_default_targets, _quick_targets, _study_targets, _class_targets, _photo_targets):
        try:
            section(rows)
        except NotMeasured as missing:
            rows.append(_row(section.__doc__ or section.__name__, "", f"not measured ({missing})", None))
    return rows


def targets_table() -> str:
    return markdown_table(["measure", "target", "measured", "met"], [
        (measure, target, measured, "not measured" if met is None else "yes" if met else "**no**")
        for measure, target, measured, met in _target_rows()])


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


def adversarial_table() -> str:
    """tests/adversarial.py's cases by area: how many ended in each outcome (results/adversarial.json)."""
    result = _load("adversarial.json")
    kinds = ("ok", "clear", "refused", "silent", "unclear")
    rows = [[area, sum(counts.values()), *(counts[k] for k in kinds)] for area, counts in result["areas"].items()]
    rows.append(["**all**", sum(result["total"].values()), *(result["total"][k] for k in kinds)])
    return results.markdown_table(["area", "cases", "correct result", "clear error", "valid call refused",
                                   "silently wrong", "unclear (raw traceback)"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "targets": targets_table, "speed": speed_table, "models": models_table, "paired": paired_table,
    "kl": kl_table, "kl_history": kl_history_table, "judge": judge_table, "class_structure": class_structure_table,
    "mixture_seeds": mixture_seeds_table, "imputation": imputation_table,
    "imputation_study": imputation_study_table,
    "ablations": ablations_table, "contrasts": contrasts_table, "time_to_quality": time_to_quality_table,
    "photos": photos_table, "photos_imputation": photos_imputation_table,
    "adversarial": adversarial_table,
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
