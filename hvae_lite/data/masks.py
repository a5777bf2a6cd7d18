"""Occlusion masks: which pixels of an image are observed (1) and which are missing (0).

Masks are float32 (N, 1, H, W) on the CPU, one per image for all its colour channels.
Training draws fresh masks from the trainer's generator (`random_occlusion_mask`); evaluation
draws them once per image from a seed (`heldout_masks`), so an image keeps its mask whatever
the batch size, the number of images scored or the caller's random state.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..validate import check_float, check_int

MASK_KINDS = ("center", "top", "bottom", "left", "right", "squares", "pixels")


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


def _image_generator(seed: int, index: int) -> torch.Generator:
    """A generator of its own for image `index` under `seed` (numpy's SeedSequence mixes the pair)."""
    state = np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def heldout_masks(n_images: int, image_size: int = 28, seed: int = 0, kind: str | None = None) -> Tensor:
    """float32 (N, 1, H, W) masks for a held-out set, drawn once per image: image i's mask comes
    from a generator seeded with (seed, i) alone, so it is the same for any N, any batch size and
    any caller's random state. kind=None: each image's kind is drawn uniformly from MASK_KINDS
    (as in training); else every image gets that kind. Slice the result per batch."""
    check_int(n_images, "n_images", minimum=1)
    check_int(seed, "seed", minimum=0)
    if kind is not None and kind not in MASK_KINDS:
        raise InputError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS} or None (a random kind per image)")
    masks = torch.empty(n_images, 1, image_size, image_size)
    for i in range(n_images):
        generator = _image_generator(seed, i)
        image_kind = kind or MASK_KINDS[int(torch.randint(len(MASK_KINDS), (1,), generator=generator))]
        masks[i] = occlusion_mask(image_kind, 1, image_size, generator)[0]
    return masks
