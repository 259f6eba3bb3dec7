"""Building blocks shared by the learned models: partial convolution, norm factory, init."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations


class PartialConv2d(nn.Conv2d):
    """Mask-aware convolution (Liu et al. 2018, NVIDIA formulation, single-channel mask).

    ``forward(x, mask)`` with ``mask`` ``(N, 1, H, W)`` in {0, 1}:

    * ``raw = conv(x·mask)`` (weights, no bias);
    * ``count = sum of mask in each window``; ``ratio = k_h·k_w / count`` where ``count > 0``;
    * ``out = (raw·ratio + bias)·[count > 0]``; the new mask is ``[count > 0]``.

    Returns ``(out, new_mask)``. With ``mask=None`` it is an ordinary convolution and returns
    ``(out, None)``. Works unchanged under spectral norm (weights are read through ``self.weight``).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # type: ignore[override]
        if mask is None:
            return super().forward(x), None
        with torch.no_grad():
            ones = torch.ones(1, 1, *self.kernel_size, dtype=x.dtype, device=x.device)
            count = F.conv2d(mask.to(x.dtype), ones, stride=self.stride, padding=self.padding, dilation=self.dilation)
            new_mask = (count > 0).to(x.dtype)
            ratio = (self.kernel_size[0] * self.kernel_size[1]) / count.clamp_min(1.0) * new_mask
        raw = F.conv2d(x * mask, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        out = raw * ratio
        if self.bias is not None:
            out = (out + self.bias.view(1, -1, 1, 1)) * new_mask
        return out, new_mask


NormFactory = Callable[[int], nn.Module]


def norm_layer(kind: str) -> NormFactory:
    """``batch`` (affine, running stats), ``instance`` (no affine, no running stats, as pix2pix) or ``none``."""
    if kind == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use 'batch', 'instance' or 'none'")


def uses_bias(kind: str) -> bool:
    """pix2pix rule: convs followed by a norm have a bias only with instance norm (which has no affine)."""
    return kind == "instance"


def spectral(module: nn.Module) -> nn.Module:
    """Wrap with spectral normalisation (one power iteration per forward in training mode)."""
    return parametrizations.spectral_norm(module)


def init_normal(module: nn.Module, gain: float = 0.02, *, zero_bias: bool = True) -> None:
    """pix2pix ``normal`` init: conv/linear weights N(0, gain), biases 0; batch-norm weights N(1, gain), biases 0.

    ``zero_bias=False`` keeps PyTorch's default conv/linear biases (the HEN/CTN reference init).
    Spectral-normed layers get their underlying (original) weight initialised.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if parametrize_has(m, "weight") else m.weight
            with torch.no_grad():
                weight.normal_(0.0, gain)
                if zero_bias and m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            with torch.no_grad():
                m.weight.normal_(1.0, gain)
                m.bias.zero_()


def parametrize_has(module: nn.Module, name: str) -> bool:
    return hasattr(module, "parametrizations") and name in module.parametrizations  # type: ignore[operator]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["PartialConv2d", "count_parameters", "init_normal", "norm_layer", "spectral", "uses_bias"]
