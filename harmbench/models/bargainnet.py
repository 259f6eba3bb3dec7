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

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from harmbench.models.base import LearnedHarmonizer, PresetMixin, register_model
from harmbench.models.layers import PartialConv2d, init_normal, norm_layer, uses_bias
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
        recomposite: ``harmonize`` returns ``out·M + comp·(1−M)`` instead of the raw output.
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

    PRESETS: ClassVar[dict] = {
        "full": {},
        "small": {"ngf": 16, "num_downs": 7, "encoder_width": 16, "code_dim": 8},
    }

    def validate(self) -> None:
        from harmbench.errors import ConfigError

        for field in ("norm", "encoder_norm"):
            if getattr(self, field) not in ("batch", "instance"):
                raise ConfigError(f"bargainnet.{field}", f"must be 'batch' or 'instance', got {getattr(self, field)!r}")
        if self.num_downs < 5:
            raise ConfigError("bargainnet.num_downs", f"must be >= 5, got {self.num_downs}")
        if self.code_dim < 1:
            raise ConfigError("bargainnet.code_dim", f"must be >= 1, got {self.code_dim}")


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

    def __init__(self, code_dim: int, *, num_downs: int, ngf: int, norm: str, dropout: bool, attention: bool,
                 scale_init: float = 0.1):
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

    def __init__(self, config: BargainNetConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = DomainEncoder(cfg.code_dim, cfg.encoder_width, cfg.encoder_norm)
        self.generator = BargainNetGenerator(
            cfg.code_dim, num_downs=cfg.num_downs, ngf=cfg.ngf, norm=cfg.norm,
            dropout=cfg.dropout, attention=cfg.attention,
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


__all__ = ["BargainNet", "BargainNetConfig", "BargainNetGenerator", "BargainNetOutput", "DomainEncoder", "harmony_score"]
