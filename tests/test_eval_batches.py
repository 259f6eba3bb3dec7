"""Worker-side batching of prepared eval items (:mod:`harmbench.eval.batches`)."""

from __future__ import annotations

import numpy as np
import torch

from harmbench.eval.batches import ID_FIELDS, BatchedItems, batch_loader


def _item(key: str, h: int, w: int, v: int) -> dict:
    return {
        "key": key,
        "subset": "s",
        "recipe": None,
        "category": None,
        "identity": False,
        "fg_ratio": 0.5,
        "composite": np.full((3, h, w), v, np.uint8),
        "target": np.full((3, h, w), v + 1, np.uint8),
        "mask": np.ones((1, h, w), np.float32),
        "error": None,
    }


class _MapData:
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _data():
    items = [_item(f"k{i}", 8 if i % 3 else 12, 10, i) for i in range(11)]
    items.insert(4, {"key": "bad", "error": {"key": "bad", "path": "x", "reason": "unreadable"}})
    return items


def test_same_size_batches_within_count_and_pixel_budget():
    batches = list(BatchedItems(_MapData(_data()), batch_size=3, max_pixels=2 * 12 * 10))
    seen = []
    for b in batches:
        if b["composite"] is None:
            continue
        n, _, h, w = b["composite"].shape
        assert n <= 3 and (h != 12 or n <= 2)  # two 12x10 images reach the pixel budget
        assert set(b["ids"]) == set(ID_FIELDS) and len(b["ids"]["key"]) == n
        for j, k in enumerate(b["ids"]["key"]):
            i = int(k[1:])
            assert (b["composite"][j] == i).all() and (b["target"][j] == i + 1).all()
        seen += b["ids"]["key"]
    assert sorted(seen) == sorted(f"k{i}" for i in range(11))
    assert [e["key"] for b in batches for e in b["errors"]] == ["bad"]
    assert all(isinstance(b["composite"], np.ndarray) for b in batches if b["composite"] is not None)


def test_loader_with_workers_splits_a_map_dataset_and_gives_tensors_when_pinning():
    keys = []
    for b in batch_loader(_MapData(_data()), 2, 4, 1 << 20):
        keys += b["ids"]["key"]
    assert sorted(keys) == sorted(f"k{i}" for i in range(11))  # each sample once across the two workers
    b = next(iter(BatchedItems(_MapData(_data()), 4, 1 << 20, as_tensors=True)))
    assert isinstance(b["composite"], torch.Tensor) and b["composite"].dtype == torch.uint8
