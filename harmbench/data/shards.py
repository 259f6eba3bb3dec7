"""Finding and reading shards of a built dataset (no torch needed)."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harmbench.errors import UserError

PathLike = str | os.PathLike


def shard_files(source: PathLike | Sequence[PathLike], split: str | None = None) -> list[str]:
    """Shard paths of ``split`` in a built directory (from ``index.json``, else by name), or the given list.

    ``split=None`` returns every shard of the directory.
    """
    if not isinstance(source, (str, os.PathLike)):
        return [str(p) for p in source]
    root = Path(source)
    if root.is_file():
        return [str(root)]
    idx = root / "index.json"
    if idx.exists():
        data = json.loads(idx.read_text())
        rows = data.get("shardlist", [])
        urls = [r["url"] for r in rows if split is None or r.get("split") == split]
    else:
        pattern = f"*-{split}-*.tar" if split else "*.tar"
        urls = sorted(p.name for p in root.glob(pattern))
    if not urls:
        have = sorted(json.loads(idx.read_text()).get("splits", {})) if idx.exists() else []
        raise UserError(f"{root}: no shards for split {split!r}" + (f" (splits: {', '.join(have)})" if have else ""))
    return [str(root / u) for u in urls]


def member_key(name: str) -> tuple[str, str] | None:
    """``(key, field)`` of a tar member name (``d/k.composite.jpg`` -> ``("d/k", "composite.jpg")``);
    ``None`` for a name whose basename has no dot (not a sample field)."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return None
    key, field = base.split(".", 1)
    return name[: len(name) - len(base)] + key, field


def list_tar_samples(path: PathLike) -> list[tuple[str, set[str]]]:
    """``[(key, {fields})]`` of a WebDataset tar in file order, from its headers only."""
    out: list[tuple[str, set[str]]] = []
    with tarfile.open(path, "r:") as tar:
        for m in tar.getmembers():
            parsed = member_key(m.name) if m.isfile() else None
            if parsed is None:
                continue
            key, field = parsed
            if out and out[-1][0] == key:
                out[-1][1].add(field)
            else:
                out.append((key, {field}))
    return out


def iter_tar_samples(path: PathLike, suffixes: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """Stream a WebDataset tar: ``{"__key__", "__url__", field: bytes, …}`` per sample.

    Members of a sample must be adjacent; the key is the basename up to its
    first dot and the field the rest (``k.composite.jpg`` -> ``composite.jpg``).
    With ``suffixes`` (e.g. ``("json",)``) only those fields are read; the
    others are skipped without reading their bytes.
    """
    cur: dict[str, Any] | None = None
    with tarfile.open(path, "r|") as tar:
        for m in tar:
            if not m.isfile():
                continue
            parsed = member_key(m.name)
            if parsed is None:
                continue
            key, field = parsed
            if suffixes is not None and field not in suffixes:
                data = None
            else:
                f = tar.extractfile(m)
                data = f.read() if f is not None else b""
            if cur is None or cur["__key__"] != key:
                if cur is not None:
                    yield cur
                cur = {"__key__": key, "__url__": str(path)}
            if data is not None:
                cur[field] = data
    if cur is not None:
        yield cur
