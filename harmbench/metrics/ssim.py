"""SSIM and foreground SSIM (fSSIM), per image, from one SSIM map.

``ssim`` is the mean of the SSIM map over channels and positions; ``fssim`` is
the mask-weighted mean of the same map, ``Σ map·M / (C·ΣM)``. Values lie in
[-1, 1] (1 = identical). Inputs are 0–255 tensors ``(N, C, H, W)`` and a mask
``(N, 1, H, W)`` in [0, 1]; outputs have shape ``(N,)``.

Two conventions are in use in the field and both are expressed by
:class:`SSIMConvention`:

* ``padding="valid"`` — Wang et al. 2004 as implemented by skimage
  ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`` and torchmetrics: Gaussian
  window, statistics only where the window lies fully inside the image (the
  border of ``window // 2`` pixels is dropped from the average), constants
  ``C = (K·L)²`` with ``L = 255``.
* ``padding="zero"`` — Po-Hsun Su's ``pytorch_ssim`` (used by zhenglab's
  ``ih_evaluation.py``): same Gaussian window, zero padding so the map keeps the
  image size, and the constants ``0.01²``/``0.03²`` written for [0, 1] data even
  though 0–255 tensors are passed (``data_range = 1``).

Implementation: the five local statistics (μx, μy, E[x²], E[y²], E[xy]) come
from one separable depthwise convolution in channels-last layout, in float32 on
data centred at the target's channel means (variances are shift-invariant, so
``E[x²] − E[x]²`` keeps full precision); per-image sums are accumulated in
float64. Agreement with skimage's float64 computation is ~1e-7.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from harmbench.errors import UserError
from harmbench.metrics.pixel import per_image_sum

PADDINGS = ("valid", "zero")


@dataclass(frozen=True)
class SSIMConvention:
    """Every choice that defines an SSIM value."""

    name: str
    window: int = 11
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03
    data_range: float = 255.0
    padding: str = "valid"
    description: str = ""

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ValueError(f"SSIM padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"SSIM window must be odd and positive, got {self.window}")

    @property
    def c1(self) -> float:
        return (self.k1 * self.data_range) ** 2

    @property
    def c2(self) -> float:
        return (self.k2 * self.data_range) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


WANG_VALID = SSIMConvention(
    name="gaussian11-valid",
    description="Wang et al. 2004: Gaussian window 11, sigma 1.5, K=(0.01, 0.03), data range 255, "
    "population covariance, mean over windows fully inside the image "
    "(= skimage structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, "
    "data_range=255), averaged over channels)",
)

PYTORCH_SSIM = SSIMConvention(
    name="pytorch_ssim",
    data_range=1.0,
    padding="zero",
    description="pytorch_ssim (Po-Hsun Su) as called by zhenglab ih_evaluation.py: Gaussian window 11, sigma 1.5, "
    "zero padding (same-size map), C1=0.01^2, C2=0.03^2 applied to 0-255 data; "
    "fSSIM = sum(map*M) / (C*sum(M))",
)


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Normalised 1-D Gaussian of odd ``size`` centred at ``size // 2``."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur_valid(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian over the last two dims, valid region only."""
    k, w = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, w).expand(k, 1, 1, w), groups=k)
    return F.conv2d(x, g.view(1, 1, w, 1).expand(k, 1, w, 1), groups=k)


# images per chunk are chosen so the five statistics of one chunk stay cache-sized
_CHUNK_BYTES = 4 * 1024 * 1024


def _map_chunk(pred: Tensor, target: Tensor, conv: SSIMConvention, g: Tensor) -> Tensor:
    n, c, h, w = pred.shape
    if conv.padding == "zero":  # pad the raw data with zeros, then take the valid region
        r = conv.window // 2
        pred, target = F.pad(pred, (r, r, r, r)), F.pad(target, (r, r, r, r))
        h, w = h + 2 * r, w + 2 * r
    # variances are shift-invariant: centre on the target's channel means so float32 keeps
    # full precision in E[x²] − E[x]²; the means are shifted back for the luminance term
    shift = target.mean(dim=(2, 3), keepdim=True)
    # channels-last: oneDNN's depthwise kernels are ~5x faster on NHWC than on NCHW
    buf = torch.empty((n, 5 * c, h, w), dtype=pred.dtype, device=pred.device, memory_format=torch.channels_last)
    x, y = buf[:, :c], buf[:, c : 2 * c]
    torch.sub(pred, shift, out=x)
    torch.sub(target, shift, out=y)
    torch.mul(x, x, out=buf[:, 2 * c : 3 * c])
    torch.mul(y, y, out=buf[:, 3 * c : 4 * c])
    torch.mul(x, y, out=buf[:, 4 * c :])
    mu_x, mu_y, xx, yy, xy = _blur_valid(buf, g).contiguous().split(c, dim=1)
    tmp = mu_x * mu_y
    xy.sub_(tmp).mul_(2.0).add_(conv.c2)  # 2·cov + C2
    xx.add_(yy).addcmul_(mu_x, mu_x, value=-1.0).addcmul_(mu_y, mu_y, value=-1.0).add_(conv.c2)  # σx²+σy²+C2
    mu_x.add_(shift)
    mu_y.add_(shift)
    torch.mul(mu_x, mu_y, out=tmp).mul_(2.0).add_(conv.c1)  # 2·μx·μy + C1
    yy = mu_x.mul_(mu_x).addcmul_(mu_y, mu_y).add_(conv.c1)  # μx²+μy²+C1
    return tmp.mul_(xy).div_(yy.mul_(xx))


def _chunks(pred: Tensor, target: Tensor, conv: SSIMConvention, stats_dtype: torch.dtype):
    """Yield ``(start, map_chunk)`` over the batch."""
    n, c, h, w = pred.shape
    if conv.padding == "valid" and (h < conv.window or w < conv.window):
        raise UserError(f"image size {h}x{w} is smaller than the SSIM window ({conv.window}); use a larger resize")
    g = gaussian_window(conv.window, conv.sigma, stats_dtype, pred.device)
    per_image = 5 * c * (h + conv.window) * (w + conv.window) * g.element_size()
    step = n if pred.device.type != "cpu" else max(1, _CHUNK_BYTES // per_image)
    for i in range(0, n, step):
        p = pred[i : i + step].to(stats_dtype)
        t = target[i : i + step].to(stats_dtype)
        yield i, _map_chunk(p, t, conv, g)


def ssim_map(pred: Tensor, target: Tensor, conv: SSIMConvention, stats_dtype: torch.dtype = torch.float32) -> Tensor:
    """Local SSIM map ``(N, C, H', W')``; ``H' = H - window + 1`` for ``"valid"``, ``H`` for ``"zero"``.

    Local statistics are computed in ``stats_dtype`` (float32 by default: float64
    depthwise convolutions are an order of magnitude slower on CPU) on data centred at
    the target's per-channel mean, which keeps ``E[x²] − E[x]²`` accurate: SSIM agrees
    with skimage's float64 to ~1e-7. On CPU images go through in cache-sized chunks.
    """
    return torch.cat([m for _, m in _chunks(pred, target, conv, stats_dtype)])


def crop_to_map(mask: Tensor, conv: SSIMConvention) -> Tensor:
    """The part of ``mask`` that the SSIM map covers (drops the border for ``"valid"``)."""
    if conv.padding == "zero":
        return mask
    r = conv.window // 2
    if r == 0:
        return mask
    return mask[..., r:-r, r:-r]


def ssim_fssim(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    conv: SSIMConvention = WANG_VALID,
    dtype: torch.dtype = torch.float64,
    stats_dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Per-image ``(ssim, fssim)``, each ``(N,)`` in ``dtype`` (the reduction dtype).

    An empty foreground gives fSSIM ``nan``.
    """
    m = crop_to_map(mask, conv)
    msum = per_image_sum(m, dtype)
    total = torch.empty(pred.shape[0], dtype=dtype, device=pred.device)
    fg = torch.empty_like(total)
    for i, smap in _chunks(pred, target, conv, stats_dtype):
        j = i + smap.shape[0]
        total[i:j] = per_image_sum(smap, dtype)
        fg[i:j] = per_image_sum(smap * m[i:j].to(smap.dtype), dtype)
    c = pred.shape[1]
    npix = m.shape[-2] * m.shape[-1]
    return total / (c * npix), fg / (c * msum)


def ssim(pred: Tensor, target: Tensor, conv: SSIMConvention = WANG_VALID) -> Tensor:
    """Per-image SSIM ``(N,)`` (float64) under ``conv``."""
    smap = ssim_map(pred, target, conv)
    return per_image_sum(smap, torch.float64) / smap[0].numel()


