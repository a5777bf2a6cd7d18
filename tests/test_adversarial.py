"""Every bad-input and fault case of tests/adversarial.py ends in a correct result or a clear error
of the kit's own type: never silently wrong, never a raw traceback."""
import adversarial


def test_every_adversarial_case_is_correct_or_a_clear_error(tmp_path):
    results = adversarial.run_all(tmp_path)
    assert len(results) >= 100
    bad = {name: outcome for name, outcome in results.items() if outcome not in ("ok", "clear")}
    assert not bad, bad
