"""The command line: train -> evaluate -> sample -> resume on a few hundred images, and its errors."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hvae_lite.__main__ import main
from hvae_lite.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--preset", "tiny", "--limit-train", "200", "--batch-size", "50", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the tiny preset through `python -m hvae_lite train`, as a user runs it."""
    out = tmp_path_factory.mktemp("cli") / "tiny.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "hvae_lite", "train", *SMALL, "--epochs", "1",
                             "--set", "width=4", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch 1: train ELBO" in result.stdout
    return out


def test_train_writes_a_checkpoint_with_the_overrides(trained):
    checkpoint = load_checkpoint(trained)
    assert checkpoint.epoch == 1 and checkpoint.config.width == 4
    assert checkpoint.train_config["batch_size"] == 50
    assert checkpoint.step == 4  # 200 images in batches of 50


def test_evaluate_prints_and_writes_json(trained, tmp_path, capsys):
    target = tmp_path / "metrics" / "m.json"
    assert main(["evaluate", str(trained), "--k", "3", "--n-images", "6", "--quiet", "--device", "cpu",
                 "--json", str(target)]) == 0
    metrics = json.loads(target.read_text())
    assert metrics["n_images"] == 6 and metrics["k"] == 3 and metrics["nll_iwae"] > 0
    assert json.loads(capsys.readouterr().out) == metrics


def test_sample_writes_an_image(trained, tmp_path, capsys):
    target = tmp_path / "s.png"
    assert main(["sample", str(trained), "--n", "4", "--device", "cpu", "--out", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {target}" in capsys.readouterr().out


def test_resume_continues_the_run(trained, tmp_path):
    run = tmp_path / "run.pt"
    run.write_bytes(trained.read_bytes())
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--quiet", "--device", "cpu"]) == 0
    checkpoint = load_checkpoint(run)
    assert checkpoint.epoch == 2 and [r["epoch"] for r in checkpoint.history] == [1, 2]
    assert checkpoint.step == 8


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "missing.pt"], "no checkpoint at missing.pt"),
    (["sample", "missing.pt"], "no checkpoint at missing.pt"),
    (["train", "--resume", "--out", "missing.pt"], "no checkpoint at missing.pt"),
    (["train", "--out", "x.pt", "--set", "width"], "--set takes KEY=VALUE"),
    (["train", "--out", "x.pt", "--set", "widht=3"], "unknown config field 'widht'"),
    (["train", "--out", "x.pt", "--set", "top_prior=gamma"], "top_prior='gamma'"),
    (["train", "--out", "x.pt", "--preset", "tiny", "--device", "gpu0"], "unknown device 'gpu0'"),
])
def test_errors_exit_1_with_a_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and re.search(message, err), err


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "nope", "--out", "x.pt"])
    assert exit_info.value.code == 2


def test_resume_accepts_the_runs_own_flags_and_refuses_changes(trained, tmp_path, capsys):
    run = tmp_path / "run.pt"
    run.write_bytes(trained.read_bytes())
    before = run.read_bytes()
    same = ["--set", "width=4"]
    for change, words in [(["--set", "width=6"], r"--preset/--set \(a model that differs from the run's in \['width'\]\)"),
                          ([], r"--preset/--set \(a model that differs from the run's in \['width'\]\)"),
                          (same + ["--lr", "0.1"], r"--lr 0.1 \(the run has 0.002\)"),
                          (same + ["--limit-train", "60"], r"--limit-train 60 \(the run has 200\)"),
                          (same + ["--split-seed", "3"], r"--split-seed 3 \(the run has 0\)"),
                          (same + ["--overwrite"], "--overwrite")]:
        assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *SMALL, *change]) == 1
        assert re.search(f"would change it: .*{words}", capsys.readouterr().err)
        assert run.read_bytes() == before
    # The run's own command line plus --resume (as benchmarks/train_checkpoints.py does) continues it,
    # on the run's own 200 digits even when --limit-train is left out.
    argv = [a for a in SMALL if a not in ("--limit-train", "200")]
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *argv, "--set", "width=4"]) == 0
    assert load_checkpoint(run).step == 8 and load_checkpoint(run).data["n_train"] == 200


def test_train_never_overwrites_a_run_unless_told(trained, tmp_path, capsys):
    run = tmp_path / "run.pt"
    run.write_bytes(trained.read_bytes())
    assert main(["train", *SMALL, "--set", "width=4", "--epochs", "1", "--out", str(run)]) == 1
    assert "already exists; --resume continues that run, --overwrite replaces it" in capsys.readouterr().err
    assert run.read_bytes() == trained.read_bytes()
    assert main(["train", *SMALL, "--set", "width=4", "--set", "deterministic_path=off", "--epochs", "1",
                 "--overwrite", "--out", str(run)]) == 0
    assert load_checkpoint(run).config.deterministic_path is False


def test_resume_of_a_finished_run_says_how_to_continue(trained, capsys):
    assert main(["train", "--resume", "--out", str(trained), "--quiet"]) == 1
    assert "has already trained 1 of 1 epochs; give --epochs N with N > 1" in capsys.readouterr().err
