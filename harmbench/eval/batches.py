"""Same-size batches of prepared eval items, made inside the DataLoader workers.

Workers decode and prepare samples (:mod:`harmbench.eval.datasets`), group them by
evaluation size (:class:`~harmbench.eval.score.SizeBatcher`: at most ``batch_size``
images and ``max_pixels`` pixels N·H·W per batch) and stack each group into tensors,
so the main process receives one message per batch — composite and real
``uint8 (B, 3, H, W)``, mask ``float32 (B, 1, H, W)`` (numpy arrays; torch tensors,
pinned by the loader, when it pins for CUDA) — and runs the model and the metrics on
it without per-sample work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from harmbench.eval.score import SizeBatcher

#: per-sample id columns carried with a batch (lists, in batch order)
ID_FIELDS = ("key", "subset", "recipe", "category", "identity", "fg_ratio")


def collate(items: list[dict[str, Any]], as_tensors: bool = False) -> dict[str, Any]:
    """Stack same-size prepared items into one batch ``{"ids": {field: list}, "composite", "target", "mask", "errors"}``.

    The arrays are numpy (they travel from workers as pickled bytes, cheaper than a
    shared-memory segment per tensor at these sizes) or, with ``as_tensors``, torch
    tensors (what the loader's pinning thread pins for CUDA).
    """
    arrays = {k: np.stack([it[k] for it in items]) for k in ("composite", "target", "mask")}
    if as_tensors:
        import torch

        arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return {"ids": {f: [it[f] for it in items] for f in ID_FIELDS}, **arrays, "errors": []}


def _errors_only(errors: list[dict[str, str]]) -> dict[str, Any]:
    return {"ids": {f: [] for f in ID_FIELDS}, "composite": None, "target": None, "mask": None, "errors": errors}


class BatchedItems(IterableDataset):
    """An iterable dataset of batches over a dataset of prepared items (map-style or iterable).

    Map-style datasets are split between workers by index (``i % workers``); iterable
    ones split themselves. Items that could not be prepared travel as ``errors``.
    """

    def __init__(self, dataset: Any, batch_size: int, max_pixels: int, as_tensors: bool = False):
        self.dataset = dataset
        self.as_tensors = bool(as_tensors)
        self.batch_size = int(batch_size)
        self.max_pixels = int(max_pixels)

    def _items(self) -> Iterator[Any]:
        from torch.utils.data import get_worker_info

        if isinstance(self.dataset, IterableDataset) or not hasattr(self.dataset, "__getitem__"):
            yield from self.dataset
            return
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(wid, len(self.dataset), nw):
            yield self.dataset[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batcher = SizeBatcher(self.batch_size, self.max_pixels)
        errors: list[dict[str, str]] = []
        for item in self._items():
            if item is None:
                continue
            if item.get("error"):
                errors.append(item["error"])
                continue
            full = batcher.add(tuple(item["target"].shape[1:]), item)
            if full:
                batch = collate(full, self.as_tensors)
                batch["errors"], errors = errors, []
                yield batch
        for group in batcher.drain():
            batch = collate(group, self.as_tensors)
            batch["errors"], errors = errors, []
            yield batch
        if errors:
            yield _errors_only(errors)


def batch_loader(dataset: Any, workers: int, batch_size: int, max_pixels: int, *, pin_memory: bool = False) -> Any:
    """A DataLoader yielding :class:`BatchedItems` batches, made by ``workers`` processes (0: this one)."""
    from torch.utils.data import DataLoader

    kw: dict[str, Any] = {
        "batch_size": None,
        "num_workers": int(workers),
        "collate_fn": _as_is,
        "pin_memory": bool(pin_memory),
    }
    if workers > 0:
        kw["prefetch_factor"] = 2
        kw["persistent_workers"] = False
    return DataLoader(BatchedItems(dataset, batch_size, max_pixels, as_tensors=bool(pin_memory)), **kw)


def _as_is(item: Any) -> Any:
    return item


__all__ = ["BatchedItems", "ID_FIELDS", "batch_loader", "collate"]
