"""Scoring a harmonizer on a split of built shards with harmbench metrics (validation and baselines).

Images are read with :class:`harmbench.data.HarmonizationShards`, resized to
``image_size × image_size`` (aspect not kept, as the training loader does), harmonized with
``model.harmonize`` (RGB 0–1 in/out), quantised to 8 bit like a saved result, and scored with
:func:`harmbench.metrics.compute_metrics` on the **0–255** scale (``harmbench`` profile: PSNR
peak 255, fMSE = foreground mean; mask binary). Values are means over images; fMSE/fPSNR skip
images with an empty foreground (counted in ``n_empty_fg``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch

EVAL_METRICS = ("mse", "psnr", "fmse", "fpsnr", "ssim")


def iter_batches(
    data_dir: str | os.PathLike, split: str, *, image_size: int, batch_size: int, max_samples: int = 0
) -> Iterator[dict[str, Any]]:
    """Deterministic batches (file order, no crop) of ``split``: RGB 0–1, masks {0,1}, keys, meta."""
    from harmbench.data import HarmonizationShards, collate

    ds = HarmonizationShards(data_dir, split, shuffle=0, resize=image_size)
    buf: list[dict[str, Any]] = []
    for n, item in enumerate(ds, start=1):
        buf.append(item)
        if len(buf) == batch_size:
            yield collate(buf)
            buf = []
        if max_samples and n >= max_samples:
            break
    if buf:
        yield collate(buf)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """RGB 0–1 -> float on 0–255 rounded to integers (an 8-bit saved image)."""
    return (x.clamp(0, 1) * 255.0).round()


def score_batch(
    pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, profile: str = "harmbench"
) -> dict[str, torch.Tensor]:
    """Per-image metrics of RGB 0–1 ``pred``/``real`` ``(N,3,H,W)`` and mask ``(N,1,H,W)`` (0–255 scale)."""
    from harmbench.metrics import compute_metrics

    return compute_metrics(quantize(pred), quantize(real), (mask > 0.5).float(), profile)


@torch.no_grad()
def evaluate(
    model: Any,
    data_dir: str | os.PathLike,
    split: str = "test",
    *,
    image_size: int = 256,
    max_samples: int = 0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    profile: str = "harmbench",
    metrics: Sequence[str] = EVAL_METRICS,
) -> dict[str, Any]:
    """Mean metrics of ``model`` (any :class:`~harmbench.models.Harmonizer`) on ``split``.

    Returns ``{"n", "n_empty_fg", "profile", "image_size", <metric>: mean, "by_recipe": {recipe: {...}}}``
    (MSE/fMSE on 0–255, PSNR/fPSNR in dB).
    """
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    n_total = 0
    for batch in iter_batches(data_dir, split, image_size=image_size, batch_size=batch_size, max_samples=max_samples):
        comp = batch["composite"].to(device)
        mask = batch["mask"].to(device)
        pred = model.harmonize(comp, mask).float().cpu()
        vals = score_batch(pred, batch["real"], batch["mask"], profile)
        recipes = [str(m.get("recipe", "unknown")) for m in batch["meta"]]
        for i in range(pred.shape[0]):
            n_total += 1
            for group in ("All", recipes[i]):
                for name in metrics:
                    v = float(vals[name][i])
                    if math.isfinite(v):
                        sums[group][name] += v
                        counts[group][name] += 1
                counts[group]["n"] += 1

    def means(group: str) -> dict[str, Any]:
        out: dict[str, Any] = {"n": counts[group]["n"]}
        for name in metrics:
            c = counts[group][name]
            out[name] = sums[group][name] / c if c else float("nan")
        return out

    result = {
        **means("All"),
        "n_empty_fg": counts["All"]["n"] - counts["All"]["fmse"],
        "profile": profile,
        "image_size": image_size,
        "split": split,
    }
    result["by_recipe"] = {g: means(g) for g in sorted(counts) if g != "All"}
    if n_total == 0:
        from harmbench.errors import UserError

        raise UserError(f"{data_dir}: split {split!r} has no samples to evaluate")
    return result


__all__ = ["EVAL_METRICS", "evaluate", "iter_batches", "quantize", "score_batch"]
