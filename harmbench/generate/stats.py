"""Per-shard and whole-build statistics."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harmbench.errors import InputError

#: Foreground-ratio buckets (percent), as in iHarmony4 evaluation tables.
FG_BUCKETS: tuple[tuple[str, float, float], ...] = (("0-5", 0.0, 0.05), ("5-15", 0.05, 0.15), ("15-100", 0.15, 1.01))


def fg_bucket(ratio: float) -> str:
    """Bucket name (``0-5``, ``5-15``, ``15-100``) of a foreground ratio in [0, 1]."""
    for name, lo, hi in FG_BUCKETS:
        if lo <= ratio < hi:
            return name
    return FG_BUCKETS[-1][0]


_NUM = re.compile(r"\d+(?:\.\d+)?")


def reason_class(reason: str) -> str:
    """A skip reason without the sample it names and its numbers, for grouping.

    ``"hue: object demo_2_6: foreground ratio 0.90% outside [1%, 80%]"`` ->
    ``"foreground ratio N% outside [N%, N%]"``.
    """
    return _NUM.sub("N", str(reason).rsplit(": ", 1)[-1]).strip() or "unspecified"


def skip_record(item: Any, *, key: str | None = None, stage: str = "plan") -> dict[str, Any]:
    """Normalise a skipped input (InputError, ``(path, reason)``, dict or str) to a dict."""
    if isinstance(item, InputError):
        rec: dict[str, Any] = {"path": item.path, "reason": item.reason}
    elif isinstance(item, Mapping):
        rec = {str(k): v for k, v in item.items()}
        rec.setdefault("reason", "unspecified")
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        rec = {"path": str(item[0]), "reason": str(item[1])}
    else:
        rec = {"reason": str(item)}
    if key is not None:
        rec.setdefault("key", key)
    rec["stage"] = stage
    return rec


def _counter_add(dst: dict[str, int], src: Mapping[str, int]) -> None:
    for k, v in src.items():
        dst[k] = dst.get(k, 0) + int(v)


def _sorted(d: Mapping[str, int]) -> dict[str, int]:
    return {k: d[k] for k in sorted(d)}


class ShardCounter:
    """Counts of one shard, filled while the worker writes it."""

    def __init__(self) -> None:
        self.by_recipe: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()
        self.by_category: Counter[str] = Counter()
        self.by_fg_ratio: Counter[str] = Counter({b[0]: 0 for b in FG_BUCKETS})
        self.by_license: Counter[str] = Counter()
        self.count = 0
        self.nbytes = 0

    def add(self, recipe: str, meta: Mapping[str, Any], ratio: float, nbytes: int) -> None:
        self.count += 1
        self.nbytes += nbytes
        self.by_recipe[str(recipe)] += 1
        self.by_method[str(meta.get("method", "none"))] += 1
        self.by_category[str(meta.get("category", "unknown"))] += 1
        self.by_fg_ratio[fg_bucket(ratio)] += 1
        lic = meta.get("license")
        self.by_license[str(lic) if lic else "unknown"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sample_bytes": self.nbytes,
            "by_recipe": _sorted(self.by_recipe),
            "by_method": _sorted(self.by_method),
            "by_category": _sorted(self.by_category),
            "by_fg_ratio": {b[0]: self.by_fg_ratio[b[0]] for b in FG_BUCKETS},
            "by_license": _sorted(self.by_license),
        }


def aggregate(
    shard_stats: Sequence[Mapping[str, Any]],
    plan_skipped: Iterable[Mapping[str, Any]],
    *,
    wall_time_s: float,
    built_now: Sequence[str],
    shard_phase_s: float = 0.0,
) -> dict[str, Any]:
    """Whole-build stats from the shards' stats files.

    ``throughput_samples_per_s`` counts the samples (written or skipped) of
    shards built in this run (``built_now``) over this run's wall time
    (including Ray start-up); ``shard_phase_samples_per_s`` over the time
    the shard tasks ran. Resumed shards are excluded from both.
    """
    totals: dict[str, dict[str, int]] = {k: {} for k in ("by_recipe", "by_method", "by_category", "by_license")}
    fg = {b[0]: 0 for b in FG_BUCKETS}
    by_split: dict[str, dict[str, int]] = {}
    synth_skips: list[dict[str, Any]] = []
    count = 0
    nbytes = 0
    now = set(built_now)
    count_now = 0
    worker_s = 0.0
    nodes: Counter[str] = Counter()
    for s in shard_stats:
        count += int(s["count"])
        nbytes += int(s.get("filesize", 0))
        for k in totals:
            _counter_add(totals[k], s.get(k, {}))
        _counter_add(fg, s.get("by_fg_ratio", {}))
        sp = by_split.setdefault(s["split"], {"shards": 0, "samples": 0, "skipped": 0})
        sp["shards"] += 1
        sp["samples"] += int(s["count"])
        sp["skipped"] += len(s.get("skipped", []))
        synth_skips.extend(s.get("skipped", []))
        if s["shard"] in now:
            count_now += int(s["count"]) + len(s.get("skipped", []))
            worker_s += float(s.get("duration_s", 0.0))
            nodes[str(s.get("node", {}).get("node_id", "?"))] += 1
    plan_skips = list(plan_skipped)
    reasons: Counter[str] = Counter()
    for r in plan_skips + synth_skips:
        reasons[f"{r.get('stage', '?')}: {reason_class(r.get('reason', '?'))}"] += 1
    fg_frac = {k: (v / count if count else 0.0) for k, v in fg.items()}
    return {
        "samples": count,
        "shards": len(shard_stats),
        "bytes": nbytes,
        "splits": {k: by_split[k] for k in sorted(by_split)},
        **{k: _sorted(v) for k, v in totals.items()},
        "by_fg_ratio": fg,
        "fg_ratio_fraction": fg_frac,
        "skipped": {
            "plan": len(plan_skips),
            "synth": len(synth_skips),
            "by_reason": _sorted(reasons),
            "items": plan_skips + synth_skips,
        },
        "run": {
            "wall_time_s": round(wall_time_s, 3),
            "shards_built": len(now),
            "shards_resumed": len(shard_stats) - len(now),
            "samples_processed": count_now,
            "throughput_samples_per_s": round(count_now / wall_time_s, 3) if wall_time_s > 0 else 0.0,
            "shard_phase_s": round(shard_phase_s, 3),
            "shard_phase_samples_per_s": round(count_now / shard_phase_s, 3) if shard_phase_s > 0 else 0.0,
            "worker_time_s": round(worker_s, 3),
            "shards_by_node": _sorted(nodes),
        },
    }
