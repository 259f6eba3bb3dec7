"""Helpers shared by the recipes: plan-time filters, loading, resizing, the change filter, meta.

Pixel conventions: ``uint8`` arrays are on 0–255; float arrays handed to the
colour-transfer ops are ``float32`` on 0–1. fMSE is computed on 0–255.

Large photos: synthesis works on the object, not the frame. A colour transfer
gets only what its ``crop_mode`` (:mod:`harmbench.transfer`) says it reads —
the foreground's distinct colours (``hue``), the foreground pixels as a
``1×N`` image (``reinhard``, ``xiao``, ``ychist``, ``histmatch``), the mask's
bounding box plus the frame geometry (``idt``), or the whole frame (ops that
declare nothing) — so only that much is converted to float. The reference
photo is reduced to its region's pixels, the change filter compares the
foreground pixels only (exact integer sums), and the composite is the one
uint8 copy of the real photo with the new foreground written in. The
foreground values are identical to those of the ops run on the whole frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from harmbench.arrays import put_masked, take_masked
from harmbench.errors import InputError
from harmbench.imaging import image_info, image_size, open_image, read_rgb
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


# Rows per band when copying a decoded photo into numpy (about 4 MB a band).
_BAND_BYTES = 1 << 22


def decode_rgb(data: bytes, name: str, draft: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`harmbench.imaging.read_rgb` of encoded bytes, holding one numpy copy of the pixels.

    The file is opened and decoded by :func:`harmbench.imaging.open_image` (pixel
    limit, EXIF orientation: the photo as displayed). RGB pixels are copied out
    of the decoded image band by band into one array (``np.asarray`` of a whole
    PIL image goes through a full-size ``bytes`` object built from chunks, two
    more frame-sized buffers at 24 MP); other modes go through
    :func:`harmbench.imaging.to_rgb_array` (same pixels as ``read_rgb``).
    """
    img = open_image(data, name, draft=draft)
    if img.mode != "RGB":
        return read_rgb(data, name=name, draft=draft)
    w, h = img.size
    out = np.empty((h, w, 3), dtype=np.uint8)
    step = max(1, _BAND_BYTES // (3 * max(w, 1)))
    for y in range(0, h, step):
        out[y : y + step] = np.asarray(img.crop((0, y, w, min(h, y + step))))
    img.close()
    return out


def read_image(path: str, draft: tuple[int, int] | None = None) -> tuple[np.ndarray, bytes | None]:
    """``(uint8 (H, W, 3) on 0–255 as displayed, file bytes)``; raises InputError naming the file.

    The bytes are None when they may not be stored verbatim: the file carries an EXIF
    orientation, so its stored pixels are not the displayed ones. ``draft=(W, H)``: a
    JPEG may be decoded reduced to no less than that size
    (:func:`harmbench.imaging.open_image`); compare the result with the header size.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(path, "is a folder, not an image file") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc})") from exc
    rgb = decode_rgb(data, str(path), draft=draft)
    return rgb, (data if image_info(data, str(path), limit=0).orientation == 1 else None)


#: A photo is decoded reduced (JPEG DCT scaling) to no less than this many times its output size.
DRAFT_OVERSAMPLE = 2


def draft_size(original: tuple[int, int], target: tuple[int, int]) -> tuple[int, int] | None:
    """``(W, H)`` to ask :func:`read_image` for when an ``original`` (H, W) photo ends at ``target`` (H, W).

    None when no reduction is wanted (no resize). The reduced decode keeps at least
    :data:`DRAFT_OVERSAMPLE` × the output size, which the Lanczos resize then brings down.
    """
    if tuple(target) == tuple(original):
        return None
    return (DRAFT_OVERSAMPLE * int(target[1]), DRAFT_OVERSAMPLE * int(target[0]))


#: Seconds per megapixel on one CPU core (2-core AMD EPYC) for :func:`estimate_seconds`: decoding a
#: JPEG photo, and encoding a sample's outputs (JPEG composite and PNG mask).
DECODE_S_PER_MP = 0.007
ENCODE_S_PER_MP = 0.012


def estimate_seconds(
    photos: Sequence[tuple[int, int]], max_side: int | None, fg_ratio: float = 0.0, op: str | None = None
) -> float:
    """Estimated one-core seconds to synthesize and encode one sample (for task ordering only).

    ``photos``: ``(H, W)`` of every photo the sample decodes, the sample's own photo first
    (its output size is that one fitted to ``max_side``); ``fg_ratio``: foreground share of
    the output (0–1); ``op``: the colour transfer applied to the foreground, if any
    (:func:`harmbench.transfer.transfer_cost`). A reduced (draft) decode is counted at
    :data:`DRAFT_OVERSAMPLE`² × the output pixels.
    """
    if not photos:
        return 0.0
    total = 0.0
    for h, w in photos:
        oh, ow = fit_size(h, w, max_side)
        total += DECODE_S_PER_MP * min(h * w, DRAFT_OVERSAMPLE**2 * oh * ow) / 1e6
    out_mp = float(np.prod(fit_size(*photos[0], max_side))) / 1e6
    total += ENCODE_S_PER_MP * out_mp
    if op is not None:
        from harmbench.transfer import transfer_cost

        total += transfer_cost(op) * max(0.0, float(fg_ratio)) * out_mp
    return total


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
    """``float`` 0–1 -> ``uint8`` 0–255 (rounded in float64, clipped)."""
    y = np.multiply(x, 255.0, dtype=np.float64)
    np.rint(y, out=y)
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8)


def mask_box(mask: np.ndarray) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of the bounding box of a non-empty ``bool (H, W)`` mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise ValueError("mask_box: empty mask")
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def fmse_pixels(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`fmse` of two ``uint8 (N, 3)`` foreground pixel lists (exact integer sum; 0 when empty)."""
    n = len(a)
    if n == 0:
        return 0.0
    d = a.astype(np.int32) - b.astype(np.int32)
    return float(np.sum(d * d, dtype=np.int64)) / (3.0 * n)


def fmse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Foreground MSE on 0–255: ``sum_fg (a - b)^2 / (3 * N_fg)`` (0 for an empty mask)."""
    if not mask.any():
        return 0.0
    box = mask_box(mask)
    m = mask[box]
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        return fmse_pixels(take_masked(a[box], m), take_masked(b[box], m))
    d = take_masked(a[box], m).astype(np.float64) - take_masked(b[box], m).astype(np.float64)
    return float(np.sum(d * d) / (3.0 * len(d)))


@dataclass
class Palette:
    """Pixels as distinct colours: ``colours[inverse]`` is the ``(N, 3)`` list.

    ``colours`` ``uint8 (K, 3)`` (sorted by code), ``inverse`` ``(N,)`` indices,
    ``counts`` ``int64 (K,)`` pixels per colour.
    """

    colours: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, pixels: np.ndarray) -> Palette:
        from harmbench.transfer._common import code_rgb, colour_key, distinct_codes

        codes, inverse, counts = distinct_codes(colour_key(pixels))
        return cls(code_rgb(codes), inverse, counts)


@dataclass
class Recoloured:
    """A new foreground given per colour of the foreground's :class:`Palette` (``uint8 (K, 3)``)."""

    colours: np.ndarray


@dataclass
class Foreground:
    """An object's region of a frame: the mask's bounding box and the real pixels under the mask.

    ``box`` ``(rows, cols)`` slices; ``mask`` the ``bool`` mask cropped to it;
    ``pixels`` ``uint8 (N, 3)`` = ``real[full mask]`` (raster order, as the ops
    list foreground pixels); ``frame`` the full ``(H, W)``.

    A new foreground is either ``uint8 (N, 3)`` pixels in that order or a
    :class:`Recoloured` palette.
    """

    box: tuple[slice, slice]
    mask: np.ndarray
    pixels: np.ndarray
    frame: tuple[int, int]
    _palette: Palette | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, real: np.ndarray, mask: np.ndarray) -> Foreground:
        box = mask_box(mask)
        m = np.ascontiguousarray(mask[box])
        return cls(box, m, take_masked(real[box], m), (int(mask.shape[0]), int(mask.shape[1])))

    @property
    def origin(self) -> tuple[int, int]:
        """``(top, left)`` of the box in the frame."""
        return self.box[0].start, self.box[1].start

    @property
    def palette(self) -> Palette:
        if self._palette is None:
            self._palette = Palette.of(self.pixels)
        return self._palette

    def expand(self, new: np.ndarray | Recoloured) -> np.ndarray:
        """The new foreground as ``uint8 (N, 3)`` pixels."""
        return new.colours[self.palette.inverse] if isinstance(new, Recoloured) else new

    def fmse(self, new: np.ndarray | Recoloured) -> float:
        """:func:`fmse` of the new foreground against the real one (exact integer sums)."""
        if not isinstance(new, Recoloured):
            return fmse_pixels(new, self.pixels)
        pal = self.palette
        d = new.colours.astype(np.int32) - pal.colours.astype(np.int32)
        total = int(np.dot((d * d).sum(axis=1).astype(np.int64), pal.counts))
        return float(total) / (3.0 * len(self.pixels))

    def paste(self, real: np.ndarray, new: np.ndarray | Recoloured) -> np.ndarray:
        """Copy of ``real`` (uint8 frame) with the new foreground written in."""
        out = real.copy()
        put_masked(out[self.box], self.mask, self.expand(new))
        return out


def _strip(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 (N, 3)`` -> ``(float32 (1, N, 3) image, all-true (1, N) mask)`` listing the pixels."""
    return to_unit(pixels[None]), np.ones((1, len(pixels)), dtype=bool)


class TransferTarget:
    """A photo whose foreground a colour transfer edits (see the module docstring).

    What the op gets follows its ``crop_mode``: ``"pixel"`` the palette's
    colours, ``"mask"`` the foreground pixels as a ``1×N`` image, ``"frame"``
    the mask's bounding box (with ``frame=``), None the whole frame. The float
    input is made on first use and kept for the next attempts.
    """

    def __init__(self, real: np.ndarray, mask: np.ndarray):
        self.real = real
        self.mask = mask
        self.fg = Foreground.of(real, mask)
        self._inputs: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}

    def _input(self, mode: str | None) -> tuple[np.ndarray, np.ndarray]:
        if mode not in self._inputs:
            if mode == "pixel":
                self._inputs[mode] = _strip(self.fg.palette.colours)
            elif mode == "mask":
                self._inputs[mode] = _strip(self.fg.pixels)
            elif mode == "frame":
                self._inputs[mode] = (to_unit(self.real[self.fg.box]), self.fg.mask)
            else:
                self._inputs[mode] = (to_unit(self.real), self.mask)
        return self._inputs[mode]

    def apply(self, name: str, ref: TransferSource | None, params: Mapping[str, Any]) -> np.ndarray | Recoloured:
        """Run colour transfer ``name`` with ``params``: the new foreground (see :class:`Foreground`).

        ValueError from the op propagates (empty/black reference …).
        """
        from harmbench.transfer import crop_mode, get_transfer

        op = get_transfer(name)
        mode = crop_mode(name)
        image, mask = self._input(mode)
        ref_image, ref_mask = (None, None) if ref is None else ref.region(mode is None)
        extra: dict[str, Any] = {}
        if mode == "frame":
            extra["frame"] = (*self.fg.frame, *self.fg.origin)
        out = op(image, mask, ref_image, ref_mask, **params, **extra)
        if mode in ("pixel", "mask"):  # a 1×N strip with an all-true mask: out[mask] is the reshape
            return Recoloured(to_uint8(out.reshape(-1, 3))) if mode == "pixel" else to_uint8(out.reshape(-1, 3))
        return to_uint8(take_masked(out, mask))


@dataclass
class TransferSource:
    """The reference region of a colour transfer: another photo's object.

    ``pixels`` ``uint8 (M, 3)`` are the region's pixels (raster order), all
    that the cropping ops read; ``full``/``full_mask`` the whole photo and
    mask, kept only when asked (stored reference, or an op that needs the
    whole frame); ``size`` the photo's ``(H, W)``.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    full: np.ndarray | None = None
    full_mask: np.ndarray | None = None

    @classmethod
    def of(cls, real: np.ndarray, mask: np.ndarray, keep_full: bool) -> TransferSource:
        box = mask_box(mask)
        size = (int(real.shape[0]), int(real.shape[1]))
        return cls(take_masked(real[box], mask[box]), size, real if keep_full else None, mask if keep_full else None)

    def region(self, whole: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 image, bool mask)`` for an op: the pixel list, or the whole photo when ``whole``."""
        if whole:
            if self.full is None:
                raise RuntimeError("TransferSource: the whole reference photo was not kept")
            return to_unit(self.full), self.full_mask
        return _strip(self.pixels)


def decode_object_mask(record: ObjectRecord) -> np.ndarray:
    """The record's mask as ``bool (H, W)``; InputError when it cannot be decoded or is empty."""
    try:
        mask = record.decode_mask()
    except InputError:
        raise
    except Exception as exc:  # malformed RLE: pycocotools raises various types
        raise InputError(
            record.mask_path or record.image_path, f"object {record.key}: cannot decode mask ({exc})"
        ) from exc
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
    mask = decode_object_mask(record)
    size = fit_size(*mask.shape, max_side)
    rgb, data = read_image(path, draft=draft_size(mask.shape, size))
    w, h = image_size(path) if rgb.shape[:2] != mask.shape else (rgb.shape[1], rgb.shape[0])
    if (h, w) != mask.shape:
        raise InputError(path, f"object {record.key}: image is {w}x{h} but its mask is {mask.shape[1]}x{mask.shape[0]}")
    original = (int(h), int(w))
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
    fg: Foreground,
    path: str,
    what: str,
) -> tuple[np.ndarray, dict[str, Any], float, int]:
    """Redraw until the composite differs enough from the real image.

    ``draw(attempt)`` returns ``(new foreground, info)`` (``uint8 (N, 3)``
    pixels under ``fg``'s mask in raster order, or a :class:`Recoloured`
    palette) or None (attempt unusable).
    Returns ``(composite, info, fmse, attempt)`` for the first attempt with
    ``fmse >= min_fmse`` (0–255 scale), the composite being ``real`` with that
    foreground (background bit-exact); raises InputError after ``attempts``
    failures, stating the best fMSE reached.
    """
    best = -1.0
    notes: list[str] = []
    for attempt in range(attempts):
        got = draw(attempt)
        if got is None:
            continue
        new, info = got
        f = fg.fmse(new)
        if f >= min_fmse:
            return fg.paste(real, new), info, f, attempt
        best = max(best, f)
        notes.append(f"{info.get('method', '?')}: {f:.1f}")
        del new, got
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
