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


# ----------------------------------------------------------------------------- the second hardening round


@pytest.fixture
def shipped(trained, tmp_path, monkeypatch):
    """A stand-in shipped folder: matryoshka.pt (the tiny run) and its manifest; the real one is never touched."""
    from hvae_lite import paths
    from hvae_lite.checkpoints import sha256_of
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "matryoshka.pt").write_bytes(trained.read_bytes())
    (folder / "matryoshka.json").write_text(json.dumps({"name": "matryoshka", "sha256": sha256_of(trained)}))
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", folder)
    return folder


EVALUATE = ["--k", "1", "--n-images", "2", "--quiet", "--device", "cpu"]


def test_no_command_writes_over_a_file_of_another_kind_or_a_shipped_one(trained, shipped, tmp_path, capsys):
    run = tmp_path / "run.pt"
    run.write_bytes(trained.read_bytes())
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    before = {p: p.read_bytes() for p in (run, notes, shipped / "matryoshka.pt", shipped / "matryoshka.json")}
    for argv, words in [
        (["evaluate", str(run), *EVALUATE, "--json", str(shipped / "matryoshka.pt")], "where the kit keeps its own files"),
        (["evaluate", str(run), *EVALUATE, "--json", str(run)], "run.pt holds an hvae_lite checkpoint .*not a JSON file"),
        (["train", *SMALL, "--overwrite", "--out", str(shipped / "matryoshka.json")], "where the kit keeps its own files"),
        (["train", *SMALL, "--overwrite", "--out", str(notes)], "notes.json holds a JSON file, not an hvae_lite checkpoint"),
        (["sample", str(run), "--out", str(tmp_path / "notes.png")], None),
    ]:
        if words is None:  # a picture over a JSON file named .png
            (tmp_path / "notes.png").write_text('{"x": 1}')
            words = "notes.png holds a JSON file, not an image"
        assert main(argv) == 1
        assert re.search(f"^error: .*{words}", capsys.readouterr().err)
    assert all(p.read_bytes() == content for p, content in before.items())


def test_shipped_checkpoints_are_verified_on_the_command_line(shipped, capsys):
    target = shipped / "matryoshka.pt"
    assert main(["evaluate", str(target), *EVALUATE]) == 0  # verified, then evaluated
    capsys.readouterr()
    data = bytearray(target.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4] = b"\x00\x01\x02\x03"
    target.write_bytes(bytes(data))
    for argv in (["evaluate", str(target), *EVALUATE], ["sample", str(target), "--out", str(shipped.parent / "s.png")]):
        assert main(argv) == 1
        assert "fails its checksum" in capsys.readouterr().err
    (shipped / "matryoshka.json").write_text(json.dumps({"sha256": None}))
    assert main(["evaluate", str(target), *EVALUATE]) == 1
    assert "has no valid sha256 of its checkpoint (got None), so the checkpoint cannot be verified" in \
        capsys.readouterr().err


def test_non_finite_metrics_are_an_error_not_invalid_json(trained, tmp_path, capsys):
    import torch
    raw = torch.load(trained, weights_only=True)
    name = next(k for k, v in raw["model"].items() if v.dim() > 1)
    raw["model"][name] = torch.full_like(raw["model"][name], 1e30)
    broken = tmp_path / "broken.pt"
    torch.save(raw, broken)
    assert main(["evaluate", str(broken), *EVALUATE, "--json", str(tmp_path / "m.json")]) == 1
    out, err = capsys.readouterr()
    assert "gives non-finite metrics" in err and "Infinity" not in out and "NaN" not in out
    assert not (tmp_path / "m.json").exists()


def test_the_judge_and_mismatched_weights_are_refused_in_one_line(trained, tmp_path, capsys):
    import torch
    judge = ROOT / "data" / "checkpoints" / "judge.pt"
    assert main(["evaluate", str(judge), *EVALUATE]) == 1
    assert "holds the digit judge (a classifier that scores samples), not a generative model" in capsys.readouterr().err
    raw = torch.load(trained, weights_only=True)
    raw["config"]["width"] = 6
    wide = tmp_path / "wide.pt"
    torch.save(raw, wide)
    assert main(["sample", str(wide), "--out", str(tmp_path / "s.png")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "do not fit the HVAE its config describes" in err and "of another shape" in err


@pytest.mark.parametrize("argv, words", [
    (["train", *SMALL, "--stop-after", "0", "--out", "x.pt"], "--stop-after must be >= 1, got 0"),
    (["train", *SMALL, "--seed", str(2**70), "--out", "x.pt"], r"--seed must be a whole number from 0 to 2\*\*63 - 1"),
    (["sample", "x.pt", "--seed", str(2**64)], r"--seed must be a whole number from 0 to 2\*\*63 - 1"),
    (["evaluate", "x.pt", "--seed", "-1"], r"--seed must be a whole number from 0 to 2\*\*63 - 1"),
    (["evaluate", "x.pt", "--split-seed", str(2**70)], r"--split-seed must be a whole number"),
])
def test_steps_and_seeds_out_of_range(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert re.search(f"^error: {words}", capsys.readouterr().err)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("env, words", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set, but not RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT: these come from "
                          "torchrun"),
    ({"WORLD_SIZE": "two"}, "the environment variable WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "5", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
     "RANK=5 is not a rank of WORLD_SIZE=2 processes"),
])
def test_a_partial_torchrun_environment_is_explained(env, words, capsys, tmp_path, monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["train", *SMALL, "--out", str(tmp_path / "x.pt")]) == 1
    assert words in capsys.readouterr().err


def test_a_run_of_two_processes_resumes_only_under_two(trained, tmp_path, capsys):
    import torch
    raw = torch.load(trained, weights_only=True)
    raw["world_size"] = 2
    run = tmp_path / "ddp.pt"
    torch.save(raw, run)
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--quiet", "--device", "cpu"]) == 1
    assert "was trained by 2 process(es) (global batch = 2 x --batch-size), but this is 1; resume it with as many: " \
           "torchrun --standalone --nproc_per_node=2" in capsys.readouterr().err
    assert load_checkpoint(trained).world_size == 1
