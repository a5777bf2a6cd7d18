"""Downloads: files fetched from mirrors into one cache folder, each verified by its md5.

The cache folder is `hvae_lite.paths.download_dir()`: the argument, else $HVAE_LITE_DATA, else
`data/mnist/` beside a clone or the user's cache folder for an installed package.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import paths
from ..errors import DataDownloadError, DataError

CACHE_DIR_ENV = paths.DOWNLOAD_DIR_ENV


def md5_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _fetch_verified(url: str, target: Path, md5: str, timeout: float) -> None:
    """Download url next to target, check its md5, then move it into place.
    The temp file lives in the same folder so os.replace is atomic; it is always removed on failure."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "hvae_lite"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        got = md5_of(tmp)
        if got != md5:
            raise DataError(f"checksum mismatch (md5 {got}, expected {md5})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# URLError, HTTPError and timeouts are OSErrors; a dropped connection can be an HTTPException;
# a bad checksum (DataError) or URL is a ValueError.
_FETCH_ERRORS = (OSError, http.client.HTTPException, ValueError)


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"offline or unreachable ({error.reason})"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _fetch_one(target: Path, md5: str, mirrors: Sequence[str], timeout: float) -> list[str] | None:
    """Put one verified file at `target`; None when it is there, else what each attempt answered."""
    attempts = []
    foreign = target.exists() and md5_of(target) != md5
    if target.exists() and not foreign:
        return None
    if foreign:  # a file someone put there: kept unless a verified copy replaces it
        attempts.append(f"  {target} is there but its md5 is {md5_of(target)}, not the expected one")
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + target.name
        try:
            _fetch_verified(url, target, md5, timeout)
            if foreign:
                warnings.warn(f"{target} failed its checksum and was replaced by a verified download")
            return None
        except _FETCH_ERRORS as error:
            attempts.append(f"  {url}: {_describe_failure(error)}")
    return attempts


def download_files(
    checksums: Mapping[str, str],
    mirrors: Sequence[str],
    cache_dir: str | Path | None = None,
    timeout: float = 30.0,
    what: str = "MNIST",
    alternative: str = "use the embedded data: load_mnist('embedded')",
) -> Path:
    """Make sure every file in `checksums` (filename -> md5) is in the cache folder, verified.

    A cached file whose md5 matches is reused without touching the network; one that does not
    match is replaced only by a verified download (with a warning), never deleted otherwise.
    Mirrors (base URLs) are tried in order. Returns the cache folder. Raises DataDownloadError
    listing every file still missing, each mirror tried and what it answered, and what to do
    (`what` names the data set, `alternative` says what works offline).
    """
    folder = paths.download_dir(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataDownloadError(f"cannot create the data folder {folder} ({error.strerror}); "
                                f"choose another with cache_dir or ${CACHE_DIR_ENV}") from error
    missing = []  # (filename, md5, what was tried) of every file not in place at the end
    for filename, md5 in checksums.items():
        attempts = _fetch_one(folder / filename, md5, mirrors, timeout)
        if attempts is not None:
            missing.append((filename, md5, attempts))
    if missing:
        lines = []
        for filename, md5, attempts in missing:
            lines.append(f"- {filename} (expected md5 {md5}); tried:")
            lines.extend(attempts or ["  no mirrors were given"])
        raise DataDownloadError(
            f"Could not get {len(missing)} of the {len(checksums)} {what} files into {folder}:\n"
            + "\n".join(lines)
            + "\nNo file you placed there was deleted. To fix: check your network connection and try again; "
            f"or download the files listed above by hand and place them, unchanged, in {folder}; "
            f"or {alternative}."
        )
    return folder
