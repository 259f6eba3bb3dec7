"""Building datasets: deterministic, resumable, Ray-parallel WebDataset shard writing.

Public API: :func:`build_dataset` (recipe TOML -> shards, indexes, stats,
card) and :func:`build_from_plan` (already planned specs + a synthesize
function), with :class:`OutputOptions` and :class:`BuildResult`.
"""

from __future__ import annotations

from harmbench.generate.engine import (
    MANIFEST,
    BuildMismatchError,
    BuildResult,
    build_dataset,
    build_from_plan,
    config_digest,
)
from harmbench.generate.writer import OutputOptions

__all__ = [
    "MANIFEST",
    "BuildMismatchError",
    "BuildResult",
    "OutputOptions",
    "build_dataset",
    "build_from_plan",
    "config_digest",
]
