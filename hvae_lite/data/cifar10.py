"""CIFAR-10, the python archive of its authors (50,000 / 10,000 images, 32x32 RGB), read without
running any code from its pickles."""
from __future__ import annotations

import pickle
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .download import download_files
from .split import DataSplit

CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_FILES = {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}


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


def _read_batches(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """batch name -> (uint8 (N, 3072) pixel rows, (N,) labels) of every data_batch_* and test_batch."""
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and (name.startswith("data_batch_") or name == "test_batch"):
                    batch = _ArrayUnpickler(archive.extractfile(member), encoding="bytes").load()
                    batches[name] = (np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"]))
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: not the CIFAR-10 python archive ({type(error).__name__}: {error}); "
                        "delete it and download it again") from error
    if not any(name.startswith("data_batch_") for name in batches) or "test_batch" not in batches:
        raise DataError(f"{path}: no data_batch_* or test_batch inside; delete it and download it again")
    return batches


def load_cifar10(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> DataSplit:
    """CIFAR-10: the five training batches (50,000 images) and the test batch (10,000) of the
    python archive, as (N, 3, 32, 32) float32 in [0, 1] (multiples of 1/255) with the 10 class
    labels. Downloaded once into the cache folder (170 MB; the images take 740 MB in memory).
    mirrors, checksums: None for CIFAR10_MIRRORS and CIFAR10_FILES. A file that is not the
    expected archive raises DataError."""
    checksums = CIFAR10_FILES if checksums is None else checksums
    folder = download_files(checksums, CIFAR10_MIRRORS if mirrors is None else mirrors, cache_dir,
                            what="CIFAR-10", alternative="train on MNIST (--data embedded)")
    path = folder / next(iter(checksums))
    batches = _read_batches(path)
    train_names = sorted(name for name in batches if name.startswith("data_batch_"))

    def images(pixels: np.ndarray) -> Tensor:
        # Each row: the 1024 red, then green, then blue values of a 32x32 image, row by row.
        if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path}: expected (N, 3072) pixel rows, got {pixels.shape}")
        return torch.from_numpy(pixels.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)

    train_x = np.concatenate([batches[name][0] for name in train_names])
    train_y = np.concatenate([batches[name][1] for name in train_names])
    test_x, test_y = batches["test_batch"]
    return DataSplit(images(train_x), torch.from_numpy(train_y.astype(np.int64)), images(test_x),
                     torch.from_numpy(test_y.astype(np.int64)), "cifar10")
