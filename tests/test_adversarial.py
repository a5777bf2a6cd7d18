"""Every bad-input and fault case of tests/adversarial.py ends in a correct result or a clear error
of the kit's own type: never silently wrong, never a raw traceback, and never a valid call refused.
The README's table comes from benchmarks/results/adversarial.json, which must be this run's."""
import json

import adversarial
from hvae_lite.paths import RESULTS_DIR

# Cases whose correct outcome depends on the machine (a GPU turns a clear refusal into a result).
MACHINE_DEPENDENT = {"Checkpoint.model('cuda') without a GPU"}


def test_every_adversarial_case_is_correct_or_a_clear_error(tmp_path):
    results = adversarial.run_by_area(tmp_path)
    flat = {name: outcome for area in results.values() for name, outcome in area.items()}
    assert len(flat) >= 180  # 121 of the first round, 62 of the second
    bad = {name: outcome for name, outcome in flat.items() if outcome not in ("ok", "clear")}
    assert not bad, bad
    committed = json.loads((RESULTS_DIR / "adversarial.json").read_text())
    fresh = {area: {n: o for n, o in outcomes.items() if n not in MACHINE_DEPENDENT} for area, outcomes in results.items()}
    kept = {area: {n: o for n, o in outcomes.items() if n not in MACHINE_DEPENDENT}
            for area, outcomes in committed["cases"].items()}
    assert kept == fresh, "benchmarks/results/adversarial.json is stale: " + committed["command"]


def test_a_refused_valid_call_is_not_counted_as_clear():
    """Over-refusal: a kit error on a valid call is 'refused', which the test above rejects."""
    from hvae_lite.errors import InputError

    def refuse():
        raise InputError("no")

    assert adversarial.expect_ok(refuse, lambda result: True) == "refused"
    assert adversarial.expect_ok(lambda: 1, lambda result: result == 1) == "ok"
    assert adversarial.expect_error(refuse) == "clear"


def test_the_suite_fails_when_the_model_refuses_every_valid_call(tmp_path, monkeypatch):
    """Proof by patch: with HVAE.forward and HVAE.sample made to refuse everything, the valid calls of
    the suite come out 'refused', so the test above would fail; the invalid ones stay 'clear'."""
    from hvae_lite.errors import InputError
    from hvae_lite.model import HVAE

    f = adversarial.Fixtures(tmp_path)
    area = adversarial.cases(f)["the model and evaluation"]

    def refuse(*args, **kwargs):
        raise InputError("patched to refuse")

    monkeypatch.setattr(HVAE, "forward", refuse)
    monkeypatch.setattr(HVAE, "sample", refuse)
    assert area["model(float64 binary images)"]() == "refused"
    assert area["evaluate(float64 images)"]() == "refused"
    assert area["model.sample(0)"]() == "clear"  # an invalid call refused is still right
