"""Protocol-exact image-harmonization metrics on batched tensors (0–255 scale).

Public API (stable; ``harmbench score`` is built on it)::

    from harmbench.metrics import get_profile, PROFILES, compute_metrics, METRIC_NAMES, RESIZES
    from harmbench.metrics.lpips import load_lpips

    profile = get_profile("harmbench")             # or "iharm", "dovenet", "zhenglab", "pctnet", "dccf"
    s = profile.prepare(pred_u8, real_u8, mask_raw_u8, resize="fixed256")
    # s.pred, s.target: float32 (3, H', W') on 0–255; s.mask: float32 (1, H', W') in [0, 1];
    # s.fg_ratio: float; s.size: (H', W')
    buckets = profile.fg_buckets(s.fg_ratio)       # e.g. ["0-5"]; Samsung-style profiles may return two
    vals = compute_metrics(pred, target, mask, profile, lpips_model=None)
    # pred, target (N, 3, H, W), mask (N, 1, H, W) tensors (any device) -> dict name -> Tensor (N,)
    # (stack_samples(list_of_PreparedSample, device) -> pred, target, mask tensors)
    # keys: METRIC_NAMES = ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim") (+ "lpips", "flpips" with a model)
    profile.to_dict()                              # every convention, to record next to results

Every metric is computed per image and returned as a tensor of shape ``(N,)``;
nothing is pooled over a batch. Averaging over images is the caller's job.

Modules: :mod:`.pixel` (MSE/PSNR/fMSE/fPSNR), :mod:`.ssim` (SSIM/fSSIM),
:mod:`.lpips` (LPIPS, masked LPIPS, offline loading), :mod:`.resize` (resize
strategies and filters), :mod:`.profiles` (named protocol profiles and the
per-sample preparation), :mod:`.compute` (``compute_metrics``), :mod:`.scratch`
(per-thread scratch buffers reused between calls on CPU).
"""

from __future__ import annotations

from harmbench.metrics.compute import LPIPS_NAMES, METRIC_NAMES, compute_metrics, stack_samples
from harmbench.metrics.labels import METRIC_LABELS
from harmbench.metrics.profiles import (
    BUCKET_NAMES,
    PROFILES,
    PreparedSample,
    Profile,
    SSIMConvention,
    get_profile,
)
from harmbench.metrics.resize import RESIZES

__all__ = [
    "BUCKET_NAMES",
    "LPIPS_NAMES",
    "METRIC_LABELS",
    "METRIC_NAMES",
    "PROFILES",
    "PreparedSample",
    "Profile",
    "RESIZES",
    "SSIMConvention",
    "compute_metrics",
    "get_profile",
    "stack_samples",
]
