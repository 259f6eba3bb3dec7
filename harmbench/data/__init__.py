"""Loading built datasets: a torch ``IterableDataset`` and a Hugging Face ``datasets`` bridge.

``HarmonizationShards`` yields ``{"key", "composite", "mask", "real", "meta"}``
with composite/real ``float32 (3, H, W)`` on 0–1 and mask ``float32 (1, H, W)``
in {0, 1}. ``load_hf(dir, split)`` returns a ``datasets.Dataset`` whose
columns are the member extensions (``composite.jpg``, ``mask.png``, …).
Heavy modules (torch, datasets) load on first use.
"""

from __future__ import annotations

from typing import Any

from harmbench.data.shards import iter_tar_samples, shard_files

__all__ = ["HarmonizationShards", "collate", "iter_tar_samples", "load_hf", "shard_files"]


def __getattr__(name: str) -> Any:
    if name in ("HarmonizationShards", "collate"):
        from harmbench.data import loader

        return getattr(loader, name)
    if name == "load_hf":
        from harmbench.data.hf import load_hf

        return load_hf
    raise AttributeError(name)
