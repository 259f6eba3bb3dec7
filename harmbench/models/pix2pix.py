"""The authors' pix2pix-based test protocol and checkpoint layout, shared by DoveNet and BargainNet.

Both official ``test.py`` scripts (``docs/official_models.md`` §5.1, §5.2) run one image at a
time at 256×256 and differ only in how they read and resize it:

* **resize** — DoveNet: Pillow ``BILINEAR`` (an antialiased convolution resampler) for the
  image, ``NEAREST`` for the mask (:func:`resize_pillow`); BargainNet: OpenCV ``INTER_LINEAR``
  (no antialiasing) for the image **and** the {0, 1} mask (:func:`resize_cv2`);
* **normalise** — ``(u8/255 − 0.5)/0.5`` in float32 (:func:`normalize_u8`), mask {0., 1.};
* **run mode** — the network stays in train mode (the README commands omit ``--eval``):
  BatchNorm normalises with the single image's own statistics and the three ``Dropout(0.5)``
  are active (:func:`authors_train_mode`; ``torch.manual_seed(seed)`` right before the forward,
  or dropout switched off);
* **quantise** — ``tensor2im``: ``(x + 1)/2·255`` in float32, then truncation to uint8
  (:func:`tensor2im`).

It also reads the authors' U-Net state dicts (``model.model.…`` names, §6.1):
:func:`unet_options` infers the width options from the tensor shapes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from harmbench.errors import ConfigError
from harmbench.models.official import merge_inferred

#: The side the authors' test scripts resize every image to (pixels).
OFFICIAL_SIZE = 256
#: Values of the ``protocol`` config field of the ported models.
PROTOCOLS = ("harmbench", "official")


def check_protocol(model: str, protocol: str, seed: Any) -> None:
    """Validate the ``protocol`` and ``seed`` config fields of ``model`` (``ConfigError`` naming the field)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{model}.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{model}.seed", f"must be an integer, got {seed!r}")


# --------------------------------------------------------------------------- image handling


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` RGB on 0–1 -> ``uint8 (H, W, 3)`` (rounded: exact for images read as ``u8/255``)."""
    return x.detach().float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def mask_to_uint8(m: torch.Tensor) -> np.ndarray:
    """``(1, H, W)`` mask {0, 1} -> ``uint8 (H, W)`` {0, 255} (a mask file as the authors' scripts read it)."""
    return ((m.detach()[0] > 0.5).to(torch.uint8) * 255).cpu().numpy()


def resize_pillow(rgb: np.ndarray, mask_raw: np.ndarray, size: int = OFFICIAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """DoveNet's reading and resize: image with Pillow ``BILINEAR`` (antialiased); mask converted to
    mode ``'1'`` (Floyd–Steinberg dithering of a soft mask; the identity for {0, 255}) and resized
    ``NEAREST``.

    ``rgb``: ``uint8 (H, W, 3)``; ``mask_raw``: ``uint8 (H, W)`` 0–255. Returns the image and the
    mask {0, 1} (``uint8``) at ``size×size``.
    """
    from PIL import Image

    img = np.array(Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.Resampling.BILINEAR))
    m = Image.fromarray(np.ascontiguousarray(mask_raw, dtype=np.uint8)).convert("1")
    mask = (np.asarray(m.resize((size, size), Image.Resampling.NEAREST)) > 0).astype(np.uint8)
    return img, mask


def resize_cv2(rgb: np.ndarray, mask_raw: np.ndarray, size: int = OFFICIAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """BargainNet's reading and resize: mask ``floor(v / 255)`` (only 255 is foreground), then
    albumentations ``Resize`` = ``cv2.resize(INTER_LINEAR)`` (no antialiasing) for the image **and**
    the {0, 1} mask. ``rgb`` ``uint8 (H, W, 3)``, ``mask_raw`` ``uint8 (H, W)`` 0–255 -> both at ``size×size``."""
    import cv2

    mask01 = (np.asarray(mask_raw, dtype=np.float32) / 255.0).astype(np.uint8)
    img = cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask01, (size, size), interpolation=cv2.INTER_LINEAR)
    return img, mask


def normalize_u8(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 (H, W, 3)`` -> ``(1, 3, H, W)`` float32 on [-1, 1]: ToTensor then Normalize(0.5, 0.5)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32)
    return t.div(255).sub(0.5).div(0.5)


def mask_tensor(mask01: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 (H, W)`` {0, 1} -> ``(1, 1, H, W)`` float32 {0., 1.}."""
    return torch.from_numpy(np.ascontiguousarray(mask01))[None, None].to(device=device, dtype=torch.float32)


def tensor2im(x: torch.Tensor) -> torch.Tensor:
    """pix2pix ``tensor2im`` on a batch: ``(N, 3, H, W)`` on [-1, 1] -> uint8 ``(N, 3, H, W)``.

    ``(x + 1)/2·255`` in float32, then **truncation** (the authors' ``astype(np.uint8)``).
    """
    return ((x.float() + 1) / 2.0 * 255.0).clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- run mode


@contextlib.contextmanager
def authors_train_mode(module: nn.Module, *, dropout: bool, seed: int) -> Iterator[None]:
    """Run ``module`` as the authors' ``test.py`` does (train mode, batch of one image).

    * BatchNorm uses the batch's own statistics (mean, biased variance, eps as built); the
      module's running statistics are **not** updated (the authors' script updates them but
      never reads them again);
    * with ``dropout``, each ``nn.Dropout`` multiplies its input by ``bernoulli(1 − p)/(1 − p)``
      noise drawn, call after call in forward order (the deepest block first), from a CPU
      generator seeded with ``seed`` when the context opens — the same draws as
      ``torch.manual_seed(seed)`` before the authors' forward, on any device, without touching
      the global RNG; without ``dropout`` the dropouts are identities.

    Restores every module's mode and flags on exit.
    """
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in module.modules()]
    gen = torch.Generator().manual_seed(int(seed))
    hooks = []

    def draw(mod: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - float(mod.p)  # type: ignore[attr-defined]
        noise = torch.empty(out.shape, dtype=out.dtype).bernoulli_(keep, generator=gen).div_(keep)
        return out * noise.to(out.device)

    try:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
                m.track_running_stats = False  # batch statistics, running buffers left alone
            elif isinstance(m, nn.Dropout):
                m.eval()  # identity; the hook applies the authors' noise
                if dropout:
                    hooks.append(m.register_forward_hook(draw))
            else:
                m.train()
        yield
    finally:
        for h in hooks:
            h.remove()
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track


# --------------------------------------------------------------------------- the protocol


Resize = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Forward = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def run_official(
    model: nn.Module,
    composite: torch.Tensor,
    mask: torch.Tensor,
    real: torch.Tensor | None,
    *,
    resize: Resize,
    forward: Forward,
) -> torch.Tensor:
    """The authors' ``test.py`` around a network, image by image (batch statistics of one image).

    ``composite`` (N,3,H,W) on 0–1 (read as ``u8/255``), ``mask`` (N,1,H,W) {0,1}, optional
    ``real`` like ``composite``. Each image goes back to uint8, through ``resize`` (to 256×256),
    ToTensor/Normalize and ``forward(x [-1,1] (1,3,256,256), mask (1,1,256,256), real or None)``,
    whose [-1, 1] output is truncated to uint8 by :func:`tensor2im`. Returns ``(N, 3, 256, 256)``
    = ``uint8 / 255`` in the composite's dtype and device.
    """
    from harmbench.models.base import ModelInputError, validate_inputs

    composite, mask = validate_inputs(composite, mask)
    if real is not None:
        if not isinstance(real, torch.Tensor) or tuple(real.shape) != tuple(composite.shape):
            got = tuple(real.shape) if isinstance(real, torch.Tensor) else type(real).__name__
            raise ModelInputError(f"real must have the composite's shape {tuple(composite.shape)}, got {got}")
        real, _ = validate_inputs(real, mask)
    outs = []
    for i in range(composite.shape[0]):
        r = to_uint8_hwc(real[i]) if real is not None else None
        outs.append(
            official_uint8(model, to_uint8_hwc(composite[i]), mask_to_uint8(mask[i]), r, resize=resize, forward=forward)
        )
    out = torch.cat(outs).to(composite.dtype).div_(255.0)
    return out.to(composite.device)


def official_uint8(
    model: nn.Module,
    rgb: np.ndarray,
    mask_raw: np.ndarray,
    real: np.ndarray | None,
    *,
    resize: Resize,
    forward: Forward,
) -> torch.Tensor:
    """One image through the authors' ``test.py``: ``rgb`` (and ``real``) ``uint8 (H, W, 3)``, ``mask_raw``
    ``uint8 (H, W)`` 0–255 -> uint8 ``(1, 3, 256, 256)`` (``tensor2im`` of the network output)."""
    device = next(model.parameters()).device
    rgb256, m256 = resize(rgb, mask_raw)
    r = normalize_u8(resize(real, mask_raw)[0], device) if real is not None else None
    with torch.no_grad():
        return tensor2im(forward(normalize_u8(rgb256, device), mask_tensor(m256, device), r)).cpu()


def check_uint8_pair(rgb: np.ndarray, mask_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``predict_uint8``'s arguments: ``(H, W, 3)`` uint8 and an ``(H, W)`` mask (uint8 0–255, or bool)."""
    from harmbench.models.base import ModelInputError

    rgb, mask_raw = np.asarray(rgb), np.asarray(mask_raw)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ModelInputError(f"predict_uint8 needs an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if mask_raw.shape != rgb.shape[:2]:
        raise ModelInputError(f"mask shape {mask_raw.shape} does not match the image {rgb.shape[:2]}")
    if mask_raw.dtype == bool:
        mask_raw = mask_raw.astype(np.uint8) * 255
    if mask_raw.dtype != np.uint8:
        raise ModelInputError(f"predict_uint8 needs a uint8 (0–255) or bool mask, got {mask_raw.dtype}")
    return rgb, mask_raw


# --------------------------------------------------------------------------- the authors' U-Net layout

_LEVEL = re.compile(r"^model\.model((?:\.[13]\.model)*)")


def unet_options(sd: Mapping[str, torch.Tensor], *, prefix: str = "", where: str) -> dict[str, Any]:
    """Width options of an authors' U-Net state dict (keys ``<prefix>model.model.…``, §6.1).

    Returns ``input_nc``, ``ngf`` (from the outermost down conv), ``num_downs`` (the nesting
    depth), ``norm`` (``batch`` when BatchNorm statistics are present, else ``instance``) and
    ``attention``. ``ConfigError`` (field ``weights``) when the outermost conv is absent.
    """
    first = f"{prefix}model.model.0.weight"
    w = sd.get(first)
    if w is None or w.dim() != 4:
        raise ConfigError("weights", f"{where}: checkpoint does not fit (missing: {first})")
    depth = 0
    norm = "instance"
    attention = False
    for k in sd:
        if not k.startswith(prefix):
            continue
        k = k[len(prefix) :]
        match = _LEVEL.match(k)
        if match:
            depth = max(depth, match.group(1).count(".model"))
        norm = "batch" if k.endswith(".running_mean") else norm
        attention = attention or k.endswith(".attention.0.weight")
    return {
        "input_nc": int(w.shape[1]),
        "ngf": int(w.shape[0]),
        "num_downs": depth + 1,
        "norm": norm,
        "attention": attention,
    }


__all__ = [
    "OFFICIAL_SIZE",
    "PROTOCOLS",
    "authors_train_mode",
    "check_protocol",
    "check_uint8_pair",
    "mask_tensor",
    "mask_to_uint8",
    "merge_inferred",
    "normalize_u8",
    "official_uint8",
    "resize_cv2",
    "resize_pillow",
    "run_official",
    "tensor2im",
    "to_uint8_hwc",
    "unet_options",
]
