"""Process-group helpers: one process per GPU through ``torchrun`` (``LOCAL_RANK`` etc.)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def init_from_environment(device: str) -> str:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); returns the device to
    use (``cuda:LOCAL_RANK`` on GPUs). A single process needs no group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{local_rank}" if use_cuda else device
