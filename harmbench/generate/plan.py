"""Deterministic sharding of a recipe plan.

Specs are sorted by ``(split, key)`` and cut into consecutive shards of
``shard_size`` per split, named ``<name>-<split>-000000.tar`` … The shard
layout depends only on the specs and ``shard_size``, never on the number of
workers, so the bytes of every shard are reproducible. :func:`longest_first`
orders the shard tasks for submission; it changes when a shard is built, never
what it holds.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from harmbench.errors import ConfigError
from harmbench.recipes.base import SampleSpec

_NAME_OK = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: the specs of one shard (one Ray task)."""

    name: str  # file name of the tar, e.g. ``demo-train-000000.tar``
    split: str
    index: int  # position within its split
    specs: tuple[SampleSpec, ...]

    @property
    def stats_name(self) -> str:
        """File name of the shard's stats file (its done marker)."""
        return f"{self.name}.stats.json"


def check_name(value: str, field: str) -> str:
    """Validate a dataset or split name used inside file names (letters, digits, ``_``, ``-``)."""
    if not isinstance(value, str) or not _NAME_OK.match(value):
        raise ConfigError(field, f"{value!r} must be non-empty and use only letters, digits, '_' and '-'")
    return value


def check_specs(specs: Sequence[SampleSpec]) -> None:
    """Keys must be dot-free, slash-free and unique; raises :class:`ConfigError` otherwise."""
    seen: set[str] = set()
    for s in specs:
        if not s.key or "." in s.key or "/" in s.key or any(c.isspace() for c in s.key):
            raise ConfigError("key", f"sample key {s.key!r} must be non-empty without dots, slashes or spaces")
        if s.key in seen:
            raise ConfigError("key", f"sample key {s.key!r} appears twice in the plan")
        seen.add(s.key)
        check_name(s.split, "split")


def make_shards(specs: Iterable[SampleSpec], name: str, shard_size: int) -> list[ShardTask]:
    """Sort specs by ``(split, key)`` and cut them into shards of ``shard_size`` per split."""
    check_name(name, "name")
    if int(shard_size) < 1:
        raise ConfigError("shard_size", f"must be >= 1, got {shard_size}")
    ordered = sorted(specs, key=lambda s: (s.split, s.key))
    check_specs(ordered)
    shards: list[ShardTask] = []
    by_split: dict[str, list[SampleSpec]] = {}
    for s in ordered:
        by_split.setdefault(s.split, []).append(s)
    for split in sorted(by_split):
        items = by_split[split]
        for i in range(0, len(items), shard_size):
            idx = i // shard_size
            shards.append(ShardTask(f"{name}-{split}-{idx:06d}.tar", split, idx, tuple(items[i : i + shard_size])))
    return shards


def plan_digest(shards: Sequence[ShardTask]) -> str:
    """sha256 over the shard layout: shard names and each spec's key, recipe and seed."""
    h = hashlib.sha256()
    for t in shards:
        h.update(f"shard {t.name}\n".encode())
        for s in t.specs:
            h.update(f"{s.key}\t{s.recipe}\t{s.seed}\n".encode())
    return h.hexdigest()


def longest_first(tasks: Sequence[ShardTask], cost: Callable[[SampleSpec], float]) -> list[ShardTask]:
    """``tasks`` by descending estimated cost (the sum of ``cost(spec)`` over a shard's specs).

    Started in this order, the long shards run first and the last ones to finish are
    short, so workers end close together (longest-processing-time-first). Ties keep
    the given order. A cost that is not a finite number >= 0 is a ``ValueError``
    naming the sample key.
    """

    def total(t: ShardTask) -> float:
        s = 0.0
        for spec in t.specs:
            c = float(cost(spec))
            if not math.isfinite(c) or c < 0:
                raise ValueError(f"shard {t.name}, sample {spec.key}: estimated cost {c!r} is not a finite number >= 0")
            s += c
        return s

    totals = [total(t) for t in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -totals[i])
    return [tasks[i] for i in order]
