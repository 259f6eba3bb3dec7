"""Pitié et al. 2007 iterative distribution transfer (IDT) + regrain, restricted to a mask.

As iHarmony4's ``idt_grain_color_transfer/{idt,idt_transfer,pdf_transfer,regrain}.m``
(after frcs/colour-transfer), on RGB in 0–1:

1. D0 = foreground pixels, D1 = reference pixels (3×N).
2. ``iterations`` rotations: R₁ = the 3 identity axes plus (2/3, 2/3, −1/3),
   (2/3, −1/3, 2/3), (−1/3, 2/3, 2/3); Rᵢ = R₁·Q with Q a random orthogonal
   3×3 matrix from the generator.
3. Per rotation and axis: project both sets; 300-bin histograms with centres
   spread over the joint range [min − eps, max + eps] (nearest-centre bins, as
   MATLAB ``hist``); CDFs of (hist + 1e-6), normalised; the transport map
   f = CDF_ref⁻¹(CDF_src) on bin indices (linear, clamped to [0, 299]);
   projections mapped through f.
4. D0 += R⁺·(D0R' − D0R) (least-squares back-projection, relaxation 1).
5. Optional regrain: the IDT colours with the original's gradients
   (:func:`regrain`), on the whole frame with pixels outside the mask zeroed,
   as ``idt.m`` does.

Regrain starts from the original image (as ``regrain.m``) and relies on
its coarse levels to carry the new colours: on photo-sized frames (≥ ~256 px
a side, 4+ pyramid levels) it converges; on small frames (< ~128 px) the
colour change is only partly applied. Cost at 640×480: about as much as
the IDT itself (see ``idt``).

Deviations: iHarmony4's ``pdf_transfer.m`` subtracts 1 from the 0-based bin
index before mapping back (a one-bin shift, ≈ range/299, per axis); that
shift is not reproduced. A single-colour foreground is set to the reference
mean (IDT would send a point mass to the top of the reference range).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from harmbench.transfer import register_transfer
from harmbench.transfer._common import composite, fresh_rng, gather

R1 = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [2 / 3, 2 / 3, -1 / 3],
        [2 / 3, -1 / 3, 2 / 3],
        [-1 / 3, 2 / 3, 2 / 3],
    ]
)
_EPS = np.finfo(np.float64).eps


def random_orthogonal(rng: np.random.Generator) -> np.ndarray:
    """Haar-random orthogonal 3×3 matrix (QR of a Gaussian matrix, sign-corrected)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def idt_rotations(iterations: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``[R₁, R₁·Q₂, …]``: the fixed 6-axis frame, then random orthogonal rotations of it."""
    return [R1] + [R1 @ random_orthogonal(rng) for _ in range(iterations - 1)]


def pdf_transfer(d0: np.ndarray, d1: np.ndarray, rotations: list[np.ndarray], bins: int = 300) -> np.ndarray:
    """Move point set ``d0 (N, 3)`` towards the distribution of ``d1 (M, 3)`` (any scale)."""
    d0 = np.ascontiguousarray(d0.T, dtype=np.float64)  # (3, N)
    d1 = np.ascontiguousarray(d1.T, dtype=np.float64)
    damping = 1e-6
    centres = np.arange(bins, dtype=np.float64)
    for rot in rotations:
        p0 = rot @ d0  # (P, N)
        p1 = rot @ d1
        n_axes = rot.shape[0]
        lo = np.minimum(p0.min(axis=1), p1.min(axis=1)) - _EPS
        hi = np.maximum(p0.max(axis=1), p1.max(axis=1)) + _EPS
        span = hi - lo
        live = span > 1e-12
        step = np.where(live, span / (bins - 1), 1.0)[:, None]
        offs = (np.arange(n_axes) * bins)[:, None]
        x0 = (p0 - lo[:, None]) / step  # continuous bin coordinate, 0..bins-1
        x1 = (p1 - lo[:, None]) / step
        # histograms with nearest-centre bins (MATLAB hist with bin centres)
        i0 = np.clip(np.floor(x0 + 0.5), 0, bins - 1).astype(np.int64) + offs
        i1 = np.clip(np.floor(x1 + 0.5), 0, bins - 1).astype(np.int64) + offs
        h0 = np.bincount(i0.ravel(), minlength=n_axes * bins).reshape(n_axes, bins) + damping
        h1 = np.bincount(i1.ravel(), minlength=n_axes * bins).reshape(n_axes, bins) + damping
        c0 = np.cumsum(h0, axis=1)
        c0 /= c0[:, -1:]
        c1 = np.cumsum(h1, axis=1)
        c1 /= c1[:, -1:]
        # transport map on bin indices f = CDF_ref^-1(CDF_src), clamped to [0, bins-1]
        f = np.stack([np.interp(c0[a], c1[a], centres) for a in range(n_axes)])
        f[~live] = centres
        # piecewise-linear evaluation of f at x0, per axis
        k = np.clip(np.floor(x0), 0, bins - 2).astype(np.int64)
        t = x0 - k
        k += offs
        ff = f.ravel()
        lo_v = ff[k]
        mapped = lo_v + t * (ff[k + 1] - lo_v)
        delta = (mapped - x0) * step
        d0 += np.linalg.pinv(rot) @ delta
    return np.ascontiguousarray(d0.T)


# --------------------------------------------------------------------------
# regrain


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of MATLAB ``imresize(..., 'bilinear')`` along one axis.

    Triangle kernel, widened by 1/scale when shrinking (MATLAB's default
    antialiasing), symmetric boundary, rows normalised to 1.
    """
    scale = n_out / n_in
    aa = scale < 1
    width = 2.0 / scale if aa else 2.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    if aa:
        w = scale * np.maximum(0.0, 1 - np.abs(scale * dist))
    else:
        w = np.maximum(0.0, 1 - np.abs(dist))
    w /= w.sum(axis=1, keepdims=True)
    # symmetric padding of 1-based indices -> 0-based
    period = 2 * n_in
    j = np.mod(idx - 1, period)
    j = np.where(j >= n_in, period - 1 - j, j).astype(np.int64)
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.repeat(np.arange(n_out), taps), j.ravel()), w.ravel())
    return out


def imresize_bilinear(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """MATLAB-style bilinear resize of float ``(H, W, C)`` to ``shape = (h, w)`` (same dtype)."""
    h, w, c = img.shape
    a_h = sparse.csr_matrix(_resize_matrix(h, shape[0]).astype(img.dtype))
    a_w = sparse.csr_matrix(_resize_matrix(w, shape[1]).astype(img.dtype))
    tmp = (a_h @ img.reshape(h, w * c)).reshape(shape[0], w, c)
    tmp = a_w @ np.ascontiguousarray(tmp.transpose(1, 0, 2)).reshape(w, shape[0] * c)
    return np.ascontiguousarray(tmp.reshape(shape[1], shape[0], c).transpose(1, 0, 2))


def _shifts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edge-replicated neighbours (right, down, left, up) of a 2-D/3-D array."""
    right = np.concatenate([a[:, 1:], a[:, -1:]], axis=1)
    down = np.concatenate([a[1:], a[-1:]], axis=0)
    left = np.concatenate([a[:, :1], a[:, :-1]], axis=1)
    up = np.concatenate([a[:1], a[:-1]], axis=0)
    return right, down, left, up


def _add_weighted_neighbours(out: np.ndarray, w: tuple[np.ndarray, ...], a: np.ndarray) -> None:
    """``out += Σ_k w_k · a[neighbour_k]`` (right, down, left, up; edge-replicated)."""
    wr, wd, wl, wu = w
    out[:, :-1] += wr[:, :-1] * a[:, 1:]
    out[:, -1:] += wr[:, -1:] * a[:, -1:]
    out[:-1] += wd[:-1] * a[1:]
    out[-1:] += wd[-1:] * a[-1:]
    out[:, 1:] += wl[:, 1:] * a[:, :-1]
    out[:, :1] += wl[:, :1] * a[:, :1]
    out[1:] += wu[1:] * a[:-1]
    out[:1] += wu[:1] * a[:1]


def _solve(irr: np.ndarray, i0: np.ndarray, ir: np.ndarray, n_iter: int, smoothness: float, level: int) -> np.ndarray:
    """``n_iter`` damped Jacobi sweeps of the regrain system at one pyramid level."""
    r, d, l_, u = _shifts(i0)
    grad = np.sqrt(((r - l_) ** 2 + (d - u) ** 2).sum(axis=2, dtype=np.float64))
    psi = np.minimum(256.0 * grad / 5.0, 1.0)
    phi = 30.0 / (1.0 + 10.0 * grad / max(smoothness, _EPS)) * 2.0 ** (-level)
    phis = tuple(((p + phi) / 2.0)[..., None].astype(irr.dtype) for p in _shifts(phi))
    rho = 0.2
    # scale = (1 - ρ)/(ψ + Σφ + eps); base = ψ·IR + Σ φ_k·(I0 − I0[k])
    scale = ((1 - rho) / (psi + sum(p[..., 0] for p in phis) + _EPS))[..., None].astype(irr.dtype)
    base = psi[..., None] * ir + sum(phis) * i0
    _add_weighted_neighbours(base, tuple(-p for p in phis), i0)
    base = base.astype(irr.dtype)
    num = np.empty_like(irr)
    for _ in range(n_iter):
        num[...] = base
        _add_weighted_neighbours(num, phis, irr)
        num *= scale
        num += rho * irr
        irr, num = num, irr
    return irr


def regrain(original: np.ndarray, graded: np.ndarray, smoothness: float = 1.0) -> np.ndarray:
    """Pitié's regrain: colours of ``graded`` with the gradients of ``original``.

    ``(H, W, 3)`` float on 0–1, same shape; returns float64 (unclipped).
    Coarse-to-fine: halve (``ceil``) while both halves exceed 20 px, at most
    6 levels, Jacobi iterations 4, 16, 32, 64, 64, 64 from fine to coarse;
    ψ = min(256|∇I₀|/5, 1), φ = 30/(1 + 10|∇I₀|/smoothness)·2^(−level),
    damping ρ = 1/5. ``smoothness = 0`` returns ``graded``.
    """
    if smoothness <= 0:
        return np.asarray(graded, dtype=np.float64)
    # float32 state: the Jacobi sweeps are memory-bound, and 0–1 colours need no more
    i0 = np.asarray(original, dtype=np.float32)
    ir = np.asarray(graded, dtype=np.float32)
    return _regrain_rec(i0.copy(), i0, ir, [4, 16, 32, 64, 64, 64], smoothness, 0).astype(np.float64)


def _regrain_rec(irr, i0, ir, n_iters, smoothness, level):
    h, w = i0.shape[:2]
    h2, w2 = -(-h // 2), -(-w // 2)
    if len(n_iters) > 1 and h2 > 20 and w2 > 20:
        shape = (h2, w2)
        irr2 = _regrain_rec(
            imresize_bilinear(irr, shape),
            imresize_bilinear(i0, shape),
            imresize_bilinear(ir, shape),
            n_iters[1:],
            smoothness,
            level + 1,
        )
        irr = imresize_bilinear(irr2, (h, w))
    return _solve(irr, i0, ir, n_iters[0], smoothness, level)


_regrain_full = regrain  # the op's ``regrain`` flag shadows the name inside it


def _sample_idt(rng: np.random.Generator) -> dict:
    return {"seed": int(rng.integers(0, 2**31 - 1))}


@register_transfer("idt", sampler=_sample_idt)
def idt(
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    iterations: int = 10,
    bins: int = 300,
    regrain: bool = True,
    smoothness: float = 1.0,
) -> np.ndarray:
    """IDT from ``ref_image[ref_mask]`` onto ``image[mask]``, then (by default) regrain.

    0–1 float in and out (clipped). The random rotations come from
    ``np.random.default_rng(seed)``; without ``seed`` it is drawn from ``rng``
    exactly as ``sample_params('idt', rng)`` does (fresh entropy if no ``rng``).
    ``regrain=False`` skips the grain-removal pass (it runs on the whole frame
    and costs about as much as the IDT itself at 640×480).
    """
    fg, ref = gather("idt", image, mask, ref_image, ref_mask)
    if iterations < 1 or bins < 2:
        raise ValueError(f"idt: iterations must be >= 1 and bins >= 2, got {iterations}, {bins}")
    if seed is None:
        seed = _sample_idt(fresh_rng(rng))["seed"]
    rotations = idt_rotations(iterations, np.random.default_rng(seed))
    if np.ptp(fg, axis=0).max() <= 1e-12:
        return composite(image, mask, np.broadcast_to(ref.mean(axis=0), fg.shape))
    new = pdf_transfer(fg, ref, rotations, bins)
    if regrain:
        i0 = np.zeros(image.shape, dtype=np.float64)
        i0[mask] = fg
        ir = np.zeros_like(i0)
        ir[mask] = new
        new = _regrain_full(i0, ir, smoothness)[mask]
    return composite(image, mask, new)

