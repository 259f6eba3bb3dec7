"""Differentiable sRGB <-> CIE Lab (D65, 2°) in torch, matching ``skimage.color.rgb2lab``/``lab2rgb``,
and the HEN/CTN channel normalisation.

Scales:

* RGB: 0–1.
* Lab: L in [0, 100], a in about [-86.18, 98.23], b in about [-107.86, 94.48] (the sRGB gamut).
* normalised Lab (network input/output of CTN): each channel mapped to [0, 1] with
  ``L/100``, ``(a+86.1830)/(98.2331+86.1830)``, ``(b+107.8573)/(94.4781+107.8573)``,
  then to [-1, 1] by ``2v-1``.

All functions take channel-first tensors ``(N, 3, H, W)`` (or ``(3, H, W)``).
"""

from __future__ import annotations

import torch

# skimage.color.colorconv constants
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)

# a/b extremes of the sRGB gamut, as in the reference code (data/base_dataset.py)
A_MIN, A_MAX = -86.1830297444, 98.2330538631
B_MIN, B_MAX = -107.857300207, 94.4781222765


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3×3 matrix over the channel dim (dim -3)."""
    return torch.einsum("ij,...jhw->...ihw", m, x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB on 0–1 -> CIE Lab (L 0–100). Differentiable; values outside 0–1 are clipped first."""
    rgb = rgb.clamp(0.0, 1.0)
    lin = torch.where(rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _mix(_matrix(_XYZ_FROM_RGB, rgb), lin)
    white = torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    t = xyz / white
    eps = 0.008856
    f = torch.where(t > eps, t.clamp_min(eps) ** (1.0 / 3.0), 7.787 * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack([L, a, b], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab -> sRGB on 0–1 (clipped, like ``skimage.color.lab2rgb``). Differentiable."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    thr = 0.2068966
    t = torch.where(f > thr, f**3, (f - 16.0 / 116.0) / 7.787)
    white = torch.tensor(_WHITE_D65, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    xyz = t * white
    rgb_from_xyz = torch.linalg.inv(_matrix(_XYZ_FROM_RGB, lab).double()).to(lab.dtype)
    lin = _mix(rgb_from_xyz, xyz)
    srgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * lin)
    return srgb.clamp(0.0, 1.0)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab -> normalised Lab on [-1, 1] (HEN/CTN convention)."""
    L, a, b = lab.unbind(-3)
    u = torch.stack([L / 100.0, (a - A_MIN) / (A_MAX - A_MIN), (b - B_MIN) / (B_MAX - B_MIN)], dim=-3)
    return u * 2.0 - 1.0


def denormalize_lab(x: torch.Tensor) -> torch.Tensor:
    """Normalised Lab on [-1, 1] -> CIE Lab."""
    u0, u1, u2 = ((x + 1.0) / 2.0).unbind(-3)
    return torch.stack([u0 * 100.0, u1 * (A_MAX - A_MIN) + A_MIN, u2 * (B_MAX - B_MIN) + B_MIN], dim=-3)


def rgb_to_nlab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB 0–1 -> normalised Lab [-1, 1]."""
    return normalize_lab(rgb_to_lab(rgb))


def nlab_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Normalised Lab [-1, 1] (any values: CTN output is unbounded) -> sRGB 0–1 (clipped)."""
    return lab_to_rgb(denormalize_lab(x))


__all__ = [
    "denormalize_lab",
    "lab_to_rgb",
    "nlab_to_rgb",
    "normalize_lab",
    "rgb_to_lab",
    "rgb_to_nlab",
]
