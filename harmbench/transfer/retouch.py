"""Global photo retouches: deterministic whole-image tone and colour edits.

They stand in for the expert versions of MIT-Adobe FiveK when a photo has only
one version (the embedded demo): each preset is a global edit in the spirit of
a retoucher's adjustments (white balance, exposure, contrast curve, saturation,
black level). Unlike the foreground ops of this package they change the whole
image and take no mask; recipes swap foregrounds between versions.

Images are ``uint8 (H, W, 3)`` on 0–255 in and out (rounded, clipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Retouch:
    """One global edit, applied in this order on RGB scaled to 0–1.

    Attributes:
        wb: per-channel gains (R, G, B), white balance.
        exposure: stops; the image is multiplied by ``2**exposure``.
        gamma: output = input ** gamma (< 1 brightens mid-tones).
        contrast: strength of an S-curve around 0.5 (0 = none, 1 = strong).
        saturation: chroma scale around the per-pixel luma (1 = unchanged).
        black: black level lift (output = black + (1 − black)·x).
    """

    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure: float = 0.0
    gamma: float = 1.0
    contrast: float = 0.0
    saturation: float = 1.0
    black: float = 0.0


RETOUCHES: Mapping[str, Retouch] = {
    "warm": Retouch(wb=(1.08, 1.0, 0.88), gamma=0.85),
    "cool": Retouch(wb=(0.9, 0.98, 1.1), contrast=0.35),
    "dark": Retouch(exposure=-0.5, saturation=1.25),
    "faded": Retouch(wb=(0.97, 1.03, 0.97), saturation=0.7, black=0.08),
    "vivid": Retouch(saturation=1.45, gamma=1.1, contrast=0.2),
}

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def retouch(image: np.ndarray, preset: str | Retouch) -> np.ndarray:
    """Apply a global retouch (a name from :data:`RETOUCHES` or a :class:`Retouch`) to ``uint8 (H, W, 3)``."""
    r = RETOUCHES[preset] if isinstance(preset, str) else preset
    x = np.asarray(image, np.float32) / 255.0
    x = x * np.asarray(r.wb, np.float32) * np.float32(2.0**r.exposure)
    x = np.clip(x, 0.0, 1.0) ** np.float32(r.gamma)
    if r.contrast:
        s = 0.5 - 0.5 * np.cos(np.pi * x)  # smooth S-curve through (0,0), (0.5,0.5), (1,1)
        x = (1 - r.contrast) * x + r.contrast * s
    if r.saturation != 1.0:
        y = (x @ _LUMA)[..., None]
        x = y + (x - y) * np.float32(r.saturation)
    x = r.black + (1 - r.black) * np.clip(x, 0.0, 1.0)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


__all__ = ["RETOUCHES", "Retouch", "retouch"]
