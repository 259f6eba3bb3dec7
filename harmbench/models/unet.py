"""The pix2pix U-Net with DoveNet's attention gates (``netG s2ad``); shared by DoveNet and BargainNet.

Structure for ``num_downs=8`` (unet_256), built from the innermost block outwards:

* encoder: Conv4×4 s2 p1 with channels ngf·(1, 2, 4, 8, 8, 8, 8, 8); LeakyReLU(0.2) before every
  downconv except the first; a norm after every downconv except the first and the innermost;
* decoder: ReLU, ConvTranspose4×4 s2 p1, norm; skips concatenate; Dropout(0.5) after the
  ``num_downs - 5`` intermediate ngf·8 blocks; outermost ConvT 2·ngf -> out then Tanh;
* attention at the three outermost skip junctions (ngf, 2·ngf, 4·ngf blocks): the
  concatenation ``cat[skip, up]`` is multiplied by ``sigmoid(Conv1×1(cat))`` (channels kept).

Input and output are on [-1, 1]; spatial size must be a multiple of ``2**num_downs``.
"""

from __future__ import annotations

import torch
from torch import nn

from harmbench.models.layers import norm_layer, uses_bias


class UNetBlock(nn.Module):
    """One U-Net level: down path, the inner submodule, up path; skip concatenation (and attention)."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        *,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
        attention: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        bias = uses_bias(norm)
        make_norm = norm_layer(norm)
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        layers: list[nn.Module]
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]  # type: ignore[list-item]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, make_norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                make_norm(inner_nc),
                submodule,  # type: ignore[list-item]
                nn.ReLU(True),
                upconv,
                make_norm(outer_nc),
            ]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)
        self.attention: nn.Module | None = None
        if attention and not outermost:
            c = input_nc + outer_nc
            self.attention = nn.Sequential(nn.Conv2d(c, c, kernel_size=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        out = torch.cat([x, self.model(x)], dim=1)
        if self.attention is not None:
            out = self.attention(out) * out
        return out


class AttentionUNet(nn.Module):
    """pix2pix ``UnetGenerator`` with DoveNet attention; ``num_downs >= 5``; [-1, 1] in and out."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int = 3,
        *,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = True,
        attention: bool = True,
    ):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        self.num_downs = num_downs
        block = UNetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UNetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = UNetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm, attention=attention)
        block = UNetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm, attention=attention)
        block = UNetBlock(ngf, ngf * 2, submodule=block, norm=norm, attention=attention)
        self.model = UNetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    @property
    def stride(self) -> int:
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"U-Net input size {h}×{w} must be a multiple of {self.stride} (pad it first)")
        return self.model(x)


__all__ = ["AttentionUNet", "UNetBlock"]
