"""A torch ``IterableDataset`` over harmbench shards, built on ``webdataset``'s pipeline.

Tensors: ``composite`` and ``real`` are ``float32 (3, H, W)`` on the **0–1**
scale (RGB); ``mask`` is ``float32 (1, H, W)`` with values in **{0, 1}**
(foreground = 1, from the stored 0/255 PNG thresholded at 128). Each item is a
dict ``{"key", "composite", "mask", "real", "meta"}`` (+ ``"reference"`` when
stored and asked for).

Splitting: the data is divided between nodes (``rank``/``world_size``, taken
from ``torch.distributed`` or ``RANK``/``WORLD_SIZE`` when not given) and the
DataLoader workers of each node. With at least as many shards as
``world_size × num_workers`` each slot reads whole shards; otherwise every
slot reads all shards and keeps every n-th sample. Either way each sample is
yielded exactly once per epoch across all slots (slots may get unequal counts).

The stream is a ``webdataset.DataPipeline``: shard list → this slot's shards →
samples → ``webdataset.shuffle`` buffer → decode. Tar members are expanded into
samples by :func:`harmbench.data.shards.iter_tar_samples` rather than webdataset's
own expander, because a damaged shard must be reported with the shard and the
member (and a tar cut between two members must not pass for a shorter one),
which webdataset's expander does not tell. For random access by index see
:mod:`harmbench.data.indexed` (``wids``).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from harmbench.data.shards import PathLike, ShardError, iter_tar_samples, shard_files
from harmbench.imaging import binarize, read_mask, read_rgb

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def decode_image(data: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Encoded RGB image -> ``float32 (3, H, W)`` on 0–1 (:func:`harmbench.imaging.read_rgb`; ``name`` in errors)."""
    arr = read_rgb(data, name)
    if not arr.flags.writeable:  # a view of Pillow's buffer; torch wants memory it may write
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def decode_mask(data: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Encoded mask -> ``float32 (1, H, W)`` in {0, 1} (:func:`harmbench.imaging.read_mask`, threshold 128)."""
    arr = binarize(read_mask(data, name))
    return torch.from_numpy(arr.astype(np.float32))[None]


def _field(sample: dict[str, Any], stem: str) -> bytes | None:
    for ext in ("jpg", "png", "jpeg", "webp"):
        if f"{stem}.{ext}" in sample:
            return sample[f"{stem}.{ext}"]
    return None


def _dist_rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # noqa: BLE001
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class HarmonizationShards(IterableDataset):
    """Stream (composite, mask, real) samples from harmbench WebDataset shards.

    Args:
        source: a built dataset directory, or a list of tar paths.
        split: split to read from a directory (``None``: all).
        shuffle: shuffle buffer size in samples (0: file order); shard order is shuffled too.
        seed: base seed of shard order, buffer and random crops (combined with the epoch, see :meth:`set_epoch`).
        resize: resize every image to ``(H, W)`` (int: square); bilinear (antialiased) for images, nearest for masks.
        crop: random crop ``(H, W)`` after resizing (same window for all images of a sample; centre crop if ``shuffle`` is 0 and ``random_crop`` unset).
        random_crop: random (True) or centre (False) crop; default: random when shuffling.
        hflip: mirror each sample left-right with probability 0.5 (all its images and the mask
            together; drawn from the same seeded stream as the crops).
        transform: callable applied to each item dict last.
        with_reference: also decode ``reference.jpg`` when present.
        rank, world_size: node split (default from ``torch.distributed`` or env).
    """

    def __init__(
        self,
        source: PathLike | Sequence[PathLike],
        split: str | None = "train",
        *,
        shuffle: int = 0,
        seed: int = 0,
        resize: Size | None = None,
        crop: Size | None = None,
        random_crop: bool | None = None,
        hflip: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        with_reference: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.shards = shard_files(source, split)
        self.shuffle = int(shuffle)
        self.seed = int(seed)
        self.resize = _hw(resize) if resize is not None else None
        self.crop = _hw(crop) if crop is not None else None
        self.random_crop = bool(shuffle) if random_crop is None else bool(random_crop)
        self.hflip = bool(hflip)
        self.transform = transform
        self.with_reference = with_reference
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffling of the next iteration (call before each epoch)."""
        self.epoch = int(epoch)

    def _slot(self) -> tuple[int, int]:
        r, w = _dist_rank_world()
        rank = r if self.rank is None else self.rank
        world = w if self.world_size is None else self.world_size
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def _ordered_shards(self) -> list[str]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}:shards").shuffle(shards)
        return shards

    def _samples(self, shard: str) -> Iterator[dict[str, Any]]:
        """Raw samples of one shard (a damaged shard raises :class:`~harmbench.data.shards.ShardError`)."""
        return iter_tar_samples(shard)

    def pipeline(self, slot: int, nslots: int, rng: random.Random) -> Iterator[dict[str, Any]]:
        """The decoded items of slot ``slot`` of ``nslots`` (see the module docstring)."""
        import webdataset as wds

        shards = self._ordered_shards()
        by_shard = len(shards) >= nslots
        stages: list[Any] = [wds.SimpleShardList(shards)]
        if by_shard:
            stages.append(_every(slot, nslots))
        stages.append(self._expand)
        if not by_shard:
            stages.append(_every(slot, nslots))
        if self.shuffle > 1:
            stages.append(wds.shuffle(self.shuffle, initial=self.shuffle, rng=rng))
        stages.append(wds.map(lambda sample: self.decode(sample, rng)))
        return iter(wds.DataPipeline(*stages))

    def _expand(self, sources: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for src in sources:
            yield from self._samples(src["url"])

    def decode(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        """Raw sample (field -> bytes) -> item dict of tensors (see the module docstring)."""
        comp, real, mask = _field(sample, "composite"), _field(sample, "real"), sample.get("mask.png")
        where = f"{sample['__url__']}: {sample['__key__']}"
        if comp is None or real is None or mask is None:
            missing = [n for n, v in (("composite", comp), ("real", real), ("mask.png", mask)) if v is None]
            raise ShardError(sample["__url__"], f"missing field {', '.join(missing)}", sample["__key__"])
        try:
            meta = json.loads(sample["json"]) if "json" in sample else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ShardError(sample["__url__"], f"not JSON ({exc})", f"{sample['__key__']}.json") from exc
        item: dict[str, Any] = {
            "key": sample["__key__"],
            "composite": decode_image(comp, f"{where}.composite"),
            "mask": decode_mask(mask, f"{where}.mask.png"),
            "real": decode_image(real, f"{where}.real"),
            "meta": meta,
        }
        ref = _field(sample, "reference") if self.with_reference else None
        if ref is not None:
            item["reference"] = decode_image(ref, f"{where}.reference")
        pix = ["composite", "mask", "real"]
        if self.resize is not None:
            for k in pix:
                mode = "nearest" if k == "mask" else "bilinear"
                kw = {} if k == "mask" else {"align_corners": False, "antialias": True}
                item[k] = F.interpolate(item[k][None], size=self.resize, mode=mode, **kw)[0].clamp_(0, 1)
            if "reference" in item:
                item["reference"] = F.interpolate(
                    item["reference"][None], size=self.resize, mode="bilinear", align_corners=False, antialias=True
                )[0].clamp_(0, 1)
        if self.crop is not None:
            ch, cw = self.crop
            h, w = item["composite"].shape[-2:]
            if ch > h or cw > w:
                raise ValueError(f"crop {self.crop} is larger than image {(h, w)} of {item['key']}; add resize=")
            if self.random_crop:
                rng = rng or random.Random()
                y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
            else:
                y, x = (h - ch) // 2, (w - cw) // 2
            for k in pix:
                item[k] = item[k][:, y : y + ch, x : x + cw].contiguous()
        if self.hflip:
            rng = rng or random.Random()
            if rng.random() < 0.5:
                for k in [*pix, "reference"]:
                    if k in item:
                        item[k] = item[k].flip(-1)
        if self.transform is not None:
            item = self.transform(item)
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        slot, nslots = self._slot()
        return self.pipeline(slot, nslots, random.Random(f"{self.seed}:{self.epoch}:{slot}"))


def _every(slot: int, nslots: int) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """Pipeline stage keeping the items ``slot``, ``slot + nslots``, … of a stream."""

    def stage(items: Iterator[Any]) -> Iterator[Any]:
        for i, item in enumerate(items):
            if i % nslots == slot:
                yield item

    return stage


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn``: stacks tensors, keeps ``key`` and ``meta`` as lists (sizes must match: use resize/crop)."""
    out: dict[str, Any] = {"key": [b["key"] for b in batch], "meta": [b["meta"] for b in batch]}
    for k in batch[0]:
        if k in out:
            continue
        v = batch[0][k]
        out[k] = torch.stack([b[k] for b in batch]) if isinstance(v, torch.Tensor) else [b[k] for b in batch]
    return out
