"""HEN/CTN under its authors' test protocol (``protocol="official"``), step by step.

What the authors' colour-transfer ``test.py`` computes, on uint8 RGB images:

1. RGB -> ``skimage.color.rgb2lab`` (float64) -> normalised Lab on [-1, 1] (float64);
2. each image separately: if a side exceeds 700 px, bilinear resize (float64, no antialias) so that
   the longer side is 700 and the other ``int(700·aspect)`` (truncated);
3. float32 from here; histograms (64×64 ab + 8 L bins) of the whole image or of ``nlab · region``,
   where exact zeros are left out per channel (that is how the authors mask a region);
4. HEN codes; code maps tiled at the source size (target: at the reference size for a whole-image
   transfer);
5. ``ReplicationPad2d(30)`` of the image and maps, CTN, and the authors' crop ``[30:H, 30:W]`` of
   the padded output, which loses the last 30 rows and columns ((H−30)×(W−30));
6. normalised Lab -> Lab (float32) -> ``skimage.color.lab2rgb`` (float64, clipped) -> uint8 with
   ``floor(x·255 + 0.5)`` (torchvision ``save_image``).

The functions take the model as an argument (anything with ``hen``, ``ctn`` and ``config`` like
:class:`~harmbench.models.hen_ctn.HENCTN`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from harmbench.models.lab import A_MAX, A_MIN, B_MAX, B_MIN

PAD = 30
MAX_SIDE = 700


def nlab_official(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` RGB -> ``float64 (1, 3, H, W)`` normalised Lab, as the authors' dataset computes it."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray(rgb, dtype=np.uint8))
    u = np.stack(
        [
            lab[..., 0] / 100.0,
            (lab[..., 1] + (-A_MIN)) / (A_MAX + (-A_MIN)),
            (lab[..., 2] + (-B_MIN)) / (B_MAX + (-B_MIN)),
        ]
    )
    return ((torch.from_numpy(np.ascontiguousarray(u)) - 0.5) / 0.5)[None]


def official_size(h: int, w: int) -> tuple[int, int]:
    """The authors' 700 px rule: ``(h, w)`` unchanged when both ≤ 700, else the longer side 700 (other truncated)."""
    if h <= MAX_SIDE and w <= MAX_SIDE:
        return h, w
    aspect = h / w
    return (MAX_SIDE, int(MAX_SIDE / aspect)) if h > w else (int(MAX_SIDE * aspect), MAX_SIDE)


def resize_official(x: torch.Tensor) -> torch.Tensor:
    """Apply :func:`official_size` to ``(1, C, H, W)`` (bilinear, align_corners False, no antialias)."""
    size = official_size(*x.shape[-2:])
    if size == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def resize_region(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool region map resized like the authors' segment maps: bilinear of {0., 1.}, then truncation."""
    if tuple(region.shape) == tuple(size):
        return region
    m = torch.from_numpy(region.astype(np.float32))[None, None]
    return (F.interpolate(m, size=size, mode="bilinear", align_corners=False)[0, 0].long() == 1).numpy()


def histogram_official(
    nlab: torch.Tensor, region: np.ndarray | None = None, *, ab_bins: int = 64, l_bins: int = 8
) -> torch.Tensor:
    """HEN input ``(1, 1 + l_bins, ab_bins, ab_bins)`` of ``nlab`` (float32 ``(1, 3, H, W)``) the authors' way.

    ``region`` (bool ``(H, W)``) multiplies the image (zeros outside); then exact zeros are left out
    per channel (if a and b then differ in length, one 0 is appended to the shorter), values are
    mapped by ``(v + 1)/2`` and binned over [0, 1] by ``np.histogramdd``; rows index b, columns a;
    each histogram divided by its float32 sum.
    """
    x = nlab[0].detach().cpu().numpy().astype(np.float32, copy=False)
    if region is not None:
        x = x * region.astype(np.float32)
    chans = [c.ravel()[np.flatnonzero(c)] for c in x]
    lv, av, bv = chans
    if len(av) != len(bv):
        short = 1 if len(av) < len(bv) else 2
        chans[short] = np.append(chans[short], np.float32(0.0))
        lv, av, bv = chans
    lv, av, bv = ((c + np.float32(1.0)) / np.float32(2.0) for c in (lv, av, bv))
    ab = np.histogramdd(np.stack([av, bv], 1), bins=[ab_bins, ab_bins], range=((0, 1), (0, 1)))[0]
    ab = np.flip(np.rot90(ab), 0).astype(np.float32)
    lh = np.histogramdd(np.stack([lv, np.zeros_like(lv)], 1), bins=[l_bins, 1], range=((0, 1), (-1, 2)))[0]
    lh = lh.astype(np.float32)
    ab = ab / ab.sum()
    lh = lh / lh.sum()
    planes = np.broadcast_to(lh.reshape(l_bins, 1, 1), (l_bins, ab_bins, ab_bins))
    return torch.from_numpy(np.concatenate([ab[None], planes]).astype(np.float32))[None]


def nlab_to_uint8_official(out: torch.Tensor) -> np.ndarray:
    """CTN output ``(1, 3, h, w)`` normalised Lab -> ``uint8 (h, w, 3)`` as the authors save it."""
    from skimage.color import lab2rgb

    img = (out[0].detach().cpu().float().numpy().transpose(1, 2, 0) * np.float32(0.5) + np.float32(0.5)) * np.float32(
        255.0
    )
    L = img[..., 0] / np.float32(255.0) * np.float32(100.0)
    a = img[..., 1] / np.float32(255.0) * np.float32(A_MAX + (-A_MIN)) - np.float32(-A_MIN)
    b = img[..., 2] / np.float32(255.0) * np.float32(B_MAX + (-B_MIN)) - np.float32(-B_MIN)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "negative Z values clipped": part of the authors' conversion
        rgb = lab2rgb(np.dstack([L, a, b]).astype(np.float64))
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RegionPairs:
    """What to transfer where.

    ``source``: bool ``(H, W)`` source regions; ``reference``: for each, the bool ``(Ht, Wt)``
    reference region whose colours it takes, or ``None`` (the region keeps its own colours).
    ``labels``: the regions come from label maps (semantic mode). No regions = whole images.
    """

    source: tuple[np.ndarray, ...] = ()
    reference: tuple[np.ndarray | None, ...] = ()
    labels: bool = False

    @property
    def whole(self) -> bool:
        return not self.source


class OfficialResult(NamedTuple):
    """:func:`official_transfer`'s output ``uint8 (h, w, 3)``, the source in the same frame (its pixels, or the
    authors' view of it when the 700 px rule resized it) and the source regions in that frame (bool ``(h, w)``)."""

    output: np.ndarray
    source: np.ndarray
    regions: tuple[np.ndarray, ...]


def official_transfer(
    model: torch.nn.Module,
    source: np.ndarray,
    reference: np.ndarray,
    pairs: RegionPairs = RegionPairs(),
    *,
    crop_bug: bool = True,
) -> OfficialResult:
    """The authors' test chain on ``uint8 (H, W, 3)`` images (see the module docstring).

    Whole images (no ``pairs``): e_s = source code, e_t = reference code, tiled at each image's size.
    Regions (masks): e_s = the region's code on it and the code of the rest elsewhere; e_t = the
    reference region's code on the region, the rest's code elsewhere (so only the region moves).
    Labels (the authors' ``--is_SR``): e_s = whole-source code; e_t = whole-reference code,
    overwritten on each source label by the code of the same label in the reference.
    ``crop_bug``: the authors' crop (output (H'−30)×(W'−30)); otherwise the correct (H'×W') crop.
    ``H'×W'`` is the source size after the 700 px rule; both crops start at the image's first pixel.
    """
    param = next(model.parameters())
    dev, cfg = param.device, model.config  # type: ignore[attr-defined]
    hist = lambda x, r=None: histogram_official(x, r, ab_bins=cfg.hist_bins, l_bins=cfg.l_bins)  # noqa: E731

    def code(x: torch.Tensor, region: np.ndarray | None = None) -> torch.Tensor:
        return model.hen(hist(x, region).to(dev, param.dtype)).to(x.device)  # type: ignore[attr-defined]

    xs = resize_official(nlab_official(source)).float()
    xr = resize_official(nlab_official(reference)).float()
    h, w = xs.shape[-2:]
    with torch.no_grad():
        if pairs.whole:
            e_s = code(xs).expand(-1, -1, h, w)
            e_t = code(xr).expand(-1, -1, *xr.shape[-2:])
        else:
            src = [resize_region(r, (h, w)) for r in pairs.source]
            ref = [None if r is None else resize_region(r, tuple(xr.shape[-2:])) for r in pairs.reference]
            if pairs.labels:
                e_s = code(xs).expand(-1, -1, h, w)
                e_t = code(xr).expand(-1, -1, h, w).clone()
                for s, r in zip(src, ref):
                    if r is not None and s.any() and r.any():
                        e_t[..., torch.from_numpy(s)] = code(xr, r).view(1, -1, 1)
            else:
                rest = ~np.logical_or.reduce(src)
                e_s = torch.zeros(1, cfg.code_dim, h, w)
                e_t = torch.zeros(1, cfg.code_dim, h, w)
                if rest.any():
                    c_rest = code(xs, rest).view(1, -1, 1, 1)
                    e_s[:] = c_rest
                    e_t[:] = c_rest
                for s, r in zip(src, ref):
                    sel = torch.from_numpy(s)
                    c_s = code(xs, s).view(1, -1, 1)
                    e_s[..., sel] = c_s
                    e_t[..., sel] = c_s if r is None else code(xr, r).view(1, -1, 1)
        pad = torch.nn.ReplicationPad2d(PAD)
        x_in = pad(xs).to(dev, param.dtype)
        out = model.ctn(
            x_in,
            pad(e_s.contiguous()).to(dev, param.dtype),  # type: ignore[attr-defined]
            pad(e_t.contiguous()).to(dev, param.dtype),
            sides=False,
        ).output
    hc, wc = (h - PAD, w - PAD) if crop_bug else (h, w)
    rgb = nlab_to_uint8_official(out[:, :, PAD : PAD + hc, PAD : PAD + wc])
    if (h, w) == tuple(source.shape[:2]):
        frame = np.ascontiguousarray(source[:hc, :wc])
    else:
        frame = nlab_to_uint8_official(xs[:, :, :hc, :wc])
    regions = () if pairs.whole else tuple(r[:hc, :wc] for r in src)
    return OfficialResult(rgb, frame, regions)


__all__ = [
    "MAX_SIDE",
    "PAD",
    "OfficialResult",
    "RegionPairs",
    "histogram_official",
    "nlab_official",
    "nlab_to_uint8_official",
    "official_size",
    "official_transfer",
    "resize_official",
    "resize_region",
]
