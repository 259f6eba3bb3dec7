"""BargainNet (Cong et al., ICME 2021): domain-code extractor E + the DoveNet attention U-Net.

* E (:class:`DomainEncoder`): partial convs 3×3 s2 valid, no spectral norm —
  3->w (bias), ReLU; w->2w, BN, ReLU; 2w->4w, BN, ReLU; 4w->8w, BN, ReLU; 8w->8w —
  then global average pooling and Conv1×1 -> an L-dim code ``(N, L, 1, 1)`` (L=16).
  Input: image on [-1, 1] and the region mask. Needs ≥ 63 px.
* G: :class:`~harmbench.models.unet.AttentionUNet` with ``input_nc = 4 + L``; its input is
  ``cat[composite, mask, clamp(scale, min=0.001)·broadcast(z_b)]`` where ``scale`` is one
  learnable scalar (init 0.1) and ``z_b = E(composite-or-real, 1−M)``. Output on [-1, 1].
* harmony score: ``exp(−0.04212·‖z_b − z_f‖₂)`` of a composite (:meth:`BargainNet.harmony_score`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from harmbench.errors import ConfigError
from harmbench.models.base import LearnedHarmonizer, PresetMixin, register_model
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.layers import PartialConv2d, init_normal, norm_layer, uses_bias
from harmbench.models.official import (
    OfficialFormat,
    StateDict,
    merge_inferred,
    register_official_format,
    remap_state_dict,
)
from harmbench.models.pix2pix import (
    authors_train_mode,
    check_protocol,
    check_uint8_pair,
    official_uint8,
    resize_cv2,
    run_official,
    unet_options,
)
from harmbench.models.unet import AttentionUNet

HARMONY_SCALE = 0.04212


@dataclass(frozen=True)
class BargainNetConfig(PresetMixin):
    """BargainNet options (``full`` = published; ``small`` = CPU size for 128 px inputs).

    Attributes:
        code_dim: domain-code length L (16).
        ngf: generator base width (64). num_downs: U-Net downsamplings (8 -> 256-multiple inputs).
        norm: generator norm (published: ``batch``, hard-coded).
        dropout, attention: as DoveNet.
        encoder_width: first width of E (64). encoder_norm: E's norm (``batch``).
        code_scale_init: initial value of the learnable code scale (0.1); clamped at 0.001.
        recomposite: ``harmonize`` returns ``out·M + comp·(1−M)`` instead of the raw output (harmbench
            protocol only; the authors evaluate the raw output).
        protocol: ``harmbench`` (eval mode, batched, padded, any size; z_b from the composite) or
            ``official`` (the authors' ``test.py``: OpenCV bilinear resize of image and mask to
            256×256, E and G in train mode per image, Dropout active when ``dropout``, uint8
            truncation; z_b from the real image when ``harmonize`` gets ``real=``, else from the
            composite; output at 256×256).
        seed: dropout seed of the ``official`` protocol (``torch.manual_seed(seed)`` right before
            each image's forward).
    """

    code_dim: int = 16
    ngf: int = 64
    num_downs: int = 8
    norm: str = "batch"
    dropout: bool = True
    attention: bool = True
    encoder_width: int = 64
    encoder_norm: str = "batch"
    code_scale_init: float = 0.1
    recomposite: bool = False
    protocol: str = "harmbench"
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "full": {},
        "small": {"ngf": 16, "num_downs": 7, "encoder_width": 16, "code_dim": 8},
    }
    #: How to run, not what the weights are (checkpoints written before these fields existed still load).
    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("protocol", "seed")

    def validate(self) -> None:
        from harmbench.errors import ConfigError

        for field in ("norm", "encoder_norm"):
            if getattr(self, field) not in ("batch", "instance"):
                raise ConfigError(f"bargainnet.{field}", f"must be 'batch' or 'instance', got {getattr(self, field)!r}")
        if self.num_downs < 5:
            raise ConfigError("bargainnet.num_downs", f"must be >= 5, got {self.num_downs}")
        if self.code_dim < 1:
            raise ConfigError("bargainnet.code_dim", f"must be >= 1, got {self.code_dim}")
        check_protocol("bargainnet", self.protocol, self.seed)
        if self.protocol == "official" and self.num_downs != 8:
            raise ConfigError(
                "bargainnet.protocol",
                f"the official protocol runs at 256×256 and needs num_downs 8, got {self.num_downs}",
            )


class DomainEncoder(nn.Module):
    """BargainNet's E: ``forward(image [-1,1] (N,3,H,W), mask (N,1,H,W)) -> code (N, L, 1, 1)``."""

    def __init__(self, code_dim: int = 16, width: int = 64, norm: str = "batch"):
        super().__init__()
        bias = uses_bias(norm)
        make_norm = norm_layer(norm)
        chans = [width, width * 2, width * 4, width * 8, width * 8]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = 3
        for i, c in enumerate(chans):
            self.convs.append(PartialConv2d(prev, c, kernel_size=3, stride=2, padding=0, bias=True if i == 0 else bias))
            self.norms.append(make_norm(c) if 0 < i < len(chans) - 1 else nn.Identity())
            prev = c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Conv2d(prev, code_dim, kernel_size=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, m = image, mask
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x, m = conv(x, m)
            if i < last:
                x = torch.relu(norm(x))
        return self.head(self.pool(x))


class BargainNetGenerator(nn.Module):
    """G: the attention U-Net fed ``cat[composite, mask, clamp(scale, 0.001)·broadcast(code)]``.

    ``forward(composite [-1,1] (N,3,H,W), mask (N,1,H,W), code (N,L,1,1)) -> image [-1,1]``; batched.
    """

    def __init__(
        self,
        code_dim: int,
        *,
        num_downs: int,
        ngf: int,
        norm: str,
        dropout: bool,
        attention: bool,
        scale_init: float = 0.1,
    ):
        super().__init__()
        self.unet = AttentionUNet(
            4 + code_dim, 3, num_downs=num_downs, ngf=ngf, norm=norm, dropout=dropout, attention=attention
        )
        self.code_scale = nn.Parameter(torch.tensor([float(scale_init)]))

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        n, _, h, w = composite.shape
        code_map = code.reshape(n, -1, 1, 1).expand(-1, -1, h, w) * self.code_scale.clamp(min=0.001)
        return self.unet(torch.cat([composite, mask, code_map], dim=1))


class BargainNetOutput(NamedTuple):
    """Training forward of :class:`BargainNet` (images on [-1, 1], codes (N, L, 1, 1))."""

    harmonized: torch.Tensor
    bg_code: torch.Tensor  # z_b = E(real, 1−M)
    real_fg_code: torch.Tensor  # z_f = E(real, M)
    harmonized_fg_code: torch.Tensor  # ẑ_f = E(harmonized, M)
    composite_fg_code: torch.Tensor  # z̃_f = E(composite, M)


@register_model("bargainnet")
class BargainNet(LearnedHarmonizer):
    """BargainNet E + G. ``generate(composite, mask, bg_code)`` runs G; ``forward`` is the training pass."""

    name = "bargainnet"
    config_class = BargainNetConfig
    accepts_real = True  # the official protocol takes z_b from the real image when it is given

    def __init__(self, config: BargainNetConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = DomainEncoder(cfg.code_dim, cfg.encoder_width, cfg.encoder_norm)
        self.generator = BargainNetGenerator(
            cfg.code_dim,
            num_downs=cfg.num_downs,
            ngf=cfg.ngf,
            norm=cfg.norm,
            dropout=cfg.dropout,
            attention=cfg.attention,
        )
        init_normal(self)
        with torch.no_grad():
            self.generator.code_scale.fill_(float(cfg.code_scale_init))

    min_size = 64  # E's five valid stride-2 convs need ≥ 63 px

    @property
    def stride(self) -> int:  # type: ignore[override]
        return 2**self.config.num_downs

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Domain code ``(N, L, 1, 1)`` of the region ``mask`` of ``image`` (on [-1, 1])."""
        return self.encoder(image, mask)

    def generate(self, composite: torch.Tensor, mask: torch.Tensor, bg_code: torch.Tensor) -> torch.Tensor:
        """G: composite [-1,1] (N,3,H,W), mask (N,1,H,W), code (N,L,1,1) -> image on [-1, 1]. Batched."""
        return self.generator(composite, mask, bg_code)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> BargainNetOutput:
        """Training pass (all on [-1, 1]); returns the harmonized image and the four codes of the triplet losses."""
        bg = 1.0 - mask
        z_b = self.encoder(real, bg)
        z_f = self.encoder(real, mask)
        harm = self.generate(composite, mask, z_b)
        return BargainNetOutput(harm, z_b, z_f, self.encoder(harm, mask), self.encoder(composite, mask))

    def harmonize(
        self, composite: torch.Tensor, mask: torch.Tensor, *, real: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :class:`~harmbench.models.base.Harmonizer`.

        ``protocol="harmbench"``: z_b from the composite's background (``real`` is ignored).
        ``protocol="official"``: the authors' ``test.py`` at 256×256 (uint8 values divided by 255),
        z_b = E(real, 1 − M) when ``real`` (N,3,H,W, 0–1) is given, as their script does, else
        E(composite, 1 − M) (what a deployment without the ground truth can do).
        """
        if self.protocol != "official":
            return super().harmonize(composite, mask)
        return run_official(self, composite, mask, real, resize=resize_cv2, forward=self._official_forward)

    def predict_uint8(self, image_u8: np.ndarray, mask: np.ndarray, real_u8: np.ndarray | None = None) -> np.ndarray:
        """What the authors' ``test.py`` writes for one photo: ``image_u8`` (H,W,3) RGB uint8, the mask file's
        pixels (H,W) uint8 0–255 (only 255 is foreground, as theirs) and optionally the real image (z_b
        from its background; else from the composite's) -> uint8 (256, 256, 3). Follows ``dropout``/``seed``."""
        rgb, raw = check_uint8_pair(image_u8, mask)
        if real_u8 is not None:
            real_u8, _ = check_uint8_pair(real_u8, raw)
        out = official_uint8(self, rgb, raw, real_u8, resize=resize_cv2, forward=self._official_forward)
        return out[0].permute(1, 2, 0).numpy()

    def _official_forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        with authors_train_mode(self, dropout=self.config.dropout, seed=self.config.seed):
            z_b = self.encoder(x if real is None else real, 1.0 - mask)  # E draws no random numbers
            return self.generate(x, mask, z_b)

    def _harmonize(self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = composite * 2 - 1
        z_b = self.encoder(x, (1.0 - mask) * valid)
        return (self.generate(x, mask, z_b) + 1) / 2

    @torch.no_grad()
    def harmony_score(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``exp(−0.04212·‖z_b − z_f‖₂)`` per image, ``(N,)``; composite on 0–1, mask {0,1}."""
        from harmbench.models.base import validate_inputs

        composite, mask = validate_inputs(composite, mask)
        was_training = self.training
        self.eval()
        try:
            x = composite * 2 - 1
            z_b = self.encoder(x, 1.0 - mask).flatten(1)
            z_f = self.encoder(x, mask).flatten(1)
        finally:
            self.train(was_training)
        return harmony_score(z_b, z_f)


def harmony_score(bg_code: torch.Tensor, fg_code: torch.Tensor) -> torch.Tensor:
    """``exp(−0.04212·‖z_b − z_f‖₂)`` over the flattened codes, ``(N,)`` in (0, 1]."""
    d = (bg_code.flatten(1) - fg_code.flatten(1)).norm(dim=1)
    return torch.exp(-HARMONY_SCALE * d)


# --------------------------------------------------------------------------- the authors' checkpoints

_E_NAME = re.compile(r"^(conv|norm)(\d+)f\.(.+)$")


def _rename_e(k: str) -> str:
    """Authors' E name -> harmbench (``conv{i}f`` -> ``encoder.convs.{i-1}``, ``norm{i}f`` -> ``encoder.norms.{i-1}``)."""
    m = _E_NAME.match(k)
    if m:
        kind = "convs" if m.group(1) == "conv" else "norms"
        return f"encoder.{kind}.{int(m.group(2)) - 1}.{m.group(3)}"
    if k.startswith("convs."):
        return "encoder.head." + k[len("convs.") :]
    return "encoder.<unknown>." + k


def _official_e(k: str) -> str:
    """Inverse of :func:`_rename_e` (for naming missing tensors)."""
    parts = k.split(".")
    if parts[1] == "head":
        return "convs." + ".".join(parts[2:])
    kind = "conv" if parts[1] == "convs" else "norm"
    return f"{kind}{int(parts[2]) + 1}f." + ".".join(parts[3:])


def _rename_g(k: str) -> str:
    return "generator.code_scale" if k == "weight" else "generator.unet." + k


def _official_g(k: str) -> str:
    return "weight" if k == "generator.code_scale" else k[len("generator.unet.") :]


def _identify_official(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``"G"`` (U-Net keys and the scalar ``weight``) or ``"E"`` (``conv1f`` … ``convs``)."""
    if "weight" in sd and any(k.startswith("model.model.") for k in sd):
        return "G"
    if any(_E_NAME.match(k) or k.startswith("convs.") for k in sd):
        return "E"
    return None


_WHERE_E = "bargainnet E file (latest_net_E.pth)"


def _encoder_options(e: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``encoder_width``, ``code_dim``, ``encoder_norm`` of the authors' E state dict."""
    inferred: dict[str, Any] = {}
    for key, field in (("conv1f.weight", "encoder_width"), ("convs.weight", "code_dim")):
        if key not in e:
            raise ConfigError("weights", f"{_WHERE_E}: checkpoint does not fit (missing: {key})")
        inferred[field] = int(e[key].shape[0])
    inferred["encoder_norm"] = "batch" if "norm2f.running_mean" in e else "instance"
    return inferred


def encoder_from_official(e: Mapping[str, torch.Tensor]) -> DomainEncoder:
    """The domain-code extractor alone from the authors' ``latest_net_E.pth`` state dict (eval mode).

    Widths come from the tensor shapes; a missing, unexpected or mis-shaped tensor is a
    ``ConfigError`` naming it (nothing loaded).
    """
    o = _encoder_options(e)
    with torch.random.fork_rng(devices=[]):
        enc = DomainEncoder(o["code_dim"], o["encoder_width"], o["encoder_norm"])
    own = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state = remap_state_dict(e, _rename_e, own, where=_WHERE_E, official_name=_official_e)
    enc.load_state_dict({k[len("encoder.") :]: v for k, v in state.items()})
    return enc.eval()


def _build_official(parts: Mapping[str, StateDict], options: Mapping[str, Any]) -> BargainNet:
    """BargainNet from the authors' ``latest_net_E.pth`` + ``latest_net_G.pth``; widths from the tensor shapes."""
    e, g = parts["E"], parts["G"]
    where_e, where_g = _WHERE_E, "bargainnet G file (latest_net_G.pth)"
    inferred = _encoder_options(e)
    unet = unet_options(g, where=where_g)
    unet.pop("input_nc")  # must be 4 + code_dim: a mismatch shows up as a wrong-shape error below
    inferred.update(unet)
    opts = merge_inferred("bargainnet", inferred, options, where=where_g)
    with torch.random.fork_rng(devices=[]):
        model = BargainNet(**opts)
    own = model.state_dict()
    state = remap_state_dict(
        e,
        _rename_e,
        {k: v for k, v in own.items() if k.startswith("encoder.")},
        where=where_e,
        official_name=_official_e,
    )
    state.update(
        remap_state_dict(
            g,
            _rename_g,
            {k: v for k, v in own.items() if k.startswith("generator.")},
            where=where_g,
            official_name=_official_g,
        )
    )
    model.load_state_dict(state)
    return model


register_official_format(OfficialFormat("bargainnet", ("E", "G"), _identify_official, _build_official))

_BARGAINNET_COMMIT = "db73dfa08864a32804174843d814b0388c9b218c"
_BARGAINNET_ZIP = (
    "Dropbox https://www.dropbox.com/scl/fi/c5ah5btrksk99aa1qdxiy/BargainNet_pretrained_models.zip"
    "?rlkey=3vvxxdzesog1b476czxnbjdt5&st=8lg2eof7&dl=0 (a zip with latest_net_E.pth and "
    "latest_net_G.pth) or Baidu Cloud https://pan.baidu.com/s/1AYMKS8AieLzO5RoXj0ASRQ (extraction code adr4)"
)

register_card(
    ModelCard(
        name="bargainnet-official",
        model="bargainnet",
        source="https://github.com/bcmi/BargainNet-Image-Harmonization",
        commit=_BARGAINNET_COMMIT,
        code_license="MIT (Copyright (c) 2023 BCMI)",
        weights_license="no separate licence stated; released with the MIT-licensed code",
        files=(
            WeightFile(
                role="E",
                filename="latest_net_E.pth",
                url=(
                    "https://github.com/bcmi/BargainNet-Image-Harmonization/raw/"
                    f"{_BARGAINNET_COMMIT}/checkpoints/latest_net_E.pth"
                ),
                manual=f"committed in the repository as checkpoints/latest_net_E.pth; also in {_BARGAINNET_ZIP}",
            ),
            WeightFile(
                role="G",
                filename="latest_net_G.pth",
                manual=(
                    f"no direct link: take latest_net_G.pth from {_BARGAINNET_ZIP}; no size or checksum is "
                    "published (about 219 MB expected: 54,776,324 float32 values)"
                ),
            ),
        ),
        input_size=(256, 256),
        interpolation="bilinear (OpenCV INTER_LINEAR, no antialiasing) for image and mask",
        protocol="official",
        published={
            "iHarmony4 MSE": 37.82,
            "iHarmony4 PSNR": 35.88,
            "iHarmony4 fMSE": 405.23,
            "HCOCO MSE": 24.84,
            "HCOCO PSNR": 37.03,
            "HCOCO fMSE": 397.85,
            "HAdobe5k MSE": 39.94,
            "HAdobe5k PSNR": 35.34,
            "HAdobe5k fMSE": 279.66,
            "HFlickr MSE": 97.32,
            "HFlickr PSNR": 31.34,
            "HFlickr fMSE": 698.40,
            "Hday2night MSE": 50.98,
            "Hday2night PSNR": 35.67,
            "Hday2night fMSE": 835.63,
        },
        published_source=(
            "BargainNet paper (Cong et al., ICME 2021), iHarmony4 test set at 256×256; quoted from the "
            "paper without a second check"
        ),
        options={"protocol": "official"},
        notes=(
            "E (domain-code extractor, 16-d codes) + G (attention U-Net, ngf 64). The authors' test.py runs both in "
            "train mode and takes the background code from the real image; harmbench eval passes the real image, "
            "harmbench harmonize (no real image) takes it from the composite. E alone gives the no-reference "
            "harmony score (harmbench score --no-reference)."
        ),
    )
)


__all__ = [
    "BargainNet",
    "BargainNetConfig",
    "BargainNetGenerator",
    "BargainNetOutput",
    "DomainEncoder",
    "encoder_from_official",
    "harmony_score",
]
