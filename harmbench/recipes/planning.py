"""Planning: a validated :class:`BuildConfig` -> a sorted list of :class:`SampleSpec`.

Runs on the driver. Sources are loaded once each, recipes turn records into
specs, inputs rejected at plan time are collected as ``{"path", "reason"}``.
Everything is deterministic given the config: no wall clock, no set order,
no worker count involved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harmbench.errors import ConfigError
from harmbench.recipes.base import SampleSpec
from harmbench.recipes.config import BuildConfig, RecipeConfig
from harmbench.recipes.registry import get_recipe
from harmbench.recipes.splits import assign_split


@dataclass
class Plan:
    """The planned dataset.

    Attributes:
        specs: samples sorted by ``(split, key)``.
        skipped: inputs rejected at plan time, ``{"path": ..., "reason": ...}``.
        counts: ``{"total", "by_split", "by_recipe", "by_recipe_split", "skipped"}``.
    """

    specs: list[SampleSpec]
    skipped: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


def _unpack_source_result(result: Any) -> tuple[list, list[dict[str, str]]]:
    """Accept what a source returns: a list of records, ``(records, skipped)``, or an object with ``.records``/``.skipped``."""
    skipped: list[dict[str, str]] = []
    if hasattr(result, "records"):
        records = list(result.records)
        skipped = list(getattr(result, "skipped", []) or [])
    elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], list):
        records, skipped = list(result[0]), list(result[1])
    else:
        records = list(result)
        skipped = list(getattr(result, "skipped", []) or [])
    norm = []
    for s in skipped:
        if isinstance(s, dict):
            norm.append({"path": str(s.get("path", "")), "reason": str(s.get("reason", ""))})
        elif hasattr(s, "path") and hasattr(s, "reason"):
            norm.append({"path": str(s.path), "reason": str(s.reason)})
        elif isinstance(s, tuple | list) and len(s) == 2:
            norm.append({"path": str(s[0]), "reason": str(s[1])})
        else:
            norm.append({"path": "", "reason": str(s)})
    return records, norm


class PlanContext:
    """What recipes see while planning: the config, split assignment and the skip log."""

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        self.skipped: list[dict[str, str]] = []
        self._records: dict[str, list] = {}

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def skip(self, path: str, reason: str) -> None:
        """Record an input rejected at plan time."""
        self.skipped.append({"path": str(path), "reason": reason})

    def split_of(self, source: str, image_id: str, image_path: str | None = None) -> str | None:
        """``train``/``test`` for an image (None: left out by explicit lists)."""
        return assign_split(self.cfg.split, self.cfg.seed, source, image_id, image_path)

    def records(self, source_name: str) -> list:
        """The records of ``[sources.<source_name>]``, loaded once per plan."""
        if source_name not in self._records:
            from harmbench.sources import get_source

            sc = self.cfg.sources[source_name]
            records, skipped = _unpack_source_result(get_source(sc.type)(**sc.options))
            records.sort(key=lambda r: r.key)
            self.skipped.extend(skipped)
            self._records[source_name] = records
        return self._records[source_name]

    def common_inputs(self, rc: RecipeConfig) -> dict[str, Any]:
        """Inputs every spec of recipe ``rc`` carries to the worker (workers never see the config)."""
        out = self.cfg.output
        return {
            "name": rc.name,
            "source_name": rc.source,
            "global_seed": self.cfg.seed,
            "max_side": out.max_side,
            "store_reference": out.store_reference,
            "min_fmse": rc.filters.min_fmse,
            "max_attempts": rc.filters.max_attempts,
        }


def subsample(specs: Sequence[SampleSpec], n: int | None) -> list[SampleSpec]:
    """A deterministic pseudo-random subset of ``n`` specs (the smallest per-sample seeds), order kept."""
    if n is None or len(specs) <= n:
        return list(specs)
    keep = {s.key for s in sorted(specs, key=lambda s: (s.seed, s.key))[:n]}
    return [s for s in specs if s.key in keep]


def _counts(specs: Iterable[SampleSpec], names: dict[str, str], skipped: int) -> dict[str, Any]:
    by_split: Counter = Counter()
    by_recipe: Counter = Counter()
    by_both: Counter = Counter()
    total = 0
    for s in specs:
        name = names.get(s.key, s.recipe)
        by_split[s.split] += 1
        by_recipe[name] += 1
        by_both[f"{name}/{s.split}"] += 1
        total += 1
    return {
        "total": total,
        "by_split": dict(sorted(by_split.items())),
        "by_recipe": dict(sorted(by_recipe.items())),
        "by_recipe_split": dict(sorted(by_both.items())),
        "skipped": skipped,
    }


def plan_dataset(cfg: BuildConfig, max_samples: int | None = None) -> Plan:
    """Plan every recipe of ``cfg``.

    Args:
        cfg: a config from :func:`load_build_config`.
        max_samples: keep at most this many samples overall (a deterministic
            pseudo-random subset, so small trial builds still mix recipes and splits).

    Returns:
        :class:`Plan` with specs sorted by ``(split, key)``.
    """
    ctx = PlanContext(cfg)
    specs: list[SampleSpec] = []
    names: dict[str, str] = {}
    seen: set[str] = set()
    for rc in cfg.recipes:
        recipe = get_recipe(rc.type)
        records = ctx.records(rc.source)
        wrong = [r for r in records if _kind(r) != recipe.record_kind]
        if wrong:
            raise ConfigError(
                f"{rc.where}.source",
                f"recipe {rc.type!r} needs {recipe.record_kind} records but source {rc.source!r} "
                f"yields {_kind(wrong[0])} records",
                path=cfg.path,
            )
        planned = subsample(recipe.plan(ctx, rc, records), rc.max_samples)
        for s in planned:
            if s.key in seen:
                ctx.skip(s.key, f"duplicate sample key {s.key!r} (recipe {rc.name})")
                continue
            seen.add(s.key)
            names[s.key] = rc.name
            specs.append(s)
    specs = subsample(specs, max_samples)
    specs.sort(key=lambda s: (s.split, s.key))
    return Plan(specs=specs, skipped=ctx.skipped, counts=_counts(specs, names, len(ctx.skipped)))


def _kind(record: Any) -> str:
    from harmbench.sources.base import ObjectRecord, TripletRecord

    if isinstance(record, ObjectRecord):
        return "object"
    if isinstance(record, TripletRecord):
        return "triplet"
    return type(record).__name__
