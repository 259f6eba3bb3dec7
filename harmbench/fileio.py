"""Crash-safe file output shared by every stage.

Every file harmbench writes goes through a temporary sibling and an atomic
``os.replace``, so a killed process never leaves a half-written output that a
later run would take as finished.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike

#: Testing hook: ``before:N`` ends the process (status 99, no cleanup) just before the N-th atomic
#: rename of this process, ``after:N`` just after it — a kill at a reproducible point of any stage.
CRASH_ENV = "HARMBENCH_CRASH_AT"
_renames = 0


def _crash_point(when: str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    kind, _, n = spec.partition(":")
    if kind == when and n.isdigit() and _renames == int(n):
        os._exit(99)


def temp_path(final: PathLike) -> Path:
    """A unique temporary sibling of ``final`` (same directory, so the rename is atomic)."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def atomic_path(final: PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``final`` atomically, on error it is removed.

    For writers that need a path rather than bytes (tar streams, parquet, images)::

        with atomic_path(out) as tmp:
            table.to_parquet(tmp)
    """
    global _renames
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        yield tmp
        if fsync and tmp.exists():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _renames += 1
        _crash_point("before")
        os.replace(tmp, final)
        _crash_point("after")
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file, fsync and rename (parent folders created)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars/arrays, sets, paths and tuples."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2, strict: bool = False) -> None:
    """Write ``obj`` as JSON with sorted keys, atomically.

    ``strict=True`` refuses NaN/Infinity (they are not JSON); callers that want
    them as ``null`` convert them first.
    """
    text = json.dumps(
        obj, sort_keys=True, indent=indent, ensure_ascii=False, default=json_default, allow_nan=not strict
    )
    atomic_write_bytes(path, (text + "\n").encode())


def json_safe(obj: Any) -> Any:
    """Non-finite floats -> None, tuples -> lists, numpy scalars -> Python (recursively)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "json_default", "json_safe", "temp_path"]
