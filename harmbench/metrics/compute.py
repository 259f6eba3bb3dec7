"""``compute_metrics``: every metric of a profile for a batch, one value per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from harmbench.errors import UserError
from harmbench.metrics import pixel
from harmbench.metrics.profiles import PreparedSample, Profile, get_profile
from harmbench.metrics.ssim import ssim_fssim

METRIC_NAMES = ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim")
LPIPS_NAMES = ("lpips", "flpips")


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise UserError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


def _check(pred: Tensor, target: Tensor, mask: Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise UserError(f"pred must have shape (N, 3, H, W), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise UserError(f"target shape {tuple(target.shape)} differs from pred shape {tuple(pred.shape)}")
    n, _, h, w = pred.shape
    if tuple(mask.shape) != (n, 1, h, w):
        raise UserError(f"mask must have shape {(n, 1, h, w)}, got {tuple(mask.shape)}")
    if n == 0:
        raise UserError("empty batch: pred has N = 0 images")


def _dtype(profile: Profile, device: torch.device) -> torch.dtype:
    if profile.dtype == "float64" and device.type != "mps":  # MPS has no float64
        return torch.float64
    return torch.float32


def compute_metrics(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    profile: Profile | str = "harmbench",
    lpips_model=None,
) -> dict[str, Tensor]:
    """All metrics of ``profile`` per image.

    ``pred``, ``target``: ``(N, 3, H, W)`` on 0–255 (any float or uint8 dtype, any device);
    ``mask``: ``(N, 1, H, W)`` in [0, 1]. Returns ``{name: Tensor (N,)}`` for
    :data:`METRIC_NAMES` plus ``"lpips"``/``"flpips"`` (float32) when ``lpips_model``
    (from :func:`harmbench.metrics.lpips.load_lpips`) is given; values are on the input
    device. Nothing is pooled over the batch.

    Elementwise work is float32 (differences and squares of 8-bit values are exact);
    every per-image sum is accumulated in the profile's dtype (float64 except ``iharm``).
    """
    profile = get_profile(profile)
    pred, target, mask = _as_tensor(pred, "pred"), _as_tensor(target, "target"), _as_tensor(mask, "mask")
    _check(pred, target, mask)
    acc = _dtype(profile, pred.device)
    work = torch.float64 if pred.dtype == torch.float64 and target.dtype == torch.float64 and acc == torch.float64 else torch.float32
    fmt = torch.contiguous_format  # NCHW: inputs permuted from (N, H, W, 3) arrays arrive channels-last
    p = pred.to(dtype=work, memory_format=fmt)
    t = target.to(device=p.device, dtype=work, memory_format=fmt)
    m = mask.to(device=p.device, dtype=work, memory_format=fmt)
    sq = pixel.squared_error(p, t)
    out: dict[str, Tensor] = {}
    out["mse"] = pixel.mse_from_sq(sq, acc)
    out["psnr"] = pixel.psnr_from_mse(out["mse"], pixel.peak(p, t, profile.psnr_peak).to(acc), profile.psnr_eps)
    out["fmse"] = pixel.fmse_from_sq(sq, m, profile.fmse_formula, profile.fmse_eps, acc)
    out["fpsnr"] = pixel.psnr_from_mse(out["fmse"], pixel.peak(p, t, profile.fpsnr_peak).to(acc), profile.fpsnr_eps)
    del sq
    out["ssim"], out["fssim"] = ssim_fssim(p, t, m, profile.ssim, dtype=acc)
    if lpips_model is not None:
        from harmbench.metrics.lpips import lpips_flpips

        lp, flp = lpips_flpips(lpips_model, pred, target, mask)
        out["lpips"], out["flpips"] = lp.to(p.device), flp.to(p.device)
    return out


def stack_samples(samples: Sequence[PreparedSample], device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Batch same-size :class:`PreparedSample` objects into ``(pred, target, mask)`` tensors."""
    if not samples:
        raise UserError("no samples to stack")
    sizes = {s.size for s in samples}
    if len(sizes) > 1:
        raise UserError(f"samples of different sizes cannot share a batch: {sorted(sizes)}")
    pred = torch.from_numpy(np.stack([s.pred for s in samples])).to(device)
    target = torch.from_numpy(np.stack([s.target for s in samples])).to(device)
    mask = torch.from_numpy(np.stack([s.mask for s in samples])).to(device)
    return pred, target, mask
