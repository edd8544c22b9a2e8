"""Distributed helpers that fall back to a single process.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them and
starts a process group (NCCL when the process has a GPU, gloo on CPU). Without them every helper answers
as the only process: rank 0 of a world of 1.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_LOCAL_RANK = "LOCAL_RANK"


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``torchrun`` or a similar launcher)."""
    return int(os.environ.get(ENV_WORLD_SIZE, "1")) > 1


def init_distributed(device: str | None = None) -> torch.device:
    """Join the process group ``torchrun`` describes (if any) and pick this process's device.

    Args:
        device: "cpu", "cuda" or None (a GPU when one is visible, else the CPU).

    Returns:
        The device this process trains on: ``cuda:LOCAL_RANK`` with NCCL, the CPU with gloo.
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but no GPU is visible")
    local_rank = int(os.environ.get(ENV_LOCAL_RANK, "0"))
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if launched_by_torchrun() and not is_distributed():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return target


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: float, device: torch.device) -> float:
    """Mean of a scalar over all processes (for logging only)."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / get_world_size()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Set every buffer of ``module`` to rank 0's values (in place)."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
