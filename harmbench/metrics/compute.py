"""``compute_metrics``: every metric of a profile for a batch, one value per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from harmbench.errors import UserError
from harmbench.metrics import pixel
from harmbench.metrics.profiles import PreparedSample, Profile, get_profile
from harmbench.metrics.scratch import scratch
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
    lpips_target_features: list[Tensor] | None = None,
) -> dict[str, Tensor]:
    """All metrics of ``profile`` per image.

    ``pred``, ``target``: ``(N, 3, H, W)`` on 0–255 (any float or uint8 dtype, any device);
    ``mask``: ``(N, 1, H, W)`` in [0, 1]. Returns ``{name: Tensor (N,)}`` for
    :data:`METRIC_NAMES` plus ``"lpips"``/``"flpips"`` (float32) when ``lpips_model``
    (from :func:`harmbench.metrics.lpips.load_lpips`) is given; values are on the input
    device. Nothing is pooled over the batch. ``lpips_target_features``: the target's
    :func:`harmbench.metrics.lpips.target_features`, when already computed (or cached).

    Elementwise work is float32 (differences and squares of 8-bit values are exact);
    every per-image sum is accumulated in the profile's dtype (float64 except ``iharm``).
    """
    profile = get_profile(profile)
    pred, target, mask = _as_tensor(pred, "pred"), _as_tensor(target, "target"), _as_tensor(mask, "mask")
    _check(pred, target, mask)
    acc = _dtype(profile, pred.device)
    work = (
        torch.float64
        if pred.dtype == torch.float64 and target.dtype == torch.float64 and acc == torch.float64
        else torch.float32
    )
    n = pred.shape[0]
    out = {k: torch.empty(n, dtype=acc, device=pred.device) for k in METRIC_NAMES}
    step = chunk_size(pred)
    for i in range(0, n, step):
        part = slice(i, i + step)
        for k, v in _metrics(pred[part], target[part], mask[part], profile, work, acc).items():
            out[k][part] = v
    if lpips_model is not None:
        from harmbench.metrics.lpips import lpips_flpips

        lp, flp = lpips_flpips(lpips_model, pred, target, mask, target_feats=lpips_target_features)
        out["lpips"], out["flpips"] = lp.to(pred.device), flp.to(pred.device)
    return out


#: Elements of one input tensor per CPU chunk (four 3×256×256 images).
_CHUNK_ELEMENTS = 4 * 3 * 256 * 256


def chunk_size(x: Tensor) -> int:
    """Images of the batch ``x`` ``(N, C, H, W)`` to process at a time for per-image work: all of
    them off CPU; on CPU a few, so that each pass over them stays in cache and their
    temporaries are reused rather than freshly mapped."""
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return max(1, _CHUNK_ELEMENTS // max(1, x[0].numel()))


def _metrics(
    pred: Tensor, target: Tensor, mask: Tensor, profile: Profile, work: torch.dtype, acc: torch.dtype
) -> dict[str, Tensor]:
    """:data:`METRIC_NAMES` of one chunk; elementwise work in ``work``, sums in ``acc``."""
    device = pred.device
    # NCHW work copies (inputs permuted from (N, H, W, 3) arrays arrive channels-last), in scratch memory
    p, t, m = (
        _as_work(x, f"metrics.{name}", work, device) for x, name in ((pred, "pred"), (target, "target"), (mask, "mask"))
    )
    sq = torch.sub(p, t, out=scratch("metrics.sq", p.shape, work, device))
    sq.mul_(sq)  # (P − T)², exact in float32 for 8-bit values
    out: dict[str, Tensor] = {}
    out["mse"], out["fmse"] = pixel.mse_fmse_from_sq(
        sq, m, profile.mse_formula, profile.fmse_formula, profile.fmse_eps, acc, inplace=True
    )
    out["psnr"] = pixel.psnr_from_mse(out["mse"], pixel.peak(p, t, profile.psnr_peak).to(acc), profile.psnr_eps)
    out["fpsnr"] = pixel.psnr_from_mse(out["fmse"], pixel.peak(p, t, profile.fpsnr_peak).to(acc), profile.fpsnr_eps)
    if profile.ssim_input == "pasted":  # the prediction's foreground on the real background; sq's memory is free now
        p = pixel.paste(p, t, m, out=sq)
    out["ssim"], out["fssim"] = ssim_fssim(p, t, m, profile.ssim, dtype=acc)
    return out


def _as_work(x: Tensor, slot: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x`` as a contiguous ``dtype`` tensor on ``device``: itself when it already is, else a scratch copy."""
    if x.dtype == dtype and x.device == device and x.is_contiguous():
        return x
    return scratch(slot, tuple(x.shape), dtype, device).copy_(x)


def stack_samples(
    samples: Sequence[PreparedSample], device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor, Tensor]:
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
