"""Omniglot in the 28x28 form and split of the IWAE and Ladder VAE papers (24,345 / 8,070 images)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .download import download_files
from .split import DataSplit

OMNIGLOT_MIRRORS = (
    "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/",
    "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/",
)
# The md5 was taken from another project that pins this file; it could not be checked here (no network).
OMNIGLOT_FILES = {"chardata.mat": "21ecaf34373511aa7691cf2e0802aa3d"}


def load_omniglot(
    cache_dir: str | Path | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> DataSplit:
    """Omniglot as the IWAE and Ladder VAE papers use it: `chardata.mat` of the IWAE repository,
    24,345 training and 8,070 test images (N, 1, 28, 28) of grey levels in [0, 1] (binarise them
    like MNIST), labelled by alphabet (50 classes). Downloaded once into the cache folder.
    mirrors, checksums: None for OMNIGLOT_MIRRORS and OMNIGLOT_FILES. A file that is not the
    expected one raises DataError."""
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
        raise DataError(f"{path}: not the Omniglot chardata.mat ({type(error).__name__}: {error}); "
                        "delete it and download it again") from error

    def images(columns: np.ndarray) -> Tensor:
        # (784, N) columns, each image stored column-major (MATLAB): transpose each back.
        if columns.ndim != 2 or columns.shape[0] != 28 * 28:
            raise DataError(f"{path}: expected images as (784, N) columns, got {columns.shape}")
        array = np.ascontiguousarray(columns.T.reshape(-1, 28, 28).transpose(0, 2, 1), dtype=np.float32)
        return torch.from_numpy(array).unsqueeze(1)

    def labels(one_hot: np.ndarray, n: int) -> Tensor:
        if one_hot.shape[1:] != (n,):
            raise DataError(f"{path}: expected one-hot alphabet labels (50, {n}), got {one_hot.shape}")
        return torch.from_numpy(one_hot.argmax(0).astype(np.int64))

    train, test = images(parts[0]), images(parts[2])
    return DataSplit(train.clamp(0, 1), labels(parts[1], len(train)), test.clamp(0, 1),
                     labels(parts[3], len(test)), "omniglot")
