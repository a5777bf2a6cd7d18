"""The one safe writer: every file the kit writes (checkpoints, JSON, images, notebooks, HTML)
goes through `write_atomic`, and every long job that owns an output holds `output_lock`.

- Atomic: the bytes go to a temporary file in the same folder, which then replaces the target
  with one rename, so a crash, a full disk or a size limit (`ulimit -f`) never leaves a truncated
  file: the previous one stays as it was.
- Of its kind: a file is only replaced by a file of the same kind (a checkpoint by a checkpoint,
  a JSON file by a JSON file, ...) or when it is empty; `--json run.pt` can never turn a model
  into 386 bytes of JSON. Files the kit ships (the checkpoints and manifests in
  `paths.CHECKPOINT_DIR`, the package itself) are never written, except by `make checkpoints`
  (`allow_shipped=True`).
- Modes follow the umask, as a plain `open(path, "w")` would (the temporary file starts at 0600);
  a replaced file keeps its own mode.
- Every failure is one of the kit's errors that names the file and says what to do.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

from . import paths
from .errors import HVAELiteError, InputError, OutputError

__all__ = ["KINDS", "check_target", "file_kind", "is_shipped", "non_finite", "output_lock", "save_figure", "write_atomic",
           "write_json", "write_text"]

# What the kit writes, and how a file of each kind is told apart by its first bytes.
KINDS = {
    "checkpoint": "an hvae_lite checkpoint (torch zip file)",
    "json": "a JSON file",
    "manifest": "a manifest of a shipped checkpoint (JSON with a sha256)",
    "image": "an image (PNG, JPEG, PDF, SVG, ...)",
    "notebook": "a Jupyter notebook",
    "html": "an HTML page",
}
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"%PDF", b"GIF8", b"II*\x00", b"MM\x00*", b"%!PS")
_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "the file system is read-only", errno.ENAMETOOLONG: "the file name is too long",
            errno.ENOTDIR: "a part of the path is a file, not a folder"}


def reason(error: OSError) -> str:
    """An OSError in words a user can act on."""
    return _REASONS.get(error.errno, error.strerror or str(error))


def file_kind(path: str | Path) -> str:
    """The kind of an existing file, read from its content: one of KINDS, or 'empty', 'text'
    (any other text file) or 'binary' (anything else)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        try:  # torch.save writes a zip whose entries sit under one folder, with a data.pkl
            with zipfile.ZipFile(path) as archive:
                return "checkpoint" if any(n.endswith("/data.pkl") for n in archive.namelist()) else "binary"
        except (zipfile.BadZipFile, OSError):
            return "binary"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    start = text.lstrip().lower()
    if start.startswith("<svg") or (start.startswith("<?xml") and "<svg" in start):
        return "image"
    if start.startswith(("<!doctype html", "<html")):
        return "html"
    if start.startswith(("{", "[")):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return "text"
        return _json_kind(value)
    return "text"


def _json_kind(value: Any) -> str:
    if isinstance(value, dict) and "nbformat" in value and "cells" in value:
        return "notebook"
    if isinstance(value, dict) and "sha256" in value:
        return "manifest"
    return "json"


def shipped_root(path: str | Path) -> Path | None:
    """The folder of the kit's own files that holds `path` (the shipped checkpoints and manifests,
    or the package), or None."""
    resolved = Path(path).resolve()
    return next((root for root in (Path(paths.CHECKPOINT_DIR), Path(paths.PACKAGE_DIR))
                 if resolved.is_relative_to(root.resolve())), None)


def is_shipped(path: str | Path) -> bool:
    """Is `path` one of the kit's own files: the shipped checkpoints and manifests, or the package?"""
    return shipped_root(path) is not None


def check_target(path: str | Path, kind: str, *, allow_shipped: bool = False,
                 error: type[HVAELiteError] = OutputError) -> Path:
    """Refuse, before any work is done, to write `kind` at `path` when the path is a folder, a
    file the kit ships, a file of another kind, or in a folder that cannot be written."""
    if kind not in KINDS:
        raise InputError(f"unknown kind of output {kind!r}; the kinds are {sorted(KINDS)}")
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a folder; give a file name, e.g. {path / ('run.pt' if kind == 'checkpoint' else 'out')}")
    if (root := shipped_root(path)) is not None and not allow_shipped:
        raise error(f"{path} is in {root}, where the kit keeps its own files (shipped checkpoints and manifests, "
                    f"the package), which are never written (`make checkpoints` rebuilds them): choose a path "
                    "outside it")
    if path.is_file():
        try:
            found = file_kind(path)
        except OSError as failure:
            raise error(f"cannot read {path} to check what it holds: {reason(failure)}") from failure
        if found not in (kind, "empty"):
            what = KINDS.get(found, {"text": "a text file", "binary": "a binary file"}.get(found, found))
            raise error(f"{path} holds {what}, not {KINDS[kind]}; it is not replaced. Choose another file name, "
                        "or move that file away first if you really mean to replace it")
    elif path.exists() or path.is_symlink():
        raise error(f"{path} exists and is not a regular file; choose another file name")
    folder = path.parent
    while not folder.exists():  # missing folders are created: the first existing one decides
        folder = folder.parent
    if not folder.is_dir():
        raise error(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"cannot write {path}: the folder {folder} is not writable; choose another folder")
    return path


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else set and restored."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], kind: str, *, allow_shipped: bool = False,
                 error: type[HVAELiteError] = OutputError) -> Path:
    """Call `write(f)` on a temporary binary file beside `path`, then rename it onto `path`.

    Checks the target first (`check_target`). Temporary files left by earlier writes that were
    killed (`.NAME.*.tmp`) are removed. An OS error (full disk, size limit, read-only folder)
    becomes `error` naming the file; `path` is then untouched.
    """
    path = check_target(path, kind, allow_shipped=allow_shipped, error=error)
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a write that was killed
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as failure:
        kept = " (the previous file there is unchanged)" if path.exists() else ""
        raise error(f"cannot write {path}: {reason(failure)}{kept}; free some space, raise the limit or choose "
                    "a writable folder") from failure
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str, kind: str, **options: Any) -> Path:
    """`text` (UTF-8) written atomically as a file of `kind` (see write_atomic)."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data), kind, **options)


def write_json(path: str | Path, payload: Any, **options: Any) -> Path:
    """`payload` as indented JSON, atomically; a manifest when it holds a sha256. NaN and infinity
    are not JSON: they are refused with the keys that hold them, before anything is written."""
    bad = non_finite(payload)
    if bad:
        raise options.get("error", OutputError)(
            f"cannot write {path}: {', '.join(bad[:5])} {'is' if len(bad) == 1 else 'are'} not a finite number "
            "(NaN or infinity is not valid JSON); the numbers come from a broken model or input")
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    return write_text(path, text, _json_kind(payload), **options)


def non_finite(value: Any, where: str = "") -> list[str]:
    """The places (e.g. 'elbo', 'kl_per_layer[3]') that hold NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return [where or "the value"]
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [bad for i, v in enumerate(value) for bad in non_finite(v, f"{where}[{i}]")]
    return []


def save_figure(figure: Any, path: str | Path, **savefig_options: Any) -> Path:
    """A matplotlib Figure saved atomically, in the format its file name's suffix names."""
    image_format = Path(path).suffix.lstrip(".").lower()
    return write_atomic(path, lambda f: figure.savefig(f, format=image_format, **savefig_options), "image")


@contextlib.contextmanager
def output_lock(path: str | Path, error: type[HVAELiteError] = OutputError) -> Iterator[None]:
    """Hold the lock of the output `path` (a lock file `.NAME.lock` beside it, locked by the OS)
    for the duration of the block; a second process asking for the same output is refused at
    once, instead of the two writing over each other's results."""
    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path), timeout=0)
        lock.acquire()
    except Timeout:
        raise error(f"another process is writing {path} (it holds {lock_path}): wait for it to finish, stop it, "
                    "or choose another output") from None
    except OSError as failure:
        raise error(f"cannot lock {path} (lock file {lock_path}): {reason(failure)}; choose a writable folder") \
            from failure
    try:
        yield
    finally:
        lock.release()
        # The lock file goes too, so no dot-file is left beside every output. (A process that opened
        # it in the instant between the release and this line could lock a file no longer there;
        # outputs are not contended that finely.)
        lock_path.unlink(missing_ok=True)
