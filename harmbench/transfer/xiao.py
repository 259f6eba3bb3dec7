"""Xiao & Ma 2006 mean/covariance colour transfer in RGB, restricted to a mask.

As iHarmony4's ``global_color_transfer_rgb/transform_image.m``::

    x' = μ_ref + U_ref·S_ref^{1/2}·S_fg^{-1/2}·U_fgᵀ·(x − μ_fg)

with ``C = U·S·Uᵀ`` the eigendecompositions of the two RGB covariances (N−1),
eigenvalues paired in ascending order. The result has exactly the reference's
mean and covariance (before clipping to 0–1). Linear, so the 0–1 scale used
here gives the same colours as MATLAB's 0–255.

Defined choices:

* eigenvector signs are fixed (component sum ≥ 0, ties by the largest
  component), so brighter stays brighter along paired axes; LAPACK's signs are
  arbitrary and can invert an axis;
* foreground directions with (numerically) zero variance get a zero gain
  (pseudo-inverse): a single-colour foreground becomes the reference mean, a
  grey one varies along the reference's principal axis only;
* a region of one pixel has zero covariance.
"""

from __future__ import annotations

import numpy as np

from harmbench.transfer import register_transfer
from harmbench.transfer._common import composite, gather

# Eigenvalues below this fraction of the largest (or below the absolute floor) count as zero.
_REL_EIG_EPS = 1e-10
_ABS_EIG_EPS = 1e-14


def mean_cov(px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(3,)`` and covariance ``(3, 3)`` (N−1) of pixels ``(N, 3)``; zero covariance if N < 2."""
    mu = px.mean(axis=0)
    if len(px) < 2:
        return mu, np.zeros((3, 3))
    d = px - mu
    return mu, d.T @ d / (len(px) - 1)


def _eig_fixed_sign(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = np.linalg.eigh(cov)
    s = vecs.sum(axis=0)
    big = vecs[np.argmax(np.abs(vecs), axis=0), np.arange(3)]
    sign = np.where(np.abs(s) > 1e-12, np.sign(s), np.sign(big))
    return np.clip(vals, 0.0, None), vecs * sign


def xiao_matrix(cov_fg: np.ndarray, cov_ref: np.ndarray) -> np.ndarray:
    """Linear part ``A`` (3×3) with ``A·C_fg·Aᵀ = C_ref`` on the foreground's non-degenerate axes."""
    s_fg, u_fg = _eig_fixed_sign(cov_fg)
    s_ref, u_ref = _eig_fixed_sign(cov_ref)
    floor = max(_ABS_EIG_EPS, _REL_EIG_EPS * float(s_fg.max()))
    inv_sqrt = np.divide(1.0, np.sqrt(s_fg), out=np.zeros(3), where=s_fg > floor)
    return u_ref @ np.diag(np.sqrt(s_ref) * inv_sqrt) @ u_fg.T


@register_transfer("xiao", crop="mask", cost=0.14)
def xiao(
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Xiao–Ma RGB mean/covariance transfer from ``ref_image[ref_mask]`` onto ``image[mask]``.

    0–1 float in and out (clipped); ``rng`` is unused.
    """
    fg, ref = gather("xiao", image, mask, ref_image, ref_mask)
    mu_fg, cov_fg = mean_cov(fg)
    mu_ref, cov_ref = mean_cov(ref)
    a = xiao_matrix(cov_fg, cov_ref)
    return composite(image, mask, (fg - mu_fg) @ a.T + mu_ref)
