"""DoveNet (Cong et al., CVPR 2020): attention U-Net generator + global/domain-verification discriminator.

* Generator input: ``cat[composite on [-1, 1], mask]`` (4 channels); output: the full image on
  [-1, 1] (Tanh). :meth:`DoveNet.harmonize` maps 0–1 in/out and pads to ``2**num_downs``.
* Discriminator input: a 3-channel image on [-1, 1] and the mask. Two encoders of
  ``d_layers`` stride-2 3×3 valid convs plus one stride-1 conv (spectral norm; norm on layers
  2..d_layers; LeakyReLU 0.2 after all but the last):

  - global path: ordinary convs, then Conv1×1 -> the global score;
  - domain path: partial convs run on (image, M) -> foreground code and on (image, 1−M) ->
    background code (masks updated per layer); verification score =
    MLP(code_f ⊙ code_b) with two spectral-normed Conv1×1 + LeakyReLU and a final Conv1×1.

  At 256 px with ``d_layers=6`` the codes are 512×1×1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from harmbench.models.base import LearnedHarmonizer, PresetMixin, register_model
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.layers import PartialConv2d, init_normal, norm_layer, spectral, uses_bias
from harmbench.models.official import OfficialFormat, StateDict, build_from_state_dict, register_official_format
from harmbench.models.pix2pix import (
    authors_train_mode,
    check_protocol,
    check_uint8_pair,
    official_uint8,
    resize_pillow,
    run_official,
    unet_options,
)
from harmbench.models.unet import AttentionUNet

NORMS = ("batch", "instance")


@dataclass(frozen=True)
class DoveNetConfig(PresetMixin):
    """DoveNet options. ``full`` = the published model (released checkpoint uses batch norm;
    the training script uses instance norm). ``small`` = CPU size for 128 px inputs.

    Attributes:
        ngf: generator base width (64).
        num_downs: U-Net downsamplings (8 -> input multiple of 256; 7 -> 128).
        norm: ``batch`` or ``instance`` (generator and discriminator).
        dropout: Dropout(0.5) in the intermediate ngf·8 blocks (training, and the official protocol).
        attention: the three attention gates.
        ndf: discriminator base width (64).
        d_layers: stride-2 layers of each discriminator encoder (6 -> 1×1 codes at 256 px).
        discriminator: build the discriminator (not needed for inference).
        recomposite: ``harmonize`` returns ``out·M + comp·(1−M)`` instead of the raw output (harmbench
            protocol only; the authors evaluate the raw output).
        protocol: ``harmbench`` (eval mode, batched, replicate-padded, any size) or ``official``
            (the authors' ``test.py``: Pillow resize to 256×256, train-mode BatchNorm per image,
            Dropout active when ``dropout``, uint8 truncation; output at 256×256).
        seed: dropout seed of the ``official`` protocol (``torch.manual_seed(seed)`` right before
            each image's forward).
    """

    ngf: int = 64
    num_downs: int = 8
    norm: str = "batch"
    dropout: bool = True
    attention: bool = True
    ndf: int = 64
    d_layers: int = 6
    discriminator: bool = True
    recomposite: bool = False
    protocol: str = "harmbench"
    seed: int = 0

    PRESETS: ClassVar[dict] = {
        "full": {},
        "small": {"ngf": 16, "num_downs": 7, "ndf": 16, "d_layers": 5},
    }
    #: How to run, not what the weights are (checkpoints written before these fields existed still load).
    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("protocol", "seed")

    def validate(self) -> None:
        from harmbench.errors import ConfigError

        if self.norm not in NORMS:
            raise ConfigError("dovenet.norm", f"must be one of {NORMS}, got {self.norm!r}")
        if self.num_downs < 5:
            raise ConfigError("dovenet.num_downs", f"must be >= 5, got {self.num_downs}")
        if self.ngf < 1 or self.ndf < 1:
            raise ConfigError("dovenet.ngf", "widths must be positive")
        if self.d_layers < 1:
            raise ConfigError("dovenet.d_layers", f"must be >= 1, got {self.d_layers}")
        check_protocol("dovenet", self.protocol, self.seed)
        if self.protocol == "official" and self.num_downs != 8:
            raise ConfigError(
                "dovenet.protocol", f"the official protocol runs at 256×256 and needs num_downs 8, got {self.num_downs}"
            )


class DiscriminatorOutput(NamedTuple):
    """Scores and codes of :class:`DoveNetDiscriminator` (scores are unbounded, maps (N,1,h,w))."""

    global_score: torch.Tensor
    verification_score: torch.Tensor
    fg_code: torch.Tensor
    bg_code: torch.Tensor


class _Encoder(nn.Module):
    """Stack of 3×3 valid (partial) convs; ``forward(x, mask=None)``."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int, norm: str, *, sn: bool = True, act: str = "lrelu"):
        super().__init__()
        bias = uses_bias(norm)
        make_norm = norm_layer(norm)
        wrap = spectral if sn else (lambda m: m)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = input_nc
        for i in range(n_layers):
            cur = ndf * min(2**i, 8)
            conv = PartialConv2d(prev, cur, kernel_size=3, stride=2, padding=0, bias=True if i == 0 else bias)
            self.convs.append(wrap(conv))
            self.norms.append(nn.Identity() if i == 0 else make_norm(cur))
            prev = cur
        self.out_channels = ndf * min(2**n_layers, 8)
        self.last = wrap(PartialConv2d(prev, self.out_channels, kernel_size=3, stride=1, padding=0, bias=bias))
        self.act = nn.LeakyReLU(0.2) if act == "lrelu" else nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        for conv, norm in zip(self.convs, self.norms):
            x, mask = conv(x, mask)
            x = self.act(norm(x))
        x, mask = self.last(x, mask)
        return x, mask


class DoveNetDiscriminator(nn.Module):
    """Global + domain-verification discriminator; ``forward(image [-1,1] (N,3,H,W), mask (N,1,H,W))``.

    The input must be large enough for ``d_layers`` valid stride-2 convs plus a final 3×3 conv
    (≥ 255 px for ``d_layers=6``, ≥ 127 px for 5).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 6, norm: str = "batch"):
        super().__init__()
        self.global_encoder = _Encoder(input_nc, ndf, n_layers, norm)
        self.domain_encoder = _Encoder(input_nc, ndf, n_layers, norm)
        c = self.global_encoder.out_channels
        self.global_head = nn.Conv2d(c, 1, kernel_size=1)
        self.verification = nn.Sequential(
            spectral(nn.Conv2d(c, c, kernel_size=1)),
            nn.LeakyReLU(0.2),
            spectral(nn.Conv2d(c, c, kernel_size=1)),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 1, kernel_size=1),
        )

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> DiscriminatorOutput:
        g, _ = self.global_encoder(image)
        fg, _ = self.domain_encoder(image, mask)
        bg, _ = self.domain_encoder(image, 1.0 - mask)
        return DiscriminatorOutput(self.global_head(g), self.verification(fg * bg), fg, bg)

    def gp_score(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(global + verification)/2: the output the gradient penalty differentiates."""
        out = self.forward(image, mask)
        return (out.global_score + out.verification_score) * 0.5


@register_model("dovenet")
class DoveNet(LearnedHarmonizer):
    """DoveNet generator (+ discriminator). ``forward(composite [-1,1], mask) -> output [-1,1]``."""

    name = "dovenet"
    config_class = DoveNetConfig

    def __init__(self, config: DoveNetConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        config = self.config
        self.generator = AttentionUNet(
            4,
            3,
            num_downs=config.num_downs,
            ngf=config.ngf,
            norm=config.norm,
            dropout=config.dropout,
            attention=config.attention,
        )
        self.discriminator = (
            DoveNetDiscriminator(3, config.ndf, config.d_layers, config.norm) if config.discriminator else None
        )
        init_normal(self)

    @property
    def stride(self) -> int:  # type: ignore[override]
        return 2**self.config.num_downs

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Generator: composite on [-1, 1] (N,3,H,W) and mask {0,1} (N,1,H,W) -> image on [-1, 1]."""
        return self.generator(torch.cat([composite, mask], dim=1))

    def discriminate(self, image: torch.Tensor, mask: torch.Tensor) -> DiscriminatorOutput:
        """Discriminator scores/codes of an image on [-1, 1]."""
        if self.discriminator is None:
            raise RuntimeError("this DoveNet was built with discriminator=False")
        return self.discriminator(image, mask)

    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """See :class:`~harmbench.models.base.Harmonizer`. Under ``protocol="official"`` the output is
        the authors' ``test.py`` result at 256×256 (its uint8 values divided by 255)."""
        if self.protocol != "official":
            return super().harmonize(composite, mask)
        return run_official(self, composite, mask, None, resize=resize_pillow, forward=self._official_forward)

    def predict_uint8(self, image_u8: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """What the authors' ``test.py`` writes for one photo: ``image_u8`` (H,W,3) RGB uint8 and the mask
        file's pixels (H,W) uint8 0–255 (soft masks dithered by ``convert('1')``, as theirs) ->
        uint8 (256, 256, 3). Follows the config's ``dropout`` and ``seed``."""
        rgb, raw = check_uint8_pair(image_u8, mask)
        out = official_uint8(self, rgb, raw, None, resize=resize_pillow, forward=self._official_forward)
        return out[0].permute(1, 2, 0).numpy()

    def _official_forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        with authors_train_mode(self.generator, dropout=self.config.dropout, seed=self.config.seed):
            return self.forward(x, mask)

    def _harmonize(self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return (self.forward(composite * 2 - 1, mask) + 1) / 2


# --------------------------------------------------------------------------- the authors' checkpoint

_G_PREFIX = "generator."


def _identify_official(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``"G"`` for the authors' generator file (``model.model.…``; BargainNet's G also has ``weight``)."""
    if "weight" in sd or not any(k.startswith("model.model.") for k in sd):
        return None
    return "G"


def _build_official(parts: Mapping[str, StateDict], options: Mapping[str, Any]) -> DoveNet:
    """DoveNet (no discriminator) from the authors' ``latest_net_G.pth``; widths from the tensor shapes."""
    sd = parts["G"]
    where = "dovenet G file (latest_net_G.pth)"
    inferred = unet_options(sd, where=where)
    inferred.pop("input_nc")  # a wrong input width shows up as a wrong-shape error below
    return build_from_state_dict(
        DoveNet,
        sd,
        {**inferred, "discriminator": False},
        options,
        where=where,
        rename=lambda k: _G_PREFIX + k,
        official_name=lambda k: k[len(_G_PREFIX) :],
        fork_rng=True,
    )


register_official_format(OfficialFormat("dovenet", ("G",), _identify_official, _build_official))

register_card(
    ModelCard(
        name="dovenet-official",
        model="dovenet",
        source="https://github.com/bcmi/Image-Harmonization-Dataset-iHarmony4 (folder DoveNet/)",
        commit="0bdb51ddda979f5a38536d80c161fa5733480f25",
        code_license="MIT (Copyright (c) 2022 BCMI)",
        weights_license="no separate licence stated; released with the MIT-licensed code",
        files=(
            WeightFile(
                role="G",
                filename="latest_net_G.pth",
                manual=(
                    "no direct link: download latest_net_G.pth (the batch-norm generator; no discriminator is released) "
                    "from Baidu Cloud https://pan.baidu.com/s/12oGrBF88O-x0BlWGVkMjag (extraction code 8q8a) or "
                    "https://bcmi.cloud:5001/sharing/WQkB0OnXK; no size or checksum is published (about 219 MB "
                    "expected: 54,759,939 float32 values)"
                ),
            ),
        ),
        input_size=(256, 256),
        interpolation="bilinear (Pillow, antialiased); mask nearest",
        protocol="official",
        published={
            "iHarmony4 MSE": 50.87,
            "iHarmony4 PSNR": 34.83,
            "HCOCO MSE": 33.65,
            "HCOCO PSNR": 35.95,
            "HAdobe5k MSE": 55.99,
            "HAdobe5k PSNR": 34.26,
            "HFlickr MSE": 125.73,
            "HFlickr PSNR": 30.58,
            "Hday2night MSE": 56.26,
            "Hday2night PSNR": 34.76,
        },
        published_source=(
            "DoveNet/README.md of bcmi/Image-Harmonization-Dataset-iHarmony4 (released batch-norm model, "
            "iHarmony4 test set at 256×256)"
        ),
        options={"protocol": "official", "norm": "batch", "discriminator": False},
        notes=(
            "Generator only (norm batch, ngf 64, 8 downsamplings). The authors' test.py runs it in train mode "
            "(per-image BatchNorm statistics, Dropout active): --protocol official reproduces that, with "
            "torch.manual_seed(seed) before each image's forward."
        ),
    )
)


__all__ = ["DiscriminatorOutput", "DoveNet", "DoveNetConfig", "DoveNetDiscriminator"]
