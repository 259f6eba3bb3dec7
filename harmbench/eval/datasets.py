"""Datasets ``harmbench eval`` reads: built shard directories and triplet folders.

An :class:`EvalData` lists its keys in a fixed order, hashes its index (the run's data
identity) and gives a torch dataset whose items are prepared samples: composite and real
image ``uint8 (3, H, W)`` and mask ``float32 (1, H, W)`` at the profile's evaluation size,
or an error item naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harmbench.data.loader import HarmonizationShards
from harmbench.data.loader import _field as image_field
from harmbench.data.shards import ShardError, iter_tar_samples, list_tar_samples
from harmbench.errors import InputError, UserError
from harmbench.eval.score import load_sample
from harmbench.models.checkpoints import sha256_file as file_sha256

PathLike = str | os.PathLike


def _meta_fields(meta: Mapping[str, Any], default_subset: str) -> dict[str, Any]:
    recipe = meta.get("recipe")
    identity = bool(meta.get("identity") or meta.get("recipe_type") == "identical" or meta.get("method") == "identity")
    return {
        "subset": str(meta.get("subset") or recipe or default_subset),
        "recipe": None if recipe is None else str(recipe),
        "category": None if meta.get("category") is None else str(meta.get("category")),
        "identity": identity,
    }


def _to_item(key: str, ids: Mapping[str, Any], sample: Any, binary: bool = False) -> dict[str, Any]:
    """A prepared sample -> the arrays and ids the main process batches.

    Plain numpy arrays (composite/target ``uint8 (3, H, W)``, mask ``(1, H, W)``: ``uint8`` {0, 1}
    when the profile's mask is ``binary``, else ``float32`` 0–1): they travel from DataLoader
    workers as pickled bytes, cheaper than shared-memory tensors for images of this size; a binary
    mask travels in a quarter of the bytes and the main process widens it to float32.
    """
    return {
        "key": key,
        **ids,
        "fg_ratio": float(sample.fg_ratio),
        "composite": np.ascontiguousarray(sample.pred, dtype=np.uint8),
        "target": np.ascontiguousarray(sample.target, dtype=np.uint8),
        "mask": np.ascontiguousarray(sample.mask, dtype=np.uint8 if binary else np.float32),
        "error": None,
    }


def _error_item(key: str, path: str, reason: str) -> dict[str, Any]:
    return {"key": key, "error": {"key": key, "path": path, "reason": reason}}


def _member(sample: Mapping[str, Any], stem: str) -> str:
    return next((k for k in sample if k.split(".", 1)[0] == stem), stem)


def broken_entry(exc: ShardError) -> dict[str, Any]:
    """``{"shard", "member", "reason"}`` of a damaged shard, as ``run.json`` lists it."""
    return {"shard": exc.shard, "member": exc.member, "reason": exc.detail}


def prepare_shard_sample(sample: Mapping[str, Any], profile: Any, resize: str, default_subset: str) -> dict[str, Any]:
    """Decode one raw shard sample (field -> bytes) and prepare it; an error item when unusable.

    Error items name the shard and the member (``shard.tar: key.composite.jpg``).
    """
    from harmbench.imaging import read_mask, read_rgb

    key = str(sample["__key__"])
    shard = str(sample.get("__url__", "?"))
    where = f"{shard}: {key}"
    if "__error__" in sample:  # the shard broke while streaming
        exc = sample["__error__"]
        return _error_item(key, exc.shard, exc.reason)
    comp_b, real_b, mask_b = image_field(sample, "composite"), image_field(sample, "real"), sample.get("mask.png")
    if comp_b is None or real_b is None or mask_b is None:
        missing = [n for n, b in (("composite", comp_b), ("real", real_b), ("mask.png", mask_b)) if b is None]
        return _error_item(key, shard, f"sample {key}: missing field {', '.join(missing)}")
    orient = bool(getattr(profile, "exif_orientation", True))
    try:
        try:
            meta = json.loads(sample["json"]) if "json" in sample else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}.json", f"not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise InputError(f"{where}.json", "not a JSON object")
        comp = read_rgb(comp_b, f"{where}.{_member(sample, 'composite')}", orient=orient)
        real = read_rgb(real_b, f"{where}.{_member(sample, 'real')}", orient=orient)
        mask = read_mask(mask_b, f"{where}.mask.png", orient=orient)
        if not (comp.shape[:2] == real.shape[:2] == mask.shape[:2]):
            return _error_item(
                key, where, f"size mismatch: composite {comp.shape[:2]}, real {real.shape[:2]}, mask {mask.shape[:2]}"
            )
        prepared = profile.prepare(comp, real, mask, resize=resize, name=key)
    except InputError as exc:  # names the member: "shard.tar: key.composite.jpg"
        return _error_item(key, exc.path, exc.reason)
    except (UserError, ValueError, OSError) as exc:
        return _error_item(key, where, str(exc))
    return _to_item(key, _meta_fields(meta, default_subset), prepared, bool(getattr(profile, "mask_binary", False)))


class EvalData:
    """A dataset to evaluate on: its keys (in a fixed order), an identity hash and a torch dataset."""

    kind: str = ""

    def __init__(self, path: PathLike, split: str | None):
        self.path = Path(path)
        self.split = split
        self.skipped: list[dict[str, str]] = []

    def keys(self) -> list[str]:
        raise NotImplementedError

    def index_hash(self) -> str:
        raise NotImplementedError

    def torch_dataset(self, wanted: set[str], profile: Any, resize: str) -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split, "index_sha256": self.index_hash()}


class _EvalShards(HarmonizationShards):
    """Shard stream yielding prepared eval items for ``wanted`` keys only (others are not decoded)."""

    def __init__(
        self,
        shards: list[str],
        wanted: set[str],
        profile: Any,
        resize: str,
        default_subset: str,
        owner: Mapping[str, str] | None = None,
    ):
        super().__init__(shards, split=None)
        self.wanted = wanted
        self.owner = dict(owner or {})  # key -> the shard whose copy is used (a key in two shards: the first)
        self.profile = profile
        self.resize_rule = resize
        self.default_subset = default_subset

    def _samples(self, shard: str) -> Any:
        try:
            yield from iter_tar_samples(shard)
        except ShardError as exc:  # damage found while streaming: one error item, the other shards go on
            yield {"__key__": "", "__url__": shard, "__error__": exc}

    def decode(self, sample: dict[str, Any], rng: Any = None) -> dict[str, Any] | None:
        if "__error__" in sample:
            return prepare_shard_sample(sample, self.profile, self.resize_rule, self.default_subset)
        if sample["__key__"] not in self.wanted:
            return None
        if self.owner and self.owner.get(sample["__key__"]) != sample["__url__"]:
            return None
        return prepare_shard_sample(sample, self.profile, self.resize_rule, self.default_subset)


class ShardData(EvalData):
    """A built dataset: a directory of WebDataset shards (``index.json`` or ``*.tar``), or one ``.tar``."""

    kind = "shards"

    @staticmethod
    def detect(path: Path) -> bool:
        return (path.is_file() and path.suffix == ".tar") or (
            path.is_dir() and ((path / "index.json").exists() or any(path.glob("*.tar")))
        )

    def __init__(self, path: PathLike, split: str | None):
        super().__init__(path, split)
        from harmbench.data.shards import shard_files

        self.shards = shard_files(self.path, split) if self.path.is_dir() else [str(self.path)]
        self._keys: list[str] | None = None
        self._owner: dict[str, str] = {}
        self.broken: list[dict[str, Any]] = []

    def keys(self) -> list[str]:
        """Keys of every intact shard in order. A damaged shard (bad header, member cut short) is left
        out whole and listed in :attr:`broken`; a sample without a composite, real or mask, or with a
        key an earlier shard holds, is listed in :attr:`skipped`."""
        if self._keys is None:
            keys: list[str] = []
            seen: dict[str, str] = {}
            self.broken = []
            for shard in self.shards:
                try:
                    listing = list_tar_samples(shard)
                except ShardError as exc:
                    self.broken.append(broken_entry(exc))
                    continue
                for key, fields in listing:
                    missing = [
                        n
                        for n, ok in (
                            ("composite", any(f.startswith("composite.") for f in fields)),
                            ("real", any(f.startswith("real.") for f in fields)),
                            ("mask.png", "mask.png" in fields),
                        )
                        if not ok
                    ]
                    if missing:
                        self.skipped.append(
                            {
                                "key": key,
                                "path": shard,
                                "reason": (
                                    f"sample {key}: missing field {', '.join(missing)} (has {', '.join(sorted(fields))})"
                                ),
                            }
                        )
                        continue
                    if key in seen:
                        self.skipped.append(
                            {
                                "key": key,
                                "path": shard,
                                "reason": f"sample key {key!r} also in {seen[key]}; the first is kept",
                            }
                        )
                        continue
                    seen[key] = shard
                    keys.append(key)
            self._owner = seen
            if not keys:
                why = [
                    f"{b['shard']}: {b['member'] + ': ' if b.get('member') else ''}{b['reason']}" for b in self.broken
                ]
                why += [f"{s['path']}: {s['reason']}" for s in self.skipped]
                raise UserError(
                    f"{self.path}: no usable sample in {len(self.shards)} shard(s)"
                    + (f" ({len(why)} problem(s), e.g. {why[0]})" if why else "")
                )
            self._keys = keys
        return self._keys

    def describe(self) -> dict[str, Any]:
        self.keys()
        return {**super().describe(), "broken_shards": sorted(Path(b["shard"]).name for b in self.broken)}

    def index_hash(self) -> str:
        h = hashlib.sha256()
        idx = self.path / "index.json" if self.path.is_dir() else None
        if idx is not None and idx.exists():
            doc = json.loads(idx.read_text())
            rows = [r for r in doc.get("shardlist", []) if self.split is None or r.get("split") == self.split]
            h.update(json.dumps({"split": self.split, "shards": rows}, sort_keys=True).encode())
        else:
            for s in self.shards:
                h.update(Path(s).name.encode())
                h.update(file_sha256(s).encode())
        return h.hexdigest()

    def torch_dataset(self, wanted: set[str], profile: Any, resize: str) -> Any:
        self.keys()
        broken = {b["shard"] for b in self.broken}
        intact = [s for s in self.shards if s not in broken]  # a broken shard is left out whole
        return _EvalShards(
            intact, wanted, profile, resize, self.path.name if self.path.is_dir() else self.path.stem, owner=self._owner
        )


class _TripletDataset:
    """Map-style dataset over triplet records (``harmbench.eval.score.load_sample``)."""

    def __init__(self, records: Sequence[Any], profile: Any, resize: str):
        self.records = list(records)
        self.profile = profile
        self.resize = resize

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        try:
            sample = load_sample(rec, None, self.profile, self.resize)
        except InputError as exc:
            return _error_item(rec.key, exc.path, exc.reason)
        ids = {"subset": rec.subset, "recipe": None, "category": None, "identity": False}
        return _to_item(rec.key, ids, sample, bool(getattr(self.profile, "mask_binary", False)))


class TripletData(EvalData):
    """An iHarmony4 root (or one subset folder) or a flat folder of triplets."""

    kind = "triplets"

    @staticmethod
    def detect(path: Path) -> bool:
        return path.is_dir()

    def __init__(self, path: PathLike, split: str | None):
        super().__init__(path, split)
        from harmbench.sources.iharmony4 import scan_triplets

        scan = scan_triplets(self.path, split=split)
        self.records = list(scan.records)
        self.skipped = [{"key": "", "path": s.path, "reason": s.reason} for s in scan.skipped]
        if not self.records:
            detail = ""
            if scan.skipped:
                first = scan.skipped[0]
                detail = f"; {len(scan.skipped)} input(s) skipped, e.g. {first.path}: {first.reason}"
            raise UserError(f"{self.path}: no usable (composite, mask, real) triplets for split {split!r}{detail}")
        self._by_key = {r.key: r for r in self.records}

    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    def index_hash(self) -> str:
        h = hashlib.sha256()
        for r in self.records:
            for p in (r.composite_path, r.mask_path, r.real_path):
                q = Path(p)
                rel = os.path.relpath(q, self.path)
                h.update(f"{r.key}\x1f{rel}\x1f{q.stat().st_size}\n".encode())
        return h.hexdigest()

    def torch_dataset(self, wanted: set[str], profile: Any, resize: str) -> Any:
        return _TripletDataset([r for r in self.records if r.key in wanted], profile, resize)


#: Dataset kinds in detection order.
DATA_KINDS: dict[str, type[EvalData]] = {"shards": ShardData, "triplets": TripletData}


def open_data(path: PathLike, split: str | None = "test", kind: str | None = None) -> EvalData:
    """The :class:`EvalData` for ``path`` (kind detected unless given)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p}: dataset not found")
    if kind is not None:
        if kind not in DATA_KINDS:
            raise UserError(f"unknown dataset kind {kind!r}; known: {', '.join(DATA_KINDS)}")
        return DATA_KINDS[kind](p, split)
    for cls in DATA_KINDS.values():
        if cls.detect(p):  # type: ignore[attr-defined]
            return cls(p, split)
    raise UserError(f"{p}: neither a built shard directory nor a triplet folder")


__all__ = ["DATA_KINDS", "EvalData", "ShardData", "TripletData", "open_data", "prepare_shard_sample"]
