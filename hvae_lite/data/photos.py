"""Natural-image patches with no download: 32x32 colour patches cut from the photographs that
ship inside the scikit-image wheel (skimage/data/), the held-out patches from photographs never
trained on.

What it is: about 4,400 overlapping training patches from six photographs (an astronaut, a
galaxy field, a stained tissue section, a motorcycle, a retina, a rocket) and 528 held-out patches
from two others (a cat, a cup of coffee), 8-bit RGB like CIFAR-10, so the same models, likelihood
and bits/dim apply. What it is not: CIFAR-10. Eight photographs are a narrow world (a model learns
their colours and textures, not objects), neighbouring patches overlap, so held-out standard
errors that treat patches as independent are optimistic; numbers are not comparable with
published CIFAR-10 results.

The cut is exact integer arithmetic (each photograph is shrunk by an integer factor, averaging
f x f blocks with rounding), so every machine gets the same bytes: the photographs and the cut
patches are both checked against sha256 sums pinned here. The patches are cached (uint8, 15 MB)
in the download folder (`paths.download_dir`) and reused.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .. import paths
from .split import DataSplit

PATCH_SIZE = 32            # the side of a patch, as CIFAR-10's images
SHORT_SIDE = 128           # each photograph is shrunk by an integer factor to a shorter side of about this
TRAIN_STRIDE = 4           # training patches overlap heavily: shifted copies act as augmentation
TEST_STRIDE = 16           # held-out patches overlap by half
TEST_SHORT_SIDES = (128, 192)  # held-out photographs are cut at two scales (more patches, more variety)
FLAT_RANGE = 8             # a patch whose every channel spans fewer levels than this (a black sky) is dropped

# The photographs (file in skimage/data/ -> sha256 of the file as the scikit-image 0.26 wheel ships it).
# motorcycle_right.png is left out: it is the stereo twin of motorcycle_left.png, a training photograph.
# The synthetic images (logo, colour wheel, chessboards) are left out too.
TRAIN_PHOTOS = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "ihc.png": "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "retina.jpg": "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
}
TEST_PHOTOS = {
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
}
# sha256 of the cut patches (train uint8 bytes, then held-out uint8 bytes, then both label arrays as int64):
# a change of any constant above, of a photograph or of the cutting code changes it.
PATCHES_SHA256 = "75d7b2513e318614f2a3cc03da6ec04167be445fcec785bf43d3136984fd47ed"
CACHE_NAME = f"photos-{PATCH_SIZE}px-v1.npz"


def skimage_data_dir() -> Path:
    """The folder of the photographs inside the installed scikit-image (no download ever)."""
    try:
        from importlib.resources import files

        package = files("skimage")  # the installed package's folder, found without importing it
    except (ImportError, ModuleNotFoundError, TypeError) as error:
        raise DataError("the photos data set is cut from photographs that ship with scikit-image, which is not "
                        "installed: pip install 'scikit-image>=0.26' (or train on the digits: --data embedded)"
                        ) from error
    return Path(str(package)) / "data"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_photo(name: str, sha256: str, folder: Path | None = None) -> np.ndarray:
    """One photograph as uint8 (H, W, 3), verified against its sha256. Read from the file in the
    scikit-image package: never through skimage.data's fetchers, which may download."""
    from skimage.io import imread

    path = (folder or skimage_data_dir()) / name
    if not path.is_file():
        raise DataError(f"{path} is missing: this scikit-image installation does not bundle the photograph {name} "
                        "(some distributions strip the data files); install scikit-image from PyPI "
                        "(pip install --force-reinstall scikit-image) or train on the digits (--data embedded)")
    raw = path.read_bytes()
    if (got := _sha256(raw)) != sha256:
        raise DataError(f"{path} is not the photograph this data set was cut from (sha256 {got[:12]}..., expected "
                        f"{sha256[:12]}...): another scikit-image version may ship another file; install "
                        "scikit-image 0.26 or train on the digits (--data embedded)")
    image = np.asarray(imread(io.BytesIO(raw)))
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit RGB photograph, got {image.dtype} {image.shape}")
    return image[..., :3]


def shrink(image: np.ndarray, short_side: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H // f, W // f, 3), f = max(1, min(H, W) // short_side): the mean of
    each f x f block, rounded half up, in integers (the same bytes on every machine)."""
    f = max(1, min(image.shape[:2]) // short_side)
    h, w = image.shape[0] // f, image.shape[1] // f
    blocks = image[:h * f, :w * f].astype(np.int64).reshape(h, f, w, f, 3).sum(axis=(1, 3))
    return ((blocks + f * f // 2) // (f * f)).astype(np.uint8)


def cut_patches(image: np.ndarray, size: int = PATCH_SIZE, stride: int = TRAIN_STRIDE) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (N, 3, size, size): every size x size window on a grid of `stride`,
    row by row, without the flat ones (every channel spanning fewer than FLAT_RANGE levels)."""
    rows = range(0, image.shape[0] - size + 1, stride)
    cols = range(0, image.shape[1] - size + 1, stride)
    patches = np.stack([image[r:r + size, c:c + size] for r in rows for c in cols]).transpose(0, 3, 1, 2)
    spread = patches.max(axis=(2, 3)).astype(np.int64) - patches.min(axis=(2, 3))  # (N, 3)
    return np.ascontiguousarray(patches[(spread >= FLAT_RANGE).any(axis=1)])


def _cut_all(folder: Path | None = None) -> dict[str, np.ndarray]:
    """Train and held-out patches (uint8 (N, 3, 32, 32)) and labels (the photograph's index)."""
    train, train_labels = [], []
    for label, (name, sha) in enumerate(TRAIN_PHOTOS.items()):
        patches = cut_patches(shrink(read_photo(name, sha, folder), SHORT_SIDE), stride=TRAIN_STRIDE)
        train.append(patches)
        train_labels.append(np.full(len(patches), label))
    test, test_labels = [], []
    for label, (name, sha) in enumerate(TEST_PHOTOS.items(), start=len(TRAIN_PHOTOS)):
        photo = read_photo(name, sha, folder)
        for side in TEST_SHORT_SIDES:
            patches = cut_patches(shrink(photo, side), stride=TEST_STRIDE)
            test.append(patches)
            test_labels.append(np.full(len(patches), label))
    return {"train": np.concatenate(train), "train_labels": np.concatenate(train_labels).astype(np.int64),
            "test": np.concatenate(test), "test_labels": np.concatenate(test_labels).astype(np.int64)}


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in ("train", "test", "train_labels", "test_labels"):
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _write_cache(arrays: dict[str, np.ndarray], path: Path) -> None:
    """np.savez into a temporary file beside `path`, then rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached patches if the file is there and passes its checksum, else None (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in ("train", "train_labels", "test", "test_labels")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return arrays if _digest(arrays) == PATCHES_SHA256 else None


def load_photos(cache_dir: str | Path | None = None, photo_dir: str | Path | None = None) -> DataSplit:
    """The natural-image patches: (N, 3, 32, 32) float32 in [0, 1] (multiples of 1/255), labelled
    by photograph (0-5 training, 6-7 held-out). Read from the cache when it passes its checksum,
    else cut from scikit-image's photographs (checked one by one) and cached.
    photo_dir: another folder holding the photographs (tests)."""
    path = paths.download_dir(cache_dir) / CACHE_NAME
    arrays = _read_cache(path) if path.is_file() else None
    if arrays is None:
        arrays = _cut_all(Path(photo_dir) if photo_dir else None)
        if (got := _digest(arrays)) != PATCHES_SHA256:
            raise DataError(f"the patches cut from scikit-image's photographs have sha256 {got[:12]}..., expected "
                            f"{PATCHES_SHA256[:12]}...: the cutting code or its constants changed; update "
                            "PATCHES_SHA256 in hvae_lite/data/photos.py if that was meant")
        try:
            _write_cache(arrays, path)
        except OSError:
            pass  # a read-only cache folder costs a second of cutting next time, nothing else

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    return DataSplit(images(arrays["train"]), torch.from_numpy(arrays["train_labels"]), images(arrays["test"]),
                     torch.from_numpy(arrays["test_labels"]), "photos")
