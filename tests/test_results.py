"""Results: files read by name, the measures, the one verdict rule and the one table renderer."""
import json
import math

import numpy as np
import pytest

from hvae_lite.errors import InputError
from hvae_lite.results import (MEASURES, RESULT_FILES, Verdict, compare_paired, imputation_k_check_table,
                               imputation_table, markdown_table, measured, paired_difference, plus_minus, read_results,
                               result, verdict)


def test_verdict_needs_more_than_two_standard_errors_either_way():
    assert verdict(3.0, 1.0) == Verdict(3.0, 1.0, "better")
    assert verdict(-3.0, 1.0).word == "worse"
    assert verdict(1.5, 1.0).word == "not distinguishable"  # within two standard errors
    assert verdict(1.5, 1.0, n_se=1.0).word == "better"
    assert verdict(0.0, 0.0).word == "not distinguishable"
    # Lower is better (an NLL, a loss): A - B = -3 is A ahead.
    assert verdict(-3.0, 1.0, higher_is_better=False).word == "better"
    assert verdict(3.0, 1.0, higher_is_better=False).word == "worse"
    assert str(verdict(1.234, 0.45)) == "+1.23 ± 0.45: better"
    assert str(verdict(0.8, 0.45)) == "+0.80 ± 0.45: not distinguishable"
    assert str(verdict(-2.5, 0.5)) == "-2.50 ± 0.50: worse"


@pytest.mark.parametrize("difference, stderr", [(float("nan"), 1.0), (1.0, float("inf")), (1.0, -0.1), (True, 1.0)])
def test_verdict_refuses_non_finite_inputs_and_a_negative_standard_error(difference, stderr):
    with pytest.raises(InputError, match="verdict needs"):
        verdict(difference, stderr)


def test_compare_paired_uses_the_paired_standard_error():
    rng = np.random.default_rng(0)
    digit = rng.normal(0, 10, 200)   # per-item noise both share: it cancels in the pairs
    a, b = digit + 1.0 + rng.normal(0, 0.1, 200), digit + rng.normal(0, 0.1, 200)
    paired = compare_paired(a, b)
    assert paired.word == "better" and paired.difference == pytest.approx(1.0, abs=0.05)
    assert (paired.difference, paired.stderr) == pytest.approx(paired_difference(a, b))
    assert paired.stderr < 0.05 < math.hypot(a.std(), b.std()) / math.sqrt(200)
    assert compare_paired(a, b, higher_is_better=False).word == "worse"
    with pytest.raises(InputError, match="at least 2"):
        compare_paired([1.0], [0.0])
    with pytest.raises(InputError, match="equal-length"):
        compare_paired([1.0, 2.0], [0.0, 1.0, 2.0])


def test_markdown_table_is_the_one_renderer():
    table = markdown_table(["a", "b"], [(1, "x"), ("", 2.5)])
    assert table == "| a | b |\n|---|---|\n| 1 | x |\n| | 2.5 |"
    with pytest.raises(InputError, match="2 columns"):
        markdown_table(["a", "b"], [(1, 2, 3)])


def test_result_reads_keys_indices_and_rows_and_defaults_when_missing(tmp_path):
    (tmp_path / "ablations.json").write_text(json.dumps({"protocol": {"k": 500}, "rows": [
        {"variant": "no-td-path", "nll": 110.0}, {"variant": "matryoshka", "nll": 90.0}]}))
    assert result("ablations", "protocol", "k", results_dir=tmp_path) == 500
    assert result("ablations", "rows", {"variant": "matryoshka"}, "nll", results_dir=tmp_path) == 90.0
    assert result("ablations", "rows", -1, "variant", results_dir=tmp_path) == "matryoshka"
    assert result("ablations", "rows", {"variant": "absent"}, "nll", default="n/a", results_dir=tmp_path) == "n/a"
    assert result("ablations", "rows", 5, results_dir=tmp_path) is None
    assert result("imputation", "rows", default=0, results_dir=tmp_path) == 0  # file not written yet
    assert read_results("imputation", results_dir=tmp_path) is None
    with pytest.raises(ValueError, match="unknown result"):
        read_results("ablation", results_dir=tmp_path)
    (tmp_path / "speed.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_results("speed", results_dir=tmp_path)


def test_the_committed_results_files_are_valid_json():
    for name in RESULT_FILES:
        assert read_results(name) is None or isinstance(read_results(name), dict), name


def test_measures_name_known_files_and_read_as_none_until_measured(tmp_path):
    assert all(path[0] in RESULT_FILES for path in MEASURES.values())
    (tmp_path / "ablations.json").write_text(json.dumps({"rows": [{"variant": "no-td-path", "elbo": -120.0}]}))
    assert measured("study_naive_stack", results_dir=tmp_path) == {"variant": "no-td-path", "elbo": -120.0}
    assert measured("judge_samples", results_dir=tmp_path) is None
    assert measured("study_full", default={}, results_dir=tmp_path) == {}
    with pytest.raises(ValueError, match="unknown measure"):
        measured("naive", results_dir=tmp_path)


def test_imputation_tables_show_every_row_with_its_standard_errors():
    row = {"kind": "center", "missing_pixels": 196.0, "judge_original": 0.98, "judge_occluded": 0.31,
           "conditional_log_lik": -55.18, "conditional_log_lik_stderr": 0.37, "judge_conditional": 0.433,
           "iterative_log_lik": -37.79, "iterative_log_lik_stderr": 0.30, "judge_iterative": 0.489,
           "conditional_minus_iterative": -17.39, "difference_stderr": 0.155, "verdict": "worse",
           "judge_ceiling": 0.80}
    check = {"kind": "center", "n_images": 100, "k_small": 10, "k_big": 100, "conditional_small": -55.0,
             "conditional_big": -54.0, "conditional_big_minus_small": [1.0, 0.1], "iterative_small": -37.0,
             "iterative_big": -40.0, "iterative_big_minus_small": [-3.0, 0.2]}
    result = {"protocol": {"k": 10}, "rows": [row, {**row, "kind": "top"}], "k_check": [check]}
    table = imputation_table(result).splitlines()
    assert "IWAE-10 bound" in table[0] and len(table) == 4
    assert table[2].startswith("| center | 196 | -55.2 ± 0.4 | -37.8 ± 0.3 | -17.39 ± 0.15: worse | "
                               "0.980 / 0.310 / 0.800 / 0.433 / 0.489")
    checks = imputation_k_check_table(result).splitlines()
    assert len(checks) == 3 and "| 1.00 ± 0.10 |" in checks[2] and "| -3.00 ± 0.20 |" in checks[2]
    assert plus_minus(1.234, 0.05, 2) == "1.23 ± 0.05"




def test_contrast_sentence_reads_the_verdict():
    from hvae_lite.results import contrast_sentence

    contrast = {"a": "matryoshka", "b": "no-td-path", "nll": {"seeds": [0, 1, 2], "difference": -2.8, "stderr": 0.4,
                                                            "seed_spread": 0.7, "verdict": "better"}}
    text = contrast_sentence(contrast)
    assert text.startswith("matryoshka - no-td-path in IWAE NLL") and text.endswith("matryoshka is better")
    assert "-2.80 ± 0.40 nats over 3 seeds, seed spread 0.70" in text
    contrast["nll"].update(verdict="not distinguishable", seeds=[0], seed_spread=None)
    assert contrast_sentence(contrast).endswith("over 1 seed: matryoshka and no-td-path are not distinguishable")
