"""Writing result documents: strict JSON files and plain-text tables of aggregates."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from harmbench.fileio import atomic_write_bytes
from harmbench.metrics.labels import METRIC_LABELS

#: Column labels of the text tables.
LABELS = METRIC_LABELS
#: Metrics shown with four decimals (unitless, ~0–1); the others with two.
FOUR_DECIMALS = ("ssim", "fssim", "lpips", "flpips")


def write_json(doc: Any, path: str | os.PathLike) -> None:
    """Write ``doc`` as strict JSON (NaN/Infinity refused), keys in document order, atomically
    (temporary sibling, fsync, rename; parent folders created)."""
    atomic_write_bytes(path, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())


def format_value(metric: str, value: Any) -> str:
    """A mean as a table cell: ``-`` when undefined (None or nan)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if metric in FOUR_DECIMALS else f"{value:.2f}"


def format_breakdown(table: Any, metrics: Sequence[str], title: str | None = None) -> str:
    """Text table of :func:`harmbench.eval.aggregate.breakdown` rows: group (buckets as
    ``fg 0-5%``), ``N`` and each metric's mean."""
    rows = [(r["group"] if r["kind"] != "bucket" else f"fg {r['group']}%", r) for _, r in table.iterrows()]
    width = max(12, *(len(name) for name, _ in rows)) + 1 if rows else 13
    head = f"{'':<{width}}{'N':>7}" + "".join(f"{LABELS.get(m, m):>10}" for m in metrics)
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for name, r in rows:
        cells = "".join(f"{format_value(m, r.get(m)):>10}" for m in metrics)
        lines.append(f"{name:<{width}}{int(r['n']):>7}{cells}")
    return "\n".join(lines)


__all__ = ["FOUR_DECIMALS", "LABELS", "format_breakdown", "format_value", "write_json"]
