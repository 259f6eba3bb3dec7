"""The pixel-wise colour transform (PCT) of PCT-Net and its full-resolution application.

A PCT-Net predicts, at low resolution, 12 parameters per pixel: channels 0–8 are a 3×3
matrix ``T`` (row-major, ``T[r][c] = P[3r + c]``) and channels 9–11 an offset ``b``. For a
pixel ``x`` (3 values in the network's *normalised* space, ``(rgb01 − mean) / std``)

    y = clamp(T·x + b, 0, 1)            (RGB on the 0–1 scale)
    PCT(x) = (y − mean) / std           (back to the normalised space)

The parameters (and the CNN's blend map) are brought to full resolution with bicubic
interpolation (Keys cubic, a = −0.75, half-pixel centres, edge taps clamped, no antialias:
what ``F.interpolate(mode="bicubic", align_corners=False)`` computes). :func:`apply_fullres`
does that separably, a band of rows at a time, so a 24-megapixel photo needs a few tens of
megabytes of scratch memory instead of the 12×H×W parameter map.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Keys' cubic convolution constant used by PyTorch (and OpenCV) bicubic interpolation.
CUBIC_A = -0.75


def pct_transform(
    x: torch.Tensor, params: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, clamp: bool = True
) -> torch.Tensor:
    """Apply the per-pixel affine colour transform.

    ``x``: (N,3,H,W) normalised image; ``params``: (N,12,H,W); ``mean``/``std``: (1,3,1,1) on
    the 0–1 scale. Returns (N,3,H,W) in the normalised space; the transformed RGB is clamped to
    [0, 1] before renormalising when ``clamp``.
    """
    if params.shape[1] != 12:
        raise ValueError(f"PCT needs 12 parameter channels, got {params.shape[1]}")
    t = params[:, :9]
    b = params[:, 9:12]
    rows = []
    for r in range(3):
        acc = t[:, 3 * r : 3 * r + 1] * x[:, 0:1]
        acc = acc.addcmul(t[:, 3 * r + 1 : 3 * r + 2], x[:, 1:2])
        acc = acc.addcmul(t[:, 3 * r + 2 : 3 * r + 3], x[:, 2:3])
        rows.append(acc + b[:, r : r + 1])
    y = torch.cat(rows, dim=1)
    if clamp:
        y = y.clamp(0.0, 1.0)
    return (y - mean) / std


def identity_params(mean: tuple[float, float, float], std: tuple[float, float, float]) -> torch.Tensor:
    """The 12 parameters of the identity transform for a normalisation: ``T = diag(std)``, ``b = mean``."""
    p = torch.zeros(12)
    for c in range(3):
        p[4 * c] = std[c]
        p[9 + c] = mean[c]
    return p


# --------------------------------------------------------------------------- bicubic, separable


def cubic_taps(out_size: int, in_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices ``(out_size, 4)`` (clamped to the input) and float32 weights ``(out_size, 4)``
    of bicubic resizing ``in_size -> out_size`` with half-pixel centres (``align_corners=False``).

    Matches PyTorch's CPU kernel to float32 rounding: ``scale = in/out`` in float32 and
    ``src = scale·(dst + 0.5) − 0.5`` rounded once (the kernel uses a fused multiply-add; a
    separately rounded product shifts ``src`` by up to an ulp, i.e. ~1e-5 on 4000-pixel
    sides), not clamped for cubic; ``t = src − floor(src)``; the cubic weights are evaluated
    in float64 and rounded.
    """
    # computed on the CPU (float64 is not available on every accelerator), then moved
    scale = (torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)).double()
    dst = torch.arange(out_size, dtype=torch.float64)
    src = (scale * (dst + 0.5) - 0.5).float()
    base = torch.floor(src)
    t = (src - base).double()
    a = CUBIC_A

    def near(v: torch.Tensor) -> torch.Tensor:  # |v| <= 1
        return ((a + 2) * v - (a + 3)) * v * v + 1

    def far(v: torch.Tensor) -> torch.Tensor:  # 1 < |v| < 2
        return ((a * v - 5 * a) * v + 8 * a) * v - 4 * a

    weights = torch.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], dim=1).float()
    idx = base.long()[:, None] + torch.arange(-1, 3)[None]
    return idx.clamp_(0, in_size - 1).to(device), weights.to(device)


def _taps_sum(x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
    """``Σ_k w[:, k] · x.index_select(dim, idx[:, k])`` with the weights broadcast along ``dim``."""
    shape = [1] * x.dim()
    shape[dim] = -1
    out = x.index_select(dim, idx[:, 0]) * w[:, 0].reshape(shape)
    for k in range(1, 4):
        out = out + x.index_select(dim, idx[:, k]) * w[:, k].reshape(shape)
    return out


class BicubicRows:
    """Bicubic upsampling of a low-resolution map (N,C,h,w) to (H, W), produced band by band.

    The horizontal pass is done once (N,C,h,W); :meth:`rows` returns output rows ``[y0, y1)``
    as (N,C,y1−y0,W). Equal to ``F.interpolate(x, (H, W), mode="bicubic", align_corners=False)``
    up to float32 rounding. Without autograd, bands are computed in two reused buffers (no
    per-band allocation); the returned tensor is overwritten by the next call then.
    """

    def __init__(self, x: torch.Tensor, size: tuple[int, int]):
        h, w = x.shape[-2:]
        self.size = size
        xi, xw = cubic_taps(size[1], w, x.device)
        self.wide = _taps_sum(x, xi, xw.to(x.dtype), dim=3)
        self.yi, self.yw = cubic_taps(size[0], h, x.device)
        self.yw = self.yw.to(x.dtype)
        self._buf: tuple[torch.Tensor, torch.Tensor] | None = None

    def rows(self, y0: int, y1: int) -> torch.Tensor:
        if torch.is_grad_enabled() and self.wide.requires_grad:
            return _taps_sum(self.wide, self.yi[y0:y1], self.yw[y0:y1], dim=2)
        n, c, _, w = self.wide.shape
        r = y1 - y0
        if self._buf is None or self._buf[0].shape[2] < r:
            self._buf = (self.wide.new_empty((n, c, r, w)), self.wide.new_empty((n, c, r, w)))
        out, tap = self._buf[0][:, :, :r], self._buf[1][:, :, :r]
        idx, wt = self.yi[y0:y1], self.yw[y0:y1]
        torch.index_select(self.wide, 2, idx[:, 0], out=out)
        out.mul_(wt[:, 0].view(1, 1, -1, 1))
        for k in range(1, 4):
            torch.index_select(self.wide, 2, idx[:, k], out=tap)
            out.addcmul_(tap, wt[:, k].view(1, 1, -1, 1))
        return out


# --------------------------------------------------------------------------- full resolution

#: ``rows(y0, y1) -> (normalised image (N,3,R,W), mask (N,1,R,W))`` of the full-resolution input.
RowReader = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
#: ``write(y0, y1, normalised result (N,3,R,W))``.
RowWriter = Callable[[int, int, torch.Tensor], None]


def apply_fullres(
    params: torch.Tensor,
    attention: torch.Tensor | None,
    size: tuple[int, int],
    read: RowReader,
    write: RowWriter,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    tile_rows: int = 128,
    clamp_attention: bool = False,
) -> None:
    """Apply low-resolution PCT parameters at full resolution ``size = (H, W)``, band by band.

    ``params`` (N,12,h,w) and ``attention`` (N,1,h,w) (the CNN's learned blend map; ``None``
    blends with the full-resolution mask, as the ViT does) are upsampled bicubically. Each band:
    ``Y = PCT(I, P_f)·A_f + I·(1 − A_f)`` in the normalised space, handed to ``write``. ``A_f``
    is not clamped unless ``clamp_attention`` (the authors' code does not clamp it).
    Scratch memory is about ``(12·4 + 40)·tile_rows·W`` floats plus ``12·h·W`` for the
    horizontal pass.
    """
    h_out = size[0]
    if tile_rows < 1:
        raise ValueError(f"tile_rows must be >= 1, got {tile_rows}")
    p_rows = BicubicRows(params, size)
    a_rows = BicubicRows(attention, size) if attention is not None else None
    for y0 in range(0, h_out, tile_rows):
        y1 = min(h_out, y0 + tile_rows)
        image, mask = read(y0, y1)
        if a_rows is not None:
            a = a_rows.rows(y0, y1)
            if clamp_attention:
                a = a.clamp(0.0, 1.0)
        else:
            a = mask
        transformed = pct_transform(image, p_rows.rows(y0, y1), mean, std)
        write(y0, y1, transformed * a + image * (1 - a))


__all__ = ["CUBIC_A", "BicubicRows", "apply_fullres", "cubic_taps", "identity_params", "pct_transform"]
