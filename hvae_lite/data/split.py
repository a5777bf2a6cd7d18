"""DataSplit: the images and labels of one data set, split into training and held-out parts.

All images are float32 tensors of shape (N, C, H, W) with values in [0, 1]: (N, 1, 28, 28) for
MNIST and Omniglot, (N, 3, 32, 32) for CIFAR-10 and the photo patches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..validate import IMAGE_SHAPE, check_int


@dataclass(frozen=True)
class DataSplit:
    """Images as float32 tensors (N, C, H, W) in [0, 1]; labels int64 (N,)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str  # a key of hvae_lite.data.SOURCES: "embedded", "full" (MNIST), "omniglot", "cifar10", "photos"
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


def to_split(train_x, train_y, test_x, test_y, source: str, split_seed: int | None = None) -> DataSplit:
    """uint8/float arrays of MNIST-sized images in 0..255, (N, 784) or (N, 28, 28) -> DataSplit."""
    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE)

    def labels(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    return DataSplit(images(train_x), labels(train_y), images(test_x), labels(test_y), source, split_seed)
