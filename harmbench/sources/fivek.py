"""MIT-Adobe FiveK: one photo in several versions (original and the five expert retouches).

Layouts (both may be mixed under one root):

* flat: ``<id>_<V>.<ext>`` with ``V`` in ``A``–``E`` or ``original``/``input``/``raw``
  (e.g. ``a0001-jmac_DSC1459_C.jpg``);
* one folder per version: ``expertA/<id>.jpg`` (also ``Expert_A``, ``expert-a``, ``A``),
  ``original/<id>.jpg``, ``input/…``; any other folder name becomes a version
  name of its own (lower case).

Masks come from a folder (``<id>.png`` or ``<id>_<n>.png``, the HAdobe5k mask
naming) and/or from records of another source whose image stem is the photo id
(or ``<id>_<V>``). ``<id>`` may be the full FiveK stem (``a0001-jmac_DSC1459``)
or its number (``a0001``).

**One size**: a record's ``size`` is its mask's size. The mask is never
resampled; every version whose size differs (same aspect ratio within 1 %) is
resampled to it with a Lanczos filter by :func:`load_versions`. A version with
another aspect ratio is dropped (skipped with its reason). ``image_path`` is the
default version, preferring one whose native size is the mask's size.

Call: ``get_source("fivek")(root=..., masks=...)``; then ``load_versions(record)``.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harmbench.errors import InputError, UserError
from harmbench.imaging import image_size, is_image_file, read_mask, read_rgb
from harmbench.sources import register_source
from harmbench.sources.base import ObjectRecord, SourceRecords, make_key, skip_entry
from harmbench.sources.coco import encode_mask, finish, rle_area, rle_bbox, split_filter_options

PathLike = str | os.PathLike

EXPERTS = ("A", "B", "C", "D", "E")
#: Preferred default version, in order, when ``default_version`` is not given.
DEFAULT_ORDER = ("C", "original", "A", "B", "D", "E")
ASPECT_TOLERANCE = 0.01
FIVEK_LICENSE = "MIT-Adobe FiveK research licence"

_FLAT = re.compile(r"^(?P<id>.+)_(?P<v>[A-E]|original|input|raw)$", re.IGNORECASE)
_EXPERT_DIR = re.compile(r"^(?:expert)?[ _-]?(?P<v>[a-e])$", re.IGNORECASE)
_SHORT_ID = re.compile(r"^(a\d{4})(?:[-_]|$)", re.IGNORECASE)
_ORIGINAL_NAMES = {"original": "original", "input": "original", "raw": "original", "orig": "original"}


def _version_name(name: str) -> str:
    m = _EXPERT_DIR.match(name)
    if m:
        return m.group("v").upper()
    return _ORIGINAL_NAMES.get(name.lower(), name.lower())


def short_id(photo_id: str) -> str | None:
    """``a0001`` for ``a0001-jmac_DSC1459``; None when the id has no FiveK number."""
    m = _SHORT_ID.match(photo_id)
    return m.group(1).lower() if m else None


def find_fivek_photos(root: PathLike) -> dict[str, dict[str, str]]:
    """``{photo_id: {version: path}}`` for every photo under ``root`` (both layouts).

    Versions are ``"A"``–``"E"``, ``"original"`` or a lower-cased folder name.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        raise InputError(str(root_p), "folder not found")
    photos: dict[str, dict[str, str]] = defaultdict(dict)
    for f in sorted(root_p.iterdir()):
        if f.is_file() and is_image_file(f):
            m = _FLAT.match(f.stem)
            if m:
                photos[m.group("id")][_version_name(m.group("v"))] = str(f)
        elif f.is_dir() and not f.name.startswith("."):
            version = _version_name(f.name)
            for g in sorted(f.iterdir()):
                if not (g.is_file() and is_image_file(g)):
                    continue
                stem = g.stem
                m = _FLAT.match(stem)
                if m and _version_name(m.group("v")) == version:
                    stem = m.group("id")
                photos[stem].setdefault(version, str(g))
    return {pid: dict(sorted(v.items())) for pid, v in sorted(photos.items())}


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] / a[1] - b[0] / b[1]) <= ASPECT_TOLERANCE * (b[0] / b[1])


def _match_photo(stem: str, photos: Mapping[str, Any], by_short: Mapping[str, str]) -> tuple[str, str] | None:
    """``(photo_id, object_id)`` for a mask or image stem, or None."""

    def lookup(s: str) -> str | None:
        if s in photos:
            return s
        m = _FLAT.match(s)
        if m and m.group("id") in photos:
            return m.group("id")
        return by_short.get(s.lower())

    pid = lookup(stem)
    if pid is not None:
        return pid, "0"
    if "_" in stem:
        head, tail = stem.rsplit("_", 1)
        if tail.isdigit():
            pid = lookup(head)
            if pid is not None:
                return pid, tail
    return None


@register_source("fivek")
def fivek_source(
    root: PathLike,
    *,
    masks: PathLike | None = None,
    mask_records: Sequence[ObjectRecord] | None = None,
    versions: Iterable[str] | None = None,
    default_version: str | None = None,
    mask_category: str = "object",
    source_name: str = "fivek",
    license: str | None = FIVEK_LICENSE,
    **filters: Any,
) -> SourceRecords:
    """FiveK photos + object masks -> one record per (photo, mask), with all versions.

    Args:
        root: the photo folder (see module docstring for the layouts).
        masks: a folder of masks ``<id>.png`` / ``<id>_<n>.png`` (raw 0–255, >= 128 is
            foreground); their records get the category ``mask_category``.
        mask_records: object records of another source (e.g. ``folder`` or ``coco``)
            whose image stem names the photo; their category and masks are used.
        versions: keep only these versions (e.g. ``["A", "C"]``).
        default_version: the version used as ``image_path`` (default: first of
            ``C``, ``original``, ``A``, ``B``, ``D``, ``E`` at the mask's size).
        **filters: see :func:`harmbench.sources.coco.apply_object_filters`.

    Photos without any mask are counted in ``filtered["no_mask"]``; a mask without
    a photo, an unreadable or empty mask and a version with another aspect ratio
    are skipped with their reason. ``meta["native_sizes"]`` gives each version's
    ``(H, W)`` on disk.
    """
    filters = split_filter_options(filters, "fivek")
    if masks is None and mask_records is None:
        raise UserError("fivek source: pass masks= (a mask folder) and/or mask_records= (records of another source)")
    photos = find_fivek_photos(root)
    wanted = {_version_name(v) for v in versions} if versions is not None else None
    if wanted is not None:
        photos = {pid: {k: p for k, p in vs.items() if k in wanted} for pid, vs in photos.items()}
        photos = {pid: vs for pid, vs in photos.items() if vs}
    by_short: dict[str, str] = {}
    for pid in photos:
        sid = short_id(pid)
        if sid is not None:
            by_short.setdefault(sid, pid)

    skipped: list[dict] = []
    filtered: Counter = Counter()
    # (photo_id, object_id) -> (rle, category, mask_path or None, origin meta)
    found: dict[tuple[str, str], tuple[dict, str, str | None, dict]] = {}
    if masks is not None:
        mdir = Path(masks)
        if not mdir.is_dir():
            raise InputError(str(mdir), "mask folder not found")
        for path in sorted(f for f in mdir.iterdir() if f.is_file() and is_image_file(f)):
            match = _match_photo(path.stem, photos, by_short)
            if match is None:
                skipped.append(skip_entry(path, "no FiveK photo with this id"))
                continue
            if match in found:
                skipped.append(skip_entry(path, f"second mask for photo {match[0]} object {match[1]}"))
                continue
            try:
                mask = read_mask(path) >= 128
            except InputError as exc:
                skipped.append(skip_entry(path, exc.reason))
                continue
            if not mask.any():
                skipped.append(skip_entry(path, "empty mask"))
                continue
            found[match] = (encode_mask(mask), mask_category.strip().lower(), str(path), {})
    for rec in mask_records or ():
        match = _match_photo(Path(rec.image_path).stem, photos, by_short)
        if match is None:
            skipped.append(skip_entry(rec.image_path, f"record {rec.key}: no FiveK photo with this id"))
            continue
        pid = match[0]
        oid = make_key(rec.source, rec.object_id)
        try:
            rle = rec.mask_rle if rec.mask_rle is not None else encode_mask(rec.decode_mask())
        except (InputError, ValueError) as exc:
            skipped.append(skip_entry(rec.mask_path or rec.image_path, f"record {rec.key}: {exc}"))
            continue
        if rle_area(rle) == 0:
            skipped.append(skip_entry(rec.mask_path or rec.image_path, f"record {rec.key}: empty mask"))
            continue
        origin = {"mask_source": rec.source, "mask_key": rec.key}
        found[(pid, oid)] = (dict(rle), rec.category, rec.mask_path, origin)

    native: dict[str, dict[str, tuple[int, int]]] = {}
    for pid, vs in photos.items():
        sizes: dict[str, tuple[int, int]] = {}
        for v, p in vs.items():
            try:
                w, h = image_size(p)
            except InputError as exc:
                skipped.append(skip_entry(p, exc.reason))
                continue
            sizes[v] = (h, w)
        native[pid] = sizes

    masked = {pid for pid, _ in found}
    filtered["no_mask"] += sum(1 for pid in photos if pid not in masked)
    records: list[ObjectRecord] = []
    for (pid, oid), (rle, category, mask_path, origin) in sorted(found.items()):
        size = (int(rle["size"][0]), int(rle["size"][1]))
        usable: dict[str, str] = {}
        for v, hw in native[pid].items():
            if _same_aspect(hw, size):
                usable[v] = photos[pid][v]
            else:
                skipped.append(
                    skip_entry(
                        photos[pid][v],
                        f"version {v} is {hw[1]}x{hw[0]}, mask {mask_path or origin.get('mask_key')} is {size[1]}x{size[0]} (aspect ratio differs)",
                    )
                )
        if not usable:
            skipped.append(
                skip_entry(mask_path or pid, f"photo {pid}: no version matches the mask size {size[1]}x{size[0]}")
            )
            continue
        default = _pick_default(usable, native[pid], size, default_version)
        meta: dict[str, Any] = {
            "area": rle_area(rle),
            "bbox": rle_bbox(rle),
            "native_sizes": {v: native[pid][v] for v in usable},
            "default_version": default,
            **origin,
        }
        sid = short_id(pid)
        if sid:
            meta["fivek_number"] = sid
        records.append(
            ObjectRecord(
                key=make_key(source_name, pid, oid),
                source=source_name,
                image_id=pid,
                object_id=oid,
                image_path=usable[default],
                category=category,
                size=size,
                mask_rle=rle,
                mask_path=mask_path,
                license=license,
                versions=usable,
                meta=meta,
            )
        )
    return finish(records, skipped, filtered, filters)


def _pick_default(
    usable: Mapping[str, str], native: Mapping[str, tuple[int, int]], size: tuple[int, int], requested: str | None
) -> str:
    if requested is not None:
        name = _version_name(requested)
        if name in usable:
            return name
    order = [v for v in DEFAULT_ORDER if v in usable] + sorted(v for v in usable if v not in DEFAULT_ORDER)
    same = [v for v in order if native.get(v) == size]
    return (same or order)[0]


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 (h, w, 3)`` -> ``(H, W, 3)`` with a Lanczos filter (``size`` is ``(H, W)``)."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    img = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(img.resize((int(size[1]), int(size[0])), Image.Resampling.LANCZOS), dtype=np.uint8)


def load_versions(
    record: ObjectRecord,
    versions: Iterable[str] | None = None,
    *,
    size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """All (or the named) versions of a FiveK record as ``uint8 (H, W, 3)`` arrays of one size.

    ``size`` defaults to ``record.size`` (the mask's size); versions of another
    size are resampled with Lanczos. Raises ``InputError`` for an unreadable file
    and ``KeyError`` for an unknown version name.
    """
    target = tuple(size) if size is not None else tuple(record.size)
    all_versions = dict(record.versions) or {"default": record.image_path}
    names = list(all_versions) if versions is None else [_version_name(v) for v in versions]
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in all_versions:
            raise KeyError(f"record {record.key} has no version {name!r}; it has {', '.join(all_versions)}")
        out[name] = resize_rgb(read_rgb(all_versions[name]), target)  # type: ignore[arg-type]
    return out


__all__ = ["EXPERTS", "find_fivek_photos", "fivek_source", "load_versions", "resize_rgb", "short_id"]
