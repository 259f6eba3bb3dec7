"""Checks on model outputs and the preview images a run keeps."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from harmbench.errors import UserError
from harmbench.eval.records import RunStore
from harmbench.fileio import atomic_write_bytes

#: Tolerance on the 0–1 range of model outputs before they count as out of range.
RANGE_TOL = 1e-3


class ModelOutputError(UserError):
    """A model returned an output of the wrong type, shape or range, or with NaN; names the model and key."""


def check_output(out: Any, composite: Any, keys: Sequence[str], model_name: str) -> None:
    """Raise :class:`ModelOutputError` naming ``model_name`` and the sample key when ``out``
    is not a finite ``(N, 3, H, W)`` tensor on 0–1 matching ``composite``."""
    import torch

    shown = ", ".join(repr(k) for k in keys[:4]) + (" …" if len(keys) > 4 else "")
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(f"model {model_name!r} returned {type(out).__name__}, not a tensor, for samples {shown}")
    if tuple(out.shape) != tuple(composite.shape):
        raise ModelOutputError(
            f"model {model_name!r} returned shape {tuple(out.shape)} for samples {shown}; expected {tuple(composite.shape)}"
        )
    flat = out.detach().flatten(1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    # min/max propagate NaN, so finite bounds mean finite values: one pass over the batch and one
    # device sync; the per-sample bounds that name the offending sample only on failure
    lo, hi = torch.stack(torch.aminmax(flat)).double().cpu().tolist()
    if math.isfinite(lo) and math.isfinite(hi) and lo >= -RANGE_TOL and hi <= 1 + RANGE_TOL:
        return
    rows_lo, rows_hi = torch.stack(torch.aminmax(flat, dim=1)).double().cpu()
    finite = torch.isfinite(rows_lo) & torch.isfinite(rows_hi)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0, 0])
        raise ModelOutputError(f"model {model_name!r} returned NaN or infinite values for sample {keys[i]!r}")
    i = int(((rows_lo < -RANGE_TOL) | (rows_hi > 1 + RANGE_TOL)).nonzero()[0, 0])
    raise ModelOutputError(
        f"model {model_name!r} returned values in [{float(rows_lo[i]):.4g}, {float(rows_hi[i]):.4g}] for sample "
        f"{keys[i]!r}; outputs must be RGB on the 0–1 scale"
    )


# --------------------------------------------------------------------------- helpers


def preview_keys(keys: Sequence[str], k: int) -> list[str]:
    """``k`` keys chosen by hash (the same for every model on the same data), sorted."""
    if k <= 0:
        return []
    ranked = sorted(keys, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return sorted(ranked[:k])


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def save_previews(store: RunStore, key: str, comp: Any, pred255: Any, target: Any, mask: Any) -> None:
    def hwc(t: Any) -> np.ndarray:
        return t.detach().round().clamp(0, 255).to("cpu").byte().permute(1, 2, 0).numpy()

    m = (mask.detach()[0] > 0.5).to("cpu").numpy().astype(np.uint8) * 255
    for what, arr in (
        ("composite", hwc(comp.float())),
        ("output", hwc(pred255)),
        ("real", hwc(target.float())),
        ("mask", m),
    ):
        atomic_write_bytes(store.previews_dir / f"{key}.{what}.png", _png(np.ascontiguousarray(arr)))


__all__ = ["RANGE_TOL", "ModelOutputError", "check_output", "preview_keys", "save_previews"]
