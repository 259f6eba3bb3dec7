"""COCO instances JSON -> :class:`ObjectRecord` s, plus the mask helpers every object source uses.

Every segmentation form of the COCO format is accepted and normalised to a
compressed RLE whose ``counts`` is a ``str``:

* polygons (a list of ``[x1, y1, x2, y2, …]`` lists, merged into one mask),
* uncompressed RLE (``{"size": [H, W], "counts": [int, …]}``),
* compressed RLE (``counts`` as ``str`` or ``bytes``), also when the whole
  segmentation is stored as a string (JSON or a Python ``repr``).

Rasterisation is pycocotools' own, so a record decodes to exactly what
``COCO.annToMask`` gives. Crowd annotations are dropped (``filtered["iscrowd"]``)
unless ``include_crowd=True``.

Call: ``get_source("coco")(root=...)`` (``root/annotations/<one>.json`` and
``root/images/``) or ``get_source("coco")(annotations=..., images=...)``.
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harmbench.errors import InputError, UserError
from harmbench.imaging import image_size
from harmbench.sources import register_source
from harmbench.sources.base import ObjectRecord, SourceRecords, key_collisions, make_key, skip_entry

PathLike = str | os.PathLike

#: A polygon vertex may lie this far outside the image (fraction of the side, at least 2 px)
#: before the polygon counts as out of range; closer vertices are clipped by rasterisation.
POLYGON_TOLERANCE = 0.05


# --------------------------------------------------------------------------- RLE helpers


def _mask_utils():
    from pycocotools import mask as mask_utils

    return mask_utils


def _as_bytes_rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def _as_str_rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def encode_mask(mask: np.ndarray) -> dict:
    """``bool/uint8 (H, W)`` mask -> compressed COCO RLE with ``counts`` as ``str``."""
    arr = np.asfortranarray(np.asarray(mask, dtype=bool).astype(np.uint8))
    return _as_str_rle(_mask_utils().encode(arr))


def rle_area(rle: Mapping) -> int:
    """Foreground pixel count of a compressed RLE."""
    return int(_mask_utils().area(_as_bytes_rle(rle)))


def rle_bbox(rle: Mapping) -> list[float]:
    """``[x, y, w, h]`` of a compressed RLE."""
    return [float(v) for v in _mask_utils().toBbox(_as_bytes_rle(rle))]


def decode_rle(rle: Mapping) -> np.ndarray:
    """Compressed or uncompressed RLE -> ``bool (H, W)``."""
    mu = _mask_utils()
    if isinstance(rle.get("counts"), list):
        h, w = (int(v) for v in rle["size"])
        rle = mu.frPyObjects(dict(rle), h, w)
    return mu.decode(_as_bytes_rle(rle)).astype(bool)


def _string_counts(s: bytes) -> list[int]:
    """Run lengths of a compressed RLE string (the COCO LEB128-like code, decoded in Python)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("corrupt compressed RLE (truncated)")
            c = s[p] - 48
            if not 0 <= c < 64:
                raise ValueError("corrupt compressed RLE (bad character)")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _parse_segmentation_string(seg: str) -> Any:
    try:
        return json.loads(seg)
    except ValueError:
        pass
    try:
        return ast.literal_eval(seg)
    except (ValueError, SyntaxError) as exc:
        raise ValueError("segmentation string is neither JSON nor a Python literal") from exc


def _check_polygons(polys: list, height: int, width: int) -> list[list[float]]:
    if not polys:
        raise ValueError("empty polygon list")
    tol_x, tol_y = max(2.0, POLYGON_TOLERANCE * width), max(2.0, POLYGON_TOLERANCE * height)
    good: list[list[float]] = []
    for poly in polys:
        if not isinstance(poly, list | tuple):
            raise ValueError("polygon is not a list of coordinates")
        try:
            coords = [float(v) for v in poly]
        except (TypeError, ValueError) as exc:
            raise ValueError("polygon has non-numeric coordinates") from exc
        if len(coords) % 2:
            raise ValueError("polygon has an odd number of coordinates")
        if not all(math.isfinite(v) for v in coords):
            raise ValueError("polygon has non-finite coordinates")
        xs, ys = coords[0::2], coords[1::2]
        if xs and (min(xs) < -tol_x or max(xs) > width + tol_x or min(ys) < -tol_y or max(ys) > height + tol_y):
            raise ValueError(f"polygon out of range for a {width}x{height} image")
        if len(coords) >= 6:
            good.append(coords)
    if not good:
        raise ValueError("degenerate polygon (fewer than 3 vertices)")
    return good


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict:
    """Any COCO segmentation -> compressed RLE (``counts`` str) of size ``(height, width)``.

    Raises ``ValueError`` naming the problem: malformed data, a size that is not
    the image's, a polygon out of range, or an empty mask.
    """
    mu = _mask_utils()
    if isinstance(seg, str):
        seg = _parse_segmentation_string(seg)
    if isinstance(seg, list):
        polys = _check_polygons(seg, height, width)
        rle = mu.merge(mu.frPyObjects(polys, height, width))
    elif isinstance(seg, Mapping) and "counts" in seg and "size" in seg:
        try:
            h, w = (int(v) for v in seg["size"])
        except (TypeError, ValueError) as exc:
            raise ValueError("RLE size is not [H, W]") from exc
        if (h, w) != (height, width):
            raise ValueError(f"mask size {w}x{h} does not match image size {width}x{height}")
        counts = seg["counts"]
        if isinstance(counts, list):
            try:
                ints = [int(c) for c in counts]
            except (TypeError, ValueError) as exc:
                raise ValueError("uncompressed RLE counts are not integers") from exc
            if any(c < 0 for c in ints) or sum(ints) != h * w:
                raise ValueError(f"uncompressed RLE counts do not sum to {h}*{w}")
            rle = mu.frPyObjects({"size": [h, w], "counts": ints}, h, w)
        elif isinstance(counts, str | bytes):
            rle = _as_bytes_rle({"size": [h, w], "counts": counts})
            runs = _string_counts(rle["counts"])  # checked before pycocotools decodes it
            if any(c < 0 for c in runs) or sum(runs) != h * w:
                raise ValueError(f"corrupt compressed RLE (runs do not sum to {h}*{w})")
        else:
            raise ValueError("RLE counts are neither a list nor a string")
    else:
        raise ValueError("segmentation is neither polygons nor RLE")
    out = _as_str_rle(rle)
    if rle_area(out) == 0:
        raise ValueError("empty mask")
    return out


# --------------------------------------------------------------------------- filters


def apply_object_filters(
    records: Iterable[ObjectRecord],
    *,
    categories: Iterable[str] | str | None = None,
    exclude_categories: Iterable[str] | str | None = None,
    min_area: float | None = None,
    max_area: float | None = None,
    min_fg_ratio: float | None = None,
    max_fg_ratio: float | None = None,
    max_objects_per_image: int | None = None,
    filtered: Counter | None = None,
) -> list[ObjectRecord]:
    """Per-object filters shared by all object sources; returns the kept records sorted by key.

    Areas are foreground pixel counts (``meta["area"]``, computed from the mask when
    absent), ratios are ``area / (H * W)``; bounds are inclusive. Categories compare
    lower-cased. ``max_objects_per_image`` keeps the largest objects of each photo
    (ties: smaller key first). Dropped objects are counted in ``filtered`` by filter name.
    """
    counter = filtered if filtered is not None else Counter()
    include = _category_set(categories)
    exclude = _category_set(exclude_categories)
    kept: list[ObjectRecord] = []
    for rec in records:
        area = _record_area(rec)
        ratio = area / float(rec.size[0] * rec.size[1])
        if include is not None and rec.category.lower() not in include:
            counter["category"] += 1
        elif exclude is not None and rec.category.lower() in exclude:
            counter["exclude_category"] += 1
        elif min_area is not None and area < min_area:
            counter["min_area"] += 1
        elif max_area is not None and area > max_area:
            counter["max_area"] += 1
        elif min_fg_ratio is not None and ratio < min_fg_ratio:
            counter["min_fg_ratio"] += 1
        elif max_fg_ratio is not None and ratio > max_fg_ratio:
            counter["max_fg_ratio"] += 1
        else:
            kept.append(rec)
    if max_objects_per_image is not None:
        if int(max_objects_per_image) < 0:
            raise UserError(f"max_objects_per_image must be >= 0, got {max_objects_per_image}")
        per_image: dict[tuple[str, str], list[ObjectRecord]] = defaultdict(list)
        for rec in kept:
            per_image[(rec.source, rec.image_id)].append(rec)
        kept = []
        for group in per_image.values():
            group.sort(key=lambda r: (-_record_area(r), r.key))
            kept.extend(group[: int(max_objects_per_image)])
            counter["max_objects_per_image"] += max(0, len(group) - int(max_objects_per_image))
    kept.sort(key=lambda r: r.key)
    return kept


def _category_set(cats: Iterable[str] | str | None) -> set[str] | None:
    if cats is None:
        return None
    if isinstance(cats, str):
        cats = [cats]
    return {str(c).strip().lower() for c in cats}


def _record_area(rec: ObjectRecord) -> int:
    area = rec.meta.get("area") if rec.meta else None
    if area is None:
        area = rle_area(rec.mask_rle) if rec.mask_rle is not None else int(rec.decode_mask().sum())
    return int(area)


FILTER_OPTIONS = (
    "categories",
    "exclude_categories",
    "min_area",
    "max_area",
    "min_fg_ratio",
    "max_fg_ratio",
    "max_objects_per_image",
)


def split_filter_options(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check that ``options`` only holds filter names; returns them (unknown names -> ``UserError``)."""
    unknown = sorted(set(options) - set(FILTER_OPTIONS))
    if unknown:
        raise UserError(
            f"source {source!r}: unknown option(s) {', '.join(unknown)}; filters: {', '.join(FILTER_OPTIONS)}"
        )
    return dict(options)


def finish(
    records: Iterable[ObjectRecord], skipped: list[dict], filtered: Counter, filters: Mapping[str, Any]
) -> SourceRecords:
    """Apply the filters, sort by key and wrap everything into a :class:`SourceRecords`.

    Records that share a key (two files that name one photo and object) are all left out,
    each skip naming the others' files.
    """
    records = list(records)
    clashes = key_collisions((r.key, r.mask_path or r.image_path) for r in records)
    if clashes:
        for r in records:
            if r.key in clashes:
                skipped.append(
                    skip_entry(r.mask_path or r.image_path, f"key {r.key!r} is shared by: {', '.join(clashes[r.key])}")
                )
        records = [r for r in records if r.key not in clashes]
    kept = apply_object_filters(records, filtered=filtered, **filters)
    return SourceRecords(kept, skipped, {k: v for k, v in sorted(filtered.items()) if v})


# --------------------------------------------------------------------------- COCO source


def _find_annotations(root: Path) -> Path:
    cands = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    if not cands:
        cands = sorted(root.glob("*.json"))
    if len(cands) != 1:
        found = ", ".join(p.name for p in cands) or "none"
        raise InputError(
            str(root), f"expected exactly one COCO JSON in annotations/ (found: {found}); pass annotations="
        )
    return cands[0]


def _default_image_resolver(images_dir: Path) -> Callable[[Mapping], Path]:
    def resolve(img: Mapping) -> Path:
        name = str(img.get("file_name", "")).replace("\\", "/")
        direct = images_dir / name
        if direct.is_file():
            return direct
        flat = images_dir / Path(name).name
        return flat if flat.is_file() else direct

    return resolve


def load_coco_dict(
    data: Mapping,
    *,
    json_path: PathLike,
    resolve_image: Callable[[Mapping], Path],
    source_name: str = "coco",
    include_crowd: bool = False,
    check_images: bool = True,
    default_license: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> SourceRecords:
    """Records from an already-parsed COCO instances dict (see :func:`coco_source`)."""
    skipped: list[dict] = []
    filtered: Counter = Counter()
    json_path = str(json_path)
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise InputError(json_path, "not a COCO instances file (no 'annotations' list)")
    licenses = {lic.get("id"): lic for lic in data.get("licenses") or [] if isinstance(lic, Mapping)}
    categories = {c.get("id"): c for c in data.get("categories") or [] if isinstance(c, Mapping)}
    images = {im.get("id"): im for im in data.get("images") or [] if isinstance(im, Mapping)}

    anns_by_image: dict[Any, list[Mapping]] = defaultdict(list)
    for ann in data["annotations"]:
        if not isinstance(ann, Mapping) or "image_id" not in ann:
            skipped.append(skip_entry(json_path, "annotation without image_id"))
            continue
        if ann.get("image_id") not in images:
            skipped.append(skip_entry(json_path, f"annotation {ann.get('id')}: unknown image id {ann.get('image_id')}"))
            continue
        anns_by_image[ann["image_id"]].append(ann)

    records: list[ObjectRecord] = []
    seen_keys: set[str] = set()
    for image_id in sorted(anns_by_image, key=str):
        img = images[image_id]
        anns = anns_by_image[image_id]
        if not include_crowd:
            crowd = [a for a in anns if a.get("iscrowd")]
            filtered["iscrowd"] += len(crowd)
            anns = [a for a in anns if not a.get("iscrowd")]
        if not anns:
            continue
        path = resolve_image(img)
        size = _image_hw(img, path, check_images, len(anns), skipped)
        if size is None:
            continue
        h, w = size
        lic = licenses.get(img.get("license"))
        license_name = (lic.get("name") or lic.get("url")) if lic else default_license
        for ann in anns:
            ann_id = ann.get("id")
            where = f"annotation {ann_id} (image {image_id})"
            cat = categories.get(ann.get("category_id"))
            if cat is None or not cat.get("name"):
                skipped.append(skip_entry(path, f"{where}: unknown category id {ann.get('category_id')}"))
                continue
            try:
                rle = segmentation_to_rle(ann.get("segmentation"), h, w)
            except (ValueError, TypeError, KeyError) as exc:
                skipped.append(skip_entry(path, f"{where}: {exc}"))
                continue
            key = make_key(source_name, image_id, ann_id)
            if key in seen_keys:
                skipped.append(skip_entry(path, f"{where}: duplicate key {key}"))
                continue
            seen_keys.add(key)
            attributes = ann.get("attributes") if isinstance(ann.get("attributes"), Mapping) else {}
            meta: dict[str, Any] = {
                "area": rle_area(rle),
                "iscrowd": int(bool(ann.get("iscrowd"))),
                "bbox": rle_bbox(rle),
                "category_id": ann.get("category_id"),
                "annotations_file": json_path,
            }
            if cat.get("supercategory"):
                meta["supercategory"] = cat["supercategory"]
            if attributes:
                meta["attributes"] = dict(attributes)
                raw = attributes.get("labelme_name", attributes.get("name"))
                if raw is not None:
                    meta["raw_label"] = str(raw)
            if lic and lic.get("url"):
                meta["license_url"] = lic["url"]
            records.append(
                ObjectRecord(
                    key=key,
                    source=source_name,
                    image_id=str(image_id),
                    object_id=str(ann_id),
                    image_path=str(path),
                    category=str(cat["name"]).strip().lower(),
                    size=(h, w),
                    mask_rle=rle,
                    license=license_name,
                    meta=meta,
                )
            )
    return finish(records, skipped, filtered, filters or {})


def _image_hw(img: Mapping, path: Path, check: bool, n_anns: int, skipped: list[dict]) -> tuple[int, int] | None:
    """``(H, W)`` of an image entry, checked against the file's header; None (and a skip) when unusable."""
    json_hw = None
    try:
        if img.get("height") is not None and img.get("width") is not None:
            json_hw = (int(img["height"]), int(img["width"]))
    except (TypeError, ValueError):
        json_hw = None
    what = f"{n_anns} annotation(s) skipped"
    if not check:
        if not path.is_file():
            skipped.append(skip_entry(path, f"file not found ({what})"))
            return None
        if json_hw is None:
            check = True
        else:
            return json_hw
    try:
        w, h = image_size(path)
    except InputError as exc:
        skipped.append(skip_entry(path, f"{exc.reason} ({what})"))
        return None
    if json_hw is not None and json_hw != (h, w):
        skipped.append(skip_entry(path, f"image is {w}x{h} but the annotations say {json_hw[1]}x{json_hw[0]} ({what})"))
        return None
    return h, w


@register_source("coco")
def coco_source(
    annotations: PathLike | None = None,
    images: PathLike | None = None,
    *,
    root: PathLike | None = None,
    source_name: str = "coco",
    include_crowd: bool = False,
    check_images: bool = True,
    default_license: str | None = None,
    **filters: Any,
) -> SourceRecords:
    """COCO instances JSON -> one record per (non-crowd) annotation.

    Args:
        annotations: the instances JSON; default: the single JSON in ``root/annotations/``.
        images: the image folder (``file_name`` is resolved inside it, then by base
            name); default ``root/images`` when present, else ``root``, else the JSON's folder.
        root: dataset folder (``labelme_outdoor`` and the COCO sample use this layout).
        source_name: ``ObjectRecord.source`` and key prefix (e.g. ``"labelme_outdoor"``).
        include_crowd: keep ``iscrowd`` annotations (dropped by default).
        check_images: read each image header to check that it exists, is readable
            and matches the JSON size (otherwise only existence is checked).
        default_license: licence for images without an entry in ``licenses``.
        **filters: see :func:`apply_object_filters`.

    Licence: the image's ``license`` id looked up in the JSON ``licenses`` table
    (its ``name``; the URL goes to ``meta["license_url"]``). ``meta["raw_label"]``
    keeps ``attributes.labelme_name`` (or ``attributes.name``) when present.
    """
    filters = split_filter_options(filters, "coco")
    root_p = Path(root) if root is not None else None
    if annotations is None:
        if root_p is None:
            raise UserError("coco source: pass annotations= (a COCO JSON) or root= (a dataset folder)")
        ann_path = _find_annotations(root_p)
    else:
        ann_path = Path(annotations)
    if images is not None:
        images_dir = Path(images)
    elif root_p is not None:
        images_dir = root_p / "images" if (root_p / "images").is_dir() else root_p
    else:
        images_dir = (
            ann_path.parent.parent / "images" if (ann_path.parent.parent / "images").is_dir() else ann_path.parent
        )
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(str(ann_path), "file not found") from exc
    except (OSError, ValueError) as exc:
        raise InputError(str(ann_path), f"not a readable JSON file ({exc})") from exc
    return load_coco_dict(
        data,
        json_path=ann_path,
        resolve_image=_default_image_resolver(images_dir),
        source_name=source_name,
        include_crowd=include_crowd,
        check_images=check_images,
        default_license=default_license,
        filters=filters,
    )


__all__ = [
    "FILTER_OPTIONS",
    "apply_object_filters",
    "coco_source",
    "decode_rle",
    "encode_mask",
    "load_coco_dict",
    "rle_area",
    "rle_bbox",
    "segmentation_to_rle",
]
