"""The one safe writer (hvae_lite.files): atomic, of its kind, never over a shipped file, modes
from the umask, one process per output; a failed write (full disk, `ulimit -f`) keeps the old file."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hvae_lite import files, paths
from hvae_lite.checkpoints import Checkpoint, build_model, save_checkpoint
from hvae_lite.config import get_preset
from hvae_lite.errors import CheckpointError, OutputError

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint(path: Path, **options) -> Path:
    model = build_model(get_preset("tiny", width=4))
    save_checkpoint(Checkpoint(model.config, model.state_dict(), epoch=1), path, **options)
    return path


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A stand-in for the shipped folder (data/checkpoints), so no test can touch the real one."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", folder)
    return folder


def test_file_kind_reads_the_content_not_the_name(tmp_path):
    _checkpoint(tmp_path / "a.json")
    (tmp_path / "b.pt").write_text(json.dumps({"elbo": -90.0}))
    (tmp_path / "c.png").write_text(json.dumps({"sha256": "0" * 64, "command": "train"}))
    (tmp_path / "d.json").write_text(json.dumps({"nbformat": 4, "cells": []}))
    (tmp_path / "e.json").write_bytes(b"\x89PNG\r\n\x1a\n....")
    (tmp_path / "f.png").write_text("<!DOCTYPE html><html></html>")
    (tmp_path / "g").write_text("notes")
    (tmp_path / "h").write_bytes(b"")
    (tmp_path / "i").write_bytes(b"\x00\x01\xff\xfe")
    kinds = {p.name: files.file_kind(p) for p in sorted(tmp_path.iterdir())}
    assert kinds == {"a.json": "checkpoint", "b.pt": "json", "c.png": "manifest", "d.json": "notebook",
                     "e.json": "image", "f.png": "html", "g": "text", "h": "empty", "i": "binary"}


def test_a_file_of_another_kind_is_never_replaced(tmp_path):
    run = _checkpoint(tmp_path / "run.pt")
    before = run.read_bytes()
    with pytest.raises(OutputError, match=r"run.pt holds an hvae_lite checkpoint .*not a JSON file; it is not replaced"):
        files.write_json(run, {"elbo": -90.0})
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"sha256": "a" * 64}))
    with pytest.raises(CheckpointError, match="m.json holds a manifest"):
        save_checkpoint(Checkpoint(get_preset("tiny"), {}), manifest)
    with pytest.raises(OutputError, match="notes.txt holds a text file, not an image"):
        (tmp_path / "notes.txt").write_text("mine")
        files.write_atomic(tmp_path / "notes.txt", lambda f: f.write(b"\x89PNG"), "image")
    assert run.read_bytes() == before and json.loads(manifest.read_text()) == {"sha256": "a" * 64}
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_file_of_the_same_kind_or_an_empty_one_is_replaced(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("")
    files.write_json(target, {"a": 1})
    files.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary or lock file left


def test_a_shipped_file_is_never_written_unless_make_checkpoints_asks(shipped):
    model = _checkpoint(shipped / "matryoshka.pt", allow_shipped=True)  # as make checkpoints does
    before = model.read_bytes()
    for write in (lambda: files.write_json(shipped / "matryoshka.pt", {"a": 1}),
                  lambda: files.write_json(shipped / "new.json", {"a": 1}),
                  lambda: files.write_json(paths.PACKAGE_DIR / "model.py", {"a": 1})):
        with pytest.raises(OutputError, match="where the kit keeps its own files"):
            write()
    with pytest.raises(CheckpointError, match="where the kit keeps its own files"):
        _checkpoint(shipped / "matryoshka.pt")
    assert model.read_bytes() == before and not (shipped / "new.json").exists()
    files.write_json(shipped / "matryoshka.json", {"sha256": "b" * 64}, allow_shipped=True)  # make checkpoints
    assert files.file_kind(shipped / "matryoshka.json") == "manifest"


def test_nan_is_not_json_and_nothing_is_written(tmp_path):
    target = tmp_path / "m.json"
    with pytest.raises(OutputError, match=r"elbo, kl_per_layer\[1\] are not a finite number"):
        files.write_json(target, {"elbo": float("-inf"), "kl_per_layer": [0.5, float("nan")], "k": 3})
    assert not target.exists()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"),
                                          (errno.EFBIG, r"the file is larger than this process may write \(ulimit -f\)")])
def test_a_failed_write_keeps_the_previous_file_and_names_it(tmp_path, monkeypatch, code, words):
    target = tmp_path / "m.json"
    files.write_json(target, {"run": 1})

    def fail(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("os.fsync", fail)
    with pytest.raises(OutputError, match=f"cannot write {target}: {words} \\(the previous file there is unchanged\\)"):
        files.write_json(target, {"run": 2})
    assert json.loads(target.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_modes_follow_the_umask_and_a_replaced_file_keeps_its_own(tmp_path):
    old = os.umask(0o027)
    try:
        fresh = files.write_json(tmp_path / "a.json", {"a": 1})
        kept = tmp_path / "b.json"
        kept.write_text("{}")
        kept.chmod(0o664)
        files.write_json(kept, {"b": 1})
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o640  # 0666 less the umask, as open() would make it
    assert kept.stat().st_mode & 0o777 == 0o664


def test_a_folder_is_not_a_file_name(tmp_path):
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        files.write_json(tmp_path, {"a": 1})


def test_one_process_per_output_and_no_lock_file_left(tmp_path):
    out = tmp_path / "run.pt"
    with files.output_lock(out):
        assert (tmp_path / ".run.pt.lock").exists()
        code = ("import sys; from hvae_lite import files\n"
                "try:\n    files.output_lock(sys.argv[1]).__enter__()\n"
                "except Exception as e:\n    print(type(e).__name__, e)")
        result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.stdout.startswith(f"OutputError another process is writing {out}"), result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []
    with files.output_lock(out):  # free again
        pass


# A write larger than `ulimit -f` allows: the OS refuses it (EFBIG), and before the safe writer the
# target was left at 0 bytes, with a message that named no file.
LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from hvae_lite.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("command, name, limit", [
    (["evaluate", "{ckpt}", "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu", "--json"], "m.json", 100),
    (["sample", "{ckpt}", "--n", "4", "--device", "cpu", "--out"], "s.png", 2000),
])
def test_a_size_limit_keeps_the_previous_output(tmp_path, command, name, limit):
    ckpt = _checkpoint(tmp_path / "run.pt")
    target = tmp_path / name
    target.write_bytes(b"\x89PNG previous" if name.endswith(".png") else b'{"previous": true}')
    before = target.read_bytes()
    argv = [a.format(ckpt=ckpt) for a in command] + [str(target)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", LIMITED, str(limit), *argv], capture_output=True, text=True,
                            timeout=900, env=env)
    assert result.returncode == 1, result.stderr
    assert f"error: cannot write {target}: the file is larger than this process may write (ulimit -f) (the " \
           "previous file there is unchanged)" in result.stderr
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run.pt", name])

