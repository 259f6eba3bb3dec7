"""Scoring a full-resolution run at the profile's lower resolution too.

Some codebases report one run at two resolutions (PCT-Net's and DCCF's evaluation scripts:
``--res FR`` and ``--res LR``); their profiles say so in ``Profile.resolutions``, e.g.
``(("low", "fixed256"), ("full", "none"))``. When ``harmbench eval`` runs such a profile at
``--resize none``, each sample row also gets ``<metric>_<label>`` columns (``mse_low``,
``fmse_low`` …) for every other resolution of the profile:

* target and mask are brought to that resolution from the full-resolution real image and raw
  mask exactly as the profile prepares them (its image filter and mask rule);
* the prediction is the model's own low-resolution result when it has one
  (``harmonize_multires(composite, mask) -> (full, low)``, as PCT-Net's predictor returns both),
  used as is when it already has the target size; otherwise (and for every other model) the
  full-resolution output, as 8-bit, resized with the profile's image filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harmbench.metrics.compute import METRIC_NAMES


def extra_resolutions(profile: Any, resize: str) -> list[tuple[str, str]]:
    """``[(label, resize)]`` to score besides the run's own ``resize``: only for full-resolution runs of a
    profile whose ``resolutions`` include full resolution (``none``) and another one."""
    resolutions = tuple(getattr(profile, "resolutions", ()))
    if resize != "none" or "none" not in {r for _, r in resolutions}:
        return []
    return [(label, r) for label, r in resolutions if r != resize]


def extra_columns(extra: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Column names, ``<metric>_<label>`` for every metric of :data:`METRIC_NAMES`."""
    return tuple(f"{m}_{label}" for label, _ in extra for m in METRIC_NAMES)


def _to_u8_hwc(x: Any) -> np.ndarray:
    """(3,H,W) 0–1 torch tensor -> uint8 (H,W,3), rounded."""
    return (x.clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def score_extra(
    profile: Any,
    extra: Sequence[tuple[str, str]],
    out: Any,
    low: Any | None,
    target: Any,
    mask: Any,
) -> list[list[float]]:
    """Per-image metric values at each extra resolution (rows in :func:`extra_columns` order).

    ``out`` (N,3,H,W) 0–1 full-resolution prediction; ``low`` the model's own low-resolution
    result (N,3,h,w) 0–1 or ``None``; ``target`` uint8 (N,3,H,W) real images; ``mask`` (N,1,H,W)
    the profile's full-resolution mask (``raw / 255`` or {0, 1}).
    """
    import torch

    from harmbench.metrics import compute_metrics
    from harmbench.metrics.resize import MASK_RULES, resize_image, target_size

    dev = out.device
    n, _, h, w = out.shape
    per_res = []
    for _, resize in extra:
        size = target_size(h, w, resize)
        targets, masks, preds = [], [], []
        for i in range(n):
            real = target[i].permute(1, 2, 0).cpu().numpy().astype(np.uint8)
            raw = np.rint(mask[i, 0].double().cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)
            targets.append(resize_image(real, size, profile.image_filter).transpose(2, 0, 1))
            masks.append(MASK_RULES[profile.mask_rule](raw, size)[None])
            if low is not None and tuple(low.shape[-2:]) == tuple(size):
                preds.append(low[i].float() * 255.0)
            else:
                src = _to_u8_hwc(out[i]) if low is None else _to_u8_hwc(low[i])
                preds.append(
                    torch.from_numpy(resize_image(src, size, profile.image_filter).transpose(2, 0, 1).copy()).float()
                )
        pred = torch.stack(preds).to(dev).clamp_(0.0, 255.0)
        if profile.pred_8bit:
            pred.round_()
        t = torch.from_numpy(np.stack(targets).astype(np.float32)).to(dev)
        m = torch.from_numpy(np.stack(masks).astype(np.float32)).to(dev)
        with torch.no_grad():
            vals = compute_metrics(pred, t, m, profile)
        per_res.append(torch.stack([vals[k].detach().double() for k in METRIC_NAMES], dim=1))
    return torch.cat(per_res, dim=1).cpu().tolist()


__all__ = ["extra_columns", "extra_resolutions", "score_extra"]
