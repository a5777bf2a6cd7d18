"""Data-parallel training under torchrun: joining the process group, and the few collectives the
trainer needs. Without torchrun (a notebook, a plain `python -m hvae_lite train`) every function
here is a no-op for a single process, so the same trainer runs everywhere.

    torchrun --nproc_per_node=4 -m hvae_lite train --preset cifar10 --data cifar10 ...

Each process (rank) trains a replica wrapped in DistributedDataParallel, which averages the
gradients over ranks; NCCL carries them between GPUs, gloo between CPU processes.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .errors import CheckpointError, InputError


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


# What torchrun sets in each process besides WORLD_SIZE (env:// rendezvous needs them all).
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _environment_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    try:
        return int(text)
    except (TypeError, ValueError):
        raise InputError(f"the environment variable {name}={text!r} is not an integer; torchrun sets it: run under "
                         "torchrun, or unset WORLD_SIZE to train in one process") from None


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
    if _environment_int("WORLD_SIZE", default=1) <= 1:
        return DistContext()
    missing = [name for name in TORCHRUN_VARIABLES if not os.environ.get(name)]
    if missing:
        raise InputError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set, but not {', '.join(missing)}: these come "
                         "from torchrun (torchrun --standalone --nproc_per_node=N -m hvae_lite train ...); run under "
                         "torchrun, or unset WORLD_SIZE to train in one process")
    rank, world_size = _environment_int("RANK"), _environment_int("WORLD_SIZE")
    _environment_int("LOCAL_RANK")
    _environment_int("MASTER_PORT")
    if not 0 <= rank < world_size:
        raise InputError(f"RANK={rank} is not a rank of WORLD_SIZE={world_size} processes; run under torchrun")
    if not dist.is_available():
        raise InputError("this PyTorch build has no torch.distributed: run without torchrun (unset WORLD_SIZE)")
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


def check_resume_world_size(recorded: int, context: DistContext, path: str | Path) -> None:
    """A run resumes under as many processes as it trained with: `--batch-size` is per process,
    so another number would change the global batch (and each rank's saved random state)."""
    if recorded != context.world_size:
        how = (f"torchrun --standalone --nproc_per_node={recorded} -m hvae_lite train --resume ..." if recorded > 1
               else "python -m hvae_lite train --resume ... (without torchrun)")
        raise CheckpointError(f"{path} was trained by {recorded} process(es) (global batch = {recorded} x --batch-size), "
                              f"but this is {context.world_size}; resume it with as many: {how}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's stop, `kill`, torchrun passing on its own SIGTERM) seen as a Ctrl-C:
    training stops cleanly, keeping its last checkpoint."""


@dataclass
class StopSignal:
    """What stopped a run early: `name` is 'SIGTERM' once one arrived (else None: Ctrl-C)."""

    name: str | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process a signal ended: 143 or 130 (Ctrl-C)."""
        return 128 + (signal.SIGTERM if self.name == "SIGTERM" else signal.SIGINT)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[StopSignal]:
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt), so the trainer stops as
    on Ctrl-C, keeping its last checkpoint, and the caller can say so. Outside the main thread
    (where Python cannot handle signals) nothing changes."""
    stop = StopSignal()

    def handler(signum: int, frame: Any) -> None:
        stop.name = signal.Signals(signum).name
        raise Terminated(stop.name)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
