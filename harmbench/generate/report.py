"""Looking at a built dataset: a text summary of ``stats.json`` and a contact sheet."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from harmbench.data.shards import ShardError, iter_tar_samples, shard_files
from harmbench.errors import InputError, UserError
from harmbench.imaging import read_rgb


def load_stats(root: str | Path) -> dict[str, Any]:
    """``stats.json`` of a built directory (``UserError`` if it is not one)."""
    p = Path(root) / "stats.json"
    if not p.exists():
        raise UserError(f"{root}: no stats.json (not a finished harmbench build)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{p}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{p}: not a JSON object")
    return doc


def _block(title: str, d: Mapping[str, int], total: int, limit: int = 12) -> list[str]:
    lines = [f"{title}:"]
    items = sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    for k, v in items[:limit]:
        lines.append(f"  {k:<24} {v:>8}  {100.0 * v / total if total else 0:5.1f}%")
    if len(items) > limit:
        lines.append(f"  … {len(items) - limit} more")
    return lines


def summarize(stats: Mapping[str, Any]) -> str:
    """Human-readable summary of a build's stats."""
    total = int(stats.get("samples", 0))
    run = stats.get("run", {})
    sk = stats.get("skipped", {})
    lines = [
        f"dataset {stats.get('name')}  ({stats.get('generator')}, seed {stats.get('seed')})",
        f"samples {total} in {stats.get('shards')} shards, {stats.get('bytes', 0) / 1e6:.1f} MB",
    ]
    for sp, v in stats.get("splits", {}).items():
        lines.append(f"  {sp:<8} {v['samples']:>8} samples  {v['shards']:>4} shards  {v['skipped']:>5} skipped")
    for key, title in (
        ("by_recipe", "recipes"),
        ("by_method", "methods"),
        ("by_category", "categories"),
        ("by_fg_ratio", "foreground ratio (%)"),
    ):
        lines += _block(title, stats.get(key, {}), total)
    lines.append(f"skipped: {sk.get('plan', 0)} at planning, {sk.get('synth', 0)} at synthesis")
    lines += _block("skip reasons", sk.get("by_reason", {}), max(1, sk.get("plan", 0) + sk.get("synth", 0)), limit=8)[
        1:
    ]
    if run:
        lines.append(
            f"last run: {run.get('wall_time_s')} s wall, {run.get('shards_built')} shards built, "
            f"{run.get('shards_resumed')} resumed, {run.get('throughput_samples_per_s')} samples/s"
        )
    return "\n".join(lines)


def _thumb(data: bytes, height: int, name: str = "<bytes>") -> Image.Image:
    img = Image.fromarray(read_rgb(data, name))
    w = max(1, round(img.width * height / img.height))
    return img.resize((w, height), Image.BILINEAR)


def _pick_round_robin(metas: list[tuple[Path, str, dict]], samples: int) -> list[tuple[Path, str, dict]]:
    """Up to ``samples`` entries, taking turns over (recipe, method) groups so every kind of sample shows."""
    groups: dict[tuple[str, str], list[tuple[Path, str, dict]]] = {}
    for entry in metas:
        m = entry[2]
        groups.setdefault((str(m.get("recipe", "?")), str(m.get("method", "?"))), []).append(entry)
    queues = [groups[k] for k in sorted(groups)]
    picked: list[tuple[Path, str, dict]] = []
    i = 0
    while len(picked) < samples and any(queues):
        q = queues[i % len(queues)]
        if q:
            picked.append(q.pop(0))
        i += 1
    return picked


def _meta(sample: Mapping[str, Any]) -> dict:
    try:
        doc = json.loads(sample["json"]) if "json" in sample else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ShardError(sample["__url__"], f"not JSON ({exc})", f"{sample['__key__']}.json") from exc
    return doc if isinstance(doc, dict) else {}


def contact_sheet(
    root: str | Path,
    out: str | Path,
    *,
    samples: int = 8,
    split: str | None = None,
    height: int = 160,
    scan_limit: int = 5000,
    on_skip: Callable[[InputError], None] | None = None,
) -> Path:
    """Write a PNG with one row per sample: composite | mask | real, labelled with key/method/category.

    Samples are chosen in turn from each (recipe, method) group among the first
    ``scan_limit`` samples, so a sheet of K rows shows every kind of composite.
    A damaged shard or sample is left out and reported through ``on_skip``
    (a :class:`~harmbench.data.shards.ShardError` / :class:`InputError` naming the shard and member).
    """
    skip = on_skip or (lambda exc: None)
    metas: list[tuple[Path, str, dict]] = []
    for shard in shard_files(root, split):
        try:
            for s in iter_tar_samples(shard, suffixes=("json",)):
                metas.append((Path(shard), s["__key__"], _meta(s)))
        except ShardError as exc:
            skip(exc)
        if len(metas) >= scan_limit:
            break
    chosen = _pick_round_robin(metas, samples)
    wanted: dict[Path, set[str]] = {}
    for shard, key, _ in chosen:
        wanted.setdefault(shard, set()).add(key)
    found: dict[str, dict] = {}
    for shard, keys in wanted.items():
        try:
            for s in iter_tar_samples(shard):
                if s["__key__"] in keys:
                    found[s["__key__"]] = s
        except ShardError as exc:
            skip(exc)
    rows: list[tuple[str, list[Image.Image]]] = []
    for _, key, meta in chosen:
        s = found.get(key, {})
        comp = next((s[k] for k in s if k.startswith("composite.")), None)
        real = next((s[k] for k in s if k.startswith("real.")), None)
        if not s:
            continue
        where = f"{s['__url__']}: {key}"
        if comp is None or real is None or "mask.png" not in s:
            missing = [
                n for n, v in (("composite", comp), ("real", real), ("mask.png", s.get("mask.png"))) if v is None
            ]
            skip(ShardError(s["__url__"], f"missing field {', '.join(missing)}", key))
            continue
        try:
            fg = 100 * float(meta.get("fg_ratio", 0))
        except (TypeError, ValueError):
            fg = float("nan")
        label = (
            f"{key}  [{meta.get('split', '?')}]  method={meta.get('method', '?')}  "
            f"category={meta.get('category', '?')}  fg={fg:.1f}%"
        )
        try:
            thumbs = [
                _thumb(comp, height, f"{where}.composite"),
                _thumb(s["mask.png"], height, f"{where}.mask.png"),
                _thumb(real, height, f"{where}.real"),
            ]
        except InputError as exc:
            skip(exc)
            continue
        rows.append((label, thumbs))
    if not rows:
        raise UserError(f"{root}: no samples to show")
    font = ImageFont.load_default()
    pad, label_h = 6, 16
    width = max(sum(t.width for t in ims) + pad * (len(ims) + 1) for _, ims in rows)
    header = 18
    sheet = Image.new("RGB", (width, header + len(rows) * (height + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 3), "composite | mask | real", fill=(0, 0, 0), font=font)
    y = header
    for label, ims in rows:
        draw.text((pad, y + 2), label, fill=(0, 0, 0), font=font)
        x = pad
        for im in ims:
            sheet.paste(im, (x, y + label_h))
            x += im.width + pad
        y += height + label_h + pad
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
