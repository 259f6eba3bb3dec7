"""The on-disk format of one evaluation run (one model × one dataset × one profile).

Layout of ``RUN_DIR``::

    config.json            what the run is (model, weights hash, data hash, profile, resize, …);
                           written first, checked on every resume: a different one is an error
    parts/part-000000.parquet   per-sample rows, one file per finished chunk (written atomically)
    parts/skipped-000000.json   samples of that chunk that could not be used (path/key, reason)
    sessions.jsonl         one line per invocation (start, wall time, samples, device)
    previews/<key>.<what>.png   composite / output / real / mask at evaluation size for a few keys
    samples.parquet        all rows sorted by key (written when every sample is done)
    run.json               provenance and summary (written last: its presence = finished run)

A run interrupted at any point resumes from its parts: finished keys are
skipped, and a chunk is either completely on disk or not at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harmbench.errors import UserError
from harmbench.fileio import atomic_path, atomic_write_json, json_safe

FORMAT_VERSION = 1
CONFIG = "config.json"
RUN = "run.json"
SAMPLES = "samples.parquet"
SESSIONS = "sessions.jsonl"
PARTS = "parts"
PREVIEWS = "previews"

#: Columns every samples table starts with, in order (metrics and timing follow).
ID_COLUMNS = ("key", "subset", "recipe", "category", "identity", "fg_ratio", "height", "width")
#: Fields of ``config.json`` that must match for two invocations to share a run directory.
FINGERPRINT_FIELDS = ("format", "profile", "resize", "pred_8bit", "lpips", "seed", "model", "data", "harmony")


class RunMismatchError(UserError):
    """``RUN_DIR`` holds (part of) a run made with a different model, dataset or protocol."""


def write_json_atomic(path: Path, doc: Any) -> None:
    """Strict JSON (nan refused), sorted keys, written through a temp file (fsync, rename)."""
    atomic_write_json(path, doc, strict=True)


def _describe_difference(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str | None:
    """First differing field (dotted path) with both values, or None when equal.

    Keys are checked in ``new``'s order, a nested ``name`` first (so a profile is named, not its first field).
    """
    keys = list(new) + [k for k in old if k not in new]
    if "name" in keys:
        keys.insert(0, keys.pop(keys.index("name")))
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            d = _describe_difference(a, b, f"{prefix}{k}.")
            if d:
                return d
        elif a != b:
            return f"{prefix}{k}: existing {str(a)[:80]!r} vs requested {str(b)[:80]!r}"
    return None


class RunStore:
    """Reads and writes one run directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def run_path(self) -> Path:
        return self.root / RUN

    @property
    def samples_path(self) -> Path:
        return self.root / SAMPLES

    @property
    def parts_dir(self) -> Path:
        return self.root / PARTS

    @property
    def previews_dir(self) -> Path:
        return self.root / PREVIEWS

    def is_finished(self) -> bool:
        """``run.json`` and ``samples.parquet`` both present."""
        return self.run_path.exists() and self.samples_path.exists()

    # -- config --------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        if not self.config_path.exists():
            return None
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunMismatchError(
                f"{self.config_path}: unreadable run config ({exc}); remove {self.root} or use --restart"
            ) from exc

    def open(self, config: Mapping[str, Any], restart: bool = False) -> None:
        """Start or resume: write ``config.json`` or check that the existing one matches.

        Raises :class:`RunMismatchError` naming the first differing field when the
        directory holds a run with another model / data / profile / resize / seed.
        ``restart`` discards whatever the directory holds.
        """
        fp = {k: config.get(k) for k in FINGERPRINT_FIELDS}
        old = self.read_config()
        if restart:
            self.clear()
            old = None
        if old is None and (self.samples_path.exists() or any(self.parts_dir.glob("part-*.parquet"))):
            raise RunMismatchError(f"{self.root} holds samples but no {CONFIG}; use another --out or --restart")
        if old is not None:
            old_fp = {k: old.get(k) for k in FINGERPRINT_FIELDS}
            diff = _describe_difference(json_safe(old_fp), json_safe(fp))
            if diff:
                state = "a finished" if self.is_finished() else "a partial"
                raise RunMismatchError(
                    f"{self.root} holds {state} run that differs from this one ({diff}); results are never mixed — "
                    "use another --out, or --restart to discard it"
                )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, json_safe(dict(config)))

    def clear(self) -> None:
        """Remove every file this format writes (nothing else)."""
        for p in (self.config_path, self.run_path, self.samples_path, self.root / SESSIONS):
            p.unlink(missing_ok=True)
        for d in (self.parts_dir, self.previews_dir):
            if d.is_dir():
                for f in d.iterdir():
                    if f.is_file():
                        f.unlink()
                d.rmdir()

    # -- parts ---------------------------------------------------------------------------------
    def part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def _next_index(self) -> int:
        nums = [int(p.stem.split("-")[1]) for p in self.parts_dir.glob("*-*.*") if p.stem.split("-")[1].isdigit()]
        return max(nums, default=-1) + 1

    def write_part(self, rows: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, str]] = ()) -> Path | None:
        """Write a chunk of finished rows (and its skips) atomically; returns the part path."""
        if not rows and not skipped:
            return None
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        i = self._next_index()
        path = self.parts_dir / f"part-{i:06d}.parquet"
        if skipped:
            write_json_atomic(self.parts_dir / f"skipped-{i:06d}.json", [dict(s) for s in skipped])
        if rows:
            with atomic_path(path, fsync=False) as tmp:
                pd.DataFrame(list(rows)).to_parquet(tmp, index=False)
            return path
        return None

    def read_parts(self) -> pd.DataFrame:
        """Every row written so far (unsorted); empty frame when none."""
        files = self.part_files()
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def done_keys(self) -> set[str]:
        files = self.part_files()
        keys: set[str] = set()
        for f in files:
            keys.update(pd.read_parquet(f, columns=["key"])["key"].astype(str))
        return keys

    def skipped(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for f in sorted(self.parts_dir.glob("skipped-*.json")):
            out.extend(json.loads(f.read_text()))
        seen, uniq = set(), []
        for s in out:
            k = (s.get("key"), s.get("path"), s.get("reason"))
            if k not in seen:
                seen.add(k)
                uniq.append(s)
        return uniq

    # -- sessions ------------------------------------------------------------------------------
    def add_session(self, record: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / SESSIONS, "a", encoding="utf-8") as f:
            f.write(json.dumps(json_safe(dict(record)), sort_keys=True) + "\n")

    def sessions(self) -> list[dict[str, Any]]:
        p = self.root / SESSIONS
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    # -- finishing -----------------------------------------------------------------------------
    def merge_parts(self, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """Merge the parts into ``samples.parquet`` (sorted by key, ``columns`` first); returns the table."""
        df = self.read_parts()
        if len(df):
            df = df.drop_duplicates("key", keep="last").sort_values("key", kind="stable").reset_index(drop=True)
        if columns is not None:
            cols = list(columns)
            df = df[[c for c in cols if c in df.columns] + [c for c in df.columns if c not in set(cols)]]
        with atomic_path(self.samples_path, fsync=False) as tmp:
            df.to_parquet(tmp, index=False)
        return df

    def write_run(self, run_doc: Mapping[str, Any]) -> None:
        """Write ``run.json`` (last: it marks the run finished), then drop the merged parts."""
        write_json_atomic(self.run_path, json_safe(dict(run_doc)))
        if self.parts_dir.is_dir():
            for f in self.parts_dir.iterdir():
                if f.is_file():
                    f.unlink()
            self.parts_dir.rmdir()

    # -- reading finished runs -----------------------------------------------------------------
    def read_run(self) -> dict[str, Any]:
        if not self.run_path.exists():
            raise UserError(f"{self.root}: no {RUN} (the run is not finished; run it again to resume)")
        return json.loads(self.run_path.read_text())

    def read_samples(self) -> pd.DataFrame:
        if not self.samples_path.exists():
            raise UserError(f"{self.root}: no {SAMPLES} (the run is not finished; run it again to resume)")
        return pd.read_parquet(self.samples_path)


def load_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], pd.DataFrame]:
    """``(run.json, samples)`` of a finished run directory."""
    store = RunStore(run_dir)
    return store.read_run(), store.read_samples()


__all__ = [
    "CONFIG",
    "FINGERPRINT_FIELDS",
    "ID_COLUMNS",
    "RUN",
    "SAMPLES",
    "RunMismatchError",
    "RunStore",
    "json_safe",
    "load_run",
    "write_json_atomic",
]
