"""MNIST: the embedded 5,000-digit subset or the official 60,000 / 10,000 split (downloaded once,
read from its IDX files)."""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ..validate import IMAGE_SHAPE
from .download import download_files
from .embedded import load_embedded_mnist
from .split import DataSplit, to_split

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
    return to_split(*arrays, "full")


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
