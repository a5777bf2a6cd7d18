"""Data-parallel training under torchrun, on CPU with gloo and 2 processes: 2 ranks x batch B/2
follow 1 process x batch B, and an interrupted torchrun run resumes to the same numbers."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hvae_lite.__main__ import main
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.distributed import DistContext, current

ROOT = Path(__file__).resolve().parent.parent
RUN = ["--preset", "tiny", "--limit-train", "400", "--epochs", "2", "--device", "cpu", "--quiet"]
TIMING_KEYS = {"seconds", "images_per_s"}
# 2 ranks draw other latent noise than 1 process (the same init, data order and binarisation);
# that moved each epoch's ELBO by at most 0.4% when measured (-582.5 vs -580.7, -495.5 vs -495.1
# nats), while one process with another seed moved it by 2.5% and 9%.
TOLERANCE = 0.01


def _torchrun(*args: str) -> str:
    """python -m torch.distributed.run --nproc_per_node=2 -m hvae_lite train ARGS; returns stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "hvae_lite", "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _numbers(history):
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in history]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    straight_out = _torchrun(*RUN, "--batch-size", "50", "--out", str(folder / "straight.pt"))
    _torchrun(*RUN, "--batch-size", "50", "--stop-after", "1", "--out", str(folder / "resumed.pt"))
    interrupted = load_checkpoint(folder / "resumed.pt")
    _torchrun("--resume", "--limit-train", "400", "--device", "cpu", "--quiet", "--out", str(folder / "resumed.pt"))
    assert main(["train", *RUN, "--batch-size", "100", "--out", str(folder / "one.pt")]) == 0  # 1 process
    return dict(folder=folder, straight_out=straight_out, interrupted=interrupted,
                **{name: load_checkpoint(folder / f"{name}.pt") for name in ("straight", "resumed", "one")})


def test_two_ranks_of_half_batches_follow_one_process(runs):
    two, one = runs["straight"], runs["one"]
    assert two.step == one.step == 8  # 2 epochs of 4 global batches of 100 digits
    assert len(two.history) == len(one.history) == 2
    for a, b in zip(two.history, one.history):
        assert (a["lr"], a["beta"], a["skipped"]) == (b["lr"], b["beta"], b["skipped"])
        assert a["images"] == b["images"] == 400  # the ranks' slices: each digit once per epoch
        for key in ("elbo", "test_elbo"):
            assert a[key] == pytest.approx(b[key], rel=TOLERANCE), key
        assert a["kl"] == pytest.approx(b["kl"], abs=0.05)


def test_rank_0_alone_reports_the_global_throughput(runs):
    lines = runs["straight_out"].splitlines()
    assert sum(line.startswith("training tiny on cpu x 2 ranks (batch 50 each)") for line in lines) == 1
    assert sum(line.startswith("epoch 2:") and line.endswith("images/s in all") for line in lines) == 1
    assert sorted(p.name for p in runs["folder"].iterdir()) == ["one.pt", "resumed.pt", "straight.pt"]


def test_an_interrupted_torchrun_run_resumes_exactly(runs):
    interrupted, resumed, straight = runs["interrupted"], runs["resumed"], runs["straight"]
    assert interrupted.epoch == 1 and interrupted.step == 4
    assert {"torch", "torch.rank1"} <= set(interrupted.rng_state)  # both ranks' latent noise
    assert _numbers(resumed.history) == _numbers(straight.history)
    assert resumed.step == straight.step
    for name, tensor in straight.model_state.items():
        assert torch.equal(resumed.model_state[name], tensor), name


def test_a_single_process_has_no_process_group():
    context = current()
    assert context == DistContext() and not context.enabled and context.is_main
    assert context.all_true(torch.tensor(True)) and not context.all_true(torch.tensor(False))
    assert context.gather("x") == ["x"] and context.from_main(3) == 3


def test_the_number_of_processes_is_recorded_and_checked_on_resume(runs, tmp_path, capsys):
    assert runs["straight"].world_size == 2 and runs["one"].world_size == 1
    copy = tmp_path / "ddp.pt"
    copy.write_bytes((runs["folder"] / "straight.pt").read_bytes())
    assert main(["train", "--resume", "--out", str(copy), "--epochs", "3", "--limit-train", "400", "--device", "cpu",
                 "--quiet"]) == 1  # one process would halve the global batch
    assert "was trained by 2 process(es)" in capsys.readouterr().err
    assert copy.read_bytes() == (runs["folder"] / "straight.pt").read_bytes()


def test_sigterm_to_torchrun_stops_the_ranks_with_the_kits_message(tmp_path):
    """torchrun passes its SIGTERM on to the ranks: they stop like Ctrl-C, keeping the last checkpoint,
    and rank 0 says how to continue (torchrun itself still prints its own SignalException)."""
    import signal
    import time
    out = tmp_path / "run.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hvae_lite", "train",
         "--preset", "tiny", "--set", "width=4", "--limit-train", "100", "--batch-size", "25", "--epochs", "100000",
         "--device", "cpu", "--quiet", "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not out.exists():
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
            time.sleep(0.5)
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=300)
    finally:
        launcher.kill()
    checkpoint = load_checkpoint(out)
    assert checkpoint.world_size == 2 and checkpoint.epoch >= 1
    assert re.search(rf"stopped by SIGTERM: {re.escape(str(out))} holds epoch \d+; continue with python -m hvae_lite "
                     "train --resume", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]
