"""Helpers shared by the recipes: plan-time filters, loading, resizing, the change filter, meta.

Pixel conventions: ``uint8`` arrays are on 0–255; float arrays handed to the
colour-transfer ops are ``float32`` on 0–1. fMSE is computed on 0–255.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from harmbench.errors import InputError
from harmbench.imaging import read_rgb
from harmbench.recipes.base import SampleSpec
from harmbench.sources.base import ObjectRecord, make_key

# --------------------------------------------------------------------------- plan time


def mask_area(record: ObjectRecord) -> int:
    """Foreground pixel count, from ``meta["area"]`` or the RLE (no pixel decoding); mask files are read."""
    area = record.meta.get("area") if record.meta else None
    if area is not None:
        return int(area)
    if record.mask_rle is not None:
        from pycocotools import mask as mask_utils

        rle = dict(record.mask_rle)
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
        return int(mask_utils.area(rle))
    return int(record.decode_mask().sum())


def fg_ratio(record: ObjectRecord) -> float:
    """Foreground area / image area (0–1)."""
    h, w = record.size
    return mask_area(record) / float(max(int(h) * int(w), 1))


def sample_key(recipe_name: str, record_key: str, k: int, per_object: int) -> str:
    """``<recipe>_<record key>`` or ``<recipe>_<record key>_<k>`` (k from 1) when ``per_object > 1``."""
    return make_key(recipe_name, record_key, k if per_object > 1 else "")


def filter_objects(ctx: Any, rc: Any, records: Sequence[ObjectRecord]) -> list[tuple[ObjectRecord, str, float]]:
    """Records passing the fg-ratio filter and with a split: ``[(record, split, fg_ratio)]``.

    Rejected ones are reported with ``ctx.skip``.
    """
    lo, hi = rc.filters.fg_ratio_min, rc.filters.fg_ratio_max
    out = []
    for rec in records:
        ratio = fg_ratio(rec)
        if not (lo <= ratio <= hi):
            ctx.skip(
                rec.image_path,
                f"{rc.name}: object {rec.key}: foreground ratio {ratio:.2%} outside [{lo:.0%}, {hi:.0%}]",
            )
            continue
        split = ctx.split_of(rec.source, rec.image_id, rec.image_path)
        if split is None:
            ctx.skip(rec.image_path, f"{rc.name}: object {rec.key}: image {rec.image_id} is in no split list")
            continue
        out.append((rec, split, ratio))
    return out


# --------------------------------------------------------------------------- synthesis time


def image_ext(path: str) -> str | None:
    """``jpg``/``png`` for files the writer may store verbatim, else None."""
    ext = os.path.splitext(str(path))[1].lower()
    return {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}.get(ext)


def read_image(path: str) -> tuple[np.ndarray, bytes]:
    """``(uint8 (H, W, 3) on 0–255, file bytes)``; raises InputError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc})") from exc
    return read_rgb(data, name=str(path)), data


def fit_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """``(H, W)`` scaled so the longest side is at most ``max_side`` (aspect kept, never enlarged)."""
    if not max_side or max(h, w) <= max_side:
        return int(h), int(w)
    s = max_side / float(max(h, w))
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 (h, w, 3)`` -> ``(H, W, 3)``, Lanczos; unchanged when the size matches."""
    if tuple(rgb.shape[:2]) == tuple(size):
        return rgb
    img = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(img.resize((int(size[1]), int(size[0])), Image.Resampling.LANCZOS), dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``bool (h, w)`` -> ``bool (H, W)``: bilinear on 0/255 then threshold at 128."""
    if tuple(mask.shape) == tuple(size):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * np.uint8(255))
    return np.asarray(img.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)) >= 128


def to_unit(rgb: np.ndarray) -> np.ndarray:
    """``uint8`` 0–255 -> ``float32`` 0–1."""
    return rgb.astype(np.float32) / np.float32(255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``float`` 0–1 -> ``uint8`` 0–255 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def fmse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Foreground MSE on 0–255: ``sum_fg (a - b)^2 / (3 * N_fg)`` (0 for an empty mask)."""
    n = int(np.count_nonzero(mask))
    if n == 0:
        return 0.0
    d = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    return float(np.sum(d * d) / (3.0 * n))


def decode_object_mask(record: ObjectRecord) -> np.ndarray:
    """The record's mask as ``bool (H, W)``; InputError when it cannot be decoded or is empty."""
    try:
        mask = record.decode_mask()
    except InputError:
        raise
    except Exception as exc:  # malformed RLE: pycocotools raises various types
        raise InputError(record.mask_path or record.image_path, f"object {record.key}: cannot decode mask ({exc})") from exc
    if not mask.any():
        raise InputError(record.mask_path or record.image_path, f"object {record.key}: empty mask")
    return mask


@dataclass
class LoadedObject:
    """A photo and its object mask at the output size.

    ``real`` uint8 0–255; ``mask`` bool; ``data``/``ext`` are the original file
    bytes and format when the pixels are the unaltered file (else None);
    ``original_size`` is the file's ``(H, W)``.
    """

    real: np.ndarray
    mask: np.ndarray
    data: bytes | None
    ext: str | None
    original_size: tuple[int, int]


def load_object(record: ObjectRecord, max_side: int | None, *, path: str | None = None) -> LoadedObject:
    """Read ``record``'s photo (or ``path``) and mask, check sizes, resize to ``max_side``."""
    path = path or record.image_path
    rgb, data = read_image(path)
    mask = decode_object_mask(record)
    if rgb.shape[:2] != mask.shape:
        raise InputError(
            path, f"object {record.key}: image is {rgb.shape[1]}x{rgb.shape[0]} but its mask is {mask.shape[1]}x{mask.shape[0]}"
        )
    original = (int(rgb.shape[0]), int(rgb.shape[1]))
    size = fit_size(*original, max_side)
    if size != original:
        rgb, mask, data = resize_rgb(rgb, size), resize_mask(mask, size), None
        if not mask.any():
            raise InputError(path, f"object {record.key}: mask vanishes when resized to {size[1]}x{size[0]}")
    ext = image_ext(path) if data is not None else None
    return LoadedObject(rgb, mask, data if ext else None, ext, original)


def require_change(
    attempts: int,
    min_fmse: float,
    draw: Callable[[int], tuple[np.ndarray, dict[str, Any]] | None],
    real: np.ndarray,
    mask: np.ndarray,
    path: str,
    what: str,
) -> tuple[np.ndarray, dict[str, Any], float, int]:
    """Redraw until the composite differs enough from the real image.

    ``draw(attempt)`` returns ``(composite uint8, info)`` or None (attempt
    unusable). Returns ``(composite, info, fmse, attempt)`` for the first
    attempt with ``fmse >= min_fmse`` (0–255 scale); raises InputError after
    ``attempts`` failures, stating the best fMSE reached.
    """
    best = -1.0
    notes: list[str] = []
    for attempt in range(attempts):
        got = draw(attempt)
        if got is None:
            continue
        comp, info = got
        comp = np.where(mask[..., None], comp, real)  # background bit-exact
        f = fmse(comp, real, mask)
        if f >= min_fmse:
            return comp, info, f, attempt
        best = max(best, f)
        notes.append(f"{info.get('method', '?')}: {f:.1f}")
    detail = f"best fMSE {best:.1f} < {min_fmse:g}" if best >= 0 else "no attempt could be synthesized"
    raise InputError(path, f"{what}: composite too close to the real image after {attempts} attempt(s) ({detail})")


def sizes_meta(original: tuple[int, int], out: np.ndarray) -> dict[str, list[int]]:
    """``{"original_size": [H, W], "size": [H, W]}``."""
    return {"original_size": [int(original[0]), int(original[1])], "size": [int(out.shape[0]), int(out.shape[1])]}


def object_meta(spec: SampleSpec, record: ObjectRecord, mask: np.ndarray) -> dict[str, Any]:
    """Meta fields every object-based sample has (identity, category, licence, seed, fg ratio)."""
    inp: Mapping = spec.inputs
    return {
        "key": spec.key,
        "recipe": inp["name"],
        "recipe_type": spec.recipe,
        "split": spec.split,
        "seed": int(inp["global_seed"]),
        "sample_seed": int(spec.seed),
        "source": record.source,
        "source_name": inp.get("source_name"),
        "image_key": make_key(record.source, record.image_id),
        "image_id": record.image_id,
        "image_file": os.path.basename(record.image_path),
        "object_key": record.key,
        "object_id": record.object_id,
        "category": record.category,
        "license": record.license,
        "fg_ratio": round(float(np.count_nonzero(mask)) / float(mask.size), 6),
        "fg_ratio_plan": inp.get("fg_ratio"),
    }
