"""Reading and encoding images and masks: the one place where files become arrays.

Conventions used throughout harmbench:

* RGB images are ``uint8`` arrays of shape ``(H, W, 3)`` on the 0–255 scale.
  Alpha is dropped (not composited); grayscale and palette images become RGB.
* Masks are read as ``uint8`` arrays of shape ``(H, W)`` on the 0–255 scale
  ("raw" masks): 0/1 masks are scaled to 0/255, RGB(A) masks are reduced to one
  channel. Binarisation (threshold, resize) is the job of the caller (metric
  profiles, recipes), because public codebases differ exactly there.
* EXIF orientation is NOT applied, like OpenCV-free research code (PIL) does;
  datasets are stored upright.

Every failure raises :class:`harmbench.errors.InputError` naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harmbench.errors import InputError

PathLike = str | os.PathLike

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _open(source: PathLike | bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source)
        img.load()  # force full decode: truncated files fail here, not later
    except FileNotFoundError as exc:
        raise InputError(name, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise InputError(name, "not a readable image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(name, f"cannot decode image ({exc})") from exc
    return img


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """PIL image -> ``uint8 (H, W, 3)``; alpha dropped, gray/palette expanded."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr / (65535.0 if arr.max() > 255 else 1.0) * (255.0 if arr.max() > 255 else 1.0), 0, 255)
        arr = np.round(arr).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_rgb(source: PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file (or encoded bytes) as ``uint8 (H, W, 3)``, 0–255."""
    name = name or (str(source) if not isinstance(source, bytes | bytearray) else "<bytes>")
    return to_rgb_array(_open(source, name))


def read_mask(source: PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read a mask file as a raw ``uint8 (H, W)`` array on the 0–255 scale.

    Accepts 1-channel, RGB or RGBA masks, stored as 0/255 or 0/1 (PNG) or as
    grayscale JPEG. For RGBA masks whose colour is constant the alpha channel
    is the mask; otherwise alpha is dropped and the colour is converted to
    luma (ITU-R 601, PIL ``convert('L')``).
    """
    name = name or (str(source) if not isinstance(source, bytes | bytearray) else "<bytes>")
    img = _open(source, name)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        rgb, alpha = rgba[..., :3], rgba[..., 3]
        if rgb.min() == rgb.max() and alpha.min() != alpha.max():
            arr = alpha
        else:
            arr = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).convert("L"))
    elif img.mode == "1":
        arr = np.asarray(img, dtype=np.uint8) * 255
    elif img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        arr = (a > 0).astype(np.uint8) * 255 if a.max() <= 1 else np.clip(a * 255.0 / a.max(), 0, 255).astype(np.uint8)
    else:
        arr = np.asarray(img.convert("L"), dtype=np.uint8)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.size and arr.max() == 1:  # 0/1 mask
        arr = arr * np.uint8(255)
    return arr


def binarize(mask_raw: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Raw 0–255 mask -> ``bool (H, W)``: ``mask >= threshold``."""
    return np.asarray(mask_raw) >= threshold


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


def image_size(path: PathLike) -> tuple[int, int]:
    """``(width, height)`` from the header, without decoding pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as exc:
        raise InputError(str(path), "file not found") from exc
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(str(path), f"not a readable image ({exc})") from exc


def is_image_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
