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

Implementation: the local statistics come from one separable Gaussian blur (a
horizontal then a vertical 1-D pass) of four planes per channel — x, y, x² + y²
and x·y, since SSIM needs σx² and σy² only as their sum — in float32 on data
centred at the target's channel means (variances are shift-invariant, so
``E[x²] − E[x]²`` keeps full precision). On CPU the blur is OpenCV's
``sepFilter2D`` over all planes stacked into one tall image (rows outside a
plane only reach the border, which is cropped), with as many threads as torch
uses; on other devices it is a grouped ``conv2d``. Conventions whose
constants are written for 0–1 data get float64 statistics
(:func:`stats_dtype_for`). Per-image sums are accumulated in float64.
Agreement with skimage's / the reference's float64 computation is ~1e-7.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import torch
import torch.nn.functional as F
from torch import Tensor

from harmbench.errors import UserError
from harmbench.metrics.pixel import per_image_sum
from harmbench.metrics.scratch import scratch

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


# planes of one CPU chunk (four per channel, float32) are kept near cache size; an image whose
# planes exceed _SPLIT_BYTES goes through one channel at a time (a third of the memory)
_CHUNK_BYTES = 4 * 1024 * 1024
_SPLIT_BYTES = 64 * 1024 * 1024
_N_PLANES = 4  # x, y, x² + y², x·y


def _blur_torch(planes: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian of ``(n, k, h, w)`` planes (valid region) as two grouped 1-D convolutions."""
    k, w = planes.shape[1], g.numel()
    x = F.conv2d(planes, g.view(1, 1, 1, w).expand(k, 1, 1, w), groups=k)
    return F.conv2d(x, g.view(1, 1, w, 1).expand(k, 1, w, 1), groups=k)


def _blur_cv2(planes: Tensor, g: Tensor) -> Tensor:
    """:func:`_blur_torch` with OpenCV on CPU: all planes stacked into one ``(n·k·h, w)`` image.

    Valid outputs of a plane only read rows of that plane, so stacking is exact once the
    border of ``len(g) // 2`` pixels is cropped. OpenCV runs with torch's thread count.
    """
    n, k, h, w = planes.shape
    r = g.numel() // 2
    src = planes.reshape(n * k * h, w).numpy()
    out = scratch("ssim.blurred", (n, k, h, w), planes.dtype)
    kern = g.numpy()
    threads = cv2.getNumThreads()
    wanted = torch.get_num_threads()
    if threads != wanted:
        cv2.setNumThreads(wanted)
    try:
        cv2.sepFilter2D(src, -1, kern, kern, dst=out.view(n * k * h, w).numpy(), borderType=cv2.BORDER_CONSTANT)
    finally:
        if threads != wanted:
            cv2.setNumThreads(threads)
    return out[..., r : h - r, r : w - r]


def _blur(planes: Tensor, g: Tensor) -> Tensor:
    if planes.device.type == "cpu" and planes.dtype in (torch.float32, torch.float64):
        return _blur_cv2(planes, g)
    return _blur_torch(planes, g)


def _map_chunk(pred: Tensor, target: Tensor, conv: SSIMConvention, g: Tensor) -> Tensor:
    """SSIM map ``(n, c, h', w')`` of one chunk (``stats_dtype`` tensors on one device).

    On CPU the map lives in this thread's scratch memory: valid until the next call.
    """
    n, c, h, w = pred.shape
    if conv.padding == "zero":  # pad the raw data with zeros, then take the valid region
        r = conv.window // 2
        pred, target = F.pad(pred, (r, r, r, r)), F.pad(target, (r, r, r, r))
        h, w = h + 2 * r, w + 2 * r
    # variances are shift-invariant: centre on the target's channel means so float32 keeps
    # full precision in E[x²] − E[x]²; the means are shifted back for the luminance term
    shift = target.mean(dim=(2, 3), keepdim=True)
    buf = scratch("ssim.planes", (n, _N_PLANES * c, h, w), pred.dtype, pred.device)
    x, y, s, xy = buf.split(c, dim=1)
    torch.sub(pred, shift, out=x)
    torch.sub(target, shift, out=y)
    torch.mul(x, x, out=s).addcmul_(y, y)
    torch.mul(x, y, out=xy)
    mu_x, mu_y, s, xy = _blur(buf, g).split(c, dim=1)  # blurred planes, updated in place below
    del buf
    cs_num = xy.addcmul_(mu_x, mu_y, value=-1.0).mul_(2.0).add_(conv.c2)  # 2·cov + C2
    cs_den = s.addcmul_(mu_x, mu_x, value=-1.0).addcmul_(mu_y, mu_y, value=-1.0).add_(conv.c2)  # σx²+σy²+C2
    mu_x.add_(shift)
    mu_y.add_(shift)
    c1 = torch.tensor(conv.c1, dtype=mu_x.dtype, device=mu_x.device)
    l_num = scratch("ssim.map", mu_x.shape, mu_x.dtype, mu_x.device)
    torch.addcmul(c1, mu_x, mu_y, value=2.0, out=l_num)  # 2·μx·μy + C1
    l_den = mu_x.mul_(mu_x).addcmul_(mu_y, mu_y).add_(c1)  # μx²+μy²+C1
    return l_num.mul_(cs_num).div_(l_den.mul_(cs_den))


def stats_dtype_for(conv: SSIMConvention, device: torch.device | str = "cpu") -> torch.dtype:
    """The dtype of the local statistics that keeps ``conv``'s SSIM at float64 accuracy.

    float32 (centred data) leaves an absolute error of ~1e-3 in ``σx² + σy²`` of 0–255
    images, negligible next to ``C2 = (0.03·255)²``; constants written for 0–1 data
    (``pytorch_ssim``: ``C2 = 0.03²`` on 0–255 values) are of that size, so those
    conventions get float64 (float32 on MPS, which has no float64).
    """
    if conv.c2 < 1.0 and torch.device(device).type != "mps":
        return torch.float64
    return torch.float32


def _chunks(pred: Tensor, target: Tensor, conv: SSIMConvention, stats_dtype: torch.dtype | None):
    """Yield ``(images, channels, map_chunk)`` (two slices) covering the batch.

    On CPU a chunk holds a few images (cache-sized) or, for an image whose planes exceed
    :data:`_SPLIT_BYTES` (full-resolution photos), one channel of one image.
    """
    stats_dtype = stats_dtype or stats_dtype_for(conv, pred.device)
    n, c, h, w = pred.shape
    if conv.padding == "valid" and (h < conv.window or w < conv.window):
        raise UserError(f"image size {h}x{w} is smaller than the SSIM window ({conv.window}); use a larger resize")
    g = gaussian_window(conv.window, conv.sigma, stats_dtype, pred.device)
    per_image = _N_PLANES * c * (h + conv.window) * (w + conv.window) * g.element_size()
    cpu = pred.device.type == "cpu"
    step = n if not cpu else max(1, _CHUNK_BYTES // per_image)
    c_step = 1 if cpu and per_image > _SPLIT_BYTES else c
    for i in range(0, n, step):
        for k in range(0, c, c_step):
            images, channels = slice(i, i + step), slice(k, k + c_step)
            p = pred[images, channels].to(stats_dtype)
            t = target[images, channels].to(stats_dtype)
            yield images, channels, _map_chunk(p, t, conv, g)


def ssim_map(pred: Tensor, target: Tensor, conv: SSIMConvention, stats_dtype: torch.dtype | None = None) -> Tensor:
    """Local SSIM map ``(N, C, H', W')``; ``H' = H - window + 1`` for ``"valid"``, ``H`` for ``"zero"``.

    Local statistics are computed in ``stats_dtype`` (default :func:`stats_dtype_for`:
    float32 unless the convention's constants need float64) on data centred
    at the target's per-channel mean, which keeps ``E[x²] − E[x]²`` accurate: SSIM agrees
    with skimage's float64 to ~1e-7. On CPU images go through in cache-sized chunks.
    """
    n, c = pred.shape[:2]
    out = None
    for images, channels, smap in _chunks(pred, target, conv, stats_dtype):
        if out is None:
            out = smap.new_empty((n, c, *smap.shape[2:]))
        out[images, channels] = smap
    return out


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
    stats_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-image ``(ssim, fssim)``, each ``(N,)`` in ``dtype`` (the reduction dtype).

    An empty foreground gives fSSIM ``nan``.
    """
    m = crop_to_map(mask, conv)
    msum = per_image_sum(m, dtype)
    total = torch.zeros(pred.shape[0], dtype=dtype, device=pred.device)
    fg = torch.zeros_like(total)
    for images, _, smap in _chunks(pred, target, conv, stats_dtype):
        per_pixel = smap.sum(dim=1)  # over the chunk's channels: (n, H', W')
        total[images] += per_image_sum(per_pixel, dtype)
        fg[images] += per_image_sum(per_pixel.mul_(m[images, 0].to(smap.dtype)), dtype)
    c = pred.shape[1]
    npix = m.shape[-2] * m.shape[-1]
    return total / (c * npix), fg / (c * msum)


def ssim(pred: Tensor, target: Tensor, conv: SSIMConvention = WANG_VALID) -> Tensor:
    """Per-image SSIM ``(N,)`` (float64) under ``conv``."""
    smap = ssim_map(pred, target, conv)
    return per_image_sum(smap, torch.float64) / smap[0].numel()
