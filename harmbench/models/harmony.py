"""No-reference harmony score: BargainNet's domain-code distance ``exp(−0.04212·‖z_b − z_f‖₂)``.

``z_b = E(image, 1 − M)`` and ``z_f = E(image, M)`` are the domain codes of the background and
of the masked region, from BargainNet's extractor E in eval mode (as the authors'
``predict_harmony_score.py``). The score lies in (0, 1]; 1 means the region's code equals the
background's (higher = more harmonious). It needs no ground-truth image, so it also scores
real-world composites.

Two extractors, always labelled:

* **the authors' E** (``latest_net_E.pth``, or the E of an ``E.pth,G.pth`` pair): images and masks
  are resized to 256×256 the way BargainNet's test pipeline does (OpenCV bilinear), as E was
  trained at that size;
* **harmbench's own E** (a harmbench BargainNet checkpoint or a committed name such as
  ``bargainnet-cpu``): run at the image's own size, as harmbench's BargainNet does.

Python: ``ext = load_extractor("latest_net_E.pth"); harmony_scores(ext, composite, mask)``
with ``composite`` (N,3,H,W) on 0–1 and ``mask`` (N,1,H,W) {0,1}.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmbench.errors import ConfigError, InputError, UserError

#: The committed extractor used when none is named.
DEFAULT_EXTRACTOR = "bargainnet-cpu"


@dataclass(frozen=True)
class Extractor:
    """A domain-code extractor and how to feed it.

    ``encoder``: BargainNet's E (``(image [-1,1], mask) -> (N, L, 1, 1)``, eval mode);
    ``label``: what produced the scores (printed and recorded next to them); ``authors``: the
    authors' weights (``True``) or harmbench's own; ``size``: side (pixels) images are resized
    to before E, or ``None`` for the image's own size.
    """

    encoder: torch.nn.Module
    label: str
    authors: bool
    size: int | None


def load_extractor(
    spec: str | os.PathLike | Sequence[str | os.PathLike] | None = None, *, device: str | torch.device = "cpu"
) -> Extractor:
    """An :class:`Extractor` from ``spec``.

    ``None`` / a committed name (``bargainnet-cpu``) / a harmbench checkpoint -> harmbench's own
    E; the authors' ``latest_net_E.pth`` alone, their ``E.pth,G.pth`` pair, or the card name
    ``bargainnet-official`` (files in the weights cache) -> the authors' E.
    """
    from harmbench.models.checkpoints import sha256_file
    from harmbench.models.official import (
        identify_role,
        is_harmbench_checkpoint,
        read_state_dict,
        split_weights_spec,
    )
    from harmbench.models.pix2pix import OFFICIAL_SIZE
    from harmbench.models.pretrained import PRETRAINED, load_pretrained

    spec = DEFAULT_EXTRACTOR if spec is None else spec
    if isinstance(spec, str) and PRETRAINED.get(spec) == "bargainnet" and not Path(spec).exists():
        model = load_pretrained(spec, device=device)
        return Extractor(model.encoder.eval(), f"harmbench E ({spec}; not the authors' weights)", False, None)
    paths = split_weights_spec(spec, "bargainnet")  # files, or a model card's files in the weights cache
    missing = [p for p in paths if not p.exists()]
    if missing or not paths:
        committed = ", ".join(k for k, v in PRETRAINED.items() if v == "bargainnet")
        raise ConfigError(
            "weights",
            f"{', '.join(map(str, missing)) or spec}: no such file, model card or committed BargainNet ({committed})",
        )
    if is_harmbench_checkpoint(paths):
        from harmbench.models.checkpoints import load_checkpoint

        model = load_checkpoint(paths[0], device=device, expect_model="bargainnet")
        return Extractor(model.encoder.eval(), f"harmbench E ({paths[0].name}; not the authors' weights)", False, None)
    from harmbench.models.bargainnet import encoder_from_official

    found = [(p, sd) for p in paths for sd in [read_state_dict(p)] if identify_role("bargainnet", sd) == "E"]
    if len(found) != 1:
        raise ConfigError(
            "weights",
            f"{', '.join(map(str, paths))}: expected exactly one authors' BargainNet E file "
            f"(latest_net_E.pth), found {len(found)}",
        )
    e_path, sd = found[0]
    enc = encoder_from_official(sd).to(device)
    label = f"authors' BargainNet E ({e_path.name}, sha256 {sha256_file(e_path)[:12]})"
    return Extractor(enc, label, True, OFFICIAL_SIZE)


def harmony_codes(ext: Extractor, composite: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z_b, z_f)``, each ``(N, L)`` float32: E's codes of the background and of the masked region.

    ``composite`` (N,3,H,W) on 0–1, ``mask`` (N,1,H,W) {0,1}. E runs in eval mode (images at
    ``ext.size`` when set, one at a time; else the batch at its own size).
    """
    from harmbench.models.base import validate_inputs
    from harmbench.models.pix2pix import (
        mask_tensor,
        mask_to_uint8,
        normalize_u8,
        resize_cv2,
        to_uint8_hwc,
    )

    composite, mask = validate_inputs(composite, mask)
    enc = ext.encoder
    device = next(enc.parameters()).device
    was_training = enc.training
    enc.eval()
    try:
        with torch.no_grad():
            if ext.size is None:
                x = (composite.to(device=device, dtype=torch.float32) * 2 - 1).contiguous()
                m = mask.to(device=device, dtype=torch.float32)
                return enc(x, 1.0 - m).flatten(1), enc(x, m).flatten(1)
            zb, zf = [], []
            for i in range(composite.shape[0]):
                rgb, m01 = resize_cv2(to_uint8_hwc(composite[i]), mask_to_uint8(mask[i]), ext.size)
                x, m = normalize_u8(rgb, device), mask_tensor(m01, device)
                zb.append(enc(x, 1.0 - m).flatten(1))
                zf.append(enc(x, m).flatten(1))
            return torch.cat(zb), torch.cat(zf)
    finally:
        enc.train(was_training)


def harmony_scores(ext: Extractor, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``exp(−0.04212·‖z_b − z_f‖₂)`` per image, ``(N,)`` float64 on the CPU, in (0, 1]."""
    from harmbench.models.bargainnet import harmony_score

    zb, zf = harmony_codes(ext, composite, mask)
    return harmony_score(zb.double(), zf.double()).cpu()


# --------------------------------------------------------------------------- folders

_MASK_SUFFIXES = ("_mask", "-mask", ".mask")
_COMP_DIRS = ("composite_images", "composites", "composite", "images")
_MASK_DIRS = ("masks", "mask")


def composite_mask_pairs(folder: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(composite, mask)`` files of ``folder``, sorted by composite name.

    Layouts: subfolders ``composites/`` (or ``composite_images/``, ``images/``) and ``masks/``
    with masks named like the composite (same stem, ``<stem>_mask``/``-mask``, or iHarmony4's
    ``<name>_<n>`` -> ``<name>``); or one flat folder where masks end in ``_mask``/``-mask``/``.mask``.
    A composite without a mask is a :class:`UserError` naming it.
    """
    from harmbench.imaging import IMAGE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")

    def images(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    cdir = next((root / n for n in _COMP_DIRS if (root / n).is_dir()), None)
    mdir = next((root / n for n in _MASK_DIRS if (root / n).is_dir()), None)
    if cdir is not None and mdir is not None:
        comps, masks = images(cdir), {p.stem: p for p in images(mdir)}
    else:
        files = images(root)
        masks = {p.stem: p for p in files if p.stem.endswith(_MASK_SUFFIXES)}
        comps = [p for p in files if p.stem not in masks]
    pairs = []
    for c in comps:
        names = [c.stem, *(c.stem + s for s in _MASK_SUFFIXES)]
        if "_" in c.stem:
            names.append(c.stem.rsplit("_", 1)[0])
        m = next((masks[n] for n in names if n in masks), None)
        if m is None:
            raise UserError(f"{c}: no mask found (expected {c.stem}_mask.* or a masks/ folder entry named {c.stem}.*)")
        pairs.append((c, m))
    if not pairs:
        raise UserError(f"{root}: no composite images found")
    return pairs


@dataclass(frozen=True)
class HarmonyRow:
    """The score of one composite file."""

    composite: str
    mask: str
    score: float


def score_folder(
    folder: str | os.PathLike, ext: Extractor, on_skip: Callable[[InputError], None] | None = None
) -> list[HarmonyRow]:
    """Harmony score of every composite + mask pair of ``folder`` (see :func:`composite_mask_pairs`).

    Unreadable pairs, size mismatches and empty masks raise :class:`InputError`, or are passed
    to ``on_skip`` and left out when it is given.
    """
    from harmbench.imaging import binarize, read_mask, read_rgb

    rows = []
    for comp, mask in composite_mask_pairs(folder):
        try:
            rgb = read_rgb(comp)
            m = binarize(read_mask(mask))
            if m.shape != rgb.shape[:2]:
                raise InputError(
                    str(mask), f"mask is {m.shape[1]}x{m.shape[0]} but {comp.name} is {rgb.shape[1]}x{rgb.shape[0]}"
                )
            if not m.any() or m.all():
                raise InputError(str(mask), "mask must have both foreground and background pixels")
        except InputError as exc:
            if on_skip is None:
                raise
            on_skip(exc)
            continue
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255.0)
        mt = torch.from_numpy(m.astype(np.float32))[None, None]
        rows.append(HarmonyRow(str(comp), str(mask), float(harmony_scores(ext, x, mt)[0])))
    return rows


__all__ = [
    "DEFAULT_EXTRACTOR",
    "Extractor",
    "HarmonyRow",
    "composite_mask_pairs",
    "harmony_codes",
    "harmony_scores",
    "load_extractor",
    "score_folder",
]
