"""Loading the authors' PCT-Net checkpoints (``PCTNet_ViT.pth``, ``PCTNet_CNN.pth``) and their model cards.

Source: rakutentech/PCT-Net-Image-Harmonization (MPL-2.0). The checkpoints are plain state
dicts under the authors' module names; this file maps them onto harmbench's names and infers the
widths from the tensor shapes (the number of attention heads is not visible in the shapes: it is
an option, 2 as published).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from harmbench.errors import ConfigError
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.official import (
    OfficialFormat,
    StateDict,
    build_from_state_dict,
    register_official_format,
)
from harmbench.models.ssam import official_ssam_name, ssam_name_to_official, ssam_options_from_state_dict

SOURCE = "https://github.com/rakutentech/PCT-Net-Image-Harmonization"
COMMIT = "1572176ed1a72217dad7395391615329b98d30c7"
RAW = f"https://github.com/rakutentech/PCT-Net-Image-Harmonization/raw/{COMMIT}/pretrained_models"
PUBLISHED_SOURCE = (
    "computed from the per-image CSVs released with the source (evaluation/*.csv): iHarmony4 test, full "
    "resolution, PCT-Net metric definitions (foreground-masked MSE over all pixels, PSNR peak 255)"
)

# --------------------------------------------------------------------------- ViT

_VIT_PREFIXES = (
    ("encoder.patch_to_embedding.1.", "backbone.embed."),
    ("encoder.transformer_enc.layers.", "backbone.layers."),
    ("encoder.dec.0.", "backbone.decode."),
    ("get_params.", "params_head."),
)
_VIT_LAYER = re.compile(r"^encoder\.transformer_enc\.layers\.(\d+)\.")


def vit_rename(key: str) -> str | None:
    """Authors' ViT name -> harmbench name (unchanged when no prefix matches: reported as unexpected)."""
    for old, new in _VIT_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def vit_official_name(name: str) -> str:
    """Inverse of :func:`vit_rename` (for error messages): the authors' name of a harmbench tensor."""
    for old, new in _VIT_PREFIXES:
        if name.startswith(new):
            return old + name[len(new) :]
    return name


def identify_vit(sd: Mapping[str, torch.Tensor]) -> str | None:
    return "model" if "encoder.patch_to_embedding.1.weight" in sd and "get_params.weight" in sd else None


def _need(sd: Mapping[str, torch.Tensor], key: str, ndim: int, model: str) -> torch.Tensor:
    if key not in sd:
        raise ConfigError("weights", f"{model}: checkpoint has no tensor {key!r}")
    t = sd[key]
    if t.dim() != ndim:
        raise ConfigError("weights", f"{model}: {key} has shape {tuple(t.shape)}, expected {ndim} dimensions")
    return t


def vit_widths(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``dim``, ``depth``, ``ffn``, ``patch``, ``latent`` of a ViT checkpoint, read from its shapes."""
    emb = _need(sd, "encoder.patch_to_embedding.1.weight", 2, "pctnet-vit")
    dim, fan_in = emb.shape
    patch = math.isqrt(fan_in // 4)
    if patch * patch * 4 != fan_in:
        raise ConfigError(
            "weights",
            f"pctnet-vit: encoder.patch_to_embedding.1.weight {tuple(emb.shape)}: "
            f"input width {fan_in} is not patch²·4 (RGB + mask)",
        )
    layers = sorted({int(m.group(1)) for k in sd if (m := _VIT_LAYER.match(k))})
    if not layers:
        raise ConfigError("weights", "pctnet-vit: checkpoint has no encoder.transformer_enc.layers.* tensors")
    ffn = _need(sd, "encoder.transformer_enc.layers.0.linear1.weight", 2, "pctnet-vit").shape[0]
    latent = _need(sd, "encoder.dec.0.weight", 4, "pctnet-vit").shape[1]
    return {"dim": int(dim), "depth": max(layers) + 1, "ffn": int(ffn), "patch": patch, "latent": int(latent)}


def build_vit(parts: Mapping[str, StateDict], options: Mapping[str, Any]) -> torch.nn.Module:
    from harmbench.models.pctnet import PCTNetViT

    sd = parts["model"]
    return build_from_state_dict(
        PCTNetViT, sd, vit_widths(sd), options, where="pctnet-vit", rename=vit_rename, official_name=vit_official_name
    )


register_official_format(OfficialFormat("pctnet-vit", ("model",), identify_vit, build_vit))

# --------------------------------------------------------------------------- CNN


def cnn_rename(key: str) -> str | None:
    """Authors' CNN name -> harmbench name: the iSSAM names plus ``get_params`` -> ``params_head``."""
    if key.startswith("get_params."):
        return "params_head." + key[len("get_params.") :]
    return official_ssam_name(key)


def cnn_official_name(name: str) -> str:
    """Inverse of :func:`cnn_rename` (for error messages): the authors' name of a harmbench tensor."""
    if name.startswith("params_head."):
        return "get_params." + name[len("params_head.") :]
    return ssam_name_to_official(name)


def identify_cnn(sd: Mapping[str, torch.Tensor]) -> str | None:
    return "model" if "encoder.block0.convs.block.0.block.0.weight" in sd and "get_params.weight" in sd else None


def build_cnn(parts: Mapping[str, StateDict], options: Mapping[str, Any]) -> torch.nn.Module:
    from harmbench.models.pctnet import PCTNetCNN

    sd = parts["model"]
    return build_from_state_dict(
        PCTNetCNN,
        sd,
        ssam_options_from_state_dict(sd, where="pctnet-cnn"),
        options,
        where="pctnet-cnn",
        rename=cnn_rename,
        official_name=cnn_official_name,
    )


register_official_format(OfficialFormat("pctnet-cnn", ("model",), identify_cnn, build_cnn))

# --------------------------------------------------------------------------- cards

register_card(
    ModelCard(
        name="pctnet-vit-official",
        model="pctnet-vit",
        source="rakutentech/PCT-Net-Image-Harmonization",
        commit=COMMIT,
        code_license="MPL-2.0",
        weights_license="not stated separately (committed in the repository: MPL-2.0)",
        files=(
            WeightFile(
                role="model",
                filename="PCTNet_ViT.pth",
                url=f"{RAW}/PCTNet_ViT.pth",
                manual="in the repository at pretrained_models/PCTNet_ViT.pth (git blob 4c7fdd95916f68bcde8a318d24c1f0cac25a783d)",
            ),
        ),
        input_size=(256, 256),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation="cv2 INTER_LINEAR to 256×256 (network input); bicubic parameter upsampling to the photo's size",
        protocol="official",
        published={
            "iHarmony4 MSE": 18.84,
            "iHarmony4 PSNR": 39.29,
            "iHarmony4 fMSE": 237.49,
            "iHarmony4 SSIM": 0.9911,
            "HAdobe5k MSE": 19.35,
            "HCOCO MSE": 12.45,
            "HFlickr MSE": 45.79,
            "Hday2night MSE": 48.67,
        },
        published_source=PUBLISHED_SOURCE,
        options={"protocol": "official"},
        notes="mconfig ViT_pct; 4,809,896 parameters; runs at the photo's own size (parameters predicted at 256×256, "
        "applied at full resolution); soft low-resolution mask; outputs clamped to [0, 255], rounded half to even.",
    )
)

register_card(
    ModelCard(
        name="pctnet-cnn-official",
        model="pctnet-cnn",
        source="rakutentech/PCT-Net-Image-Harmonization",
        commit=COMMIT,
        code_license="MPL-2.0",
        weights_license="not stated separately (committed in the repository: MPL-2.0)",
        files=(
            WeightFile(
                role="model",
                filename="PCTNet_CNN.pth",
                url=f"{RAW}/PCTNet_CNN.pth",
                manual="in the repository at pretrained_models/PCTNet_CNN.pth (git blob fb02dd3048483fef8bcb16caeb9b18224e2ccc2b)",
            ),
        ),
        input_size=(256, 256),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        interpolation="cv2 INTER_LINEAR to 256×256 (network input); bicubic parameter and attention upsampling to the photo's size",
        protocol="official",
        published={
            "iHarmony4 MSE": 24.02,
            "iHarmony4 PSNR": 38.30,
            "iHarmony4 fMSE": 282.75,
            "HAdobe5k MSE": 21.01,
            "HCOCO MSE": 16.93,
            "HFlickr MSE": 64.44,
            "Hday2night MSE": 49.76,
        },
        published_source=PUBLISHED_SOURCE,
        options={"protocol": "official"},
        notes="mconfig CNN_pct; 2,185,736 parameters (iSSAM-256 backbone + 1×1 parameter head); parameters and the "
        "learned blend map predicted at 256×256 and upsampled bicubically to the photo's size (blend map not "
        "clamped, so background pixels change slightly); outputs clamped to [0, 255], rounded half to even; the "
        "checkpoint's 7×7 mask-blurring buffer is loaded as stored.",
    )
)


__all__ = [
    "build_cnn",
    "build_vit",
    "cnn_official_name",
    "cnn_rename",
    "identify_cnn",
    "identify_vit",
    "vit_official_name",
    "vit_rename",
    "vit_widths",
]
