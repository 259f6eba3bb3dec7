"""Apply any harmonization method to image files (``harmbench harmonize``).

A method is a registered model name (``reinhard``, ``histmatch``, ``hen-ctn`` …)
or a checkpoint file. Images are read as uint8 RGB (alpha dropped), masks as
raw 0–255 and binarised at 128; the model sees 0–1 floats and its output is
rounded back to 8 bit. Pixels outside the mask are kept from the input when
``keep_background`` is set (the default: harmonization only changes the
foreground).

A model running its authors' protocol (``model.protocol == "official"`` and a
``predict_uint8(image uint8 (H,W,3), raw mask uint8 (H,W))`` method) is given the
raw mask and its output is written as the authors' script writes it: at the size
their script gives, without re-compositing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harmbench.errors import InputError, UserError
from harmbench.fileio import atomic_write_bytes
from harmbench.imaging import IMAGE_EXTENSIONS, binarize, encode_image, read_mask, read_rgb

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Job:
    """One photo, its mask and where to write the result."""

    image: Path
    mask: Path
    out: Path


def plan_jobs(
    image: PathLike, mask: PathLike, out: PathLike, on_skip: Callable[[InputError], None] | None = None
) -> list[Job]:
    """One job for a file pair, or one per image of a folder whose mask (same stem) is in the mask folder.

    In a folder, an image without a mask is an error, or with ``on_skip`` reported to it and left out.
    """
    image, mask, out = Path(image), Path(mask), Path(out)
    if image.is_file():
        if not mask.is_file():
            raise UserError(f"{mask}: mask file not found")
        target = out / image.with_suffix(".png").name if out.is_dir() else out
        return [Job(image, mask, target)]
    if not image.is_dir():
        raise UserError(f"{image}: no such file or folder")
    if not mask.is_dir():
        raise UserError(f"{mask}: expected a folder of masks (same stems as the images in {image})")
    masks = {p.stem: p for p in sorted(mask.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    jobs = []
    for p in sorted(image.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        m = masks.get(p.stem) or masks.get(f"{p.stem}_mask") or masks.get(f"{p.stem}-mask")
        if m is None:
            if on_skip is None:
                raise UserError(f"{p}: no mask named {p.stem}.* in {mask}")
            on_skip(InputError(str(p), f"no mask named {p.stem}.* in {mask}"))
            continue
        jobs.append(Job(p, m, out / f"{p.stem}.png"))
    if not jobs and on_skip is None:
        raise UserError(f"{image}: no images found")
    return jobs


def harmonize_arrays(
    model, composite: np.ndarray, mask: np.ndarray, device: str = "cpu", keep_background: bool = True
) -> np.ndarray:
    """``uint8 (H, W, 3)`` composite + ``bool (H, W)`` mask -> harmonized ``uint8 (H, W, 3)``.

    A model under the authors' protocol (``model.protocol == "official"``) returns what their
    test script writes: its raw output at the script's size (e.g. 256×256), never re-composited.
    """
    import torch

    x = (
        torch.from_numpy(np.require(composite, requirements=["C", "W"]))
        .permute(2, 0, 1)[None]
        .float()
        .div(255.0)
        .to(device)
    )
    m = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
    with torch.no_grad():
        y = model.harmonize(x, m)
    out = (y[0].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    if keep_background and getattr(model, "protocol", "harmbench") != "official":
        out = np.where(mask[..., None], out, composite)
    return out


def _read_job(job: Job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb, raw mask 0–255, binary mask)`` of a job; :class:`InputError` naming the file when unusable."""
    rgb = read_rgb(job.image)
    raw = read_mask(job.mask)
    m = binarize(raw)
    if m.shape != rgb.shape[:2]:
        raise InputError(
            str(job.mask), f"mask is {m.shape[1]}x{m.shape[0]} but {job.image.name} is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    if not m.any():
        raise InputError(str(job.mask), "mask is empty (no pixel >= 128)")
    return rgb, raw, m


def harmonize_files(
    method: Any,
    jobs: Iterable[Job],
    *,
    device: str = "cpu",
    keep_background: bool = True,
    options: dict | None = None,
    seed: int = 0,
    weights: str | None = None,
    on_skip: Callable[[InputError], None] | None = None,
) -> list[Path]:
    """Run ``method`` (model name, checkpoint path or a loaded model; with ``weights``, the registry
    model those files are for) on every job; returns the written files. A model under the official
    protocol writes what the authors' script writes (``predict_uint8``).

    An unusable image or mask raises :class:`InputError`, or with ``on_skip`` is reported to it
    and the other jobs go on.
    """
    from harmbench.models.resolve import resolve_model

    model = resolve_model(method, device=device, seed=seed, options=options, weights=weights).harmonizer
    official = getattr(model, "predict_uint8", None) if getattr(model, "protocol", None) == "official" else None
    written = []
    for job in jobs:
        try:
            rgb, raw, m = _read_job(job)
        except InputError as exc:
            if on_skip is None:
                raise
            on_skip(exc)
            continue
        if official is not None:
            out = official(rgb, raw)
        else:
            out = harmonize_arrays(model, rgb, m, device=device, keep_background=keep_background)
        fmt = "jpg" if job.out.suffix.lower() in (".jpg", ".jpeg") else "png"
        atomic_write_bytes(job.out, encode_image(out, fmt, quality=95))
        written.append(job.out)
    return written
