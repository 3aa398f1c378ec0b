"""Data-parallel training with ``torch.distributed`` (DDP) when launched by ``torchrun``.

``torchrun --nproc_per_node K [--nnodes N ...] -m crystensor.cli.app train ...`` (or the
``crystensor`` script) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
variables; :func:`setup` then joins the process group (gloo on CPU, NCCL on GPU). Without those
variables everything runs in one process and the helpers here are no-ops.

Every rank trains on its own shard of each global batch (``DistributedSampler``), DDP averages
the gradients, and evaluation shards the graphs across ranks and gathers the predictions on
every rank (:func:`gather_arrays`), so the metrics are those of the whole split. Only rank 0
writes files.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crystensor.errors import InputError

__all__ = ["DistInfo", "barrier", "gather_arrays", "resolve_device", "setup", "shard", "teardown"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> the local GPU if there is one, else the CPU; ``"cuda"`` must exist."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA GPU is visible; use cpu")
        if device == "cuda":
            device = f"cuda:{local_rank}"
    return torch.device(device)


def setup(device: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun, and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
            log.info("rank %d of %d joined (%s on %s)", rank, world_size, backend, dev)
    return DistInfo(rank, world_size, local_rank, dev)


def teardown(info: DistInfo) -> None:
    """Leave the process group (idempotent)."""
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard(indices: np.ndarray, info: DistInfo) -> np.ndarray:
    """This rank's evaluation share of ``indices`` (every ``world_size``-th, no padding)."""
    return indices[info.rank :: info.world_size]


def gather_arrays(info: DistInfo, arrays: dict[str, Any]) -> dict[str, Any]:
    """Concatenate each rank's arrays (and lists) in rank order, on every rank."""
    if not info.distributed:
        return arrays
    import torch.distributed as dist

    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, arrays)
    out = {}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray):
            out[key] = np.concatenate([p[key] for p in parts])
        else:
            out[key] = [x for p in parts for x in p[key]]
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()
