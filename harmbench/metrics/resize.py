"""Resize strategies and the exact resize/mask routines of each codebase.

Strategies (``RESIZES``), as named in SamsungLabs ``evaluate_model.py``:

* ``"fixed256"`` — every image, mask and prediction to 256×256 (aspect ratio not kept);
  the standard iHarmony4 protocol.
* ``"limit1024"`` — longest side at most 1024, aspect ratio kept, never upscaled:
  an image whose longest side is ≤ 1024 is left as is, otherwise both sides are
  scaled by ``1024 / longest`` and rounded with Python's ``round`` (as
  albumentations' ``LongestMaxSize`` does).
* ``"none"`` — native resolution.

Image filters operate on ``uint8 (H, W, 3)`` and return ``uint8`` (the libraries
round back to 8 bits, as the original scripts get). Mask rules take the raw
``uint8 (H, W)`` 0–255 mask and return ``float32 (H', W')`` in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from harmbench.errors import UserError

RESIZES = ("fixed256", "limit1024", "none")


def target_size(height: int, width: int, resize: str) -> tuple[int, int]:
    """``(H', W')`` that ``resize`` gives for an image of ``height × width``."""
    if resize == "fixed256":
        return 256, 256
    if resize == "none":
        return height, width
    if resize == "limit1024":
        longest = max(height, width)
        if longest <= 1024:
            return height, width
        scale = 1024 / float(longest)
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    raise UserError(f"resize {resize!r} is not one of {', '.join(RESIZES)}")


# ---- image filters: uint8 (H, W, 3) -> uint8 (h, w, 3) -------------------------------------------


def cv2_linear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV ``INTER_LINEAR`` (albumentations ``Resize`` default; no antialiasing)."""
    h, w = size
    return cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)


def pil_bicubic(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL ``Image.resize(..., BICUBIC)`` on an 8-bit RGB image (antialiased when shrinking)."""
    h, w = size
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.Resampling.BICUBIC))


IMAGE_FILTERS = {
    "cv2_linear": cv2_linear,
    "pil_bicubic": pil_bicubic,
}


def resize_image(img: np.ndarray, size: tuple[int, int], filter_name: str) -> np.ndarray:
    if img.shape[:2] == tuple(size):
        return img
    return IMAGE_FILTERS[filter_name](img, size)


# ---- mask rules: raw uint8 (H, W) -> float32 (h, w) in [0, 1] ------------------------------------


def mask_cv2_linear_float(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """SamsungLabs: ``raw / 255`` as float32, resized like an image with ``INTER_LINEAR``;
    the result stays continuous (no threshold)."""
    m = raw.astype(np.float32) / 255.0
    if m.shape != tuple(size):
        m = cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return m.astype(np.float32)


def mask_pil_1bit_nearest(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bcmi/zhenglab: ``convert('1')`` first (Floyd–Steinberg dithering around 128 for grey
    levels; exact for 0/255 masks), then ``resize`` — PIL forces NEAREST for mode ``'1'``
    whatever filter is asked for."""
    img = Image.fromarray(np.ascontiguousarray(raw, dtype=np.uint8)).convert("1")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def mask_pil_bilinear_threshold(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """harmbench: ``raw / 255`` as a float image, PIL BILINEAR resize (antialiased: each output
    pixel is the area-weighted coverage), then binary ``> 0.5`` — the same test as the
    foreground-ratio rule, so ``mask.mean() == fg_ratio``."""
    m = raw.astype(np.float32) / 255.0
    if m.shape != tuple(size):
        m = np.asarray(Image.fromarray(m).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return (m > 0.5).astype(np.float32)


MASK_RULES = {
    "cv2_linear_float": mask_cv2_linear_float,
    "pil_1bit_nearest": mask_pil_1bit_nearest,
    "pil_bilinear_threshold": mask_pil_bilinear_threshold,
}
