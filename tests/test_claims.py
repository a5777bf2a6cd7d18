"""Claims checked by the run: raise in full mode, a visible note in fast mode; results read by name."""
import json

import numpy as np
import pytest
import torch

from hvae_lite.claims import (MEASURES, RESULT_FILES, ClaimError, ar_head_table, claim, clearly_less,
                              imputation_k_check_table, imputation_table, markdown, measured, plus_minus, read_results,
                              result)


def test_a_claim_that_holds_is_printed_as_checked(capsys):
    claim(72.0 < 94.5, "the AR model's reconstruction term is higher", value="94.5 vs 72.0", fast=False)
    assert capsys.readouterr().out == "[checked] the AR model's reconstruction term is higher (measured: 94.5 vs 72.0)\n"


def test_a_claim_that_no_longer_holds_stops_a_full_run_with_the_sentence_and_the_value():
    with pytest.raises(ClaimError, match=r"'z0 carries the most'.*measured: \[1.5, 7.25\].*rewrite the sentence"):
        claim(False, "z0 carries the most", value=[1.5, 7.25], fast=False)


def test_fast_mode_never_raises_and_says_the_claim_was_not_checked(capsys, monkeypatch):
    monkeypatch.setenv("HVAE_LITE_FAST", "1")
    claim(np.bool_(False), "most samples are digits", value=0.123456)
    assert capsys.readouterr().out == "[not checked in fast mode: tiny models] most samples are digits (measured: 0.1235)\n"
    monkeypatch.setenv("HVAE_LITE_FAST", "0")
    with pytest.raises(ClaimError):
        claim(torch.tensor(False), "most samples are digits")


@pytest.mark.parametrize("condition, statement", [(torch.tensor([True, False]), "ok"), (True, ""), (True, None)])
def test_claim_rejects_an_ambiguous_condition_or_a_missing_sentence(condition, statement):
    with pytest.raises(ValueError):
        claim(condition, statement, fast=False)


def test_markdown_dedents_formatted_text():
    rendered = markdown("""
        The ELBO is **-90.3 nats**.
          - indented item
        """)
    assert rendered._repr_markdown_() == "The ELBO is **-90.3 nats**.\n  - indented item"
    with pytest.raises(TypeError):
        markdown(3.0)


def test_clearly_less_uses_the_standard_error_of_the_difference():
    assert clearly_less(100.0, 103.0, stderr=1.0)
    assert not clearly_less(100.0, 101.5, stderr=1.0)  # within two standard errors: not clearly lower
    assert not clearly_less(103.0, 100.0, stderr=0.1)
    with pytest.raises(ValueError):
        clearly_less(1.0, float("nan"), 1.0)


def test_result_reads_keys_indices_and_rows_and_defaults_when_missing(tmp_path):
    (tmp_path / "quality.json").write_text(json.dumps({"iwae": {"k": 500}, "rows": [
        {"variant": "mlp-vae", "nll_iwae": 110.0}, {"variant": "matryoshka", "nll_iwae": 90.0}]}))
    assert result("quality", "iwae", "k", results_dir=tmp_path) == 500
    assert result("quality", "rows", {"variant": "matryoshka"}, "nll_iwae", results_dir=tmp_path) == 90.0
    assert result("quality", "rows", -1, "variant", results_dir=tmp_path) == "matryoshka"
    assert result("quality", "rows", {"variant": "absent"}, "nll_iwae", default="n/a", results_dir=tmp_path) == "n/a"
    assert result("quality", "rows", 5, results_dir=tmp_path) is None
    assert result("imputation", "rows", default=0, results_dir=tmp_path) == 0  # file not written yet
    assert read_results("imputation", results_dir=tmp_path) is None
    with pytest.raises(ValueError, match="unknown result"):
        read_results("qualty", results_dir=tmp_path)
    (tmp_path / "speed.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_results("speed", results_dir=tmp_path)


def test_the_committed_results_files_are_valid_json():
    assert isinstance(read_results("quality"), dict)


def test_measures_name_known_files_and_read_as_none_until_measured(tmp_path):
    assert all(path[0] in RESULT_FILES for path in MEASURES.values())
    (tmp_path / "quality.json").write_text(json.dumps({"rows": [{"variant": "no-td-path", "elbo": -120.0}]}))
    assert measured("naive_stack", results_dir=tmp_path) == {"variant": "no-td-path", "elbo": -120.0}
    assert measured("judge_samples", results_dir=tmp_path) is None
    assert measured("matryoshka", default={}, results_dir=tmp_path) == {}
    with pytest.raises(ValueError, match="unknown measure"):
        measured("naive", results_dir=tmp_path)


def test_imputation_tables_show_every_row_with_its_standard_errors():
    row = {"kind": "center", "missing_pixels": 196.0, "judge_original": 0.98, "judge_occluded": 0.31,
           "conditional_log_lik": -55.18, "conditional_log_lik_stderr": 0.37, "judge_conditional": 0.433,
           "iterative_log_lik": -37.79, "iterative_log_lik_stderr": 0.30, "judge_iterative": 0.489,
           "conditional_minus_iterative": -17.39, "difference_stderr": 0.155}
    check = {"kind": "center", "n_images": 100, "k_small": 10, "k_big": 100, "conditional_small": -55.0,
             "conditional_big": -54.0, "conditional_big_minus_small": [1.0, 0.1], "iterative_small": -37.0,
             "iterative_big": -40.0, "iterative_big_minus_small": [-3.0, 0.2]}
    result = {"protocol": {"k": 10}, "rows": [row, {**row, "kind": "top"}], "k_check": [check]}
    table = imputation_table(result).splitlines()
    assert "IWAE-10 bound" in table[0] and len(table) == 4
    assert table[2].startswith("| center | 196 | -55.2 ± 0.4 | -37.8 ± 0.3 | -17.39 ± 0.15 | 0.980 / 0.310 / 0.433 / 0.489")
    checks = imputation_k_check_table(result).splitlines()
    assert len(checks) == 3 and "| 1.00 ± 0.10 |" in checks[2] and "| -3.00 ± 0.20 |" in checks[2]
    assert plus_minus(1.234, 0.05, 2) == "1.23 ± 0.05"


def test_ar_head_table_has_the_default_and_one_row_per_head():
    row = {"variant": "k7-w32", "ar_layers": 1, "ar_kernel": 7, "ar_width": 32, "body_lr": 2e-4, "parameters": 950000,
           "elbo": -89.34, "elbo_stderr": 0.69, "elbo_gain_over_default": 0.43, "gain_stderr": 0.02,
           "in_use": [True] * 9 + [False] * 2}
    frozen = {**row, "variant": "frozen", "body_lr": 1e-6}
    lines = ar_head_table({"default_elbo": [-89.77, 0.69], "rows": [row, frozen]}).splitlines()
    assert len(lines) == 5 and "| -89.77 ± 0.69 |" in lines[2]
    assert lines[3] == "| k7-w32: 7x7, 1, 32 | fine-tuned (lr 0.0002) | 0.95 M | -89.34 ± 0.69 | 0.43 ± 0.02 | 9 of 11 |"
    assert "frozen (lr 1e-6)" in lines[4]
