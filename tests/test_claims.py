"""Claims checked by the run: raise in full mode, a visible note in fast mode; Markdown from the run."""
import numpy as np
import pytest
import torch

from hvae_lite.claims import ClaimError, claim, markdown
from hvae_lite.errors import InputError


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
    with pytest.raises(InputError, match="markdown\\(\\) takes a string, got float"):
        markdown(3.0)


def test_a_claim_on_the_results_files_is_checked_in_fast_mode_too(capsys, monkeypatch):
    monkeypatch.setenv("HVAE_LITE_FAST", "1")
    claim(True, "the study's verdict", results_only=True)
    assert "[checked] the study's verdict" in capsys.readouterr().out
    with pytest.raises(ClaimError, match="the study's verdict"):
        claim(False, "the study's verdict", results_only=True)
