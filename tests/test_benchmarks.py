"""Smoke tests of the benchmark scripts in their --quick configuration (tiny models, a few digits)."""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import speed  # noqa: E402
from hvae_lite.config import get_preset  # noqa: E402
from hvae_lite.model import HVAE  # noqa: E402


@pytest.mark.parametrize("overrides", [{}, {"ar_layers": 2}])
def test_plain_loop_computes_the_kits_loss(overrides):
    """The overhead ratio is only meaningful if both loops compute the same thing."""
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", **overrides))
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    torch.manual_seed(1)
    kit = speed.kit_negative_elbo(model, x)
    torch.manual_seed(1)
    plain = speed.plain_negative_elbo(model, x)
    torch.testing.assert_close(plain, kit)


def test_ablations_quick_pairs_every_contrast_over_seeds(tmp_path, monkeypatch):
    import ablations
    monkeypatch.setattr(ablations, "CACHE", tmp_path / "runs")
    result = ablations.main(["--quick", "--out", str(tmp_path / "ablations.json")])
    rows = {row["variant"]: row for row in result["rows"]}
    assert set(rows) == set(ablations.study(quick=True))
    assert rows["matryoshka"]["seeds"] == [0, 1, 2] and rows["depth-2"]["seeds"] == [0]
    contrasts = {c["contrast"]: c for c in result["contrasts"]}
    path = contrasts["deterministic path"]["nll"]
    assert [s["seed"] for s in path["per_seed"]] == [0, 1, 2]
    assert path["difference"] == pytest.approx(sum(s["difference"] for s in path["per_seed"]) / 3)
    assert path["verdict"] in ("better", "worse", "not distinguishable")
    per_digit = json.loads((tmp_path / "ablations_quick_per_digit.json").read_text())
    a, b = per_digit["matryoshka-s0"]["nll"], per_digit["no-td-path-s0"]["nll"]
    assert path["per_seed"][0]["difference"] == pytest.approx(sum(x - y for x, y in zip(a, b)) / len(a), abs=1e-2)
    # A one-seed contrast (depth) carries the full model's seed spread in its standard error.
    depth = contrasts["10 latent maps vs 2"]["nll"]
    assert depth["seeds"] == [0] and depth["stderr"] > depth["per_seed"][0]["stderr"]


def test_speed_quick_measures_every_column(tmp_path):
    result = speed.main(["--quick", "--out", str(tmp_path / "speed.json")])
    (row,) = result["rows"]
    assert row["plain_loss_matches_kit"]
    assert row["gflop_per_training_image"] > 0
    for key in ("train_images_per_s_fp32", "train_images_per_s_bf16", "plain_train_images_per_s_fp32",
                "iwae_images_per_s", "sampling_images_per_s", "peak_rss_mb_so_far"):
        assert row[key] > 0, key
    assert set(result["what_helps"]["iwae_images_per_s"]) == {"no_grad", "inference_mode"}


def test_shipped_quick_scores_every_model_and_pairs_them(tmp_path):
    import shipped
    result = shipped.main(["--quick", "--out", str(tmp_path / "shipped.json"), "--cache", str(tmp_path / "cache")])
    assert set(result["models"]) == {"matryoshka", "matryoshka-standard-prior", "mixture", "mlp-vae"}
    for name, row in result["models"].items():
        assert row["nll_iwae"] > 0 and row["nll_iwae_stderr"] > 0 and row["n_images"] == 20
        assert len(row["in_use"]) == len(row["kl_per_layer"])
        # one latent layer (the MLP) has no maps to cool: only the temperature-1 samples
        assert set(row["samples"]) == ({"1"} if name == "mlp-vae" else set(shipped.SAMPLE_SETTINGS))
        assert 0 <= row["samples"]["1"]["confident_fraction"] <= 1
    assert set(result["paired"]) == {"matryoshka - mlp-vae", "matryoshka - matryoshka-standard-prior",
                                     "mixture - matryoshka"}
    per_digit = json.loads((tmp_path / "per_digit_quick.json").read_text())
    a, b = per_digit["matryoshka"], per_digit["mlp-vae"]
    expected = sum(x - y for x, y in zip(a, b)) / len(a)
    assert result["paired"]["matryoshka - mlp-vae"]["nll_difference"] == pytest.approx(expected)
    assert result["models"]["matryoshka"]["k_gap"]["k_big"] > result["models"]["matryoshka"]["k_gap"]["k_small"]


def test_class_structure_quick_scores_a_mixture_and_its_baselines(tmp_path):
    import class_structure
    result = class_structure.main(["--quick", "--shipped", "mixture", "--out", str(tmp_path / "cs.json")])
    row = result["models"]["mixture"]
    assert 0 <= row["clustering_accuracy"] <= 1 and 0 <= row["clustering_accuracy_expected"] <= 1
    assert sorted(int(k) for k in row["class_kept"]) == [k for k in class_structure.KEEPS if k <= 5]
    for name, runs in row["baselines"].items():
        assert len(runs) == len(class_structure.SEEDS) and all(0 <= r <= 1 for r in runs), name
    starts = row["em_starts"]  # the fitted prior's recipe from each EM start, with its training likelihood
    assert len(starts["clustering"]) == len(starts["train_log_lik"]) == class_structure.EM_STARTS
    assert all(0 <= a <= 1 for a in starts["clustering"]) and all(math.isfinite(v) for v in starts["train_log_lik"])
    assert json.loads((tmp_path / "class_structure_quick.json").read_text())["models"]["mixture"] == row
    # A second call scoring another model keeps the first one's row (the file is read when written).
    again = class_structure.main(["--quick", "--shipped", "matryoshka", "--out", str(tmp_path / "cs.json")])
    assert set(again["models"]) == {"mixture", "matryoshka"} and again["models"]["mixture"] == row


def test_imputation_quick_scores_every_kind(tmp_path):
    import imputation
    from hvae_lite.data import MASK_KINDS
    result = imputation.main(["--quick", "--out", str(tmp_path / "imputation.json"), "--cache", str(tmp_path / "c"),
                              "--kinds", "center", "bottom", "--k-check", "center"])
    assert [row["kind"] for row in result["rows"]] == ["center", "bottom"]
    for row in result["rows"]:
        assert row["missing_pixels"] > 0
        assert row["conditional_log_lik"] < 0 and row["iterative_log_lik"] < 0
        assert row["conditional_minus_iterative"] == pytest.approx(row["conditional_log_lik"] - row["iterative_log_lik"])
        for key in ("judge_original", "judge_occluded", "judge_conditional", "judge_iterative"):
            assert 0 <= row[key] <= 1
    assert result["k_check"][0]["k_big"] == 10 * result["k_check"][0]["k_small"]
    assert len(MASK_KINDS) == 7
    # A second pair of k adds a row and keeps the first (the kinds come from the cache).
    again = imputation.main(["--quick", "--out", str(tmp_path / "imputation.json"), "--cache", str(tmp_path / "c"),
                             "--kinds", "--k-check", "center", "--k-check-ks", "3", "6"])
    assert [(row["k_small"], row["k_big"]) for row in again["k_check"]] == [(2, 20), (3, 6)]
    assert again["k_check"][0] == result["k_check"][0] and again["rows"] == result["rows"]
    with pytest.raises(SystemExit):
        imputation.main(["--quick", "--k-check", "center", "--k-check-ks", "6", "6"])
    # Another pair is cached apart: the shipped pair's rows stay, and the new file names its pair.
    study = imputation.main(["--quick", "--out", str(tmp_path / "study_s0.json"), "--cache", str(tmp_path / "c"),
                             "--kinds", "center", "--pair", "study-imputation", "study-matryoshka"])
    assert study["pair"] == ["study-imputation", "study-matryoshka"] and [r["kind"] for r in study["rows"]] == ["center"]
    assert study["rows"][0] != result["rows"][0]
    assert (tmp_path / "c" / "quick-study-imputation-study-matryoshka-center-k10.pt").is_file()
    # A checkpoint file stands for a model as its name does (another seed of a recipe, say).
    from hvae_lite.checkpoints import save_checkpoint
    from hvae_lite.pretrained import load_or_train
    save_checkpoint(load_or_train("study-imputation", fast=True, progress=False), tmp_path / "seed.pt")
    by_file = imputation.main(["--quick", "--out", str(tmp_path / "study_s1.json"), "--cache", str(tmp_path / "c"),
                               "--kinds", "center", "--pair", str(tmp_path / "seed.pt"), "study-matryoshka"])
    assert by_file["rows"][0]["conditional_log_lik"] == pytest.approx(study["rows"][0]["conditional_log_lik"])
    assert (tmp_path / "c" / "quick-seed-study-matryoshka-center-k10.pt").is_file()
    # The seeds' files gathered: the mean of the per-seed differences, with the SE of their spread.
    both = imputation.main(["--assemble-study", "--out", str(tmp_path / "study.json")])
    differences = [run["rows"][0]["conditional_minus_iterative"] for run in (study, by_file)]
    center = both["kinds"][0]
    assert list(both["pairs"]) == ["0", "1"] and center["kind"] == "center"
    assert center["difference"] == pytest.approx(sum(differences) / 2)
    assert center["stderr"] == pytest.approx(abs(differences[0] - differences[1]) / 2)
    assert json.loads((tmp_path / "study.json").read_text())["kinds"] == both["kinds"]
    with pytest.raises(SystemExit):
        imputation.main(["--assemble-study", "--out", str(tmp_path / "nothing.json")])
    for pair in (["study-matryoshka", "study-imputation"], ["imputation", "no-such-model"],
                 [str(tmp_path / "absent.pt"), "matryoshka"]):
        with pytest.raises(SystemExit):
            imputation.main(["--quick", "--kinds", "--pair", *pair, "--out", str(tmp_path / "x.json")])


def test_documented_tables_are_the_results_files():
    """Every number in a generated block of README.md / benchmarks/README.md comes from results/."""
    import tables
    for path in tables.DOCUMENTS:
        text = path.read_text()
        assert tables.render(text) == text, f"{path}: run `PYTHONPATH=. python benchmarks/tables.py`"
    assert sum(len(tables.BLOCK.findall(p.read_text())) for p in tables.DOCUMENTS) >= len(tables.TABLES)


def test_photos_quick_scores_every_model_and_kind_and_reuses_its_cache(tmp_path, monkeypatch):
    import photos  # noqa: E402 (benchmarks/photos.py)

    args = ["--quick", "--kinds", "center", "right", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "p.json")]
    result = photos.main(args)
    assert set(result["models"]) == {"photos", "photos-ar", "photos-control"}
    assert set(result["paired"]) == {"photos-ar - photos-control", "photos-control - photos", "photos-ar - photos"}
    for name, row in result["models"].items():
        assert len(result["per_patch"][name]["iwae_bpd"]) == result["protocol"]["n_images"] == 50
        assert 0 < row["iwae_bpd"][0] < 9 and row["n_layers"] == len(row["kl_per_layer"])
    assert [row["kind"] for row in result["imputation"]] == ["center", "right"]
    for row in result["imputation"]:
        assert row["verdict"] in ("better", "worse", "not distinguishable")
        assert row["missing_subpixels"] == {"center": 3 * 16 * 16, "right": 3 * 32 * 16}[row["kind"]]
    monkeypatch.setattr(photos, "model_scores", lambda *a, **k: pytest.fail("the cache was not used"))
    monkeypatch.setattr(photos, "imputation_kind", lambda *a, **k: pytest.fail("the cache was not used"))
    assert photos.main(args)["paired"] == json.loads(json.dumps(result["paired"]))


def test_time_to_quality_scores_snapshots_against_minutes(tmp_path, monkeypatch):
    """The MLP curve end to end at a tiny scale: snapshots taken as it trains, scored, timed, assembled."""
    import dataclasses

    import time_to_quality as ttq
    monkeypatch.setattr(ttq, "SNAPSHOTS", tmp_path / "snapshots")
    monkeypatch.setattr(ttq, "FIGURE", tmp_path / "figure.png")
    monkeypatch.setattr(ttq, "MLP_BASELINE_RECIPE", dataclasses.replace(ttq.MLP_BASELINE_RECIPE, epochs=3))
    monkeypatch.setattr(ttq, "MLP_SNAPSHOT_EPOCHS", (1, 3))
    monkeypatch.setattr(ttq, "N_DIGITS", 6)
    monkeypatch.setattr(ttq, "K", 2)
    monkeypatch.setattr(ttq, "N_SAMPLES", 10)
    result = ttq.main(["--train-mlp", "--curve", "mlp-vae", "--speed", "--assemble", "--out", str(tmp_path / "t.json")])
    (name, curve), = result["curves"].items()
    assert name == "mlp-vae" and [p["epoch"] for p in curve["points"]] == [1, 3]
    for point in curve["points"]:  # minutes = epochs x the recipe's measured seconds per epoch
        assert point["minutes_two_threads"] == pytest.approx(point["epoch"] * curve["seconds_per_epoch"] / 60)
        assert point["nll"] > 0 and 0 <= point["confident"] <= 1
    assert curve["points"][1]["nll"] < curve["points"][0]["nll"]  # three epochs beat one
    assert (tmp_path / "figure.png").stat().st_size > 0
    assert json.loads((tmp_path / "t.json").read_text())["curves"]["mlp-vae"]["points"] == curve["points"]
