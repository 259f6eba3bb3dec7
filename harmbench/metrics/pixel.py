"""Pixel-error metrics: MSE, PSNR, fMSE, fPSNR, computed per image.

Inputs are batched tensors on the 0–255 scale: ``pred``/``target`` of shape
``(N, C, H, W)`` and ``mask`` of shape ``(N, 1, H, W)`` with values in [0, 1]
(1 = foreground; continuous masks are used as weights). Every function returns
a tensor of shape ``(N,)``: one value per image, never pooled over the batch.

Units: MSE and fMSE in squared 8-bit levels (0 … 65025); PSNR and fPSNR in dB.
"""

from __future__ import annotations

import torch
from torch import Tensor

PEAK_RULES = ("255", "target_max", "pred_range")
FMSE_FORMULAS = ("masked_sum", "masked_image_mse")
MSE_FORMULAS = ("mean", "masked_mean")
SSIM_INPUTS = ("prediction", "pasted")


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """``(P − T)²`` elementwise, in the inputs' dtype (exact in float32 for 8-bit values)."""
    d = pred - target
    return d.mul_(d)


def per_image_sum(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Sum over all but the first dim, accumulated in ``dtype``.

    Rows (last dim) are summed in ``x``'s dtype first — exact in float32 for sums of
    squared 8-bit differences over rows of up to 258 pixels — and the row sums in
    ``dtype``; this avoids a full-size float64 copy.
    """
    dtype = dtype or x.dtype
    if dtype == x.dtype:
        return x.sum(dim=tuple(range(1, x.ndim)))
    return x.sum(dim=-1).to(dtype).sum(dim=tuple(range(1, x.ndim - 1)))


def mse_from_sq(sq: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Per-image mean of a squared-error tensor ``(N, C, H, W)``, accumulated in ``dtype``."""
    return per_image_sum(sq, dtype) / sq[0].numel()


def mse(pred: Tensor, target: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Mean squared error over all channels and pixels of each image, shape ``(N,)``."""
    return mse_from_sq(squared_error(pred, target), dtype)


def peak(pred: Tensor, target: Tensor, rule: str) -> Tensor:
    """Per-image PSNR peak value ``(N,)`` under ``rule``.

    * ``"255"``: the fixed 8-bit peak.
    * ``"target_max"``: ``max(target)`` over channels and pixels (SamsungLabs).
    * ``"pred_range"``: ``max(pred) - min(pred)`` (skimage ``data_range`` as DoveNet passes it).
    """
    n = pred.shape[0]
    if rule == "255":
        return torch.full((n,), 255.0, dtype=pred.dtype, device=pred.device)
    if rule == "target_max":
        return target.flatten(1).amax(1)
    if rule == "pred_range":
        flat = pred.flatten(1)
        return flat.amax(1) - flat.amin(1)
    raise ValueError(f"unknown PSNR peak rule {rule!r} (expected one of {PEAK_RULES})")


def psnr_from_mse(err: Tensor, peak_value: Tensor | float, eps: float = 0.0) -> Tensor:
    """``10·log10(peak² / (err + eps))`` in dB, elementwise.

    With ``eps = 0`` an exact match gives ``+inf`` (as skimage does).
    """
    peak_t = torch.as_tensor(peak_value, dtype=err.dtype, device=err.device)
    return 10.0 * torch.log10(peak_t.square() / (err + eps))


def psnr(pred: Tensor, target: Tensor, peak_rule: str = "255", eps: float = 0.0) -> Tensor:
    """Per-image PSNR in dB from the per-image MSE (never from a pooled MSE)."""
    err = mse(pred, target)
    return psnr_from_mse(err, peak(pred, target, peak_rule).to(err.dtype), eps)


def fmse(pred: Tensor, target: Tensor, mask: Tensor, formula: str = "masked_sum", eps: float = 0.0) -> Tensor:
    """Foreground MSE per image, shape ``(N,)``.

    * ``"masked_sum"``: ``Σ M·(P−T)² / (C·ΣM + eps)`` — SamsungLabs; a continuous
      mask acts as per-pixel weight.
    * ``"masked_image_mse"``: ``mean((P·M − T·M)²) · H·W / ΣM`` — the skimage
      formulation of bcmi/zhenglab scripts (``eps`` ignored). Identical to
      ``masked_sum`` for binary masks up to rounding.

    An empty mask gives ``0/0 = nan`` unless ``eps > 0`` (then ``0``).
    """
    return fmse_from_sq(squared_error(pred, target), mask, formula, eps)


def fmse_from_sq(
    sq: Tensor,
    mask: Tensor,
    formula: str = "masked_sum",
    eps: float = 0.0,
    dtype: torch.dtype | None = None,
    inplace: bool = False,
) -> Tensor:
    """:func:`fmse` from a precomputed ``(P − T)²``; sums accumulated in ``dtype``.

    ``masked_image_mse`` uses ``(P·M − T·M)² = M²·(P − T)²``. ``inplace``: ``sq`` is
    weighted in place (its values are lost) instead of copied.
    """
    dtype = dtype or sq.dtype
    _, c, h, w = sq.shape
    m = mask.to(sq.dtype)
    area = per_image_sum(m, dtype)
    if formula not in FMSE_FORMULAS:
        raise ValueError(f"unknown fMSE formula {formula!r} (expected one of {FMSE_FORMULAS})")
    weight = m if formula == "masked_sum" else m * m
    weighted = sq.mul_(weight) if inplace else sq * weight
    if formula == "masked_sum":
        return per_image_sum(weighted, dtype) / (c * area + eps)
    return per_image_sum(weighted, dtype) / (c * h * w) * (h * w) / area


def mse_fmse_from_sq(
    sq: Tensor,
    mask: Tensor,
    mse_formula: str = "mean",
    fmse_formula: str = "masked_sum",
    fmse_eps: float = 0.0,
    dtype: torch.dtype | None = None,
    inplace: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-image ``(mse, fmse)`` from a precomputed ``(P − T)²`` ``(N, C, H, W)``; sums in ``dtype``.

    ``mse_formula``:

    * ``"mean"``: ``mean((P−T)²)`` over all channels and pixels.
    * ``"masked_mean"``: ``mean(M·(P−T)²)`` over all channels and pixels — the
      background error is ignored but the sum is still divided by ``C·H·W``
      (PCT-Net and DCCF ``MSE``).

    ``fmse_formula``/``fmse_eps`` as in :func:`fmse`. ``inplace``: ``sq`` may be
    overwritten (its values are lost) instead of copied.
    """
    if mse_formula not in MSE_FORMULAS:
        raise ValueError(f"unknown MSE formula {mse_formula!r} (expected one of {MSE_FORMULAS})")
    if fmse_formula not in FMSE_FORMULAS:
        raise ValueError(f"unknown fMSE formula {fmse_formula!r} (expected one of {FMSE_FORMULAS})")
    dtype = dtype or sq.dtype
    if mse_formula == "mean":
        err = mse_from_sq(sq, dtype)
        return err, fmse_from_sq(sq, mask, fmse_formula, fmse_eps, dtype, inplace=inplace)
    _, c, h, w = sq.shape
    m = mask.to(sq.dtype)
    weighted = sq.mul_(m) if inplace else sq * m  # M·(P − T)²
    wsum = per_image_sum(weighted, dtype)
    area = per_image_sum(m, dtype)
    err = wsum / (c * h * w)
    if fmse_formula == "masked_sum":
        return err, wsum / (c * area + fmse_eps)
    return err, per_image_sum(weighted.mul_(m), dtype) / (c * h * w) * (h * w) / area  # M²·(P − T)²


def paste(pred: Tensor, target: Tensor, mask: Tensor, out: Tensor | None = None) -> Tensor:
    """``P·M + T·(1 − M)``: the prediction's foreground on the real background (PCT-Net/DCCF SSIM input).

    ``pred``, ``target``: ``(N, C, H, W)`` 0–255; ``mask``: ``(N, 1, H, W)`` in [0, 1]. Computed
    in that order (as the scripts do), into ``out`` when given.
    """
    m = mask.to(pred.dtype)
    out = torch.mul(pred, m, out=out) if out is not None else pred * m
    return out.addcmul_(target, 1.0 - m)
