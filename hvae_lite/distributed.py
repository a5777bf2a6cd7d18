"""Data-parallel training under torchrun: joining the process group, and the few collectives the
trainer needs. Without torchrun (a notebook, a plain `python -m hvae_lite train`) every function
here is a no-op for a single process, so the same trainer runs everywhere.

    torchrun --nproc_per_node=4 -m hvae_lite train --preset cifar10 --data cifar10 ...

Each process (rank) trains a replica wrapped in DistributedDataParallel, which averages the
gradients over ranks; NCCL carries them between GPUs, gloo between CPU processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank r of world_size processes (local_rank: r on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, prints and draws progress bars."""
        return self.rank == 0

    def all_true(self, flag: torch.Tensor) -> bool:
        """True when `flag` (a 0-d bool tensor) is true on every rank: all ranks then take the same branch."""
        if not self.enabled:
            return bool(flag)
        value = flag.to(torch.int32).reshape(1)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over ranks (a copy; the same shape), on the tensor's device."""
        if not self.enabled:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        objects: list[Any] = [None] * self.world_size
        dist.all_gather_object(objects, obj)
        return objects

    def from_main(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current() -> DistContext:
    """The process group this process has joined, or a single process when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init_from_environment(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, ...):
    NCCL for CUDA tensors and gloo for CPU tensors where there is a GPU, gloo alone elsewhere.
    Returns a single-process context when WORLD_SIZE is unset or 1. Training on CUDA, rank r on a
    machine uses GPU LOCAL_RANK."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistContext()
    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed: run without torchrun")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Both backends where there is a GPU: the collectives then work on tensors of either device.
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return current()


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
