"""wids-style shard index files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WIDS_KIND = "wids-shard-index-v1"


def _entry(s: Mapping[str, Any]) -> dict[str, Any]:
    return {"url": s["shard"], "nsamples": int(s["count"]), "md5sum": s["md5sum"], "filesize": int(s["filesize"])}


def split_index(name: str, split: str, shard_stats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A plain wids shard index for one split (urls relative to the index file)."""
    rows = sorted((s for s in shard_stats if s["split"] == split), key=lambda s: s["index"])
    return {
        "__kind__": WIDS_KIND,
        "wids_version": 1,
        "name": f"{name}-{split}",
        "split": split,
        "shardlist": [_entry(s) for s in rows],
    }


def dataset_index(name: str, shard_stats: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """The dataset's ``index.json``: every shard (with its split) plus per-split shard lists."""
    rows = sorted(shard_stats, key=lambda s: (s["split"], s["index"]))
    splits: dict[str, dict[str, Any]] = {}
    for s in rows:
        sp = splits.setdefault(s["split"], {"nsamples": 0, "shardlist": []})
        sp["nsamples"] += int(s["count"])
        sp["shardlist"].append(_entry(s))
    return {
        "__kind__": WIDS_KIND,
        "wids_version": 1,
        "name": name,
        **extra,
        "nsamples": sum(int(s["count"]) for s in rows),
        "splits": splits,
        "shardlist": [{**_entry(s), "split": s["split"]} for s in rows],
    }
