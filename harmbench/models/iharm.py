"""iDIH-256 (``idih``) and iS2AM / iSSAM-256 (``issam``): SamsungLabs ``image_harmonization`` ports.

Networks: :class:`harmbench.models.dih.DIHNet` and :class:`harmbench.models.ssam.SSAMNet`. Both
see the composite normalised with the ImageNet mean/std plus the mask as a 4th channel and
blend their output with the input ("image fusion"), so background pixels change too.

Two protocols (config field ``protocol``):

* ``"harmbench"`` (default): the network at the input's own size (harmbench's evaluation resizes
  beforehand), replicate padding to the network's stride, float in → float out, binary mask;
  ``recomposite`` pastes the result into the composite's background.
* ``"official"``: the authors' ``Predictor`` and scripts exactly, for the ``resize`` strategy
  (:data:`RESIZE_STRATEGIES`, default ``fixed256`` = ``scripts/evaluate_model.py``'s default):
  8-bit image resized with OpenCV ``INTER_LINEAR``; mask kept soft (``evaluate_model``) or
  thresholded ``> 100`` after resizing (``predict_for_dir``); zero padding to ``2**(depth+1)``;
  ``/255`` then ImageNet normalisation; inverse; crop; clamp to 0–255; no re-compositing.
  :meth:`IHarmHarmonizer.predict` returns what the script computes (the strategy's size, or the
  photo's size with ``original_size=True``, as ``predict_for_dir --original-size``);
  :meth:`IHarmHarmonizer.predict_uint8` rounds as ``cv2.imwrite`` does (half to even).
  ``harmonize`` must return the input's size: where the strategy changes it, the float
  prediction is resized back with OpenCV ``INTER_LINEAR`` (``--original-size``'s rule).

The authors' checkpoints (``idih256.pth``, ``issam256.pth``) load with
``harmbench.models.official.load_weights("issam", FILE, protocol="official")``; widths come
from the tensor shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from harmbench.errors import ConfigError
from harmbench.metrics.resize import target_size
from harmbench.models.base import (
    LearnedHarmonizer,
    ModelInputError,
    PresetMixin,
    register_model,
    validate_inputs,
)
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.dih import (
    DIHNet,
    dih_name_to_official,
    dih_options_from_state_dict,
    official_dih_name,
)
from harmbench.models.official import (
    OfficialFormat,
    StateDict,
    build_from_state_dict,
    register_official_format,
)
from harmbench.models.ssam import (
    SSAMNet,
    SSAMOptions,
    official_ssam_name,
    ssam_name_to_official,
    ssam_options_from_state_dict,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROTOCOLS = ("harmbench", "official")

SOURCE = "SamsungLabs/image_harmonization"
COMMIT = "4d16b1257eaae115c8714bf147f3113a9dabdf51"
RELEASE = "https://github.com/saic-vul/image_harmonization/releases/download/v1.0/"


# --------------------------------------------------------------------------- resize strategies


@dataclass(frozen=True)
class ResizeStrategy:
    """How an authors' script prepares one photo.

    ``size(h, w)`` -> the network input size ``(H', W')``; ``mask_rule``: ``"soft"`` (raw/255 as
    float32, resized ``INTER_LINEAR`` like an image) or ``"above100"`` (raw uint8 resized
    ``INTER_LINEAR``, then ``> 100`` -> 1.0).
    """

    name: str
    script: str
    size: Callable[[int, int], tuple[int, int]]
    mask_rule: str


RESIZE_STRATEGIES: dict[str, ResizeStrategy] = {
    s.name: s
    for s in (
        ResizeStrategy(
            "fixed256",
            "scripts/evaluate_model.py --resize-strategy Fixed256 (default)",
            lambda h, w: (256, 256),
            "soft",
        ),
        ResizeStrategy(
            "fixed512", "scripts/evaluate_model.py --resize-strategy Fixed512", lambda h, w: (512, 512), "soft"
        ),
        ResizeStrategy(
            "limit1024",
            "scripts/evaluate_model.py --resize-strategy LimitLongest1024",
            lambda h, w: target_size(h, w, "limit1024"),
            "soft",
        ),
        ResizeStrategy("none", "scripts/evaluate_model.py --resize-strategy None", lambda h, w: (h, w), "soft"),
        ResizeStrategy("dir256", "scripts/predict_for_dir.py --resize 256", lambda h, w: (256, 256), "above100"),
    )
}


def _cv2_linear(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV ``INTER_LINEAR`` resize to ``(H, W)`` (identity when the size already matches)."""
    import cv2

    if arr.shape[:2] == tuple(size):
        return arr
    return cv2.resize(np.ascontiguousarray(arr), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def round_like_cv2(pred: np.ndarray) -> np.ndarray:
    """Float 0–255 -> uint8 as ``cv2.imwrite`` converts it: round half to even, saturate."""
    return np.clip(np.rint(pred), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- configs


def _check_common(cfg: Any, model: str) -> None:
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"{model}.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {cfg.protocol!r}")
    if cfg.resize not in RESIZE_STRATEGIES:
        raise ConfigError(f"{model}.resize", f"must be one of {', '.join(RESIZE_STRATEGIES)}, got {cfg.resize!r}")
    if cfg.ch < 1:
        raise ConfigError(f"{model}.ch", f"must be a positive width, got {cfg.ch}")


@dataclass(frozen=True)
class IDIHConfig(PresetMixin):
    """iDIH options. ``full`` = ``improved_dih256`` (ch 64, depth 7); ``small`` = ch 16 for CPU runs.

    Attributes:
        ch: first encoder width; depth: encoder blocks; max_channels: width cap;
        batchnorm_from: first encoder block with BatchNorm (−1: none).
        protocol: ``harmbench`` or ``official`` (module docstring).
        resize: official resize strategy (:data:`RESIZE_STRATEGIES`).
        original_size: official ``predict`` resizes the prediction back to the photo's size.
        recomposite: harmbench protocol only: paste the result into the composite's background.
    """

    ch: int = 64
    depth: int = 7
    max_channels: int = 512
    batchnorm_from: int = 2
    protocol: str = "harmbench"
    resize: str = "fixed256"
    original_size: bool = False
    recomposite: bool = False

    PRESETS: ClassVar[dict] = {"full": {}, "small": {"ch": 16}}

    def validate(self) -> None:
        _check_common(self, "idih")
        if self.ch % 2:
            raise ConfigError("idih.ch", f"must be even (the last decoder block has ch/2 channels), got {self.ch}")
        if self.depth < 3:
            raise ConfigError("idih.depth", f"must be >= 3, got {self.depth}")


@dataclass(frozen=True)
class ISSAMConfig(SSAMOptions, PresetMixin):
    """iSSAM options. ``full`` = ``improved_ssam256`` (ch 32, depth 4, SSAM at the last stage);
    ``small`` = ch 8.

    Attributes:
        ch, depth, max_channels, batchnorm_from: as :class:`harmbench.models.ssam.SSAMBackbone`;
        attend_from: first up stage with the SSAM block (−1: none); attention_mid_k: SSAM refine width ratio
        (these six from :class:`harmbench.models.ssam.SSAMOptions`).
        protocol, resize, original_size, recomposite: as :class:`IDIHConfig`.
    """

    protocol: str = "harmbench"
    resize: str = "fixed256"
    original_size: bool = False
    recomposite: bool = False

    PRESETS: ClassVar[dict] = {"full": {}, "small": {"ch": 8}}

    def validate(self) -> None:
        _check_common(self, "issam")
        if self.depth < 2:
            raise ConfigError("issam.depth", f"must be >= 2, got {self.depth}")


# --------------------------------------------------------------------------- harmonizers


class IHarmHarmonizer(LearnedHarmonizer):
    """Shared wrapper: ImageNet normalisation, the two protocols, the authors' predictor."""

    net: torch.nn.Module
    #: the authors' predictor pads to a multiple of this (2**(depth+1))
    predictor_divisor: int

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def protocol(self) -> str:
        """``"harmbench"`` or ``"official"``."""
        return self.config.protocol

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        """Network on a normalised image (N,3,H,W) and mask (N,1,H,W) on [0,1] -> ``SSAMOutput``."""
        return self.net(image, mask)

    # -- harmbench protocol -----------------------------------------------------------
    def _harmonize(self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = (composite - self.mean) / self.std
        return self.net(x, mask).images * self.std + self.mean

    # -- official protocol ----------------------------------------------------------------
    def run_predictor(self, image01: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The authors' ``Predictor.predict`` on a batch: ``image01`` (N,3,H,W) = uint8/255, ``mask``
        (N,1,H,W) float on [0,1] -> float (N,3,H,W) on 0–255, clamped, not rounded.

        Zero-pads to :attr:`predictor_divisor` (``pad // 2`` before), normalises in place as the
        authors do (``sub_(mean).div_(std)``), inverts (``mul_(std).add_(mean)``, ×255), crops.
        """
        param = next(self.parameters())
        x = image01.to(device=param.device, dtype=param.dtype)
        m = mask.to(device=param.device, dtype=param.dtype)
        h, w = x.shape[-2:]
        d = self.predictor_divisor
        ph, pw = (d - h % d) % d, (d - w % d) % d
        pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        if ph or pw:
            x, m = F.pad(x, pads), F.pad(m, pads)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                x = x.clone().sub_(self.mean).div_(self.std)
                y = self.net(x, m).images.mul_(self.std).add_(self.mean).mul_(255.0)
        finally:
            self.train(was_training)
        y = y[..., pads[2] : pads[2] + h, pads[0] : pads[0] + w]
        return torch.clamp(y, 0, 255)

    def prepare_official(self, image_u8: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The script's input chain for the configured ``resize``: ``image_u8`` (H,W,3) uint8 and
        ``mask`` (H,W) raw uint8 0–255 (or float on [0,1]) -> (resized uint8 image, float32 mask)."""
        strategy = RESIZE_STRATEGIES[self.config.resize]
        size = strategy.size(*image_u8.shape[:2])
        img = _cv2_linear(image_u8, size)
        raw = np.asarray(mask)
        if strategy.mask_rule == "above100":
            u8 = raw if raw.dtype == np.uint8 else round_like_cv2(raw.astype(np.float32) * 255.0)
            m = (_cv2_linear(u8, size) > 100).astype(np.float32)
        else:
            f = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
            m = _cv2_linear(f, size).astype(np.float32)
        return img, m

    def predict(self, image_u8: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """What the authors' script computes for one photo: ``image_u8`` (H,W,3) RGB uint8, ``mask``
        (H,W) raw uint8 0–255 (or float [0,1]) -> float32 (h,w,3) on 0–255 (clamped, unrounded).

        ``(h, w)`` is the strategy's size, or ``(H, W)`` with ``original_size`` (resized back with
        ``INTER_LINEAR``, as ``predict_for_dir --original-size``).
        """
        image_u8 = np.asarray(image_u8)
        if image_u8.dtype != np.uint8 or image_u8.ndim != 3 or image_u8.shape[2] != 3:
            raise ModelInputError(f"predict needs an (H, W, 3) uint8 RGB image, got {image_u8.dtype} {image_u8.shape}")
        if np.asarray(mask).shape != image_u8.shape[:2]:
            raise ModelInputError(f"mask shape {np.asarray(mask).shape} does not match the image {image_u8.shape[:2]}")
        img, m = self.prepare_official(image_u8, mask)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
        y = self.run_predictor(x, torch.from_numpy(m)[None, None])
        out = y[0].permute(1, 2, 0).cpu().numpy()
        if self.config.original_size:
            out = _cv2_linear(out, image_u8.shape[:2])
        return out

    def predict_uint8(self, image_u8: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """:meth:`predict` rounded to uint8 as ``cv2.imwrite`` does (half to even, saturated)."""
        return round_like_cv2(self.predict(image_u8, mask))

    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """See :class:`harmbench.models.base.Harmonizer`; under ``protocol="official"`` soft masks on
        [0,1] are accepted and the authors' chain runs (module docstring); output at the input's size."""
        if self.protocol != "official":
            return super().harmonize(composite, mask)
        composite, mask = self._validate_soft(composite, mask)
        strategy = RESIZE_STRATEGIES[self.config.resize]
        n, _, h, w = composite.shape
        size = strategy.size(h, w)
        if size == (h, w) and strategy.mask_rule == "soft":
            y = self.run_predictor(composite.clamp(0, 1), mask.float())
        else:
            u8 = torch.round(composite.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            mk = mask.float()[:, 0].cpu().numpy()
            outs = []
            for i in range(n):
                img, m = self.prepare_official(u8[i], mk[i])
                x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
                yi = self.run_predictor(x, torch.from_numpy(m)[None, None])[0].permute(1, 2, 0).cpu().numpy()
                outs.append(torch.from_numpy(_cv2_linear(yi, (h, w))).permute(2, 0, 1))
            y = torch.stack(outs)
        return (y / 255.0).to(device=composite.device, dtype=composite.dtype)

    @staticmethod
    def _validate_soft(composite: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes and ranges as :func:`validate_inputs`, but a float mask may be soft (any value on [0, 1]).

        Returns the composite (clamped into [0, 1] when within tolerance) and the mask as float.
        """
        if isinstance(mask, torch.Tensor) and mask.is_floating_point() and mask.numel():
            lo, hi = float(mask.min()), float(mask.max())
            if not (lo >= 0 and hi <= 1):  # also false for NaN
                raise ModelInputError(f"mask values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
            composite, _ = validate_inputs(composite, mask > 0.5)
            return composite, mask.to(device=composite.device, dtype=torch.float32)
        return validate_inputs(composite, mask)


@register_model("idih")
class IDIH(IHarmHarmonizer):
    """iDIH-256 (improved Deep Image Harmonization, SamsungLabs). ``forward(normalised image, mask)``."""

    name = "idih"
    config_class = IDIHConfig

    def __init__(self, config: IDIHConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.net = DIHNet(c.ch, c.depth, max_channels=c.max_channels, batchnorm_from=c.batchnorm_from)
        self.predictor_divisor = 2 ** (c.depth + 1)

    @property
    def stride(self) -> int:  # type: ignore[override]
        return self.net.divisor

    @property
    def min_size(self) -> int:  # type: ignore[override]
        return self.net.min_size


@register_model("issam")
class ISSAM(IHarmHarmonizer):
    """iS2AM / iSSAM-256 (spatial-separated attention, SamsungLabs). ``forward(normalised image, mask)``."""

    name = "issam"
    config_class = ISSAMConfig

    def __init__(self, config: ISSAMConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.net = SSAMNet(**c.backbone_options())
        self.predictor_divisor = 2 ** (c.depth + 1)

    @property
    def stride(self) -> int:  # type: ignore[override]
        return self.net.divisor


# --------------------------------------------------------------------------- the authors' checkpoints


def _builder(
    cls: type[IHarmHarmonizer], infer: Callable[..., dict], rename: Callable[[str], str], inverse: Callable[[str], str]
):
    def build(parts: Mapping[str, StateDict], options: Mapping[str, Any]) -> torch.nn.Module:
        sd = parts["model"]
        where = f"{cls.name} checkpoint"
        opts = {k: v for k, v in options.items() if k != "preset"}
        return build_from_state_dict(
            cls,
            sd,
            infer(sd, where=where),
            opts,
            where=where,
            rename=lambda k: "net." + rename(k),
            official_name=lambda k: inverse(k.removeprefix("net.")),
        )

    return build


def _identify(marker: str) -> Callable[[Mapping[str, torch.Tensor]], str | None]:
    def identify(sd: Mapping[str, torch.Tensor]) -> str | None:
        return "model" if any(k.startswith(marker) for k in sd) else None

    return identify


register_official_format(
    OfficialFormat(
        model="idih",
        roles=("model",),
        identify=_identify("encoder.block0.block."),
        build=_builder(IDIH, dih_options_from_state_dict, official_dih_name, dih_name_to_official),
    )
)
register_official_format(
    OfficialFormat(
        model="issam",
        roles=("model",),
        identify=_identify("encoder.block0.convs."),
        build=_builder(ISSAM, ssam_options_from_state_dict, official_ssam_name, ssam_name_to_official),
    )
)


# --------------------------------------------------------------------------- model cards

_PROTOCOL_NOTE = (
    "protocol=official reproduces the authors' Predictor and scripts: resize (--option resize=fixed256 "
    "default = scripts/evaluate_model.py Fixed256; fixed512, limit1024, none; dir256 = scripts/predict_for_dir.py "
    "--resize 256, mask > 100 after resizing; original_size=true resizes the prediction back as "
    "--original-size), OpenCV INTER_LINEAR on the 8-bit image and the soft mask, zero padding to {div}, "
    "/255 then ImageNet mean/std, inverse, crop, clamp to 0-255, cv2.imwrite rounding (half to even) when "
    "written; the output is not re-composited (background pixels change). protocol=harmbench runs the network "
    "at the size harmbench's evaluation gives it, replicate padding, binary mask."
)

_PUBLISHED_SOURCE = "saic-vul/image_harmonization README (iHarmony4 test, 256x256, MSE / PSNR)"

register_card(
    ModelCard(
        name="idih256-official",
        model="idih",
        source=SOURCE,
        commit=COMMIT,
        code_license="MPL-2.0",
        weights_license="not stated separately (repository: MPL-2.0)",
        files=(WeightFile("model", "idih256.pth", RELEASE + "idih256.pth"),),
        input_size=(256, 256),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="cv2 INTER_LINEAR",
        protocol="official",
        published={
            "HCOCO MSE": 19.58,
            "HCOCO PSNR": 38.34,
            "HAdobe5k MSE": 30.84,
            "HAdobe5k PSNR": 36.00,
            "HFlickr MSE": 84.74,
            "HFlickr PSNR": 32.58,
            "Hday2night MSE": 50.05,
            "Hday2night PSNR": 37.10,
            "iHarmony4 MSE": 30.70,
            "iHarmony4 PSNR": 36.99,
        },
        published_source=_PUBLISHED_SOURCE,
        options={"protocol": "official", "resize": "fixed256"},
        notes="improved_dih256: depth 7, ch 64, BatchNorm from block 2, image fusion; sides multiples of 128, >= 256. "
        + _PROTOCOL_NOTE.format(div="a multiple of 256"),
    )
)
register_card(
    ModelCard(
        name="issam256-official",
        model="issam",
        source=SOURCE,
        commit=COMMIT,
        code_license="MPL-2.0",
        weights_license="not stated separately (repository: MPL-2.0)",
        files=(WeightFile("model", "issam256.pth", RELEASE + "issam256.pth"),),
        input_size=(256, 256),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="cv2 INTER_LINEAR",
        protocol="official",
        published={
            "HCOCO MSE": 16.48,
            "HCOCO PSNR": 39.16,
            "HAdobe5k MSE": 22.60,
            "HAdobe5k PSNR": 37.24,
            "HFlickr MSE": 69.67,
            "HFlickr PSNR": 33.56,
            "Hday2night MSE": 40.59,
            "Hday2night PSNR": 37.72,
            "iHarmony4 MSE": 24.65,
            "iHarmony4 PSNR": 37.95,
        },
        published_source=_PUBLISHED_SOURCE,
        options={"protocol": "official", "resize": "fixed256"},
        notes="improved_ssam256: depth 4, ch 32, SSAM block at the last decoder stage (its 7x7 mask_blurring kernel is "
        "loaded from the checkpoint), BatchNorm from block 2, image fusion; sides multiples of 8. "
        + _PROTOCOL_NOTE.format(div="a multiple of 32"),
    )
)


__all__ = [
    "IDIH",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ISSAM",
    "PROTOCOLS",
    "RESIZE_STRATEGIES",
    "IDIHConfig",
    "IHarmHarmonizer",
    "ISSAMConfig",
    "ResizeStrategy",
    "round_like_cv2",
]
