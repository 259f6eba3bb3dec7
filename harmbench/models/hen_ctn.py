"""HEN/CTN: "Deep Color Transfer using Histogram Analogy" (Lee et al., TVC 2020), used for harmonization.

Scales: images enter and leave the networks as **normalised Lab on [-1, 1]**
(:func:`harmbench.models.lab.rgb_to_nlab`); the CTN output is unbounded (no tanh/clamp).

* HEN (:class:`HistogramEncoder`): histogram ``(N, 1 + l_bins, B, B)`` -> code ``(N, C, 1, 1)``.
  log2(B)−2 Conv4×4 s2 p1 (B -> 4), three Conv4×4 s1 p1 (4 -> 1), each + LeakyReLU(0.1), no
  norm; Conv1×1 -> C; Linear(C, C). Full size: width 128, C 64, B 64, 8 L bins.
* CTN (:class:`ColorTransferNet`): 5-level encoder (w, 2w, 4w, 8w, 8w; InstanceNorm without
  affine), decoder whose 5 blocks each take ``cat[prev, skip, e_s, e_t]`` (codes or code maps
  bilinearly resized to that level), 3 residual refinement blocks conditioned on the codes,
  an output block, and side outputs at 1/16..1/2 resolution for the multi-scale loss.
* :class:`HENCTN` joins both. ``harmonize``: source code from the foreground histogram, target
  code from the background histogram; the source map carries the foreground code on foreground
  pixels (background code elsewhere), the target map the background code everywhere, so only
  foreground pixels are asked to change; the output is pasted back with the mask.
* CPU inference (``harmonize`` under the ``harmbench`` protocol) goes through
  :meth:`ColorTransferNet.infer` (full-size stages a few images at a time, one at 256 px), which takes
  the two codes and the mask instead of code maps; the training pass, the ``official`` protocol and
  ``transfer_regions`` use :meth:`ColorTransferNet.forward`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harmbench.errors import ConfigError
from harmbench.models.base import (
    LearnedHarmonizer,
    PresetMixin,
    crop_padding,
    pad_to_multiple,
    register_model,
    validate_inputs,
)
from harmbench.models.histogram import hen_input
from harmbench.models.lab import nlab_to_rgb, rgb_to_nlab
from harmbench.models.layers import init_normal


@dataclass(frozen=True)
class HENCTNConfig(PresetMixin):
    """HEN/CTN options (``full`` = released architecture; ``small`` = CPU size).

    Attributes:
        width: CTN base channels w (64); encoder w·(1,2,4,8,8).
        hen_width: HEN hidden channels (128).
        code_dim: histogram code length C (64).
        hist_bins: ab histogram bins per axis B (64; a power of two ≥ 8).
        l_bins: L histogram bins (8).
        dropout: Dropout(0.5) in the refinement blocks (active in training mode only).
        soft_hist_bins: bins of the differentiable ab histogram in the loss (32).
        pad_margin: replicate padding around the image at inference (30 px, as released).
        recomposite: paste the output into the composite's background (default on).
        residual: predict a residual added to the input nLab (off = the released CTN, which predicts
            nLab directly). A size knob for small CTNs: at width 8 and minutes of CPU training a
            direct-output CTN does not learn to reproduce its input; a residual one starts at identity.
        protocol: ``"harmbench"`` (deterministic, any size, batched: pad to a multiple of 32 with
            ``pad_margin``, torch Lab) or ``"official"`` (the authors' test chain per image: skimage Lab,
            longer side <= 700 px, exactly 30 px padding, uint8 rounding as they save; see
            :mod:`harmbench.models.hen_ctn_protocol`). A run-time choice, not part of the weights.
    """

    width: int = 64
    hen_width: int = 128
    code_dim: int = 64
    hist_bins: int = 64
    l_bins: int = 8
    dropout: bool = True
    soft_hist_bins: int = 32
    pad_margin: int = 30
    recomposite: bool = True
    residual: bool = False
    protocol: str = "harmbench"

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("protocol",)
    PRESETS: ClassVar[dict] = {
        "full": {},
        "small": {"width": 16, "hen_width": 32, "code_dim": 16, "hist_bins": 32, "pad_margin": 8},
    }

    def validate(self) -> None:
        b = self.hist_bins
        if b < 8 or b & (b - 1):
            raise ConfigError("hen-ctn.hist_bins", f"must be a power of two >= 8, got {b}")
        for f in ("width", "hen_width", "code_dim", "l_bins", "soft_hist_bins"):
            if getattr(self, f) < 1:
                raise ConfigError(f"hen-ctn.{f}", f"must be >= 1, got {getattr(self, f)}")
        if self.pad_margin < 0:
            raise ConfigError("hen-ctn.pad_margin", f"must be >= 0, got {self.pad_margin}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError("hen-ctn.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")


#: Inference protocols of ``hen-ctn`` (see :class:`HENCTNConfig`).
PROTOCOLS = ("harmbench", "official")


# --------------------------------------------------------------------------- HEN


class HistogramEncoder(nn.Module):
    """HEN: ``(N, 1 + l_bins, B, B)`` histogram -> ``(N, code_dim, 1, 1)`` code."""

    def __init__(self, l_bins: int = 8, hist_bins: int = 64, width: int = 128, code_dim: int = 64):
        super().__init__()
        n_down = int(math.log2(hist_bins)) - 2
        layers: list[nn.Module] = []
        prev = l_bins + 1
        for _ in range(n_down):
            layers += [nn.Conv2d(prev, width, 4, stride=2, padding=1), nn.LeakyReLU(0.1, True)]
            prev = width
        for _ in range(3):
            layers += [nn.Conv2d(prev, width, 4, stride=1, padding=1), nn.LeakyReLU(0.1, True)]
            prev = width
        layers.append(nn.Conv2d(width, code_dim, 1))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(code_dim, code_dim)

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        z = self.features(hist).flatten(1)
        return self.fc(z).view(z.shape[0], -1, 1, 1)


# --------------------------------------------------------------------------- CTN blocks


def _resize(x: torch.Tensor, size: tuple[int, int], like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` at ``size`` (1×1 codes expanded, maps bilinear); in ``like``'s layout when that is channels-last."""
    if tuple(x.shape[-2:]) == tuple(size):
        out = x
    elif x.shape[-2:] == (1, 1):
        out = x.expand(-1, -1, *size)
    else:
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if like is not None and _channels_last(like) and not _channels_last(out):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class _InstanceNorm(nn.InstanceNorm2d):
    """``InstanceNorm2d`` without affine. A channels-last input (the inference path) is normalised in its
    own layout with one ``var_mean`` over H, W (no layout copies); other inputs take torch's kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _channels_last(x):
            return super().forward(x)
        n, c, h, w = x.shape
        v = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # the NHWC memory as (N, pixels, C): a view
        d = v - v.mean(1, keepdim=True)
        d.mul_(torch.rsqrt((d * d).mean(1, keepdim=True) + self.eps))
        return d.view(n, h, w, c).permute(0, 3, 1, 2)


def _inorm(c: int) -> nn.InstanceNorm2d:
    return _InstanceNorm(c, affine=False)


def _inorm_(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Instance norm of channels-last ``x`` over H, W, in place (``x`` must own its memory)."""
    n, c, h, w = x.shape
    v = x.permute(0, 2, 3, 1).view(n, h * w, c)
    v.sub_(v.mean(1, keepdim=True))
    v.mul_(torch.rsqrt(torch.mul(v, v).mean(1, keepdim=True).add_(eps)))
    return x


def _run_fast(layers: Sequence[nn.Module], x: torch.Tensor, fresh: bool = False) -> torch.Tensor:
    """``layers`` in order at inference, each instance norm that follows a convolution done in place
    (``fresh``: ``x`` itself is a convolution's output)."""
    for layer in layers:
        if isinstance(layer, nn.Dropout):
            continue
        if isinstance(layer, _InstanceNorm) and fresh and _channels_last(x):
            x = _inorm_(x, layer.eps)
        else:
            x = layer(x)
        fresh = isinstance(layer, nn.Conv2d)
    return x


def _code_weight(
    conv: nn.Conv2d, feat: int, es_ones: torch.Tensor, es_mask: torch.Tensor, et_ones: torch.Tensor
) -> torch.Tensor:
    """Weight of ``conv`` (input ``[feat channels, e_s (C), e_t (C)]``) for the input ``[feat channels,
    ones_0, mask_0, …, ones_{n-1}, mask_{n-1}]`` (image i's planes set, the others' zero) when image i has
    e_s = ``es_ones[i] + es_mask[i] · mask`` and e_t = ``et_ones[i]`` (codes ``(n, C)``): the code
    channels' kernels summed against each image's codes."""
    w = conv.weight
    n, c = es_ones.shape
    w_s, w_t = w[:, feat : feat + c], w[:, feat + c : feat + 2 * c]
    k_ones = torch.einsum("oikl,ni->onkl", w_s, es_ones) + torch.einsum("oikl,ni->onkl", w_t, et_ones)
    k_mask = torch.einsum("oikl,ni->onkl", w_s, es_mask)
    planes = torch.stack([k_ones, k_mask], 2).reshape(w.shape[0], 2 * n, *w.shape[2:])
    return torch.cat([w[:, :feat], planes], 1)


def _plane_buffer(feat: int, extra: int, mask: torch.Tensor) -> torch.Tensor:
    """Channels-last ``(n, feat + 2n + extra, H, W)`` with image i's ones and ``mask`` planes at
    ``feat + 2i``, ``feat + 2i + 1`` and zeros in the other images' planes (the rest unset)."""
    n = mask.shape[0]
    buf = _empty_cl(n, feat + 2 * n + extra, *mask.shape[-2:], like=mask)
    buf[:, feat : feat + 2 * n].zero_()
    for i in range(n):
        buf[i, feat + 2 * i] = 1.0
        buf[i, feat + 2 * i + 1] = mask[i, 0]
    return buf


def _empty_cl(n: int, c: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, c, h, w, dtype=like.dtype, device=like.device, memory_format=torch.channels_last)


def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last copy of ``x`` for inference on CPU (2–4x faster convolutions at the CTN's small widths)."""
    if x.device.type == "cpu" and not torch.is_grad_enabled() and x.shape[-1] > 1:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class _EncBlock(nn.Module):
    def __init__(self, cin: int, cout: int, first: bool):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        if first:
            layers = [_conv3(cin, cout), _inorm(cout), act(), _conv3(cout, cout), _inorm(cout), act()]
        else:
            layers = [act(), _conv3(cin, cout), _inorm(cout), act(), _conv3(cout, cout), _inorm(cout), act()]
        layers += [nn.Conv2d(cout, cout, 4, stride=2, padding=1), _inorm(cout)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _DecBlock(nn.Module):
    """cat[prev, skip, e_s, e_t] at the skip's size -> ReLU, ×2 bilinear, convs."""

    def __init__(self, cin: int, cout: int, last: bool = False, mid: int | None = None):
        super().__init__()
        up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        if last:
            mid = mid or cout * 2
            layers = [
                nn.ReLU(True),
                up,
                _conv3(cin, mid, bias=False),
                _inorm(mid),
                nn.ReLU(True),
                _conv3(mid, cout),
                _inorm(cout),
                nn.ReLU(True),
                _conv3(cout, cout),
            ]
        else:
            layers = [
                nn.ReLU(True),
                up,
                _conv3(cin, cout),
                _inorm(cout),
                nn.ReLU(True),
                _conv3(cout, cout),
                _inorm(cout),
                nn.ReLU(True),
                _conv3(cout, cout),
                _inorm(cout),
            ]
        self.block = nn.Sequential(*layers)

    def forward(self, prev, skip, e_s, e_t):
        size = tuple(skip.shape[-2:])
        parts = [_resize(prev, size, skip), skip, _resize(e_s, size, skip), _resize(e_t, size, skip)]
        return self.block(torch.cat(parts, 1))


class _RefineBlock(nn.Module):
    """r = x + [Conv3 (w+2C)->(w+2C), IN, ReLU, (Dropout), Conv3 -> w, IN](cat[x, e_s, e_t])."""

    def __init__(self, width: int, code_dim: int, dropout: bool):
        super().__init__()
        c = width + 2 * code_dim
        layers: list[nn.Module] = [_conv3(c, c), _inorm(c), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [_conv3(c, width), _inorm(width)]
        self.block = nn.Sequential(*layers)

    def forward(self, x, e_s, e_t):
        size = tuple(x.shape[-2:])
        return x + self.block(torch.cat([x, _resize(e_s, size, x), _resize(e_t, size, x)], 1))


def _side_out(c: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(True), _conv3(c, c), _inorm(c), nn.ReLU(True), _conv3(c, 3))


class CTNOutput(NamedTuple):
    """CTN outputs, normalised Lab (unbounded): the full-size prediction and the 4 side outputs
    (1/16, 1/8, 1/4, 1/2 of the input size: 16, 32, 64, 128 px at 256)."""

    output: torch.Tensor
    sides: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class ColorTransferNet(nn.Module):
    """CTN: ``forward(x (N,3,H,W) nLab, e_s, e_t)``; codes ``(N,C,1,1)`` or code maps ``(N,C,H,W)``."""

    def __init__(self, width: int = 64, code_dim: int = 64, dropout: bool = True, residual: bool = False):
        super().__init__()
        self.residual = residual
        w, c = width, code_dim
        chans = [w, 2 * w, 4 * w, 8 * w, 8 * w]
        self.encoder = nn.ModuleList(
            [_EncBlock(3 if i == 0 else chans[i - 1], chans[i], first=i == 0) for i in range(5)]
        )
        self.decoder = nn.ModuleList(
            [
                _DecBlock(chans[4] + chans[4] + 2 * c, chans[3]),
                _DecBlock(chans[3] + chans[3] + 2 * c, chans[2]),
                _DecBlock(chans[2] + chans[2] + 2 * c, chans[1]),
                _DecBlock(chans[1] + chans[1] + 2 * c, chans[0]),
                _DecBlock(chans[0] + chans[0] + 2 * c, w, last=True, mid=2 * w),
            ]
        )
        self.init_block = nn.Sequential(_conv3(3, w), _inorm(w), nn.ReLU(True), _conv3(w, w))
        self.refine = nn.ModuleList([_RefineBlock(w, c, dropout) for _ in range(3)])
        self.last_block = nn.Sequential(
            _conv3(w, w), nn.ReLU(True), _conv3(w, w), nn.ReLU(True), _conv3(w, w), nn.ReLU(True), _conv3(w, 3)
        )
        self.side_outputs = nn.ModuleList([_side_out(ch) for ch in (chans[3], chans[2], chans[1], chans[0])])

    def infer(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        e_fg: torch.Tensor,
        e_bg: torch.Tensor,
        e_t: torch.Tensor,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """Inference output for channels-last images ``x`` (n, 3, H, W) nLab whose source map carries
        code ``e_fg`` on ``mask`` (n, 1, H, W; values 0–1) and ``e_bg`` elsewhere, target code ``e_t``
        (codes ``(n, C)``): ``forward(x, e_s, e_t, sides=False).output`` with e_s = e_bg + (e_fg − e_bg)·mask,
        equal in exact arithmetic. The code channels of the full-size convolutions (the last decoder
        block's first and each refinement block's first) become per-image kernels over a ones plane and
        the mask of each image, plus, after the decoder's ReLU, one plane per code entry whose sign differs
        between e_fg and e_bg. The full-size stages run ``chunk`` images at a time (default all; those
        convolutions get 2 input channels per image of a chunk), the lower levels on the whole batch. No
        autograd; call it in eval mode under ``torch.no_grad()``."""
        n_all = x.shape[0]
        spans = [slice(i, i + (chunk or n_all)) for i in range(0, n_all, chunk or n_all)]
        n, c = e_bg.shape
        e_d = e_fg - e_bg

        def mask_at(size: tuple[int, int]) -> torch.Tensor:
            return mask if tuple(mask.shape[-2:]) == size else _resize(mask, size)

        def dec(block: _DecBlock, prev: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            size = tuple(skip.shape[-2:])
            prev = _resize(prev, size, skip)
            a, b = prev.shape[1], skip.shape[1]
            buf = _empty_cl(n, a + b + 2 * c, *size, like=skip)
            torch.clamp(prev, min=0, out=buf[:, :a])
            torch.clamp(skip, min=0, out=buf[:, a : a + b])
            e_s = torch.addcmul(e_bg.view(n, c, 1, 1), e_d.view(n, c, 1, 1), mask_at(size))
            buf[:, a + b : a + b + c] = e_s.clamp_min_(0)
            buf[:, a + b + c :] = e_t.clamp(min=0).view(n, c, 1, 1)
            return _run_fast(block.block[1:], buf)  # block.block[0] is the ReLU done above

        def dec_planes(
            block: _DecBlock,
            prev: torch.Tensor,
            skip: torch.Tensor,
            m: torch.Tensor,
            fg: torch.Tensor,
            bg: torch.Tensor,
            t: torch.Tensor,
        ) -> torch.Tensor:
            n, d = prev.shape[0], fg - bg
            a, b = prev.shape[1], skip.shape[1]
            # relu(bg + d·m) for m in [0, 1]: linear in m where fg, bg >= 0, zero where both <= 0;
            # the other entries get planes shared by the images (zero where an image's entry is linear)
            pos = (fg >= 0) & (bg >= 0)
            mixed = ~pos & ((fg > 0) | (bg > 0))
            idx = mixed.any(0).nonzero().flatten()
            k = idx.numel()
            buf = _plane_buffer(a + b, k, m)
            torch.clamp(prev, min=0, out=buf[:, :a])
            torch.clamp(skip, min=0, out=buf[:, a : a + b])
            if k:
                planes = torch.addcmul(bg[:, idx].view(n, k, 1, 1), d[:, idx].view(n, k, 1, 1), m)
                buf[:, a + b + 2 * n :] = planes.clamp_min_(0).mul_(mixed[:, idx].view(n, k, 1, 1))
            layers = block.block
            up = layers[1](buf)
            conv = layers[2]
            zero = torch.zeros_like(bg)
            weight = _code_weight(conv, a + b, torch.where(pos, bg, zero), torch.where(pos, d, zero), t.clamp(min=0))
            weight = torch.cat([weight, conv.weight[:, a + b + idx]], 1)
            y = F.conv2d(up, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
            return _run_fast(layers[3:], y, fresh=True)

        def full_size(sl: slice, d4: torch.Tensor, e1: torch.Tensor) -> torch.Tensor:
            xs, ms, bg, d, t = x[sl], mask[sl], e_bg[sl], e_d[sl], e_t[sl]
            size = tuple(e1.shape[-2:])
            d4 = _resize(d4[sl], size, e1)
            r = dec_planes(self.decoder[4], d4, e1[sl], m_half[sl], e_fg[sl], bg, t)
            r = _resize(r, tuple(xs.shape[-2:]), xs)
            base = _run_fast(self.init_block, xs)
            w = base.shape[1]
            buf = _plane_buffer(w, 0, ms)
            feat = buf[:, :w]
            for block in self.refine:
                torch.add(r, base, out=feat)
                conv = block.block[0]
                weight = _code_weight(conv, w, bg, d, t)
                y = F.conv2d(buf, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
                r = _run_fast(block.block[1:], y, fresh=True).add_(feat)
            out = _run_fast(self.last_block, r.add_(base))
            return out.add_(xs) if self.residual else out

        e1 = torch.cat([_run_fast(self.encoder[0].block, x[sl]) for sl in spans])
        feats = [e1]
        for enc in self.encoder[1:]:
            feats.append(_run_fast(enc.block, feats[-1]))
        _, e2, e3, e4, e5 = feats
        d = dec(self.decoder[0], e5, e5)
        d = dec(self.decoder[1], d, e4)
        d = dec(self.decoder[2], d, e3)
        d = dec(self.decoder[3], d, e2)
        m_half = mask_at(tuple(e1.shape[-2:]))
        return torch.cat([full_size(sl, d, e1) for sl in spans])

    def forward(self, x: torch.Tensor, e_s: torch.Tensor, e_t: torch.Tensor, *, sides: bool = True) -> CTNOutput:
        """``sides=False`` skips the side-output heads (inference): ``CTNOutput.sides`` is then empty."""
        feats = []
        h = x
        for enc in self.encoder:
            h = enc(h)
            feats.append(h)
        e1, e2, e3, e4, e5 = feats
        cache: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

        def codes(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """e_s, e_t at ``like``'s size and layout, each resized once per size."""
            size = tuple(like.shape[-2:])
            if size not in cache:
                cache[size] = (_resize(e_s, size, like), _resize(e_t, size, like))
            return cache[size]

        d1 = self.decoder[0](e5, e5, *codes(e5))
        d2 = self.decoder[1](d1, e4, *codes(e4))
        d3 = self.decoder[2](d2, e3, *codes(e3))
        d4 = self.decoder[3](d3, e2, *codes(e2))
        d5 = _resize(self.decoder[4](d4, e1, *codes(e1)), tuple(x.shape[-2:]), x)
        base = self.init_block(x)
        r = d5
        for block in self.refine:
            r = block(r + base, *codes(x))
        out = self.last_block(r + base)
        if self.residual:
            out = out + x
        side = tuple(head(d) for head, d in zip(self.side_outputs, (d1, d2, d3, d4))) if sides else ()
        return CTNOutput(out, side)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- joint model


@register_model("hen-ctn")
class HENCTN(LearnedHarmonizer):
    """HEN + CTN. ``forward(x, hist_s, hist_t)`` is the training pass (codes from histograms)."""

    name = "hen-ctn"
    config_class = HENCTNConfig
    stride = 32
    min_size = 64  # the 1/32 bottleneck must be ≥ 2×2 for instance norm

    def __init__(self, config: HENCTNConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        self.hen = HistogramEncoder(cfg.l_bins, cfg.hist_bins, cfg.hen_width, cfg.code_dim)
        self.ctn = ColorTransferNet(cfg.width, cfg.code_dim, cfg.dropout, cfg.residual)
        init_normal(self, zero_bias=False)

    #: Inference on CPU in channels-last layout (faster; the float outputs differ from the contiguous
    #: layout's by a few 1e-6 on 0–1, as they differ between thread counts). Training is unaffected.
    fast_layout: bool = True
    #: With ``fast_layout``: CPU inference a few images at a time through :meth:`ColorTransferNet.infer`
    #: (code channels folded into per-image kernels, instance norm in place); the float outputs differ
    #: from the batched channels-last path's by about 1e-6 on 0–1.
    fast_infer: bool = True
    #: Padded pixels per chunk of the full-size stages of :meth:`ColorTransferNet.infer` (1 to 4
    #: images): one 256 px image padded to 288×288; smaller images go up to 4 at a time.
    infer_chunk_pixels: int = 288 * 288

    @property
    def pad_margin(self) -> int:  # type: ignore[override]
        return self.config.pad_margin

    # -- building blocks -----------------------------------------------------------
    def histogram(self, x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """Hard HEN-input histogram ``(N, 1+l_bins, B, B)`` of nLab ``x`` over ``region`` (no grad)."""
        return hen_input(x, region, ab_bins=self.config.hist_bins, l_bins=self.config.l_bins)

    def encode(self, x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """Code ``(N, C, 1, 1)`` of the region of nLab ``x`` (``None`` = whole image)."""
        return self.hen(self.histogram(x, region))

    def encode_regions(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, R, C)`` of R regions given as masks ``(N, R, H, W)`` (e.g. one-hot labels)."""
        codes = [self.encode(x, regions[:, r : r + 1]).flatten(1) for r in range(regions.shape[1])]
        return torch.stack(codes, dim=1)

    @staticmethod
    def paint_codes(codes: torch.Tensor, regions: torch.Tensor, default: torch.Tensor | None = None) -> torch.Tensor:
        """Code map ``(N, C, H, W)``: code r on the pixels of region r, ``default`` (N,C,1,1) elsewhere."""
        n, _, h, w = regions.shape
        covered = regions.sum(1, keepdim=True).clamp(max=1.0)
        painted = torch.einsum("nrc,nrhw->nchw", codes, regions)
        if default is None:
            return painted
        return painted + default.reshape(n, -1, 1, 1) * (1.0 - covered)

    def transfer(self, x: torch.Tensor, e_s: torch.Tensor, e_t: torch.Tensor) -> CTNOutput:
        """CTN with given codes / code maps; ``x`` nLab."""
        return self.ctn(x, e_s, e_t)

    def transfer_regions(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        source_regions: Sequence[torch.Tensor] = (),
        reference_regions: Sequence[torch.Tensor | None] = (),
        *,
        labels: bool = False,
    ) -> torch.Tensor:
        """Colour transfer under the ``harmbench`` protocol: RGB 0–1 ``(1, 3, H, W)`` source and
        ``(1, 3, Ht, Wt)`` reference -> the CTN output as RGB 0–1 ``(1, 3, H, W)`` (not pasted).

        No regions: e_s = source code, e_t = reference code (whole images). Regions (bool ``(H, W)``
        with, for each, a bool ``(Ht, Wt)`` reference region or ``None`` = keep its colours): e_s = each
        region's code on it, e_t = its reference region's code on it; pixels outside every region get
        the code of the rest of the source in both maps (masks). ``labels``: the regions tile the
        source (label maps); same painting, no rest.
        """
        param = next(self.parameters())
        xs = rgb_to_nlab(source.to(param.device, param.dtype))
        xr = rgb_to_nlab(reference.to(param.device, param.dtype))

        def code(x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
            r = None if region is None else region.to(x.device, x.dtype).view(1, 1, *region.shape)
            return self.encode(x, r).view(1, -1, 1)

        with torch.no_grad():
            if not source_regions:
                e_s, e_t = code(xs).view(1, -1, 1, 1), code(xr).view(1, -1, 1, 1)
            else:
                h, w = xs.shape[-2:]
                e_s = xs.new_zeros(1, self.config.code_dim, h, w)
                e_t = xs.new_zeros(1, self.config.code_dim, h, w)
                src = [r.to(xs.device) for r in source_regions]
                rest = ~torch.stack(src).any(0)
                if not labels and bool(rest.any()):
                    c_rest = code(xs, rest).view(1, -1, 1, 1)
                    e_s[:] = c_rest
                    e_t[:] = c_rest
                for s, r in zip(src, reference_regions):
                    c_s = code(xs, s)
                    e_s[..., s] = c_s
                    e_t[..., s] = c_s if r is None else code(xr, r)
            geometry = {"margin": self.pad_margin, "min_size": self.min_size}
            xp, pads = pad_to_multiple(xs, self.stride, **geometry)
            if e_s.shape[-1] > 1:
                e_s, _ = pad_to_multiple(e_s, self.stride, **geometry)
                e_t, _ = pad_to_multiple(e_t, self.stride, **geometry)
            if self.fast_layout:
                xp, e_s = _fast_layout(xp), _fast_layout(e_s)
            out = crop_padding(self.ctn(xp, e_s, e_t, sides=False).output, pads)
        return nlab_to_rgb(out).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor, hist_s: torch.Tensor, hist_t: torch.Tensor) -> CTNOutput:
        """Training pass: nLab source ``x``, source/target histograms -> CTN outputs (HEN gets gradients)."""
        return self.ctn(x, self.hen(hist_s), self.hen(hist_t))

    # -- harmonization -------------------------------------------------------------
    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """See :class:`Harmonizer`. ``protocol="official"``: the authors' chain per image (module
        :mod:`~harmbench.models.hen_ctn_protocol`) with the foreground as the source region and the
        background as the reference region, the correct crop, pasted into the composite (``recomposite``);
        images the 700 px rule shrank are resized back (bilinear). The result is at the input's size, on
        the 8-bit grid (k/255) where not resized back."""
        if self.config.protocol != "official":
            return super().harmonize(composite, mask)
        from harmbench.models.hen_ctn_protocol import RegionPairs, official_transfer

        composite, mask = validate_inputs(composite, mask)
        outs = []
        for img, m in zip(composite, mask):
            u8 = (img.detach().float().cpu().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy()
            fg = m[0].detach().cpu().numpy() > 0.5
            if not fg.any() or fg.all():
                outs.append(img.detach().float().cpu())
                continue
            res = official_transfer(self, u8, u8, RegionPairs((fg,), (~fg,)), crop_bug=False)
            out = torch.from_numpy(res.output).permute(2, 0, 1).float() / 255.0
            if out.shape[-2:] != img.shape[-2:]:
                out = F.interpolate(out[None], size=tuple(img.shape[-2:]), mode="bilinear", align_corners=False)[0]
            if self.config.recomposite:
                keep = torch.from_numpy(fg)[None]
                out = torch.where(keep, out, torch.from_numpy(u8).permute(2, 0, 1).float() / 255.0)
            outs.append(out)
        return torch.stack(outs).to(device=composite.device, dtype=composite.dtype)

    def _harmonize(self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self._use_infer(composite):
            return self._harmonize_infer(composite, mask, valid)
        x = rgb_to_nlab(composite)
        fg = mask * valid
        bg = (1.0 - mask) * valid
        e_f = self.encode(x, fg)
        e_b = self.encode(x, bg)
        src_map = self.paint_codes(e_f.flatten(1).unsqueeze(1), mask, default=e_b)
        if self.fast_layout:
            x_in, src_map = _fast_layout(x), _fast_layout(src_map)
        else:
            x_in = x
        out = nlab_to_rgb(self.ctn(x_in, src_map, e_b, sides=False).output)
        has_bg = (bg.flatten(1).sum(1) > 0).view(-1, 1, 1, 1)
        return torch.where(has_bg, out, composite)

    def _use_infer(self, x: torch.Tensor) -> bool:
        """Whether :meth:`_harmonize` takes the one-image :meth:`ColorTransferNet.infer` path: ``fast_infer``
        and ``fast_layout`` set, CPU, eval mode, no autograd."""
        cpu = x.device.type == "cpu"
        return self.fast_infer and self.fast_layout and cpu and not self.training and not torch.is_grad_enabled()

    def _harmonize_infer(self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """:meth:`_harmonize` through :meth:`ColorTransferNet.infer` (CPU inference): images without
        background are returned as they are, the others' full-size stages run a few images at a time."""
        bg = (1.0 - mask) * valid
        keep = bg.flatten(1).sum(1) > 0
        if not bool(keep.any()):
            return composite
        everything = bool(keep.all())
        comp, m, v, bg = (t if everything else t[keep] for t in (composite, mask, valid, bg))
        x = rgb_to_nlab(comp)
        e_f = self.encode(x, m * v).flatten(1)
        e_b = self.encode(x, bg).flatten(1)
        chunk = max(1, min(self.infer_chunk_pixels // (x.shape[-2] * x.shape[-1]), 4))
        out = nlab_to_rgb(self.ctn.infer(_fast_layout(x), m, e_f, e_b, e_b, chunk))
        if everything:
            return out
        full = composite.clone()
        full[keep] = out.to(full.dtype)
        return full


__all__ = ["PROTOCOLS", "CTNOutput", "ColorTransferNet", "HENCTN", "HENCTNConfig", "HistogramEncoder"]
