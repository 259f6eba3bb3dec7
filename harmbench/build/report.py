"""Looking at a built dataset: a text summary of ``stats.json`` and a contact sheet."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from harmbench.data.shards import iter_tar_samples, shard_files
from harmbench.errors import UserError


def load_stats(root: str | Path) -> dict[str, Any]:
    """``stats.json`` of a built directory (``UserError`` if it is not one)."""
    p = Path(root) / "stats.json"
    if not p.exists():
        raise UserError(f"{root}: no stats.json (not a finished harmbench build)")
    return json.loads(p.read_text())


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
    for key, title in (("by_recipe", "recipes"), ("by_method", "methods"), ("by_category", "categories"),
                       ("by_fg_ratio", "foreground ratio (%)")):
        lines += _block(title, stats.get(key, {}), total)
    lines.append(f"skipped: {sk.get('plan', 0)} at planning, {sk.get('synth', 0)} at synthesis")
    lines += _block("skip reasons", sk.get("by_reason", {}), max(1, sk.get("plan", 0) + sk.get("synth", 0)), limit=8)[1:]
    if run:
        lines.append(
            f"last run: {run.get('wall_time_s')} s wall, {run.get('shards_built')} shards built, "
            f"{run.get('shards_resumed')} resumed, {run.get('throughput_samples_per_s')} samples/s"
        )
    return "\n".join(lines)


def _thumb(data: bytes, height: int) -> Image.Image:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w = max(1, round(img.width * height / img.height))
    return img.resize((w, height), Image.BILINEAR)


def contact_sheet(root: str | Path, out: str | Path, *, samples: int = 8, split: str | None = None,
                  height: int = 160) -> Path:
    """Write a PNG with one row per sample: composite | mask | real, labelled with key/method/category."""
    rows: list[tuple[str, list[Image.Image]]] = []
    for shard in shard_files(root, split):
        for s in iter_tar_samples(shard):
            comp = next((s[k] for k in s if k.startswith("composite.")), None)
            real = next((s[k] for k in s if k.startswith("real.")), None)
            if comp is None or real is None or "mask.png" not in s:
                continue
            meta = json.loads(s["json"]) if "json" in s else {}
            label = (f"{s['__key__']}  [{meta.get('split', '?')}]  method={meta.get('method', '?')}  "
                     f"category={meta.get('category', '?')}  fg={100 * float(meta.get('fg_ratio', 0)):.1f}%")
            rows.append((label, [_thumb(comp, height), _thumb(s["mask.png"], height), _thumb(real, height)]))
            if len(rows) >= samples:
                break
        if len(rows) >= samples:
            break
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
