"""HEN/CTN as its authors ship it: their checkpoint files, the model card, and their test protocol.

Checkpoints. The authors release two ``torch.save`` state dicts: ``latest_net_C_A.pth`` (HEN, the
histogram encoder) and ``latest_net_G_A.pth`` (CTN, the colour-transfer network). ``--weights
C.pth,G.pth`` (any order) loads them into ``hen-ctn``: the files are told apart by their tensor
names, the names are mapped (``model.i`` -> ``hen.features.i``, ``model2.0`` -> ``hen.fc``,
``block_init`` -> ``ctn.init_block``, ``HistUnetEnc.netEnc{n}`` -> ``ctn.encoder.{n-1}`` …), the
widths are read from the tensor shapes, and every missing, unexpected or mis-shaped tensor is
reported by name before anything is loaded. HEN's ``model3`` Linear is saved by the authors but
never used: it may be present and is dropped. Nothing else is tolerated (the networks have no
BatchNorm, and the authors load strictly).

Protocol ``official`` (:func:`official_transfer`) is the authors' test script, step by step:

1. RGB uint8 -> ``skimage.color.rgb2lab`` (float64) -> normalised Lab on [-1, 1] (float64);
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

The weights cards: :data:`HEN_CTN_OFFICIAL`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from harmbench.errors import ConfigError
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.lab import A_MAX, A_MIN, B_MAX, B_MIN
from harmbench.models.official import OfficialFormat, StateDict, register_official_format, remap_state_dict

# --------------------------------------------------------------------------- checkpoint format

#: Roles of the two files: ``C`` = HEN (``latest_net_C_A.pth``), ``G`` = CTN (``latest_net_G_A.pth``).
ROLES = ("C", "G")
_WIDTH_FIELDS = ("width", "hen_width", "code_dim", "hist_bins", "l_bins", "dropout")

_HEN_CONV = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_CTN_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^block_init\.(.+)$"), "ctn.init_block.{0}"),
    (re.compile(r"^HistUnetEnc\.netEnc([1-5])\.block\.(.+)$"), "ctn.encoder.{n}.block.{1}"),
    (re.compile(r"^HistUnetDec([1-5])\.block\.(.+)$"), "ctn.decoder.{n}.block.{1}"),
    (re.compile(r"^ENC_Block([1-3])\.conv_block\.(.+)$"), "ctn.refine.{n}.block.{1}"),
    (re.compile(r"^InterOut([1-4])\.(.+)$"), "ctn.side_outputs.{n}.{1}"),
    (re.compile(r"^block_last\.(.+)$"), "ctn.last_block.{0}"),
)
_UNMAPPED = "\0unmapped:"  # never a harmbench name: reported as unexpected


def hen_name(key: str) -> str | None:
    """Authors' HEN tensor name -> harmbench name (``None`` for the unused ``model3`` Linear)."""
    if key.startswith("model3."):
        return None
    if m := _HEN_CONV.match(key):
        return f"hen.features.{m.group(1)}.{m.group(2)}"
    if key in ("model2.0.weight", "model2.0.bias"):
        return "hen.fc." + key.rsplit(".", 1)[1]
    return _UNMAPPED + key


def ctn_name(key: str) -> str:
    """Authors' CTN (IRN) tensor name -> harmbench name."""
    for pattern, template in _CTN_RULES:
        if m := pattern.match(key):
            groups = m.groups()
            if "{n}" in template:
                return template.format(*groups, n=int(groups[0]) - 1)
            return template.format(*groups)
    return _UNMAPPED + key


_INVERSE: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"^hen\.features\.(\d+)\.(.+)$"), lambda m: f"model.{m[1]}.{m[2]}"),
    (re.compile(r"^hen\.fc\.(.+)$"), lambda m: f"model2.0.{m[1]}"),
    (re.compile(r"^ctn\.init_block\.(.+)$"), lambda m: f"block_init.{m[1]}"),
    (re.compile(r"^ctn\.encoder\.(\d)\.(.+)$"), lambda m: f"HistUnetEnc.netEnc{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^ctn\.decoder\.(\d)\.(.+)$"), lambda m: f"HistUnetDec{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^ctn\.refine\.(\d)\.block\.(.+)$"), lambda m: f"ENC_Block{int(m[1]) + 1}.conv_block.{m[2]}"),
    (re.compile(r"^ctn\.side_outputs\.(\d)\.(.+)$"), lambda m: f"InterOut{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^ctn\.last_block\.(.+)$"), lambda m: f"block_last.{m[1]}"),
)


def official_name(name: str) -> str:
    """harmbench ``hen-ctn`` tensor name -> the authors' name (inverse of :func:`hen_name`/:func:`ctn_name`)."""
    for pattern, make in _INVERSE:
        if m := pattern.match(name):
            return make(m)
    return name


def identify(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``"G"`` for a CTN state dict, ``"C"`` for a HEN one, ``None`` otherwise."""
    keys = list(sd)
    if any(k.startswith(("block_init.", "HistUnetEnc.", "HistUnetDec", "ENC_Block", "InterOut", "block_last."))
           for k in keys):
        return "G"
    if "model2.0.weight" in sd or any(_HEN_CONV.match(k) for k in keys):
        return "C"
    return None


def _shape(sd: Mapping[str, torch.Tensor], key: str, where: str, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise ConfigError("weights", f"{where}: checkpoint does not fit (missing: {key})")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise ConfigError("weights", f"{where}: checkpoint does not fit (wrong shape: {key} {shape}, expected {ndim} dims)")
    return shape


def infer_options(parts: Mapping[str, StateDict]) -> dict[str, Any]:
    """Width options of ``hen-ctn`` read from the two state dicts' shapes (authors' names)."""
    hen, ctn = parts["C"], parts["G"]
    w_hen, w_ctn = "hen-ctn HEN file (latest_net_C_A)", "hen-ctn CTN file (latest_net_G_A)"
    first = _shape(hen, "model.0.weight", w_hen, 4)
    convs = sorted(int(m.group(1)) for k in hen if (m := _HEN_CONV.match(k)) and m.group(2) == "weight")
    last = f"model.{convs[-1]}.weight"
    code = _shape(hen, last, w_hen, 4)[0]
    n_down = len(convs) - 1 - 3  # stride-2 convs: all but the three stride-1 convs and the 1x1 head
    if n_down < 1:
        raise ConfigError("weights", f"{w_hen}: checkpoint does not fit ({len(convs)} convolutions, expected >= 5)")
    width = _shape(ctn, "block_init.0.weight", w_ctn, 4)[0]
    refine_in = _shape(ctn, "ENC_Block1.conv_block.0.weight", w_ctn, 4)[1]
    ctn_code, rest = divmod(refine_in - width, 2)
    if rest or ctn_code != code:
        raise ConfigError("weights", f"the HEN code length ({code}, {last}) does not fit the CTN "
                          f"(ENC_Block1.conv_block.0.weight has {refine_in} input channels = width {width} + 2 codes)")
    return {
        "width": width,
        "hen_width": first[0],
        "l_bins": first[1] - 1,
        "code_dim": code,
        "hist_bins": 2 ** (n_down + 2),
        "dropout": any(k.startswith("ENC_Block1.conv_block.4.") for k in ctn),
    }


def build(parts: Mapping[str, StateDict], options: Mapping[str, Any]) -> torch.nn.Module:
    """``hen-ctn`` from the authors' HEN (``C``) and CTN (``G``) state dicts; widths from their shapes.

    ``options`` may set any other ``hen-ctn`` field (``protocol``, ``recomposite`` …); a width
    field that contradicts the files is a :class:`ConfigError`.
    """
    from harmbench.models.hen_ctn import HENCTN

    inferred = infer_options(parts)
    for key, value in options.items():
        if key in inferred and value != inferred[key]:
            raise ConfigError(f"hen-ctn.{key}", f"the authors' files give {key} = {inferred[key]!r}, not {value!r}")
    opts = {"pad_margin": 30, "residual": False, **dict(options), **inferred}
    with torch.random.fork_rng(devices=[]):
        model = HENCTN(**opts)
    own = model.state_dict()
    hen_own = {k: v for k, v in own.items() if k.startswith("hen.")}
    ctn_own = {k: v for k, v in own.items() if k.startswith("ctn.")}
    mapped = remap_state_dict(parts["C"], hen_name, hen_own, where="hen-ctn HEN file (latest_net_C_A)", tolerate=None,
                              official_name=official_name)
    mapped.update(remap_state_dict(parts["G"], ctn_name, ctn_own, where="hen-ctn CTN file (latest_net_G_A)",
                                   tolerate=None, official_name=official_name))
    model.load_state_dict(mapped, strict=True)
    return model


register_official_format(OfficialFormat(model="hen-ctn", roles=ROLES, identify=identify, build=build))

# --------------------------------------------------------------------------- model card

_MANUAL = (
    "Download checkpoints.zip from {url} (a folder per model; no direct link to the single file), unzip it and "
    "pass the file with --weights (or `harmbench weights import hen-ctn-official FILE`)."
)
_DROPBOX = "https://www.dropbox.com/s/lkwo9xg168e650i/checkpoints.zip?dl=1"
_ONEDRIVE = "https://onedrive.live.com/download?resid=94530B7E5F49D254%21484&authkey=!AIw6wh6Vjo-IFWs"

HEN_CTN_OFFICIAL = register_card(
    ModelCard(
        name="hen-ctn-official",
        model="hen-ctn",
        source="https://github.com/codeslake/Color_Transfer_Histogram_Analogy",
        commit="680165a7c7d7c231896b963917c7ed32b8f10dea",
        code_license="AGPL-3.0 (the README adds: exemptions require a licence from POSTECH); harmbench's "
                     "HEN/CTN is an independent implementation and contains none of that code",
        weights_license="not stated (distributed from the AGPL-3.0 repository's README; no separate weight licence)",
        files=(
            WeightFile("C", "latest_net_C_A.pth", manual=_MANUAL.format(url=_DROPBOX) + f" Mirror: {_ONEDRIVE}"),
            WeightFile("G", "latest_net_G_A.pth", manual=_MANUAL.format(url=_DROPBOX) + f" Mirror: {_ONEDRIVE}"),
        ),
        input_size=None,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bilinear",
        protocol="official",
        published={},
        published_source="the repository and the paper (Lee et al., The Visual Computer 2020) report no numeric "
                         "benchmark score for these weights",
        options={"pad_margin": 30, "residual": False, "dropout": False},
        notes="Whole-image colour transfer (FiveK-style source/reference pairs). Inputs: normalised Lab "
              "(skimage rgb2lab; L/100, (a+86.1830)/184.4161, (b+107.8573)/202.3354, then (x-0.5)/0.5), longer side "
              "<= 700 px (bilinear), 30 px replicate padding. Expected sizes (float32 state dicts, not published): "
              "C about 6.5 MB (1,625,668 values incl. the unused model3 Linear), G about 158 MB (39,407,247).",
    )
)

# --------------------------------------------------------------------------- official test protocol

PAD = 30
MAX_SIDE = 700
_A_RANGE = A_MAX - A_MIN  # written as the authors' sum of the two extremes
_B_RANGE = B_MAX - B_MIN


def nlab_official(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` RGB -> ``float64 (1, 3, H, W)`` normalised Lab, as the authors' dataset computes it."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray(rgb, dtype=np.uint8))
    u = np.stack([lab[..., 0] / 100.0, (lab[..., 1] + (-A_MIN)) / (A_MAX + (-A_MIN)),
                  (lab[..., 2] + (-B_MIN)) / (B_MAX + (-B_MIN))])
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


def histogram_official(nlab: torch.Tensor, region: np.ndarray | None = None, *, ab_bins: int = 64,
                       l_bins: int = 8) -> torch.Tensor:
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

    img = (out[0].detach().cpu().float().numpy().transpose(1, 2, 0) * np.float32(0.5) + np.float32(0.5)) * np.float32(255.0)
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


def official_transfer(model: torch.nn.Module, source: np.ndarray, reference: np.ndarray,
                      pairs: RegionPairs = RegionPairs(), *, crop_bug: bool = True) -> OfficialResult:
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
        out = model.ctn(x_in, pad(e_s.contiguous()).to(dev, param.dtype),  # type: ignore[attr-defined]
                        pad(e_t.contiguous()).to(dev, param.dtype), sides=False).output
    hc, wc = (h - PAD, w - PAD) if crop_bug else (h, w)
    rgb = nlab_to_uint8_official(out[:, :, PAD:PAD + hc, PAD:PAD + wc])
    if (h, w) == tuple(source.shape[:2]):
        frame = np.ascontiguousarray(source[:hc, :wc])
    else:
        frame = nlab_to_uint8_official(xs[:, :, :hc, :wc])
    regions = () if pairs.whole else tuple(r[:hc, :wc] for r in src)
    return OfficialResult(rgb, frame, regions)


__all__ = [
    "HEN_CTN_OFFICIAL",
    "OfficialResult",
    "ROLES",
    "RegionPairs",
    "build",
    "ctn_name",
    "hen_name",
    "histogram_official",
    "identify",
    "infer_options",
    "nlab_official",
    "nlab_to_uint8_official",
    "official_name",
    "official_size",
    "official_transfer",
    "resize_official",
    "resize_region",
]
