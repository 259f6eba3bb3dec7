"""HEN/CTN as its authors ship it: their checkpoint files and the model card.

Checkpoints. The authors release two ``torch.save`` state dicts: ``latest_net_C_A.pth`` (HEN, the
histogram encoder) and ``latest_net_G_A.pth`` (CTN, the colour-transfer network). ``--weights
C.pth,G.pth`` (any order) loads them into ``hen-ctn``: the files are told apart by their tensor
names, the names are mapped (``model.i`` -> ``hen.features.i``, ``model2.0`` -> ``hen.fc``,
``block_init`` -> ``ctn.init_block``, ``HistUnetEnc.netEnc{n}`` -> ``ctn.encoder.{n-1}`` …), the
widths are read from the tensor shapes, and every missing, unexpected or mis-shaped tensor is
reported by name before anything is loaded. HEN's ``model3`` Linear is saved by the authors but
never used: it may be present and is dropped. Nothing else is tolerated (the networks have no
BatchNorm, and the authors load strictly).

Their test protocol (``protocol="official"``) is :mod:`harmbench.models.hen_ctn_protocol`.

The model card: :data:`HEN_CTN_OFFICIAL`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from harmbench.errors import ConfigError
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.checkpoints import StateDict, remap_state_dict
from harmbench.models.hen_ctn import HENCTN
from harmbench.models.official import OfficialFormat, merge_inferred, register_official_format

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
    if any(
        k.startswith(("block_init.", "HistUnetEnc.", "HistUnetDec", "ENC_Block", "InterOut", "block_last."))
        for k in keys
    ):
        return "G"
    if "model2.0.weight" in sd or any(_HEN_CONV.match(k) for k in keys):
        return "C"
    return None


def _shape(sd: Mapping[str, torch.Tensor], key: str, where: str, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise ConfigError("weights", f"{where}: checkpoint does not fit (missing: {key})")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise ConfigError(
            "weights", f"{where}: checkpoint does not fit (wrong shape: {key} {shape}, expected {ndim} dims)"
        )
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
        raise ConfigError(
            "weights",
            f"the HEN code length ({code}, {last}) does not fit the CTN "
            f"(ENC_Block1.conv_block.0.weight has {refine_in} input channels = width {width} + 2 codes)",
        )
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
    merged = merge_inferred("hen-ctn", infer_options(parts), options, where="hen-ctn authors' files")
    opts = {"pad_margin": 30, "residual": False, **merged}
    with torch.random.fork_rng(devices=[]):
        model = HENCTN(**opts)
    own = model.state_dict()
    hen_own = {k: v for k, v in own.items() if k.startswith("hen.")}
    ctn_own = {k: v for k, v in own.items() if k.startswith("ctn.")}
    mapped = remap_state_dict(
        parts["C"],
        hen_name,
        hen_own,
        where="hen-ctn HEN file (latest_net_C_A)",
        tolerate=None,
        official_name=official_name,
    )
    mapped.update(
        remap_state_dict(
            parts["G"],
            ctn_name,
            ctn_own,
            where="hen-ctn CTN file (latest_net_G_A)",
            tolerate=None,
            official_name=official_name,
        )
    )
    model.load_state_dict(mapped, strict=True)
    return model


register_official_format(OfficialFormat(model="hen-ctn", roles=ROLES, identify=identify, build=build))

# --------------------------------------------------------------------------- model card

_MANUAL = "download checkpoints.zip from {url} (mirror: {mirror}) and unzip it: the file is inside"
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
            WeightFile("C", "latest_net_C_A.pth", manual=_MANUAL.format(url=_DROPBOX, mirror=_ONEDRIVE)),
            WeightFile("G", "latest_net_G_A.pth", manual=_MANUAL.format(url=_DROPBOX, mirror=_ONEDRIVE)),
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


__all__ = [
    "HEN_CTN_OFFICIAL",
    "ROLES",
    "build",
    "ctn_name",
    "hen_name",
    "identify",
    "infer_options",
    "official_name",
]
