"""From images to what a model reads: binarisation (fresh for training, fixed for evaluation) and minibatches."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import InputError
from ..validate import check_images, check_int, check_seed


def dynamic_binarize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Bernoulli(images), fresh each call: for training, where new samples act as augmentation."""
    return torch.bernoulli(images, generator=generator)


def fixed_binarize(images: Tensor, seed: int = 0) -> Tensor:
    """Bernoulli(images) from a private generator seeded with `seed`, so evaluation always sees
    the same binary pixels, whatever the global RNG state. Each pixel's draw depends on its
    position in `images`, so binarise the whole evaluation set at once. images: (B, ...) float
    pixel probabilities in [0, 1] (a tensor or a numpy array)."""
    images = check_images(images, name="images", shape=tuple(getattr(images, "shape", (0,))[1:]))
    check_seed(seed, "seed")
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
