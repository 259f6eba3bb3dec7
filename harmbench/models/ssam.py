"""The iS2AM / iSSAM encoder–decoder (Sofiiuk et al., WACV 2021), reusable as a backbone.

Tensors: ``image`` (N, 3, H, W) is the RGB composite **normalised** with the ImageNet mean/std
(``(x/255 − mean)/std``); ``mask`` (N, 1, H, W) is the foreground on [0, 1] (soft values are
allowed). H and W must be multiples of ``2**(depth − 1)`` (8 for the released depth 4).

* :class:`SSAMBackbone` — U-Net: ``depth`` down stages of two conv3×3(+BN)+ReLU (2×2 max-pool
  between stages), ``depth − 1`` up stages (bilinear ×2 with aligned corners, conv3×3+ReLU,
  concatenation ``[skip, upsampled]``, optional :class:`SpatialSeparatedAttention`, two
  conv3×3+BN+ReLU). ``forward`` returns the last decoder features: ``ch`` channels at full H×W.
* :class:`FusionHead` — image fusion: ``A = sigmoid(3·blend(F))``, ``out = A·image + (1−A)·to_rgb(F)``
  (in the normalised space).
* :class:`SSAMNet` — backbone + head, the iSSAM network; ``forward`` returns images, attention
  and features (:class:`SSAMOutput`), so other heads (e.g. a colour-transform predictor) can
  reuse the backbone and the blend map.

The authors' tensor names map onto these modules with :func:`official_ssam_name` (and back with
:func:`ssam_name_to_official`);
:func:`ssam_options_from_state_dict` reads the widths from an authors' state dict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harmbench.errors import ConfigError

#: ``(pattern, replacement)`` pairs: the replacement builds the new name from the full match
RenameRules = tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...]


def rename_rules(*pairs: tuple[str, Callable[[re.Match[str]], str]]) -> RenameRules:
    """Compile ``(regex, replacement)`` pairs for :func:`apply_rename_rules`."""
    return tuple((re.compile(p), r) for p, r in pairs)


def apply_rename_rules(rules: RenameRules, name: str) -> str:
    """The first rule whose pattern matches all of ``name`` renames it; unknown names come back unchanged."""
    for pattern, repl in rules:
        m = pattern.fullmatch(name)
        if m:
            return repl(m)
    return name


class ConvNormReLU(nn.Module):
    """conv k×k (stride 1, 'same' zero padding) → optional BatchNorm → ReLU."""

    def __init__(self, cin: int, cout: int, *, kernel: int = 3, norm: bool = True, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        self.norm: nn.Module = nn.BatchNorm2d(cout) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ChannelGate(nn.Module):
    """Per-channel reweighting from the global mean and max: ``x · sigmoid(MLP([mean, max]))``.

    MLP = Linear(2c → hidden) + ReLU + Linear(hidden → c).
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))
        return x * weights[:, :, None, None]


def gaussian_kernel(size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """Normalised 2-D Gaussian (1, 1, size, size) summing to 1."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return (k / k.sum())[None, None]


class SpatialSeparatedAttention(nn.Module):
    """The SSAM block on ``x`` (N, c, h, w) given the image-size ``mask`` (N, 1, H, W) on [0, 1].

    ``m = blur(bilinear_aligned(mask → h×w))`` with the 7×7 kernel buffer ``mask_kernel``
    (zero padding 3; a Gaussian at construction, but loaded from checkpoints: the authors'
    training re-initialises it randomly and never trains it); then
    ``out = m·(refine(fg_gate(x)) + mix_gate(x)) + (1 − m)·bg_gate(x)`` where ``refine`` is two
    bias-free conv3×3+BN+ReLU (c → mid → c).
    """

    def __init__(self, channels: int, mid_k: float = 0.5, kernel_size: int = 7):
        super().__init__()
        hidden = max(channels // 16, 8)
        self.gates = nn.ModuleDict(
            {name: ChannelGate(channels, hidden) for name in ("background", "foreground", "mix")}
        )
        mid = int(mid_k * channels)
        self.refine = nn.Sequential(ConvNormReLU(channels, mid, bias=False), ConvNormReLU(mid, channels, bias=False))
        self.register_buffer("mask_kernel", gaussian_kernel(kernel_size))

    def blurred_mask(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The mask resized to ``size`` (bilinear, aligned corners) and blurred: (N, 1, h, w)."""
        if tuple(mask.shape[-2:]) != tuple(size):
            mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=True)
        k = self.mask_kernel
        return F.conv2d(mask, k, padding=k.shape[-1] // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = self.blurred_mask(mask, (x.shape[-2], x.shape[-1]))
        fg = self.refine(self.gates["foreground"](x)) + self.gates["mix"](x)
        return m * fg + (1 - m) * self.gates["background"](x)


class DownStage(nn.Module):
    """Two conv3×3(+BN)+ReLU; ``forward`` returns the stage output (the skip, before pooling)."""

    def __init__(self, cin: int, cout: int, norm: bool):
        super().__init__()
        self.convs = nn.Sequential(ConvNormReLU(cin, cout, norm=norm), ConvNormReLU(cout, cout, norm=norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class UpStage(nn.Module):
    """Bilinear ×2 (aligned corners) + conv3×3+ReLU, concat ``[skip, up]``, optional SSAM, two conv3×3+BN+ReLU."""

    def __init__(self, cin: int, cout: int, cskip: int, *, attention: bool, mid_k: float):
        super().__init__()
        self.up = ConvNormReLU(cin, cout, norm=False)
        self.attention = SpatialSeparatedAttention(cskip + cout, mid_k) if attention else None
        self.convs = nn.Sequential(ConvNormReLU(cskip + cout, cout), ConvNormReLU(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.up(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True))
        x = torch.cat([skip, x], dim=1)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.convs(x)


def stage_widths(ch: int, depth: int, max_channels: int) -> list[int]:
    """Output width of each down stage: ``min(ch·2**i, max_channels)``."""
    return [min(ch * 2**i, max_channels) for i in range(depth)]


@dataclass(frozen=True)
class SSAMOptions:
    """The :class:`SSAMBackbone` options as config fields (iSSAM-256 defaults), shared by the configs of
    the models built on that backbone; :meth:`backbone_options` gives them as keyword arguments."""

    ch: int = 32
    depth: int = 4
    max_channels: int = 256
    batchnorm_from: int = 2
    attend_from: int = 2
    attention_mid_k: float = 0.5

    def backbone_options(self) -> dict[str, Any]:
        """``ch``, ``depth``, … for ``SSAMBackbone(**…)`` / ``SSAMNet(**…)``."""
        return {f.name: getattr(self, f.name) for f in fields(SSAMOptions)}


class SSAMBackbone(nn.Module):
    """iSSAM encoder–decoder; ``forward(image, mask) -> features`` (N, ch, H, W).

    ``ch``: width of the first stage (32 released); ``depth``: down stages (4); stage ``i``
    has ``min(ch·2**i, max_channels)`` channels and BatchNorm when ``i >= batchnorm_from``
    (−1: none); up stage ``d`` (0 = deepest) carries the SSAM block when
    ``0 <= attend_from <= d``; ``attention_mid_k``: SSAM refine width / its input width.
    """

    def __init__(
        self,
        ch: int = 32,
        depth: int = 4,
        *,
        max_channels: int = 256,
        batchnorm_from: int = 2,
        attend_from: int = 2,
        attention_mid_k: float = 0.5,
        in_channels: int = 4,
    ):
        super().__init__()
        if depth < 2:
            raise ConfigError("depth", f"the SSAM backbone needs depth >= 2, got {depth}")
        widths = stage_widths(ch, depth, max_channels)
        self.depth = depth
        self.out_channels = widths[0]
        self.down = nn.ModuleList()
        prev = in_channels
        for i, w in enumerate(widths):
            self.down.append(DownStage(prev, w, norm=0 <= batchnorm_from <= i))
            prev = w
        self.up = nn.ModuleList()
        for d in range(depth - 1):
            skip = widths[depth - 2 - d]
            self.up.append(UpStage(prev, skip, skip, attention=0 <= attend_from <= d, mid_k=attention_mid_k))
            prev = skip

    @property
    def divisor(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``image`` normalised (N,3,H,W), ``mask`` (N,1,H,W) on [0,1] -> features (N, ch, H, W)."""
        h, w = image.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"SSAM backbone input {h}x{w} is not a multiple of {self.divisor}")
        x = torch.cat([image, mask], dim=1)
        skips = []
        for i, stage in enumerate(self.down):
            x = stage(x)
            if i < self.depth - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2, 2)
        for stage, skip in zip(self.up, reversed(skips)):
            x = stage(x, skip, mask)
        return x


class FusionHead(nn.Module):
    """Image fusion on features F: ``A = sigmoid(3·blend(F))``, ``out = A·image + (1 − A)·to_rgb(F)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.blend = nn.Conv2d(channels, 1, 1)
        self.to_rgb = nn.Conv2d(channels, 3, 1)

    def attention(self, features: torch.Tensor) -> torch.Tensor:
        """The blend weight of the input image, (N, 1, H, W) on (0, 1)."""
        return torch.sigmoid(3.0 * self.blend(features))

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.attention(features)
        return a * image + (1 - a) * self.to_rgb(features), a


class SSAMOutput(NamedTuple):
    """``images`` (N,3,H,W) normalised space; ``attention`` (N,1,H,W) on (0,1); ``features`` (N,ch,H,W)."""

    images: torch.Tensor
    attention: torch.Tensor
    features: torch.Tensor


class SSAMNet(nn.Module):
    """The iSSAM network: :class:`SSAMBackbone` + :class:`FusionHead` (options as the backbone)."""

    def __init__(self, ch: int = 32, depth: int = 4, **options):
        super().__init__()
        self.backbone = SSAMBackbone(ch, depth, **options)
        self.head = FusionHead(self.backbone.out_channels)

    @property
    def divisor(self) -> int:
        return self.backbone.divisor

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> SSAMOutput:
        features = self.backbone(image, mask)
        images, attention = self.head(image, features)
        return SSAMOutput(images, attention, features)


# --------------------------------------------------------------------------- the authors' tensor names

_CONV = {"0": "conv", "1": "norm"}
_GATE = {"background_gate": "background", "foreground_gate": "foreground", "mix_gate": "mix"}
_FC = {"0": "fc1", "2": "fc2"}

_RULES = rename_rules(
    (
        r"encoder\.(?:blocks_connected\.)?block(\d+)\.convs\.block\.(\d+)\.block\.([01])\.(\w+)",
        lambda m: f"backbone.down.{m[1]}.convs.{m[2]}.{_CONV[m[3]]}.{m[4]}",
    ),
    (r"decoder\.up_blocks\.(\d+)\.upconv\.1\.block\.0\.(\w+)", lambda m: f"backbone.up.{m[1]}.up.conv.{m[2]}"),
    (
        r"decoder\.up_blocks\.(\d+)\.convs\.block\.(\d+)\.block\.([01])\.(\w+)",
        lambda m: f"backbone.up.{m[1]}.convs.{m[2]}.{_CONV[m[3]]}.{m[4]}",
    ),
    (
        r"decoder\.up_blocks\.(\d+)\.attention\.(background_gate|foreground_gate|mix_gate)\.attention_transform\.([02])\.(\w+)",
        lambda m: f"backbone.up.{m[1]}.attention.gates.{_GATE[m[2]]}.{_FC[m[3]]}.{m[4]}",
    ),
    (
        r"decoder\.up_blocks\.(\d+)\.attention\.learning_block\.(\d+)\.block\.([01])\.(\w+)",
        lambda m: f"backbone.up.{m[1]}.attention.refine.{m[2]}.{_CONV[m[3]]}.{m[4]}",
    ),
    (
        r"decoder\.up_blocks\.(\d+)\.attention\.mask_blurring\.weight",
        lambda m: f"backbone.up.{m[1]}.attention.mask_kernel",
    ),
    (r"decoder\.conv_attention\.(\w+)", lambda m: f"head.blend.{m[1]}"),
    (r"decoder\.to_rgb\.(\w+)", lambda m: f"head.to_rgb.{m[1]}"),
)


def official_ssam_name(name: str) -> str:
    """The :class:`SSAMNet` name of an authors' iSSAM tensor name (unknown names come back unchanged).

    ``encoder.block0.convs.block.1.block.0.weight`` → ``backbone.down.0.convs.1.conv.weight``;
    ``decoder.up_blocks.2.attention.mask_blurring.weight`` → ``backbone.up.2.attention.mask_kernel``;
    ``decoder.conv_attention.*`` / ``decoder.to_rgb.*`` → ``head.blend.*`` / ``head.to_rgb.*``.
    """
    return apply_rename_rules(_RULES, name)


def official_encoder_block(i: str) -> str:
    """The authors keep encoder blocks 0 and 1 at the top level and the others in ``blocks_connected``."""
    return f"block{i}" if int(i) < 2 else f"blocks_connected.block{i}"


_CONV_INV = {"conv": "0", "norm": "1"}
_INVERSE = rename_rules(
    (
        r"backbone\.down\.(\d+)\.convs\.(\d+)\.(conv|norm)\.(\w+)",
        lambda m: f"encoder.{official_encoder_block(m[1])}.convs.block.{m[2]}.block.{_CONV_INV[m[3]]}.{m[4]}",
    ),
    (r"backbone\.up\.(\d+)\.up\.conv\.(\w+)", lambda m: f"decoder.up_blocks.{m[1]}.upconv.1.block.0.{m[2]}"),
    (
        r"backbone\.up\.(\d+)\.convs\.(\d+)\.(conv|norm)\.(\w+)",
        lambda m: f"decoder.up_blocks.{m[1]}.convs.block.{m[2]}.block.{_CONV_INV[m[3]]}.{m[4]}",
    ),
    (
        r"backbone\.up\.(\d+)\.attention\.gates\.(\w+)\.fc([12])\.(\w+)",
        lambda m: f"decoder.up_blocks.{m[1]}.attention.{m[2]}_gate.attention_transform.{2 * int(m[3]) - 2}.{m[4]}",
    ),
    (
        r"backbone\.up\.(\d+)\.attention\.refine\.(\d+)\.(conv|norm)\.(\w+)",
        lambda m: f"decoder.up_blocks.{m[1]}.attention.learning_block.{m[2]}.block.{_CONV_INV[m[3]]}.{m[4]}",
    ),
    (
        r"backbone\.up\.(\d+)\.attention\.mask_kernel",
        lambda m: f"decoder.up_blocks.{m[1]}.attention.mask_blurring.weight",
    ),
    (r"head\.blend\.(\w+)", lambda m: f"decoder.conv_attention.{m[1]}"),
    (r"head\.to_rgb\.(\w+)", lambda m: f"decoder.to_rgb.{m[1]}"),
)


def ssam_name_to_official(name: str) -> str:
    """Inverse of :func:`official_ssam_name`: the authors' name of an :class:`SSAMNet` tensor
    (for error messages and export; unknown names come back unchanged)."""
    return apply_rename_rules(_INVERSE, name)


_ENC_CONV = re.compile(r"encoder\.(?:blocks_connected\.)?block(\d+)\.convs\.block\.0\.block\.0\.weight")
_ENC_NORM = re.compile(r"encoder\.(?:blocks_connected\.)?block(\d+)\.convs\.block\.0\.block\.1\.weight")
_ATT = re.compile(r"decoder\.up_blocks\.(\d+)\.attention\.learning_block\.0\.block\.0\.weight")


def encoder_convs(
    sd: Mapping[str, torch.Tensor], pattern: re.Pattern[str], *, where: str, first: str, net: str, what: str
) -> list[torch.Tensor]:
    """The encoder's conv weights in block order, found by ``pattern`` (group 1 = block index) in an
    authors' state dict; ``first`` is block 0's tensor name, ``net`` the network's name, ``what`` the
    conv's description for errors. Checks that every block is there and block 0 takes 4 channels."""
    convs = {int(m[1]): v for k, v in sd.items() if (m := pattern.fullmatch(k))}
    if 0 not in convs:
        raise ConfigError("weights", f"{where}: missing {first} (not an {net} state dict)")
    depth = max(convs) + 1
    missing = [i for i in range(depth) if i not in convs]
    if missing:
        raise ConfigError("weights", f"{where}: missing {what} of encoder block(s) {missing}")
    in_ch = int(convs[0].shape[1])
    if in_ch != 4:
        raise ConfigError("weights", f"{where}: {first} takes {in_ch} input channels, {net} takes 4 (RGB + mask)")
    return [convs[i] for i in range(depth)]


def batchnorm_start(sd: Mapping[str, torch.Tensor], pattern: re.Pattern[str], depth: int, *, where: str) -> int:
    """First encoder block with BatchNorm (−1: none), from the norm tensors ``pattern`` finds (group 1 =
    block index); the blocks from it on must all have one."""
    norms = sorted(int(m[1]) for k in sd if (m := pattern.fullmatch(k)))
    start = norms[0] if norms else -1
    if norms and norms != list(range(start, depth)):
        raise ConfigError("weights", f"{where}: BatchNorm in encoder blocks {norms} (expected every block from one on)")
    return start


def ssam_options_from_state_dict(sd: Mapping[str, torch.Tensor], *, where: str = "checkpoint") -> dict:
    """Backbone options (``ch``, ``depth``, ``max_channels``, ``batchnorm_from``, ``attend_from``,
    ``attention_mid_k``) read from the shapes of an authors' iSSAM state dict.

    Raises :class:`ConfigError` (field ``weights``) naming the tensor that is missing or odd.
    """
    convs = encoder_convs(
        sd,
        _ENC_CONV,
        where=where,
        first="encoder.block0.convs.block.0.block.0.weight",
        net="iSSAM",
        what="the first conv",
    )
    depth = len(convs)
    widths = [int(c.shape[0]) for c in convs]
    ch = widths[0]
    caps = [w for i, w in enumerate(widths) if w != ch * 2**i]
    max_channels = min(caps) if caps else max(256, widths[-1])
    if stage_widths(ch, depth, max_channels) != widths:
        raise ConfigError("weights", f"{where}: encoder widths {widths} do not follow ch·2**i capped at a maximum")
    batchnorm_from = batchnorm_start(sd, _ENC_NORM, depth, where=where)
    atts = {int(m[1]): v for k, v in sd.items() if (m := _ATT.fullmatch(k))}
    attend_from = min(atts) if atts else -1
    mid_k = 0.5
    if atts:
        d = min(atts)
        c = 2 * widths[depth - 2 - d]
        mid = int(atts[d].shape[0])
        mid_k = mid / c
        if int(mid_k * c) != mid or not math.isfinite(mid_k):
            raise ConfigError("weights", f"{where}: SSAM refine width {mid} does not divide its input width {c}")
    return {
        "ch": ch,
        "depth": depth,
        "max_channels": max_channels,
        "batchnorm_from": batchnorm_from,
        "attend_from": attend_from,
        "attention_mid_k": mid_k,
    }


__all__ = [
    "ChannelGate",
    "ConvNormReLU",
    "DownStage",
    "FusionHead",
    "SSAMBackbone",
    "SSAMNet",
    "SSAMOptions",
    "SSAMOutput",
    "SpatialSeparatedAttention",
    "RenameRules",
    "UpStage",
    "apply_rename_rules",
    "batchnorm_start",
    "encoder_convs",
    "gaussian_kernel",
    "official_encoder_block",
    "official_ssam_name",
    "rename_rules",
    "ssam_name_to_official",
    "ssam_options_from_state_dict",
    "stage_widths",
]
