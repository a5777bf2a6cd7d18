"""Faults: a training or a save killed with SIGKILL, a read-only folder, a full disk, a corrupt
manifest. Each ends with the previous checkpoint intact and loadable."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hvae_lite import checkpoints
from hvae_lite.__main__ import main
from hvae_lite.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from hvae_lite.config import get_preset
from hvae_lite.errors import CheckpointError
from hvae_lite.pretrained import load_or_train
from hvae_lite.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _small_checkpoint(path: Path) -> bytes:
    model = checkpoints.build_model(get_preset("tiny", width=4))
    save_checkpoint(Checkpoint(model.config, model.state_dict(), epoch=1), path)
    return path.read_bytes()


def _wait_for(condition, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def synthetic_split():
    """50 + 10 seeded random grey images: the same in every process, and no data file to parse."""
    from hvae_lite.data import DataSplit
    g = torch.Generator().manual_seed(0)
    return DataSplit(torch.rand(50, 1, 28, 28, generator=g), torch.zeros(50, dtype=torch.long),
                     torch.rand(10, 1, 28, 28, generator=g), torch.zeros(10, dtype=torch.long), "synthetic")


LONG_RUN = """
import sys
sys.path.insert(0, sys.argv[2])
from test_faults import synthetic_split
from hvae_lite.config import get_preset
from hvae_lite.train import TrainConfig, Trainer
Trainer(get_preset("tiny", width=4), TrainConfig(epochs=10_000, batch_size=50, device="cpu"), synthetic_split(),
        checkpoint_path=sys.argv[1], progress=False).fit()
"""


def test_training_killed_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run.pt"
    process = subprocess.Popen([sys.executable, "-c", LONG_RUN, str(out), str(Path(__file__).parent)], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out.exists, 120, process)
        time.sleep(0.5)  # a few epochs (and saves) later
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
    checkpoint = load_checkpoint(out)
    assert checkpoint.epoch >= 1 and checkpoint.data == {"source": "synthetic", "split_seed": None, "n_train": 50,
                                                         "n_test": 10}
    Trainer.resume(out, synthetic_split(), epochs=checkpoint.epoch + 1, progress=False).fit()
    assert load_checkpoint(out).epoch == checkpoint.epoch + 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # a killed save's .tmp is gone


SLOW_SAVE = """
import sys, time, torch
from hvae_lite import checkpoints
def half_then_hang(obj, f):
    f.write(b"PK half a checkpoint"); f.flush(); print("writing", flush=True); time.sleep(60)
checkpoints.torch.save = half_then_hang
checkpoints.save_checkpoint(checkpoints.load_checkpoint(sys.argv[1]), sys.argv[1])
"""


def test_save_killed_midway_keeps_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "run.pt"
    before = _small_checkpoint(path)
    process = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing", process.stderr.read()
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
    stale = list(tmp_path.glob(".run.pt.*.tmp"))
    assert len(stale) == 1  # what a killed save leaves behind
    assert path.read_bytes() == before and load_checkpoint(path).epoch == 1
    save_checkpoint(load_checkpoint(path), path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


@pytest.mark.parametrize("target, code, words", [
    ("torch.save", errno.ENOSPC, "the disk is full"),
    ("tempfile.mkstemp", errno.EACCES, "permission denied"),
    ("os.fsync", errno.EROFS, "the file system is read-only"),
])
def test_write_failures_are_checkpoint_errors_and_keep_the_old_file(tmp_path, monkeypatch, target, code, words):
    path = tmp_path / "run.pt"
    before = _small_checkpoint(path)
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(target, fail)
    with pytest.raises(CheckpointError, match=f"cannot write .*run.pt: {words} \\(the previous file there is unchanged\\)"):
        save_checkpoint(load_checkpoint(path), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_cli_refuses_an_unwritable_folder_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "access", lambda *args: False)  # as a read-only folder answers (root ignores chmod)
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path / "sub" / "run.pt"), "--quiet"]) == 1
    assert "is not writable" in capsys.readouterr().err
    assert not (tmp_path / "sub").exists()


def test_corrupt_manifest_is_a_checkpoint_error_and_leaves_the_model(tmp_path):
    before = _small_checkpoint(tmp_path / "matryoshka.pt")
    manifest = tmp_path / "matryoshka.json"
    for text in ("{not json", json.dumps(["a list"]), json.dumps({"preset": "tiny"})):
        manifest.write_text(text)
        with pytest.raises(CheckpointError, match="manifest .*matryoshka.json"):
            load_or_train("matryoshka", fast=False, checkpoint_dir=tmp_path, runs_dir=tmp_path / "runs")
    assert (tmp_path / "matryoshka.pt").read_bytes() == before and not (tmp_path / "runs").exists()


TRAIN_FOREVER = [sys.executable, "-m", "hvae_lite", "train", "--preset", "tiny", "--set", "width=4", "--limit-train", "50",
                 "--batch-size", "50", "--epochs", "100000", "--device", "cpu", "--quiet"]


def test_one_training_per_out_and_sigterm_stops_it_like_ctrl_c(tmp_path, capsys):
    """A second training of the same --out is refused while the first runs (both used to exit 0, the
    file flipping between them); SIGTERM (a scheduler's stop) then ends the first cleanly, saying so."""
    out = tmp_path / "run.pt"
    first = subprocess.Popen([*TRAIN_FOREVER, "--out", str(out)], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out.exists, 600, first)
        assert main(["train", "--preset", "tiny", "--set", "width=4", "--limit-train", "50", "--epochs", "1",
                     "--device", "cpu", "--quiet", "--overwrite", "--out", str(out)]) == 1
        assert f"another process is writing {out}" in capsys.readouterr().err
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 143, err
    checkpoint = load_checkpoint(out)
    assert f"stopped by SIGTERM: {out} holds epoch {checkpoint.epoch}; continue with python -m hvae_lite train " \
           f"--resume --out {out}" in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no lock file, no half-written file
