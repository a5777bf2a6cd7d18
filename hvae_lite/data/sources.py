"""Every data set of the kit by name, through one registry: adding a source is one entry in SOURCES."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from .cifar10 import load_cifar10
from .mnist import load_mnist
from .omniglot import load_omniglot
from .photos import load_photos
from .split import DataSplit

# name -> loader(seed, cache_dir): the seed splits the data where the source has no official split
# (the embedded digits); a source with one official split ignores it ('full' refuses another seed).
SOURCES: dict[str, Callable[[int, str | Path | None], DataSplit]] = {
    "embedded": lambda seed, cache_dir: load_mnist("embedded", seed=seed),   # 5,000 digits, no download
    "full": lambda seed, cache_dir: load_mnist("full", seed=seed, cache_dir=cache_dir),  # 70,000 digits
    "omniglot": lambda seed, cache_dir: load_omniglot(cache_dir),            # 32,415 characters, 28x28
    "cifar10": lambda seed, cache_dir: load_cifar10(cache_dir),              # 60,000 RGB images, 32x32
    "photos": lambda seed, cache_dir: load_photos(cache_dir),                # 6,812 RGB patches, 32x32, no download
}
DATA_SOURCES = tuple(SOURCES)


def load_data(source: str = "embedded", seed: int = 0, cache_dir: str | Path | None = None) -> DataSplit:
    """Any data set of the kit by name (a key of SOURCES); downloads happen once, into the cache folder."""
    if source not in SOURCES:
        raise InputError(f"unknown data source {source!r}; choose one of {DATA_SOURCES}")
    return SOURCES[source](seed, cache_dir)
