"""Hue rotation / saturation scaling with the lightness kept (HEN/CTN training augmentation).

As ``RGB2HSV_shift_LAB`` of Color_Transfer_Histogram_Analogy (model_specs
§1.5), restricted to a mask, using skimage's conversions:
RGB (0–1) -> HSV (H in [0, 1)); ``H = (H + hue_shift) mod 1``;
``S = clip(S·sat_scale, 0, 1)``; back to RGB; to CIE Lab (D65), with L replaced by
the original pixel's L; back to RGB (skimage ``lab2rgb`` clips out-of-gamut
colours, so L can drift where the new chroma is not reproducible at that L).

Random parameters (``sample_params('hue', rng)`` or ``rng=``):
``hue_shift ~ U[0, 1)``, ``sat_scale = max(U[0, 1.2), 0.3)`` — independent
draws (the original derives them from wall-clock digits).
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage import color

from harmbench.transfer import register_transfer
from harmbench.transfer._common import composite, fresh_rng, gather, unique_colours

SAT_RANGE = (0.0, 1.2)
SAT_FLOOR = 0.3


def _sample_hue(rng: np.random.Generator) -> dict:
    hue_shift = float(rng.uniform(0.0, 1.0))
    sat_scale = float(max(rng.uniform(*SAT_RANGE), SAT_FLOOR))
    return {"hue_shift": hue_shift, "sat_scale": sat_scale}


def shift_hue_keep_l(rgb: np.ndarray, hue_shift: float, sat_scale: float) -> np.ndarray:
    """``(N, 3)`` RGB on 0–1 -> recoloured RGB on 0–1 (see module docstring)."""
    px = rgb[None]  # skimage wants an image: (1, N, 3)
    hsv = color.rgb2hsv(px)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift, 1.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat_scale, 0.0, 1.0)
    shifted = color.hsv2rgb(hsv)
    lab = color.rgb2lab(shifted)
    lab[..., 0] = color.rgb2lab(px)[..., 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "negative Z values clipped" for out-of-gamut colours
        out = color.lab2rgb(lab)
    return out[0]


@register_transfer("hue", sampler=_sample_hue, needs_reference=False, crop="pixel", cost=0.06)
def hue(
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
    hue_shift: float | None = None,
    sat_scale: float | None = None,
) -> np.ndarray:
    """Rotate the foreground's hue by ``hue_shift`` (turns; any real, taken mod 1) and
    scale its saturation by ``sat_scale`` (>= 0), keeping CIE L. 0–1 float in and out.

    Missing parameters are drawn from ``rng`` like :func:`harmbench.transfer.sample_params`
    (both drawn, in that order, even if one is given). The reference is ignored.
    """
    fg, _ = gather("hue", image, mask, needs_reference=False)
    if hue_shift is None or sat_scale is None:
        drawn = _sample_hue(fresh_rng(rng))
        hue_shift = drawn["hue_shift"] if hue_shift is None else hue_shift
        sat_scale = drawn["sat_scale"] if sat_scale is None else sat_scale
    hue_shift, sat_scale = float(hue_shift), float(sat_scale)
    if not np.isfinite(hue_shift):
        raise ValueError(f"hue: hue_shift must be finite, got {hue_shift}")
    if not np.isfinite(sat_scale) or sat_scale < 0:
        raise ValueError(f"hue: sat_scale must be a finite number >= 0, got {sat_scale}")
    # a per-pixel function: evaluated once per distinct colour when the input came from 8-bit data
    distinct = unique_colours(fg)
    if distinct is None:
        new = shift_hue_keep_l(fg, hue_shift % 1.0, sat_scale)
    else:
        values, inverse, _ = distinct
        new = shift_hue_keep_l(values, hue_shift % 1.0, sat_scale)[inverse]
    return composite(image, mask, new)
