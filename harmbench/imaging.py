"""Reading and encoding images and masks: the one place where files become arrays.

Every entry point (``score``, ``eval``, the sources of ``build``, ``harmonize``,
``inspect`` and the training loaders) reads pixels through :func:`read_rgb`,
:func:`read_mask` and :func:`image_size`. What they decide, once:

Colour images -> ``uint8 (H, W, 3)`` on 0–255
    ``RGB`` as is; ``L``/``1`` replicated to three channels; ``P`` through its
    palette; ``RGBA``/``LA``/``PA`` lose their alpha (not composited); ``CMYK``
    through Pillow's conversion without colour profile (``R = (255 − C)(255 − K)/255``),
    ``YCbCr`` through Pillow's; 16-bit samples
    (``I;16`` grey, 16-bit RGB PNG) keep their high byte (``v >> 8``, what Pillow
    does for 16-bit RGB); ``I`` (32-bit) is read as 16-bit, ``F`` as 0–1.
Masks -> raw ``uint8 (H, W)`` on 0–255 (binarising is the caller's: profiles, recipes)
    ``L``: as stored, a 0/1 mask scaled to 0/255 (soft and JPEG-noisy masks keep
    their values); ``1``: 0/255; 16-bit: high byte (a 0/1 16-bit mask: 0/255);
    ``RGB``: the largest channel (a grey mask reads as its grey, a red-on-black
    annotation as 255, not as its luma 76); ``RGBA``/``LA``/``PA``: the alpha when
    the colour is constant and the alpha is not, else as without alpha;
    ``P`` (palette, PASCAL VOC and most annotation tools): index ``!= 0`` is
    foreground (255), or only ``palette_index`` when given — except a grey palette
    (every used entry has r = g = b), which reads as its grey values.
EXIF orientation
    Applied by default (``orient=True``): images and masks come out as displayed.
    This is the ``harmbench`` profile's and the builders' choice; the
    public-codebase profiles follow their reader (``Profile.exif_orientation``:
    OpenCV ``imread`` applies the tag, PIL ``open`` does not).
Pixel limit
    A file whose width × height exceeds :func:`max_pixels` (default Pillow's
    ``MAX_IMAGE_PIXELS``, 89,478,485; ``HARMBENCH_MAX_PIXELS`` or
    :func:`set_max_pixels` change it, 0 turns it off) is refused from its header,
    before any pixel is decoded, with an :class:`InputError` naming it. Pillow's
    own check is replaced by this one (one configurable number).
Reduced decoding
    ``draft=(W, H)``: a JPEG is decoded with DCT scaling (1/2, 1/4, 1/8) to the
    smallest size that is still at least ``W × H``; other formats decode at full
    size. Callers ask for it only when the result is resized to that size or
    smaller anyway: the builders with ``output.max_side``. Scoring never does —
    a JPEG reference and a PNG prediction would then be reduced by different
    filters and compared on unequal terms.

Every failure raises :class:`harmbench.errors.InputError` naming the file; no
other exception escapes these functions for any byte string.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from harmbench.errors import InputError

PathLike = str | os.PathLike

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Pillow's default decompression-bomb limit (pixels), the default of :func:`max_pixels`.
DEFAULT_MAX_PIXELS = 89_478_485
MAX_PIXELS_ENV = "HARMBENCH_MAX_PIXELS"
EXIF_ORIENTATION_TAG = 0x0112

# harmbench enforces its own limit before decoding; Pillow's check (a warning, then an
# exception that is not an OSError at twice the limit) would fire on top of it.
Image.MAX_IMAGE_PIXELS = None

_max_pixels_override: int | None = None
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit of this process (``None``: back to the environment/default; 0: no limit)."""
    global _max_pixels_override
    if limit is not None and int(limit) < 0:
        raise ValueError(f"pixel limit must be >= 0, got {limit}")
    _max_pixels_override = None if limit is None else int(limit)


def max_pixels() -> int:
    """The pixel limit in force: :func:`set_max_pixels`, else ``$HARMBENCH_MAX_PIXELS``, else Pillow's default (0 = none)."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if env:
        try:
            return max(0, int(float(env)))
        except ValueError:
            pass
    return DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says: displayed ``size`` (W, H), stored size, mode, format and EXIF orientation (1–8)."""

    size: tuple[int, int]
    stored_size: tuple[int, int]
    mode: str
    format: str | None
    orientation: int

    @property
    def rotated(self) -> bool:
        """Whether the orientation swaps width and height (tags 5–8)."""
        return self.orientation in (5, 6, 7, 8)


def _name_of(source: PathLike | bytes, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)


def _orientation(img: Image.Image) -> int:
    try:
        with warnings.catch_warnings():  # Pillow warns about corrupt EXIF blocks: they mean "no orientation" here
            warnings.simplefilter("ignore")
            value = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation, never a crash
        return 1
    return value if 1 <= value <= 8 else 1


def _open_header(source: PathLike | bytes, name: str, limit: int | None) -> Image.Image:
    """``Image.open`` with every failure as an :class:`InputError`; refuses images over the pixel limit."""
    try:
        with warnings.catch_warnings():  # damage is reported as an InputError, never as a Pillow warning
            warnings.simplefilter("ignore")
            img = Image.open(
                io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray | memoryview) else source
            )
    except FileNotFoundError as exc:
        raise InputError(name, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(name, "is a folder, not an image file") from exc
    except UnidentifiedImageError as exc:
        raise InputError(name, "not a readable image") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on junk headers
        raise InputError(name, f"cannot read image header ({type(exc).__name__}: {exc})") from exc
    w, h = img.size
    lim = max_pixels() if limit is None else int(limit)
    if w <= 0 or h <= 0:
        img.close()
        raise InputError(name, f"image has no pixels ({w}x{h})")
    if lim and w * h > lim:
        img.close()
        raise InputError(
            name,
            f"image is {w}x{h} = {w * h:,} pixels, above the pixel limit of {lim:,} "
            f"(set {MAX_PIXELS_ENV} or --max-pixels to raise it)",
        )
    return img


def _decode(img: Image.Image, name: str, orient: bool, draft: tuple[int, int] | None, draft_mode: str) -> Image.Image:
    """Decode the pixels (reduced for a JPEG when ``draft`` allows) and apply the EXIF orientation."""
    orientation = _orientation(img) if orient else 1
    try:
        if draft is not None and img.format == "JPEG":
            dw, dh = int(draft[0]), int(draft[1])
            if orientation in (5, 6, 7, 8):  # the stored image is transposed w.r.t. the displayed one
                dw, dh = dh, dw
            if dw > 0 and dh > 0:
                img.draft(draft_mode if img.mode in ("RGB", "L") else None, (dw, dh))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()  # full decode: truncated files fail here, not later
        if orientation != 1:
            shown = ImageOps.exif_transpose(img)
            img.close()
            img = shown
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data raise OSError, SyntaxError, ValueError, …
        img.close()
        raise InputError(name, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    return img


def open_image(
    source: PathLike | bytes,
    name: str | None = None,
    *,
    orient: bool = True,
    limit: int | None = None,
    draft: tuple[int, int] | None = None,
    draft_mode: str = "RGB",
) -> Image.Image:
    """A decoded PIL image (orientation applied when ``orient``); :class:`InputError` for anything unusable."""
    name = _name_of(source, name)
    return _decode(_open_header(source, name, limit), name, orient, draft, draft_mode)


def image_info(source: PathLike | bytes, name: str | None = None, *, limit: int | None = None) -> ImageInfo:
    """Header facts of a file without decoding pixels (the pixel limit applies: 0 disables it here)."""
    name = _name_of(source, name)
    with _open_header(source, name, limit) as img:
        w, h = img.size
        o = _orientation(img)
        size = (h, w) if o in (5, 6, 7, 8) else (w, h)
        return ImageInfo(size=size, stored_size=(w, h), mode=img.mode, format=img.format, orientation=o)


def image_size(source: PathLike | bytes, name: str | None = None, *, orient: bool = True) -> tuple[int, int]:
    """``(width, height)`` as displayed (``orient``) or as stored, from the header, without decoding pixels."""
    info = image_info(source, name)
    return info.size if orient else info.stored_size


# --------------------------------------------------------------------------- colour images


def _high_byte(arr: np.ndarray) -> np.ndarray:
    """16-bit (or wider) integer samples -> ``uint8`` high byte, clipped to 0–65535 first."""
    a = np.asarray(arr)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a, nan=0.0)
    a = np.clip(a, 0, 65535).astype(np.uint32)
    return (a >> 8).astype(np.uint8)


def _float_unit(arr: np.ndarray) -> np.ndarray:
    """``F`` samples on 0–1 -> ``uint8`` 0–255 (NaN as 0, clipped)."""
    a = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Decoded PIL image -> ``uint8 (H, W, 3)`` on 0–255 by the rules of the module docstring."""
    if img.mode in _SIXTEEN_BIT:
        g = _high_byte(np.asarray(img))
        return np.repeat(g[..., None], 3, axis=2)
    if img.mode == "F":
        g = _float_unit(np.asarray(img))
        return np.repeat(g[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def read_rgb(
    source: PathLike | bytes,
    name: str | None = None,
    *,
    orient: bool = True,
    limit: int | None = None,
    draft: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read an image file (or encoded bytes) as ``uint8 (H, W, 3)`` on 0–255.

    ``orient``: apply the EXIF orientation; ``limit``: pixel limit (default
    :func:`max_pixels`); ``draft``: ``(W, H)`` a JPEG may be reduced to (see the module docstring).
    """
    name = _name_of(source, name)
    img = open_image(source, name, orient=orient, limit=limit, draft=draft)
    try:
        return to_rgb_array(img)
    except Exception as exc:  # noqa: BLE001 - an exotic mode Pillow cannot convert
        raise InputError(name, f"cannot convert image mode {img.mode!r} to RGB ({exc})") from exc
    finally:
        img.close()


# --------------------------------------------------------------------------- masks


def _palette_mask(img: Image.Image, palette_index: int | None) -> np.ndarray:
    idx = np.asarray(img)  # palette indices
    if palette_index is not None:
        return np.where(idx == int(palette_index), np.uint8(255), np.uint8(0))
    pal = img.getpalette() or []
    used = [int(i) for i in np.unique(idx)]
    colours = [tuple(pal[3 * i : 3 * i + 3]) for i in used if 3 * i + 3 <= len(pal)]
    if colours and len(colours) == len(used) and all(c[0] == c[1] == c[2] for c in colours):
        lut = np.zeros(256, np.uint8)
        for i in range(min(256, len(pal) // 3)):
            lut[i] = pal[3 * i]
        return lut[idx]  # a grey palette is a grey mask stored compactly
    return np.where(idx != 0, np.uint8(255), np.uint8(0))


def mask_array(img: Image.Image, *, palette_index: int | None = None) -> np.ndarray:
    """Decoded PIL image -> raw mask ``uint8 (H, W)`` on 0–255 by the rules of the module docstring."""
    mode = img.mode
    if mode == "P" and "transparency" not in img.info:
        arr = _palette_mask(img, palette_index)
    elif mode in ("RGBA", "LA", "PA", "P"):
        rgba = np.asarray(img.convert("RGBA"))
        rgb, alpha = rgba[..., :3], rgba[..., 3]
        if rgb.min() == rgb.max() and alpha.min() != alpha.max():
            arr = alpha
        elif mode == "P":
            arr = _palette_mask(img, palette_index)
        elif mode == "LA":
            arr = rgba[..., 0]
        else:
            arr = rgb.max(axis=2)
    elif mode == "1":
        arr = np.asarray(img, dtype=np.uint8) * np.uint8(255)
    elif mode in _SIXTEEN_BIT:
        a = np.asarray(img)
        arr = (a > 0).astype(np.uint8) * np.uint8(255) if a.size and a.max() <= 1 else _high_byte(a)
    elif mode == "F":
        arr = _float_unit(np.asarray(img))
    elif mode == "L":
        arr = np.asarray(img, dtype=np.uint8)
    else:  # RGB, CMYK, YCbCr, HSV, LAB …
        rgb = np.asarray(img if mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
        arr = rgb.max(axis=2)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.size and arr.max() == 1:  # 0/1 mask
        arr = arr * np.uint8(255)
    return arr


def read_mask(
    source: PathLike | bytes,
    name: str | None = None,
    *,
    orient: bool = True,
    limit: int | None = None,
    palette_index: int | None = None,
) -> np.ndarray:
    """Read a mask file (or encoded bytes) as a raw ``uint8 (H, W)`` array on 0–255.

    ``palette_index``: for palette masks, the one index that is foreground
    (default: every index but 0). Other modes follow the module docstring.
    """
    name = _name_of(source, name)
    img = open_image(source, name, orient=orient, limit=limit, draft_mode="L")
    try:
        return mask_array(img, palette_index=palette_index)
    except Exception as exc:  # noqa: BLE001
        raise InputError(name, f"cannot read mode {img.mode!r} as a mask ({exc})") from exc
    finally:
        img.close()


def binarize(mask_raw: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Raw 0–255 mask -> ``bool (H, W)``: ``mask >= threshold``."""
    return np.asarray(mask_raw) >= threshold


# --------------------------------------------------------------------------- encoding and names


def encode_image(rgb: np.ndarray, fmt: str, *, quality: int = 95) -> bytes:
    """Encode ``uint8 (H, W, 3)`` or ``(H, W)`` as ``'jpg'`` or ``'png'`` bytes.

    JPEG uses 4:4:4 chroma (no subsampling) so colour edits on small
    foregrounds survive; PNG uses a fixed compression level so output bytes
    are deterministic.
    """
    img = Image.fromarray(np.ascontiguousarray(rgb))
    buf = io.BytesIO()
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        img.save(buf, format="JPEG", quality=int(quality), subsampling=0, optimize=False)
    elif fmt == "png":
        img.save(buf, format="PNG", compress_level=6, optimize=False)
    else:
        raise ValueError(f"unsupported image format {fmt!r} (use 'jpg' or 'png')")
    return buf.getvalue()


def is_image_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "ImageInfo",
    "binarize",
    "encode_image",
    "image_info",
    "image_size",
    "is_image_file",
    "mask_array",
    "max_pixels",
    "open_image",
    "read_mask",
    "read_rgb",
    "set_max_pixels",
    "to_rgb_array",
]
