"""torchrun-style DDP set-up: RANK / LOCAL_RANK / WORLD_SIZE from the environment; gloo on CPU, NCCL on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, value):
        """Rank 0's value on every rank."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_gather_object(self, value):
        if not self.enabled:
            return [value]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group torchrun set up (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    return DistributedContext(rank, local_rank, world_size, torch_device)


def cleanup_distributed(completed: bool = True) -> None:
    """Leave the process group. After a normal finish every rank waits for the others first: a rank that tears
    gloo down while a peer is still in its last collective (or still writing on rank 0) can abort that peer.
    After an error there is no barrier (the other ranks may never reach it)."""
    if dist.is_available() and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()
