"""A folder of LabelMe per-image JSON files -> :class:`ObjectRecord` s.

One object per LabelMe instance: shapes that share ``(label, group_id)`` form
one object (``group_id`` null: every shape is its own object), like labelme's
``labelme2coco``. Area shapes are rasterised the way labelme does (PIL,
outline included): ``polygon`` (>= 3 points), ``rectangle`` (2 corners),
``circle`` (centre, point on the rim), ``mask`` (base64 PNG placed at the first
point). ``line``, ``linestrip``, ``point`` and ``points`` have no area and are
ignored; an object made only of them is skipped.

The image is ``imagePath`` resolved relative to the JSON file (then a file with
the JSON's stem beside it); when neither exists and the JSON embeds
``imageData``, that image is written once to a cache folder so the record has a
real path.

Call: ``get_source("labelme")(root=folder)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from harmbench.errors import InputError
from harmbench.fileio import atomic_write_bytes
from harmbench.imaging import IMAGE_EXTENSIONS, image_size, read_mask
from harmbench.sources import register_source
from harmbench.sources.base import ObjectRecord, SourceRecords, make_key, skip_entry
from harmbench.sources.coco import POLYGON_TOLERANCE, encode_mask, finish, rle_area, rle_bbox, split_filter_options

PathLike = str | os.PathLike

AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")
NO_AREA_SHAPES = ("line", "linestrip", "point", "points")
DEFAULT_IGNORE = ("__ignore__", "_background_")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def default_cache_dir() -> Path:
    """``$HARMBENCH_CACHE`` or ``~/.cache/harmbench``."""
    env = os.environ.get("HARMBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "harmbench"


def _materialise_image_data(data_b64: str, cache_dir: Path) -> Path:
    """Write an embedded (base64) image once to ``cache_dir/labelme/<sha1>.<ext>``."""
    try:
        raw = base64.b64decode(data_b64, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"imageData is not base64 ({exc})") from exc
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = (img.format or "PNG").lower()
    except Exception as exc:
        raise ValueError("imageData is not a readable image") from exc
    ext = {"jpeg": ".jpg", "mpo": ".jpg"}.get(fmt, f".{fmt}")
    out_dir = cache_dir / "labelme"
    out = out_dir / f"{hashlib.sha1(raw).hexdigest()[:20]}{ext}"
    if not out.is_file():
        atomic_write_bytes(out, raw)
    return out


def resolve_image(json_path: Path, ann: Mapping, cache_dir: Path | None) -> Path:
    """The photo of a LabelMe JSON (see module docstring); raises ``InputError`` when none is usable."""
    tried: list[str] = []
    image_path = ann.get("imagePath")
    if isinstance(image_path, str) and image_path:
        rel = image_path.replace("\\", "/")
        cand = Path(rel) if Path(rel).is_absolute() else json_path.parent / rel
        if cand.is_file():
            return cand
        tried.append(str(cand))
        flat = json_path.parent / Path(rel).name
        if flat.is_file():
            return flat
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        cand = json_path.with_suffix(ext)
        if cand.is_file():
            return cand
    data = ann.get("imageData")
    if isinstance(data, str) and data:
        try:
            return _materialise_image_data(data, cache_dir or default_cache_dir())
        except (ValueError, OSError) as exc:
            raise InputError(str(json_path), f"image file not found and embedded imageData unusable: {exc}") from exc
    raise InputError(tried[0] if tried else str(json_path), "image file not found (and no embedded imageData)")


def _points(shape: Mapping) -> list[tuple[float, float]]:
    pts = shape.get("points")
    if not isinstance(pts, list):
        raise ValueError("points are not a list")
    out = []
    for p in pts:
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise ValueError("a point is not [x, y]")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("non-finite point")
        out.append((x, y))
    return out


def _check_range(pts: list[tuple[float, float]], height: int, width: int) -> None:
    tol_x, tol_y = max(2.0, POLYGON_TOLERANCE * width), max(2.0, POLYGON_TOLERANCE * height)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if min(xs) < -tol_x or max(xs) > width + tol_x or min(ys) < -tol_y or max(ys) > height + tol_y:
        raise ValueError(f"shape out of range for a {width}x{height} image")


def rasterize_shape(shape: Mapping, height: int, width: int) -> np.ndarray:
    """One LabelMe area shape -> ``bool (H, W)`` (labelme's PIL drawing, outline included).

    Raises ``ValueError`` for an unknown or malformed shape or one out of range.
    """
    kind = shape.get("shape_type") or "polygon"
    pts = _points(shape)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        if len(pts) < 3:
            raise ValueError("polygon with fewer than 3 points")
        _check_range(pts, height, width)
        draw.polygon(pts, outline=1, fill=1)
    elif kind == "rectangle":
        if len(pts) == 4:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            pts = [(min(xs), min(ys)), (max(xs), max(ys))]
        if len(pts) != 2:
            raise ValueError("rectangle without 2 corners")
        _check_range(pts, height, width)
        (x1, y1), (x2, y2) = pts
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind == "circle":
        if len(pts) != 2:
            raise ValueError("circle without centre and rim point")
        (cx, cy), (px, py) = pts
        r = math.hypot(px - cx, py - cy)
        _check_range([(cx - r, cy - r), (cx + r, cy + r)], height, width)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    elif kind == "mask":
        data = shape.get("mask")
        if not isinstance(data, str) or not pts:
            raise ValueError("mask shape without base64 mask or anchor point")
        try:
            sub = read_mask(base64.b64decode(data), name="<mask shape>") >= 128
        except (InputError, binascii.Error, ValueError) as exc:
            raise ValueError(f"mask shape is not a readable image ({exc})") from exc
        x0, y0 = int(pts[0][0]), int(pts[0][1])
        _check_range([(x0, y0), (x0 + sub.shape[1], y0 + sub.shape[0])], height, width)
        out = np.zeros((height, width), dtype=bool)
        ys, xs = slice(max(y0, 0), min(y0 + sub.shape[0], height)), slice(max(x0, 0), min(x0 + sub.shape[1], width))
        out[ys, xs] = sub[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        return out
    else:
        raise ValueError(f"unsupported shape type {kind!r}")
    return np.asarray(canvas, dtype=bool)


def _group_shapes(shapes: list) -> list[tuple[str, Any, list[int]]]:
    """``[(label, group_id, [shape indices])]`` in order of first appearance."""
    groups: dict[Any, tuple[str, Any, list[int]]] = {}
    for i, shape in enumerate(shapes):
        if not isinstance(shape, Mapping):
            continue
        label = str(shape.get("label", "")).strip()
        gid = shape.get("group_id")
        gkey = (label, gid) if gid is not None else ("__single__", i)
        groups.setdefault(gkey, (label, gid, []))[2].append(i)
    return list(groups.values())


def load_labelme_file(
    json_path: PathLike,
    *,
    image_id: str | None = None,
    data: Mapping | None = None,
    source_name: str = "labelme",
    cache_dir: PathLike | None = None,
    ignore_labels: Iterable[str] = DEFAULT_IGNORE,
    license: str | None = None,
    skipped: list[dict] | None = None,
    filtered: Counter | None = None,
) -> list[ObjectRecord]:
    """The objects of one LabelMe JSON (unfiltered); bad input goes to ``skipped``.

    ``image_id`` defaults to the JSON's stem; ``data`` is the already-parsed JSON, if any.
    """
    json_path = Path(json_path)
    skipped = skipped if skipped is not None else []
    filtered = filtered if filtered is not None else Counter()
    ignore = {s.lower() for s in ignore_labels}
    ann = data
    if ann is None:
        try:
            ann = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            skipped.append(skip_entry(json_path, f"not a readable JSON file ({exc})"))
            return []
    if not isinstance(ann, Mapping) or not isinstance(ann.get("shapes"), list):
        skipped.append(skip_entry(json_path, "not a LabelMe file (no 'shapes' list)"))
        return []
    try:
        path = resolve_image(json_path, ann, Path(cache_dir) if cache_dir is not None else None)
        w, h = image_size(path)
    except InputError as exc:
        skipped.append(skip_entry(exc.path, f"{exc.reason} (annotations {json_path.name})"))
        return []
    jh, jw = ann.get("imageHeight"), ann.get("imageWidth")
    if jh is not None and jw is not None and (not _is_int(jh) or not _is_int(jw)):
        skipped.append(skip_entry(json_path, f"imageHeight/imageWidth must be integers, got {jh!r}/{jw!r}"))
        return []
    if jh is not None and jw is not None and (int(jh), int(jw)) != (h, w):
        skipped.append(skip_entry(path, f"image is {w}x{h} but {json_path.name} says {jw}x{jh}"))
        return []

    image_id = image_id or json_path.stem
    records: list[ObjectRecord] = []
    for n, (label, gid, idxs) in enumerate(_group_shapes(ann["shapes"])):
        where = f"{json_path.name}: object {n} ({label or 'no label'})"
        if not label:
            skipped.append(skip_entry(json_path, f"{where}: shape without label"))
            continue
        if label.lower() in ignore:
            filtered["ignored_label"] += 1
            continue
        mask = np.zeros((h, w), dtype=bool)
        kinds: list[str] = []
        try:
            for i in idxs:
                shape = ann["shapes"][i]
                kind = shape.get("shape_type") or "polygon"
                if kind in NO_AREA_SHAPES:
                    continue
                mask |= rasterize_shape(shape, h, w)
                kinds.append(kind)
        except (ValueError, TypeError) as exc:
            skipped.append(skip_entry(json_path, f"{where}: {exc}"))
            continue
        if not kinds:
            skipped.append(skip_entry(json_path, f"{where}: no area shape (only lines/points)"))
            continue
        if not mask.any():
            skipped.append(skip_entry(json_path, f"{where}: empty mask"))
            continue
        rle = encode_mask(mask)
        meta: dict[str, Any] = {
            "area": rle_area(rle),
            "bbox": rle_bbox(rle),
            "raw_label": label,
            "group_id": gid,
            "shape_types": kinds,
            "annotations_file": str(json_path),
        }
        flags = ann.get("flags")
        if isinstance(flags, Mapping) and flags:
            meta["flags"] = dict(flags)
        records.append(
            ObjectRecord(
                key=make_key(source_name, image_id, n),
                source=source_name,
                image_id=image_id,
                object_id=str(n),
                image_path=str(path),
                category=label.lower(),
                size=(h, w),
                mask_rle=rle,
                license=license,
                meta=meta,
            )
        )
    return records


@register_source("labelme")
def labelme_source(
    root: PathLike,
    *,
    recursive: bool = True,
    source_name: str = "labelme",
    cache_dir: PathLike | None = None,
    ignore_labels: Iterable[str] = DEFAULT_IGNORE,
    license: str | None = None,
    **filters: Any,
) -> SourceRecords:
    """A folder of LabelMe JSON files -> one record per instance.

    Args:
        root: the folder (searched recursively unless ``recursive=False``) or one JSON file.
        source_name: ``ObjectRecord.source`` and key prefix; keys are
            ``<source>_<image_id>_<n>``: ``image_id`` is the JSON's path below ``root``
            without suffix (``sub/2011_000003``; ``/`` becomes ``-`` in keys) and ``n``
            the instance's order in the file.
        cache_dir: where embedded ``imageData`` is written when the image file is
            missing (default ``$HARMBENCH_CACHE`` or ``~/.cache/harmbench``).
        ignore_labels: labels that are not objects (counted in ``filtered["ignored_label"]``).
        license: licence string for every record (LabelMe files state none).
        **filters: see :func:`harmbench.sources.coco.apply_object_filters`.
    """
    filters = split_filter_options(filters, "labelme")
    root_p = Path(root)
    if root_p.is_file():
        files = [root_p]
    elif root_p.is_dir():
        files = sorted(root_p.rglob("*.json") if recursive else root_p.glob("*.json"))
    else:
        raise InputError(str(root_p), "folder not found")
    skipped: list[dict] = []
    filtered: Counter = Counter()
    records: list[ObjectRecord] = []
    for f in files:
        if f.name.startswith("."):
            continue
        try:
            head = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            skipped.append(skip_entry(f, f"not a readable JSON file ({exc})"))
            continue
        if not isinstance(head, Mapping) or "shapes" not in head:
            filtered["not_labelme_json"] += 1  # e.g. a coco_annotations.json beside the files
            continue
        image_id = f.stem if f == root_p else f.relative_to(root_p).with_suffix("").as_posix()
        records.extend(
            load_labelme_file(
                f,
                image_id=image_id,
                data=head,
                source_name=source_name,
                cache_dir=cache_dir,
                ignore_labels=ignore_labels,
                license=license,
                skipped=skipped,
                filtered=filtered,
            )
        )
    return finish(records, skipped, filtered, filters)


__all__ = ["labelme_source", "load_labelme_file", "rasterize_shape", "resolve_image"]
