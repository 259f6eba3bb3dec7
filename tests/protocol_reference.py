"""Independent reference implementation of the metric profiles (test helper).

Written from the published definitions (``shared/docs/benchmark_protocol.md`` §1
and §6; SamsungLabs ``iharm/inference/metrics.py`` and ``iharm/data``; bcmi
``evaluation.py``; zhenglab ``evaluation/ih_evaluation.py``; PCT-Net
``scripts/evaluate_iHarmony4.py`` and DCCF ``scripts/evaluate_upsample_refiner.py``
with their ``iharm/inference/metrics.py``) with numpy, PIL,
OpenCV, scipy and skimage only. It must never import ``harmbench``: it exists to
check the package against a second, separately written computation.

All arrays are float64 ``(H, W, 3)`` on the 0–255 scale; masks float64 ``(H, W)``
in [0, 1]. MSE/fMSE in squared 8-bit levels, (f)PSNR in dB, fg_ratio a fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


# --------------------------------------------------------------------------- reading


def read_rgb(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3); an alpha channel is discarded."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """Raw uint8 (H, W) 0–255: first channel of a colour mask (as OpenCV ``[:, :, 0]``), 0/1 masks scaled."""
    with Image.open(path) as im:
        a = np.array(im)
    if a.ndim == 3:
        a = a[..., 0]
    a = a.astype(np.uint8)
    if a.max() == 1:
        a = a * 255
    return a


# --------------------------------------------------------------------------- resizing


def output_size(h: int, w: int, resize: str) -> tuple[int, int]:
    """(H', W'): fixed 256×256; longest side ≤ 1024 (Python ``round``, never upscaled); or unchanged."""
    if resize == "fixed256":
        return 256, 256
    if resize == "limit1024" and max(h, w) > 1024:
        s = 1024.0 / max(h, w)
        return round(h * s), round(w * s)
    return h, w


def _cv2_linear(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return img if img.shape[:2] == hw else cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def _pil_bicubic(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    return np.array(Image.fromarray(img).resize((hw[1], hw[0]), Image.BICUBIC))


def _mask_samsung(raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``raw / 255`` in float32, resized as an image target (bilinear): continuous."""
    return _cv2_linear(raw.astype(np.float32) / 255.0, hw).astype(np.float64)


def _mask_pil_1bit(raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``Image.convert('1')`` then a resize, which PIL performs with NEAREST for 1-bit images."""
    im = Image.fromarray(raw).convert("1")
    if im.size != (hw[1], hw[0]):
        im = im.resize((hw[1], hw[0]), Image.NEAREST)
    return np.array(im, dtype=np.float64)


def _mask_coverage_half(raw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """harmbench: float coverage resized with PIL bilinear (antialiased), then ``> 0.5``."""
    m = raw.astype(np.float32) / 255.0
    if m.shape != hw:
        m = np.array(Image.fromarray(m, mode="F").resize((hw[1], hw[0]), Image.BILINEAR))
    return (m > 0.5).astype(np.float64)


# --------------------------------------------------------------------------- SSIM


def _gaussian_blur(x: np.ndarray, border: int) -> np.ndarray:
    """Separable 11-tap Gaussian (σ 1.5, taps summing to 1) over H and W of a float64 (H, W, 3) array."""
    k = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)
    return cv2.sepFilter2D(x, cv2.CV_64F, k, k, borderType=border)


def _ssim_map(p: np.ndarray, t: np.ndarray, c1: float, c2: float, border: int) -> np.ndarray:
    """Wang et al. SSIM map from local Gaussian means, population variances and covariance."""
    mx, my = _gaussian_blur(p, border), _gaussian_blur(t, border)
    vx = _gaussian_blur(p * p, border) - mx * mx
    vy = _gaussian_blur(t * t, border) - my * my
    cxy = _gaussian_blur(p * t, border) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _ssim_wang_valid(p: np.ndarray, t: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """SSIM with L = 255, K = (0.01, 0.03), averaged only where the 11×11 window lies inside the
    image (a 5-px border dropped; = skimage ``structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)``, see :func:`ssim_skimage`);
    fSSIM is the mask-weighted mean of the same cropped map over the 3 channels."""
    r = SSIM_WINDOW // 2
    smap = _ssim_map(p, t, (0.01 * 255) ** 2, (0.03 * 255) ** 2, cv2.BORDER_REFLECT_101)[r:-r, r:-r, :]
    mc = m[r:-r, r:-r]
    return float(smap.mean()), float((smap * mc[..., None]).sum() / (3.0 * mc.sum()))


def ssim_skimage(p: np.ndarray, t: np.ndarray) -> float:
    """skimage's own SSIM under the same convention (cross-check of :func:`_ssim_wang_valid`)."""
    return float(
        structural_similarity(
            t, p, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False, data_range=255.0, channel_axis=2
        )
    )


def _ssim_pytorch_ssim(p: np.ndarray, t: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """pytorch_ssim as zhenglab calls it: 11×11 Gaussian, zero padding (the map keeps the image
    size), constants 0.01² and 0.03² applied to 0–255 data; fSSIM = Σ map·M / (3·ΣM)."""
    smap = _ssim_map(p, t, 0.01**2, 0.03**2, cv2.BORDER_CONSTANT)
    return float(smap.mean()), float((smap * m[..., None]).sum() / (3.0 * m.sum()))


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class RefProfile:
    """Every choice of one protocol, as published."""

    image_resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    mask_resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    metrics: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]


def _psnr(peak: float, err: float, eps: float = 0.0) -> float:
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(peak * peak / (err + eps))) if err + eps > 0 else math.inf


def _metrics_iharm(p, t, m):
    """SamsungLabs: mean err², PSNR peak max(T) with 1e-6, fMSE Σ m·err² / (3Σm + 1e-6)."""
    err = (p - t) ** 2
    mse = float(err.mean())
    fmse = float((m[..., None] * err).sum() / (3.0 * m.sum() + 1e-6))
    tmax = float(t.max())
    ssim, fssim = _ssim_wang_valid(p, t, m)
    return {
        "mse": mse,
        "psnr": _psnr(tmax, mse, 1e-6),
        "fmse": fmse,
        "fpsnr": _psnr(tmax, fmse, 1e-6),
        "ssim": ssim,
        "fssim": fssim,
    }


def _metrics_dovenet(p, t, m):
    """bcmi: skimage MSE; skimage PSNR with data_range = P.max() − P.min(); fMSE = mse(P·M, T·M)·H·W / ΣM."""
    h, w = m.shape
    mse = float(mean_squared_error(t, p))
    rng = float(p.max() - p.min())
    psnr = float(peak_signal_noise_ratio(t, p, data_range=rng))
    fmse = float(mean_squared_error(t * m[..., None], p * m[..., None]) * h * w / m.sum())
    ssim, fssim = _ssim_wang_valid(p, t, m)
    return {"mse": mse, "psnr": psnr, "fmse": fmse, "fpsnr": _psnr(rng, fmse), "ssim": ssim, "fssim": fssim}


def _metrics_zhenglab(p, t, m):
    """zhenglab: skimage MSE; PSNR data_range 255; fMSE as bcmi; fPSNR 10·log10(255²/fMSE); pytorch_ssim."""
    h, w = m.shape
    mse = float(mean_squared_error(t, p))
    psnr = float(peak_signal_noise_ratio(t, p, data_range=255))
    fmse = float(mean_squared_error(t * m[..., None], p * m[..., None]) * h * w / m.sum())
    ssim, fssim = _ssim_pytorch_ssim(p, t, m)
    return {"mse": mse, "psnr": psnr, "fmse": fmse, "fpsnr": _psnr(255.0, fmse), "ssim": ssim, "fssim": fssim}


def _metrics_harmbench(p, t, m):
    """harmbench: peak 255 with 1e-6 in (f)PSNR; fMSE Σ m·err² / (3Σm); Wang SSIM (valid windows)."""
    err = (p - t) ** 2
    mse = float(err.mean())
    fmse = float((m[..., None] * err).sum() / (3.0 * m.sum()))
    ssim, fssim = _ssim_wang_valid(p, t, m)
    return {
        "mse": mse,
        "psnr": _psnr(255.0, mse, 1e-6),
        "fmse": fmse,
        "fpsnr": _psnr(255.0, fmse, 1e-6),
        "ssim": ssim,
        "fssim": fssim,
    }


def _pasted(p, t, m):
    """The prediction's foreground on the real background: ``P·M + T·(1 − M)``."""
    return p * m[..., None] + t * (1.0 - m[..., None])


def _metrics_pctnet(p, t, m):
    """PCT-Net: MSE = mean(M·err²) over all pixels and channels; PSNR peak 255 with 1e-6 on that MSE;
    fMSE Σ M·err² / (3ΣM + 1e-6); SSIM (pytorch_msssim defaults = Wang, valid windows) of the pasted
    prediction against T. fPSNR/fSSIM are not the script's: PSNR rule on fMSE, foreground mean of the map."""
    err = m[..., None] * (p - t) ** 2
    mse = float(err.mean())
    fmse = float(err.sum() / (3.0 * m.sum() + 1e-6))
    ssim, fssim = _ssim_wang_valid(_pasted(p, t, m), t, m)
    return {
        "mse": mse,
        "psnr": _psnr(255.0, mse, 1e-6),
        "fmse": fmse,
        "fpsnr": _psnr(255.0, fmse, 1e-6),
        "ssim": ssim,
        "fssim": fssim,
    }


def _metrics_dccf(p, t, m):
    """DCCF: as PCT-Net but the PSNR peak is max(T) (Samsung's rule)."""
    err = m[..., None] * (p - t) ** 2
    mse = float(err.mean())
    fmse = float(err.sum() / (3.0 * m.sum() + 1e-6))
    tmax = float(t.max())
    ssim, fssim = _ssim_wang_valid(_pasted(p, t, m), t, m)
    return {
        "mse": mse,
        "psnr": _psnr(tmax, mse, 1e-6),
        "fmse": fmse,
        "fpsnr": _psnr(tmax, fmse, 1e-6),
        "ssim": ssim,
        "fssim": fssim,
    }


REFERENCE_PROFILES: dict[str, RefProfile] = {
    "iharm": RefProfile(_cv2_linear, _mask_samsung, _metrics_iharm),
    "dovenet": RefProfile(_pil_bicubic, _mask_pil_1bit, _metrics_dovenet),
    "zhenglab": RefProfile(_pil_bicubic, _mask_pil_1bit, _metrics_zhenglab),
    "harmbench": RefProfile(_pil_bicubic, _mask_coverage_half, _metrics_harmbench),
    # both scripts: albumentations Resize(256, 256) = cv2 INTER_LINEAR, mask as an image target (soft);
    # full resolution = the raw image and raw / 255 mask
    "pctnet": RefProfile(_cv2_linear, _mask_samsung, _metrics_pctnet),
    "dccf": RefProfile(_cv2_linear, _mask_samsung, _metrics_dccf),
}

#: Samsung's bucket test is inclusive at both ends; the others use half-open [lo, hi) (100 % in the last).
BUCKETS = (("0-5", 0.0, 0.05), ("5-15", 0.05, 0.15), ("15-100", 0.15, 1.0))
BOTH_ENDS_INCLUSIVE = {"iharm"}


def fg_buckets(profile: str, ratio: float) -> list[str]:
    out = []
    for name, lo, hi in BUCKETS:
        if profile in BOTH_ENDS_INCLUSIVE:
            ok = lo <= ratio <= hi
        else:
            ok = lo <= ratio < hi or (hi == 1.0 and ratio == 1.0)
        if ok:
            out.append(name)
    return out


def reference_sample(profile: str, resize: str, pred_u8: np.ndarray, real_u8: np.ndarray, mask_raw: np.ndarray) -> dict:
    """Metrics and ``fg_ratio`` (``(mask > 0.5)`` share of the evaluated grid) for one sample."""
    prof = REFERENCE_PROFILES[profile]
    hw = output_size(real_u8.shape[0], real_u8.shape[1], resize)
    p = prof.image_resize(pred_u8, hw).astype(np.float64)
    t = prof.image_resize(real_u8, hw).astype(np.float64)
    m = prof.mask_resize(mask_raw, hw)
    out = prof.metrics(p, t, m)
    out["fg_ratio"] = float((m > 0.5).sum()) / float(hw[0] * hw[1])
    return out


def reference_files(profile: str, resize: str, pred: str | Path, real: str | Path, mask: str | Path) -> dict:
    return reference_sample(profile, resize, read_rgb(pred), read_rgb(real), read_mask(mask))
