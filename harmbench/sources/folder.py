"""An image folder plus a mask folder -> :class:`ObjectRecord` s.

A mask belongs to the photo whose stem it carries: ``<stem>.png`` (object ``0``)
or ``<stem>_<n>.<ext>`` (object ``n``, the iHarmony4/HCOCO naming). Images and
masks may share one folder (``hcoco_real_mask_pairs``: ``c35030.jpg`` and its
mask ``c35030_434421.jpg``): there, a file whose stem is ``<photo stem>_<n>`` is
a mask. Masks are raw 0–255 (grayscale JPEG allowed), foreground ``>= 128``.

Call: ``get_source("folder")(images=..., masks=..., category="person")``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from harmbench.errors import InputError
from harmbench.imaging import image_size, is_image_file, read_mask
from harmbench.sources import register_source
from harmbench.sources.base import ObjectRecord, SourceRecords, make_key, skip_entry
from harmbench.sources.coco import encode_mask, finish, rle_area, rle_bbox, split_filter_options

PathLike = str | os.PathLike


def _split_stem(stem: str, photos: dict[str, Path]) -> tuple[str, str] | None:
    if stem in photos:
        return stem, "0"
    if "_" in stem:
        head, tail = stem.rsplit("_", 1)
        if tail.isdigit() and head in photos:
            return head, tail
    return None


@register_source("folder")
def folder_source(
    images: PathLike,
    masks: PathLike | None = None,
    *,
    category: str = "object",
    source_name: str = "folder",
    license: str | None = None,
    palette_index: int | None = None,
    **filters: Any,
) -> SourceRecords:
    """One record per mask file; ``masks`` defaults to ``images`` (shared folder).

    ``palette_index``: for palette (mode ``P``) masks, the one index that is the
    object (default: every index but 0; see :mod:`harmbench.imaging`).

    A mask whose size differs from its photo, an empty or unreadable mask, an
    unreadable photo and a mask without photo are skipped with their reason.
    """
    filters = split_filter_options(filters, "folder")
    img_dir = Path(images)
    mask_dir = Path(masks) if masks is not None else img_dir
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise InputError(str(d), "folder not found")
    shared = img_dir.resolve() == mask_dir.resolve()
    files = sorted(f for f in img_dir.iterdir() if f.is_file() and is_image_file(f))
    if shared:
        stems = {f.stem for f in files}

        def is_mask(stem: str) -> bool:
            head, _, tail = stem.rpartition("_")
            return bool(head) and tail.isdigit() and head in stems

        photos = {f.stem: f for f in files if not is_mask(f.stem)}
        mask_files = [f for f in files if is_mask(f.stem)]
    else:
        photos = {f.stem: f for f in files}
        mask_files = sorted(f for f in mask_dir.iterdir() if f.is_file() and is_image_file(f))

    skipped: list[dict] = []
    # two photos with one stem (a.jpg, a.png) would give their masks one key: both are left out
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        if f.stem in photos:
            by_stem.setdefault(f.stem, []).append(f)
    for stem, same in sorted(by_stem.items()):
        if len(same) > 1:
            for f in same:
                skipped.append(skip_entry(f, f"photo stem {stem!r} is shared by: {', '.join(map(str, same))}"))
            photos.pop(stem)
    filtered: Counter = Counter()
    sizes: dict[str, tuple[int, int] | None] = {}
    records: list[ObjectRecord] = []
    used: dict[str, Path] = {}
    for mf in mask_files:
        match = _split_stem(mf.stem, photos)
        if match is None:
            skipped.append(skip_entry(mf, "no photo with this stem"))
            continue
        stem, oid = match
        if stem not in sizes:
            try:
                w, h = image_size(photos[stem])
                sizes[stem] = (h, w)
            except InputError as exc:
                skipped.append(skip_entry(photos[stem], exc.reason))
                sizes[stem] = None
        hw = sizes[stem]
        if hw is None:
            skipped.append(skip_entry(mf, "its photo is unreadable"))
            continue
        try:
            mask = read_mask(mf, palette_index=palette_index) >= 128
        except InputError as exc:
            skipped.append(skip_entry(mf, exc.reason))
            continue
        if mask.shape != hw:
            skipped.append(skip_entry(mf, f"mask is {mask.shape[1]}x{mask.shape[0]}, photo is {hw[1]}x{hw[0]}"))
            continue
        if not mask.any():
            skipped.append(skip_entry(mf, "empty mask"))
            continue
        key = make_key(source_name, stem, oid)
        if key in used:
            skipped.append(
                skip_entry(mf, f"key {key!r} is shared with {used[key]} (one mask per photo and object number)")
            )
            continue
        used[key] = mf
        rle = encode_mask(mask)
        records.append(
            ObjectRecord(
                key=key,
                source=source_name,
                image_id=stem,
                object_id=oid,
                image_path=str(photos[stem]),
                category=category.strip().lower(),
                size=hw,
                mask_rle=rle,
                mask_path=str(mf),
                license=license,
                meta={"area": rle_area(rle), "bbox": rle_bbox(rle)},
            )
        )
    filtered["no_mask"] += sum(1 for s in photos if s not in sizes)
    return finish(records, skipped, filtered, filters)


__all__ = ["folder_source"]
