"""PCT-Net (Guerreiro et al., CVPR 2023): a low-resolution network predicts a per-pixel colour
transform that is applied at the photo's own resolution.

* :class:`PCTNet` holds the part both variants share: the 1×1 ``params_head`` (latent -> 12
  parameters, see :mod:`harmbench.models.pct`), the low-/full-resolution forward pass and the
  two inference protocols.
* ``pctnet-vit`` (:class:`PCTNetViT`): :class:`~harmbench.models.vit.ViTBackbone`, inputs on the
  plain 0–1 scale (mean 0, std 1), blends with the mask.
* ``pctnet-cnn`` (:class:`PCTNetCNN`): the iSSAM U-Net (:mod:`harmbench.models.ssam`), ImageNet
  normalisation, blends with a learned attention map ``sigmoid(3·conv1×1(features))``.

Inference protocols (config ``protocol``), both at the photo's own size:

``official``
    the authors' predictor: the composite is taken as 8-bit (``round(x·255)``); the network
    input is ``cv2.resize(…, (256, 256), INTER_LINEAR)`` of the uint8 image and of the float
    mask (soft edges); images are normalised as ``(u8 / 255 − mean) / std``; the full-resolution
    result ``PCT(I_f, bicubic(P))·A_f + I_f·(1 − A_f)`` is mapped back with ``·std + mean``,
    ``·255``, clamped to [0, 255]; 8-bit outputs round half to even (what ``cv2.imwrite`` does);
    nothing is re-composited outside the network (the CNN changes background pixels).
``harmbench``
    the same network and application, but the low-resolution input is an antialiased bilinear
    resize of the float composite and mask (no 8-bit rounding, no aliasing on large photos) and
    the CNN's upsampled blend map is clamped to [0, 1].

The full-resolution application runs in bands of ``tile_rows`` rows, so memory stays bounded
on 24-megapixel photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harmbench.errors import ConfigError
from harmbench.models.base import (
    LearnedHarmonizer,
    ModelInputError,
    PresetMixin,
    register_model,
    validate_inputs,
)
from harmbench.models.pct import (
    apply_fullres,
    identity_params,
    pct_transform,
)
from harmbench.models.ssam import FusionHead, SSAMBackbone, SSAMOptions
from harmbench.models.vit import ViTBackbone

PROTOCOLS = ("harmbench", "official")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PCTOutput(NamedTuple):
    """What :meth:`PCTNet.forward` returns (normalised space unless stated).

    ``images`` (N,3,h,w) low-resolution result; ``params`` (N,12,h,w); ``attention`` (N,1,h,w)
    blend map (ViT: the low-resolution mask); ``images_fullres`` (N,3,H,W) and
    ``params_fullres`` (N,12,H,W) when a full-resolution input was given, else ``None``.
    """

    images: torch.Tensor
    params: torch.Tensor
    attention: torch.Tensor
    images_fullres: torch.Tensor | None
    params_fullres: torch.Tensor | None


class Prediction(NamedTuple):
    """:meth:`PCTNet.predict` result: ``fullres`` (H,W,3) uint8 or float32 0–255 at the photo's
    size and ``lowres`` (s,s,3) float32 0–255 at the network's resolution, both clamped."""

    fullres: np.ndarray
    lowres: np.ndarray


def _validate_common(cfg: Any, model: str) -> None:
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"{model}.protocol", f"must be one of {PROTOCOLS}, got {cfg.protocol!r}")
    if cfg.lowres < 8:
        raise ConfigError(f"{model}.lowres", f"must be >= 8 pixels, got {cfg.lowres}")
    if cfg.tile_rows < 1:
        raise ConfigError(f"{model}.tile_rows", f"must be >= 1, got {cfg.tile_rows}")


class PCTNet(LearnedHarmonizer):
    """Shared PCT-Net machinery; subclasses provide ``backbone`` and :meth:`features`.

    ``forward`` takes *normalised* images (``(rgb01 − mean) / std`` with :attr:`mean`/:attr:`std`)
    and masks on [0, 1]; it is differentiable (training uses ``out.images`` at low resolution).
    """

    norm_mean: ClassVar[tuple[float, float, float]] = (0.0, 0.0, 0.0)
    norm_std: ClassVar[tuple[float, float, float]] = (1.0, 1.0, 1.0)
    learned_attention: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.register_buffer("mean", torch.tensor(self.norm_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.norm_std).view(1, 3, 1, 1), persistent=False)

    def _init_params_head(self, latent: int) -> None:
        """``params_head`` starts near the identity transform (small weights, identity bias)."""
        self.params_head = nn.Conv2d(latent, 12, kernel_size=1)
        with torch.no_grad():
            self.params_head.weight.mul_(0.1)
            self.params_head.bias.copy_(identity_params(self.norm_mean, self.norm_std))

    # -- network ----------------------------------------------------------------------
    def features(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised image (N,3,h,w), mask (N,1,h,w) -> (latent (N,L,h,w), blend map (N,1,h,w))."""
        raise NotImplementedError

    def normalize(self, rgb01: torch.Tensor) -> torch.Tensor:
        """RGB on 0–1 -> the network's normalised space."""
        return (rgb01 - self.mean) / self.std

    def denormalize_255(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised -> 0–255 float, clamped (the authors' predictor's inverse)."""
        return ((x * self.std + self.mean) * 255.0).clamp_(0.0, 255.0)

    def forward(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        image_fullres: torch.Tensor | None = None,
        mask_fullres: torch.Tensor | None = None,
    ) -> PCTOutput:
        """Low-resolution pass and, when ``image_fullres`` (N,3,H,W) is given, the full-resolution
        application in one piece (``F.interpolate`` bicubic; inference uses bands instead)."""
        latent, attention = self.features(image, mask)
        params = self.params_head(latent)
        images = pct_transform(image, params, self.mean, self.std) * attention + image * (1 - attention)
        if image_fullres is None:
            return PCTOutput(images, params, attention, None, None)
        size = tuple(image_fullres.shape[-2:])
        params_f = F.interpolate(params, size=size, mode="bicubic", align_corners=False)
        if self.learned_attention:
            att_f = F.interpolate(attention, size=size, mode="bicubic", align_corners=False)
        else:
            if mask_fullres is None:
                raise ValueError("mask_fullres is needed with image_fullres")
            att_f = mask_fullres
        out_f = pct_transform(image_fullres, params_f, self.mean, self.std) * att_f + image_fullres * (1 - att_f)
        return PCTOutput(images, params, attention, out_f, params_f)

    def forward_rgb(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Training helper: RGB 0–1 composite (N,3,h,w) and mask (N,1,h,w) at the network's
        resolution -> the harmonized RGB on the 0–1 scale (differentiable, not clamped)."""
        return self.forward(self.normalize(composite), mask).images * self.std + self.mean

    # -- inference helpers ------------------------------------------------------------
    def _lowres_official(self, rgb_u8: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (H,W,3) and float mask (H,W) -> cv2 INTER_LINEAR at ``lowres``², normalised image and mask."""
        import cv2

        s = self.config.lowres
        img = cv2.resize(np.ascontiguousarray(rgb_u8), (s, s), interpolation=cv2.INTER_LINEAR)
        m = cv2.resize(np.ascontiguousarray(mask, dtype=np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
        dev = self.mean.device
        x = torch.from_numpy(img).to(dev).permute(2, 0, 1)[None].float().div(255.0).sub(self.mean).div(self.std)
        return x, torch.from_numpy(m).to(dev)[None, None]

    def lowres_input(self, rgb01: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``harmbench`` protocol's network input (differentiable; what training feeds ``forward``):
        RGB 0–1 (N,3,H,W) and mask (N,1,H,W) -> normalised image and mask at ``lowres``²."""
        return self._lowres_harmbench(rgb01, mask)

    def _lowres_harmbench(self, rgb01: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0–1 (N,3,H,W) and mask -> antialiased bilinear at ``lowres``², normalised image and mask."""
        s = (self.config.lowres, self.config.lowres)
        aa = rgb01.shape[-2] > s[0] or rgb01.shape[-1] > s[1]
        x = F.interpolate(rgb01, size=s, mode="bilinear", align_corners=False, antialias=aa)
        m = F.interpolate(mask, size=s, mode="bilinear", align_corners=False, antialias=aa)
        return self.normalize(x.clamp(0.0, 1.0)), m.clamp(0.0, 1.0)

    def _apply_bands(self, params: torch.Tensor, attention: torch.Tensor, size: tuple[int, int], read, write) -> None:
        apply_fullres(
            params,
            attention if self.learned_attention else None,
            size,
            read,
            write,
            mean=self.mean,
            std=self.std,
            tile_rows=self.config.tile_rows,
            clamp_attention=self.config.protocol == "harmbench",
        )

    def _run(self, image_lr: torch.Tensor, mask_lr: torch.Tensor) -> PCTOutput:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.forward(image_lr, mask_lr)
        finally:
            self.train(was_training)

    # -- the harmbench contract ----------------------------------------------------------
    @property
    def protocol(self) -> str:
        """``harmbench`` or ``official`` (the config field)."""
        return self.config.protocol

    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """RGB 0–1 (N,3,H,W) + mask (N,1,H,W) -> RGB 0–1 at the same size (see the protocols).

        The mask must be binary under ``harmbench``; under ``official`` soft values on [0, 1]
        are taken as given, as the authors' predictor does.
        """
        return self.harmonize_multires(composite, mask)[0]

    def harmonize_multires(self, composite: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`harmonize`, plus the network's own low-resolution result: ``(full (N,3,H,W),
        low (N,3,s,s))``, both RGB on 0–1 (``s`` = ``lowres``; the authors' script scores both)."""
        if self.protocol == "official" and isinstance(mask, torch.Tensor) and mask.is_floating_point():
            binary = (mask > 0.5).to(mask.dtype)
            composite, _ = validate_inputs(composite, binary)
            lo, hi = float(mask.min()), float(mask.max())
            if not (lo >= 0.0 and hi <= 1.0):
                raise ModelInputError(f"mask values must lie on [0, 1], got [{lo:.4g}, {hi:.4g}]")
        else:
            composite, mask = validate_inputs(composite, mask)
        dev = self.mean.device
        x = composite.to(device=dev, dtype=torch.float32)
        m = mask.to(device=dev, dtype=torch.float32)
        official = self.config.protocol == "official"
        if official:
            x = (x * 255.0).round_().clamp_(0.0, 255.0).div_(255.0)  # the 8-bit photo the authors read
            pairs = [
                self._lowres_official(
                    (x[i] * 255.0).round().byte().permute(1, 2, 0).cpu().numpy(), m[i, 0].cpu().numpy()
                )
                for i in range(x.shape[0])
            ]
            image_lr, mask_lr = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        else:
            image_lr, mask_lr = self._lowres_harmbench(x, m)
        low = self._run(image_lr, mask_lr)
        out = torch.empty_like(x)
        size = (x.shape[-2], x.shape[-1])
        with torch.no_grad():
            for i in range(x.shape[0]):

                def read(y0: int, y1: int, i: int = i) -> tuple[torch.Tensor, torch.Tensor]:
                    return self.normalize(x[i : i + 1, :, y0:y1]), m[i : i + 1, :, y0:y1]

                def write(y0: int, y1: int, y: torch.Tensor, i: int = i) -> None:
                    out[i : i + 1, :, y0:y1] = self.denormalize_255(y).div_(255.0)

                self._apply_bands(low.params[i : i + 1], low.attention[i : i + 1], size, read, write)
        if getattr(self.config, "recomposite", False):
            out = out * m + x * (1 - m)
        lowres = self.denormalize_255(low.images).div_(255.0)
        return out.to(device=composite.device, dtype=composite.dtype), lowres.to(
            device=composite.device, dtype=composite.dtype
        )

    def predict(self, composite: np.ndarray, mask: np.ndarray, *, out_dtype: str = "uint8") -> Prediction:
        """One photo: uint8 (H,W,3) RGB and its mask (H,W) -> :class:`Prediction` at the photo's own size.

        ``mask``: uint8 on 0–255 as read from the file (used as ``mask / 255``, like the authors'
        scripts), or bool / float on [0, 1]; soft values are taken as given. The photo and mask
        are read band by band (no full-size float copy of the photo under ``official``); with
        ``out_dtype="uint8"`` the result rounds half to even (``cv2.imwrite``'s conversion).
        """
        if composite.dtype != np.uint8 or composite.ndim != 3 or composite.shape[2] != 3:
            raise ValueError(f"composite must be uint8 (H, W, 3), got {composite.dtype} {composite.shape}")
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != composite.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match the photo {composite.shape[:2]}")
        if out_dtype not in ("uint8", "float32"):
            raise ValueError(f"out_dtype must be 'uint8' or 'float32', got {out_dtype!r}")
        h, w = composite.shape[:2]
        band = self.config.tile_rows
        dev = self.mean.device

        def mask_rows(y0: int, y1: int) -> np.ndarray:
            a = mask[y0:y1]
            return (a / 255.0).astype(np.float32) if a.dtype == np.uint8 else a.astype(np.float32)

        full_mask = np.empty((h, w), np.float32)
        for y0 in range(0, h, band):
            full_mask[y0 : y0 + band] = mask_rows(y0, min(h, y0 + band))
        if self.config.protocol == "official":
            image_lr, mask_lr = self._lowres_official(composite, full_mask)
        else:
            image_lr, mask_lr = self._lowres_harmbench(
                torch.from_numpy(np.array(composite)).to(dev).permute(2, 0, 1)[None].float().div(255.0),
                torch.from_numpy(full_mask).to(dev)[None, None],
            )
        del full_mask
        low = self._run(image_lr, mask_lr)
        out = np.empty((h, w, 3), dtype=np.uint8 if out_dtype == "uint8" else np.float32)

        def read(y0: int, y1: int) -> tuple[torch.Tensor, torch.Tensor]:
            img = torch.from_numpy(np.array(composite[y0:y1])).to(dev).permute(2, 0, 1)[None].float().div(255.0)
            return self.normalize(img), torch.from_numpy(mask_rows(y0, y1)).to(dev)[None, None]

        def write(y0: int, y1: int, y: torch.Tensor) -> None:
            v = self.denormalize_255(y)[0].permute(1, 2, 0)
            out[y0:y1] = (v.round() if out_dtype == "uint8" else v).cpu().numpy().astype(out.dtype)

        with torch.no_grad():
            self._apply_bands(low.params, low.attention, (h, w), read, write)
        lowres = self.denormalize_255(low.images)[0].permute(1, 2, 0).cpu().numpy()
        return Prediction(out, lowres)

    def predict_uint8(self, image_u8: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """What the authors' scripts write: uint8 (H,W,3) for a uint8 photo and its mask (uint8
        0–255 as read from the file, used as ``mask / 255``; or bool/float on [0, 1])."""
        return self.predict(image_u8, mask).fullres

    def _harmonize(
        self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError("PCTNet overrides harmonize()")


# --------------------------------------------------------------------------- ViT variant


@dataclass(frozen=True)
class PCTNetViTConfig(PresetMixin):
    """PCT-Net ViT options. ``full`` = the published ``ViT_pct``; ``small`` = CPU size.

    Attributes:
        dim: token width (256). depth: encoder layers (9). heads: attention heads (2).
        ffn: feed-forward width (512). patch: patch side in pixels (4). latent: channels of
        the decoded latent (12). dropout: transformer dropout (0.1, training only).
        lowres: side of the square low-resolution network input in pixels (256).
        protocol: ``harmbench`` or ``official`` (module docstring).
        tile_rows: rows per band of the full-resolution application (memory vs speed).
        recomposite: paste the result into the composite's background (the ViT changes
            nothing there anyway; kept for the common interface).
    """

    dim: int = 256
    depth: int = 9
    heads: int = 2
    ffn: int = 512
    patch: int = 4
    latent: int = 12
    dropout: float = 0.1
    lowres: int = 256
    protocol: str = "harmbench"
    tile_rows: int = 128
    recomposite: bool = False

    PRESETS: ClassVar[dict] = {
        "full": {},
        "small": {"dim": 64, "depth": 2, "heads": 2, "ffn": 128},
    }

    def validate(self) -> None:
        _validate_common(self, "pctnet-vit")
        for name in ("dim", "depth", "heads", "ffn", "patch", "latent"):
            if getattr(self, name) < 1:
                raise ConfigError(f"pctnet-vit.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise ConfigError("pctnet-vit.heads", f"must divide dim {self.dim}, got {self.heads}")
        if self.lowres % self.patch:
            raise ConfigError("pctnet-vit.lowres", f"must be a multiple of patch {self.patch}, got {self.lowres}")


@register_model("pctnet-vit")
class PCTNetViT(PCTNet):
    """PCT-Net with the ViT backbone: blends the transformed pixels with the mask itself."""

    name = "pctnet-vit"
    config_class = PCTNetViTConfig

    def __init__(self, config: PCTNetViTConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.backbone = ViTBackbone(4, c.dim, c.depth, c.heads, c.ffn, c.patch, c.latent, c.dropout)
        self._init_params_head(c.latent)

    def features(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(torch.cat([image, mask], dim=1)), mask


# --------------------------------------------------------------------------- CNN variant


@dataclass(frozen=True)
class PCTNetCNNConfig(SSAMOptions, PresetMixin):
    """PCT-Net CNN options. ``full`` = the published ``CNN_pct``; ``small`` = CPU size (ch 8).

    Attributes:
        ch: width of the first U-Net stage (32). depth: down stages (4; the low-resolution side
        must be a multiple of ``2**(depth−1)``). max_channels: stage width cap (256).
        batchnorm_from: first stage with BatchNorm (2). attend_from: first up stage with the
        SSAM block (2, the last one). attention_mid_k: SSAM refine width ratio (0.5). These six
        come from :class:`harmbench.models.ssam.SSAMOptions`.
        lowres, protocol, tile_rows, recomposite: as :class:`PCTNetViTConfig`
        (``recomposite`` pastes the result into the background, which the CNN's learned blend
        otherwise changes slightly).
    """

    lowres: int = 256
    protocol: str = "harmbench"
    tile_rows: int = 128
    recomposite: bool = False

    PRESETS: ClassVar[dict] = {
        "full": {},
        "small": {"ch": 8},
    }

    def validate(self) -> None:
        _validate_common(self, "pctnet-cnn")
        if self.ch < 1 or self.max_channels < 1:
            raise ConfigError(
                "pctnet-cnn.ch", f"widths must be >= 1, got ch={self.ch}, max_channels={self.max_channels}"
            )
        if self.depth < 2:
            raise ConfigError("pctnet-cnn.depth", f"must be >= 2, got {self.depth}")
        if self.lowres % 2 ** (self.depth - 1):
            raise ConfigError(
                "pctnet-cnn.lowres",
                f"must be a multiple of {2 ** (self.depth - 1)} (depth {self.depth}), got {self.lowres}",
            )
        if not 0 < self.attention_mid_k <= 4:
            raise ConfigError("pctnet-cnn.attention_mid_k", f"must be in (0, 4], got {self.attention_mid_k}")


@register_model("pctnet-cnn")
class PCTNetCNN(PCTNet):
    """PCT-Net with the iSSAM backbone; blends with its learned attention map.

    ``head`` holds the iSSAM fusion head: its ``blend`` conv gives the attention map; its
    ``to_rgb`` conv is kept so the authors' checkpoints load, but PCT-Net never uses it.
    """

    name = "pctnet-cnn"
    config_class = PCTNetCNNConfig
    norm_mean = IMAGENET_MEAN
    norm_std = IMAGENET_STD
    learned_attention = True

    def __init__(self, config: PCTNetCNNConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.backbone = SSAMBackbone(**c.backbone_options())
        self.head = FusionHead(self.backbone.out_channels)
        self._init_params_head(self.backbone.out_channels)

    def features(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(image, mask)
        return f, self.head.attention(f)


__all__ = [
    "PROTOCOLS",
    "PCTNet",
    "PCTNetCNN",
    "PCTNetCNNConfig",
    "PCTNetViT",
    "PCTNetViTConfig",
    "PCTOutput",
    "Prediction",
]
