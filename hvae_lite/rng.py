"""Seeded blocks that leave the caller's random state alone."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with the global RNG seeded to `seed`, restoring the caller's RNG afterwards,
    so the same controls always give the same figure. seed=None: leave the RNG alone."""
    if seed is None:
        yield
        return
    device = torch.device(device)
    accelerator = [] if device.type == "cpu" else [device]
    with torch.random.fork_rng(devices=accelerator, device_type=device.type if accelerator else "cuda"):
        torch.manual_seed(seed)
        yield
