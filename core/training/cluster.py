"""Where a run computes: its device, its precision, and its place in a data-parallel run.

Alone, a run takes CUDA when there is one, else every CPU core it may use. Under
``torchrun`` (``WORLD_SIZE`` > 1) each process joins the process group (NCCL on GPUs,
gloo on CPUs) and :class:`Cluster` is how the loop shares work out and agrees on
decisions: every process takes the same branch, so no collective is left waiting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.models.text import native_bfloat16, usable_cpus


def pick_device(spec: str = "auto", threads: int | None = None) -> torch.device:
    """CUDA when asked for or available (``auto``), else the CPU with every core this
    process may use (:func:`core.models.text.usable_cpus`), or ``threads`` of them."""
    if spec not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {spec!r}: choose auto, cpu or cuda")
    if spec == "cuda" or (spec == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")
        return torch.device("cuda")
    torch.set_num_threads(threads or usable_cpus())
    return torch.device("cpu")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a data-parallel run (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This process's rows of a batch of ``n``: every ``world``-th from ``rank``."""
        return slice(self.rank, n, self.world)

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true on any process (so that every process takes the same branch)."""
        if self.world == 1:
            return list(flags)
        values = torch.tensor([float(f) for f in flags])
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v) for v in values]

    def max(self, *values: float) -> list[float]:
        """Maxima of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        values = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values.tolist()

    def total(self, *values: float) -> list[float]:
        """Sums of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed)
        return summed.tolist()

    def parallel(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` as this process trains it: wrapped in DistributedDataParallel when
        there are several processes (which hands rank 0's weights to every rank)."""
        if self.world == 1:
            return module
        return DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # the only buffers (text vectors, masks) are constant
        )


def join_cluster(spec: str = "auto") -> tuple[Cluster, torch.device]:
    """The cluster and device of this process.

    Alone, that is :func:`pick_device`. Started by ``torchrun`` (``WORLD_SIZE`` > 1),
    it joins the process group (NCCL on GPUs, gloo on CPUs) and takes GPU
    ``LOCAL_RANK``, or its share of the CPU cores.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Cluster(), pick_device(spec)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = spec == "cuda" or (spec == "auto" and torch.cuda.is_available())
    if cuda:
        pick_device("cuda")  # checks that there is one
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = pick_device("cpu", max(1, usable_cpus() // local_world))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Cluster(dist.get_rank(), dist.get_world_size()), device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16`` for a run's ``precision`` setting on ``device``.

    ``auto`` takes bfloat16 where the hardware computes it natively (CUDA, or a CPU with
    AVX512-BF16 or AMX-BF16: there a matrix product runs about 2.7 times faster than
    in float32, BENCHMARKS.md "bfloat16 on the CPU"); elsewhere oneDNN would emulate it,
    no faster than float32.
    """
    if precision != "auto":
        return precision
    return "bfloat16" if device.type == "cuda" or native_bfloat16() else "float32"


def autocast(device: torch.device, precision: str):
    """The training step's mixed precision (bfloat16 products, float32 weights)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
