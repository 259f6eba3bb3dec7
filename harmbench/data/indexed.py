"""Random access to a built dataset's samples by index, through ``wids`` and the dataset's ``index.json``.

``index.json`` is a wids shard index (``"__kind__": "wids-shard-index-v1"``: every shard's ``url``
relative to the folder, its ``nsamples``, plus harmbench's ``split``, ``filesize`` and ``md5sum``), so
``wids.ShardListDataset`` reads it as it is; this module selects one split and decodes the samples
exactly as :class:`harmbench.data.loader.HarmonizationShards` does (same tensors, same ranges).

Use it where the order of access matters: a ``DistributedSampler`` or any torch sampler, a
shuffled map-style ``DataLoader``, or looking up one sample::

    ds = IndexedShards("shards/labelme-outdoor", split="train", resize=256)
    item = ds[17]                       # {"key", "composite", "mask", "real", "meta"}
    ds.index_of("hcoco-000123-0")       # -> 17

The shard files are opened in place (no copy is made) and kept open in a small LRU cache.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from harmbench.data.loader import HarmonizationShards, Size
from harmbench.data.shards import PathLike, ShardError
from harmbench.errors import UserError


def _in_place(url: str) -> str:
    """wids ``localname``: a local shard is read where it lies."""
    return url


class IndexedShards(Dataset):
    """Map-style dataset over the samples of ``split`` in a built dataset folder (``None``: every split).

    Items are the dicts of :class:`~harmbench.data.loader.HarmonizationShards` (``composite``/``real``
    ``float32 (3, H, W)`` on 0–1, ``mask`` ``float32 (1, H, W)`` in {0, 1}, ``key``, ``meta``); ``resize``,
    ``crop`` (centre crop unless ``random_crop``), ``hflip``, ``transform`` and ``with_reference`` as there.
    """

    def __init__(
        self,
        root: PathLike,
        split: str | None = "train",
        *,
        resize: Size | None = None,
        crop: Size | None = None,
        random_crop: bool = False,
        hflip: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        with_reference: bool = False,
        lru_size: int = 10,
    ):
        import wids

        self.root = Path(root)
        index = self.root / "index.json"
        if not index.is_file():
            raise UserError(f"{self.root}: no index.json (random access needs a dataset built by harmbench build)")
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
            rows = [r for r in doc["shardlist"] if split is None or r.get("split") == split]
            shards = [{"url": str(self.root / r["url"]), "nsamples": int(r["nsamples"])} for r in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{index}: not a shard index ({type(exc).__name__}: {exc})") from None
        shards = [s for s in shards if s["nsamples"] > 0]
        if not shards:
            raise UserError(f"{self.root}: no samples for split {split!r}")
        missing = [s["url"] for s in shards if not os.path.isfile(s["url"])]
        if missing:
            raise UserError(f"{self.root}: shard file(s) listed in index.json are missing: {', '.join(missing[:3])}")
        self.split = split
        self.shards = shards
        # wids announces every dataset it opens on stderr; that line is noise inside harmbench
        with contextlib.redirect_stderr(io.StringIO()):
            self._ds = wids.ShardListDataset(
                shards,
                transformations=[],
                localname=_in_place,
                keep=True,
                lru_size=lru_size,
                dataset_name=f"harmbench:{self.root}:{split}",
            )
        self._decoder = HarmonizationShards(
            [s["url"] for s in shards],
            split=None,
            resize=resize,
            crop=crop,
            random_crop=random_crop,
            hflip=hflip,
            transform=transform,
            with_reference=with_reference,
        )
        self._keys: list[str] | None = None

    def __len__(self) -> int:
        return int(self._ds.total_length)

    def raw(self, index: int) -> dict[str, Any]:
        """Sample ``index`` as stored: ``{"__key__", "__url__", field: bytes, …}`` (fields as in the tar)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        try:
            sample = self._ds[index]
        except (OSError, ValueError, AssertionError, EOFError) as exc:
            raise ShardError(
                self._shard_of(index), f"cannot read sample {index} ({type(exc).__name__}: {exc})"
            ) from exc
        out: dict[str, Any] = {"__key__": sample["__key__"], "__url__": sample["__shard__"]}
        for k, v in sample.items():
            if k.startswith("."):
                out[k[1:]] = v.getvalue() if isinstance(v, io.BytesIO) else bytes(v)
        return out

    def _shard_of(self, index: int) -> str:
        total = 0
        for s in self.shards:
            total += s["nsamples"]
            if index < total:
                return s["url"]
        return self.shards[-1]["url"]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._decoder.decode(self.raw(index))

    def keys(self) -> Sequence[str]:
        """Every sample's key, in index order (reads each tar's headers once)."""
        if self._keys is None:
            from harmbench.data.shards import list_tar_samples

            self._keys = [k for s in self.shards for k, _ in list_tar_samples(s["url"])]
        return self._keys

    def index_of(self, key: str) -> int:
        """The index of the sample with ``key`` (``KeyError`` when absent)."""
        try:
            return list(self.keys()).index(key)
        except ValueError:
            raise KeyError(f"{self.root}: no sample {key!r} in split {self.split!r}") from None


__all__ = ["IndexedShards"]
