"""Per-thread scratch tensors reused between calls on CPU.

Re-allocating the same few-MB temporaries for every chunk of images makes the C
allocator hand their pages back to the system and fault them in again on the next
chunk, which on CPU costs about as much as the arithmetic done in them. Metric code
therefore takes its large, short-lived buffers from here: one buffer per named slot
and thread, grown when needed. Contents are undefined; a buffer is valid until the
same slot is requested again by the same thread, so callers never hand one out.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

#: Buffers larger than this (full-resolution images) are allocated normally, not kept.
MAX_BYTES = 64 * 1024 * 1024

_local = threading.local()


def scratch(slot: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    """A contiguous tensor of ``shape`` for temporary use (kept per thread on CPU)."""
    device = torch.device(device)
    numel = math.prod(shape)
    if device.type != "cpu" or numel * torch.empty((), dtype=dtype).element_size() > MAX_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)  # accelerators have caching allocators
    cache = _local.__dict__
    buf = cache.get(slot)
    if buf is None or buf.dtype != dtype or buf.numel() < numel:
        buf = cache[slot] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)


def release() -> None:
    """Drop this thread's scratch buffers (their memory goes back to the allocator)."""
    _local.__dict__.clear()


__all__ = ["MAX_BYTES", "release", "scratch"]
