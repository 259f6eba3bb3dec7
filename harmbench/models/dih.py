"""The improved Deep Image Harmonization network, iDIH (Sofiiuk et al., WACV 2021).

Tensors as in :mod:`harmbench.models.ssam`: ``image`` (N, 3, H, W) normalised with the ImageNet
mean/std, ``mask`` (N, 1, H, W) on [0, 1]. H and W must be multiples of ``2**depth`` and at
least ``2**(depth + 1)`` (128 and 256 for the released depth 7: the last, unpadded encoder conv
needs an even side of at least 4 after ``depth − 1`` halvings).

* Encoder: ``depth`` blocks conv4×4 stride 2 (+BN from ``batchnorm_from``) + ELU; widths
  ``ch, ch, 2ch, 2ch, 4ch, 4ch, 8ch`` (stage ``i >= 2`` doubles on even ``i``, capped at
  ``max_channels``); padding 1 except the last block (0).
* Decoder: ``depth`` blocks transposed conv4×4 stride 2 + BN + ELU (padding 0 for the first,
  then 1); the outputs of all but the last are added to the encoder outputs in reverse order;
  the last halves the width (``ch/2`` channels at full size).
* Head: :class:`harmbench.models.ssam.FusionHead` (image fusion in the normalised space).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from harmbench.errors import ConfigError
from harmbench.models.ssam import (
    FusionHead,
    SSAMOutput,
    apply_rename_rules,
    batchnorm_start,
    encoder_convs,
    official_encoder_block,
    rename_rules,
)


class ConvBlock(nn.Module):
    """(transposed) conv 4×4 stride 2 → optional BatchNorm → ELU(1)."""

    def __init__(self, cin: int, cout: int, *, padding: int, norm: bool, transposed: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(cin, cout, 4, stride=2, padding=padding)
        self.norm: nn.Module = nn.BatchNorm2d(cout) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.norm(self.conv(x)))


def dih_widths(ch: int, depth: int, max_channels: int) -> list[int]:
    """Output width of each encoder block."""
    widths = []
    w = ch
    for i in range(depth):
        if i >= 2 and i % 2 == 0:
            w = min(2 * w, max_channels)
        widths.append(w)
    return widths


class DIHNet(nn.Module):
    """iDIH encoder–decoder + image fusion; ``forward(image, mask) -> SSAMOutput``."""

    def __init__(self, ch: int = 64, depth: int = 7, *, max_channels: int = 512, batchnorm_from: int = 2):
        super().__init__()
        if depth < 3:
            raise ConfigError("depth", f"iDIH needs depth >= 3, got {depth}")
        widths = dih_widths(ch, depth, max_channels)
        self.depth = depth
        self.encoder = nn.ModuleList()
        prev = 4
        for i, w in enumerate(widths):
            pad = 0 if i == depth - 1 else 1
            self.encoder.append(ConvBlock(prev, w, padding=pad, norm=0 <= batchnorm_from <= i))
            prev = w
        self.decoder = nn.ModuleList()
        outs = widths[-2::-1] + [ch // 2]
        for i, w in enumerate(outs):
            self.decoder.append(ConvBlock(prev, w, padding=0 if i == 0 else 1, norm=True, transposed=True))
            prev = w
        self.head = FusionHead(prev)

    @property
    def divisor(self) -> int:
        """H and W must be multiples of this (and at least :attr:`min_size`)."""
        return 2**self.depth

    @property
    def min_size(self) -> int:
        return 2 ** (self.depth + 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> SSAMOutput:
        """``image`` normalised (N,3,H,W), ``mask`` (N,1,H,W) on [0,1]."""
        h, w = image.shape[-2:]
        if h % self.divisor or w % self.divisor or min(h, w) < self.min_size:
            raise ValueError(f"iDIH input {h}x{w}: sides must be multiples of {self.divisor} and >= {self.min_size}")
        x = torch.cat([image, mask], dim=1)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips = skips[-2::-1]
        for i, block in enumerate(self.decoder):
            x = block(x)
            if i < len(skips):
                x = x + skips[i]
        images, attention = self.head(image, x)
        return SSAMOutput(images, attention, x)


_RULES = rename_rules(
    (
        r"encoder\.(?:blocks_connected\.)?block(\d+)\.block\.([01])\.(\w+)",
        lambda m: f"encoder.{m[1]}.{'conv' if m[2] == '0' else 'norm'}.{m[3]}",
    ),
    (
        r"decoder\.deconv_blocks\.(\d+)\.block\.([01])\.(\w+)",
        lambda m: f"decoder.{m[1]}.{'conv' if m[2] == '0' else 'norm'}.{m[3]}",
    ),
    (r"decoder\.conv_attention\.(\w+)", lambda m: f"head.blend.{m[1]}"),
    (r"decoder\.to_rgb\.(\w+)", lambda m: f"head.to_rgb.{m[1]}"),
)


def official_dih_name(name: str) -> str:
    """The :class:`DIHNet` name of an authors' iDIH tensor name (unknown names come back unchanged).

    ``encoder.blocks_connected.block2.block.1.running_mean`` → ``encoder.2.norm.running_mean``;
    ``decoder.deconv_blocks.0.block.0.weight`` → ``decoder.0.conv.weight``.
    """
    return apply_rename_rules(_RULES, name)


_INVERSE = rename_rules(
    (
        r"encoder\.(\d+)\.(conv|norm)\.(\w+)",
        lambda m: f"encoder.{official_encoder_block(m[1])}.block.{'0' if m[2] == 'conv' else '1'}.{m[3]}",
    ),
    (
        r"decoder\.(\d+)\.(conv|norm)\.(\w+)",
        lambda m: f"decoder.deconv_blocks.{m[1]}.block.{'0' if m[2] == 'conv' else '1'}.{m[3]}",
    ),
    (r"head\.blend\.(\w+)", lambda m: f"decoder.conv_attention.{m[1]}"),
    (r"head\.to_rgb\.(\w+)", lambda m: f"decoder.to_rgb.{m[1]}"),
)


def dih_name_to_official(name: str) -> str:
    """Inverse of :func:`official_dih_name` (unknown names come back unchanged)."""
    return apply_rename_rules(_INVERSE, name)


_ENC = re.compile(r"encoder\.(?:blocks_connected\.)?block(\d+)\.block\.0\.weight")
_ENC_NORM = re.compile(r"encoder\.(?:blocks_connected\.)?block(\d+)\.block\.1\.weight")


def dih_options_from_state_dict(sd: Mapping[str, torch.Tensor], *, where: str = "checkpoint") -> dict:
    """``ch``, ``depth``, ``max_channels``, ``batchnorm_from`` read from an authors' iDIH state dict."""
    convs = encoder_convs(sd, _ENC, where=where, first="encoder.block0.block.0.weight", net="iDIH", what="the conv")
    depth = len(convs)
    widths = [int(c.shape[0]) for c in convs]
    ch = widths[0]
    uncapped = dih_widths(ch, depth, 1 << 30)
    caps = [w for w, u in zip(widths, uncapped) if w != u]
    max_channels = min(caps) if caps else max(512, widths[-1])
    if dih_widths(ch, depth, max_channels) != widths:
        raise ConfigError("weights", f"{where}: encoder widths {widths} do not follow the iDIH pattern")
    batchnorm_from = batchnorm_start(sd, _ENC_NORM, depth, where=where)
    return {"ch": ch, "depth": depth, "max_channels": max_channels, "batchnorm_from": batchnorm_from}


__all__ = [
    "ConvBlock",
    "DIHNet",
    "dih_name_to_official",
    "dih_options_from_state_dict",
    "dih_widths",
    "official_dih_name",
]
