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

Only the foreground's result is kept, so the op computes just what it needs,
with results identical to the plain formulation above: the point-set transfer
runs once per distinct colour (weighted by its pixel count) when the input
came from 8-bit data, in bounded chunks; regrain (:func:`regrain_masked`)
computes each pyramid level only on the window the foreground's output depends
on (the frame's pyramid geometry is kept; pixels outside the mask are zero).
Callers may pass a window of the frame with ``frame=(H, W, top, left)``.

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

import itertools

import numpy as np
from scipy import sparse

from harmbench.arrays import put_masked, swap_rows_cols, take_masked
from harmbench.transfer import register_transfer
from harmbench.transfer._common import composite, fresh_rng, gather, unique_colours

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


# Points per chunk in :func:`pdf_transfer_weighted`: (6, chunk) float64 temporaries stay ~12 MB.
_CHUNK = 1 << 18


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` covering ``range(n)`` in pieces of ``size``; no piece of 1 unless ``n == 1``."""
    cuts = list(range(0, n, size)) + [n]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] == 1:
        del cuts[-2]
    return list(itertools.pairwise(cuts))


def _apply(m: np.ndarray, pts: np.ndarray, pad: bool) -> np.ndarray:
    """``m @ pts`` for a C-contiguous ``(3 or 6, n)`` block; a lone column is computed as part of two.

    BLAS multiplies a single column by another code path (last-bit differences), so
    ``pad`` (the full set has more than one point) keeps every column on the matrix path.
    """
    if pad and pts.shape[1] == 1:
        return (m @ np.repeat(pts, 2, axis=1))[:, :1]
    return m @ pts


def pdf_transfer_weighted(
    d0: np.ndarray,
    d1: np.ndarray,
    rotations: list[np.ndarray],
    bins: int = 300,
    *,
    w0: np.ndarray | None = None,
    w1: np.ndarray | None = None,
    n0: int | None = None,
    n1: int | None = None,
    chunk: int = _CHUNK,
) -> np.ndarray:
    """:func:`pdf_transfer` on points with multiplicities, in chunks; bit-identical results.

    ``d0 (K0, 3)`` / ``d1 (K1, 3)`` are distinct points standing for ``w0`` /
    ``w1`` copies each (None: one each); ``n0``/``n1`` the sizes of the full
    sets (default ``K``). Moving ``d0`` then expanding equals moving the full
    set: a point's update depends only on its own value and on the
    histograms, whose (integer) counts are the same. Chunking bounds memory.
    """
    d0 = np.ascontiguousarray(d0.T, dtype=np.float64)  # (3, K0)
    d1 = np.ascontiguousarray(d1.T, dtype=np.float64)
    k0, k1 = d0.shape[1], d1.shape[1]
    pad0 = (k0 if n0 is None else n0) > 1
    pad1 = (k1 if n1 is None else n1) > 1
    spans0, spans1 = _spans(k0, chunk), _spans(k1, chunk)
    damping = 1e-6
    centres = np.arange(bins, dtype=np.float64)

    def block(d: np.ndarray, a: int, b: int, spans) -> np.ndarray:
        return d if len(spans) == 1 else np.ascontiguousarray(d[:, a:b])

    for rot in rotations:
        n_axes = rot.shape[0]
        pinv = np.linalg.pinv(rot)
        lo = np.full(n_axes, np.inf)
        hi = np.full(n_axes, -np.inf)
        for d, spans, pad in ((d0, spans0, pad0), (d1, spans1, pad1)):
            for a, b in spans:
                p = _apply(rot, block(d, a, b, spans), pad)
                lo = np.minimum(lo, p.min(axis=1))
                hi = np.maximum(hi, p.max(axis=1))
        lo -= _EPS
        hi += _EPS
        span = hi - lo
        live = span > 1e-12
        step = np.where(live, span / (bins - 1), 1.0)[:, None]
        offs = (np.arange(n_axes) * bins)[:, None]
        hists = []
        for d, spans, pad, w in ((d0, spans0, pad0, w0), (d1, spans1, pad1, w1)):
            h = np.zeros(n_axes * bins, dtype=np.int64 if w is None else np.float64)
            for a, b in spans:
                x = (_apply(rot, block(d, a, b, spans), pad) - lo[:, None]) / step
                i = np.clip(np.floor(x + 0.5), 0, bins - 1).astype(np.int64) + offs
                if w is None:
                    h += np.bincount(i.ravel(), minlength=n_axes * bins)
                else:  # integer-valued float64 sums: exact
                    h += np.bincount(
                        i.ravel(), weights=np.broadcast_to(w[a:b], i.shape).ravel(), minlength=n_axes * bins
                    )
            hists.append(h.reshape(n_axes, bins) + damping)
        c0 = np.cumsum(hists[0], axis=1)
        c0 /= c0[:, -1:]
        c1 = np.cumsum(hists[1], axis=1)
        c1 /= c1[:, -1:]
        f = np.stack([np.interp(c0[a], c1[a], centres) for a in range(n_axes)])
        f[~live] = centres
        ff = f.ravel()
        for a, b in spans0:
            x0 = (_apply(rot, block(d0, a, b, spans0), pad0) - lo[:, None]) / step
            k = np.clip(np.floor(x0), 0, bins - 2).astype(np.int64)
            t = x0 - k
            k += offs
            lo_v = ff[k]
            mapped = lo_v + t * (ff[k + 1] - lo_v)
            delta = (mapped - x0) * step
            if len(spans0) == 1:
                d0 += _apply(pinv, delta, pad0)
            else:
                d0[:, a:b] += _apply(pinv, delta, pad0)
    return np.ascontiguousarray(d0.T)


def idt_points(fg: np.ndarray, ref: np.ndarray, rotations: list[np.ndarray], bins: int = 300) -> np.ndarray:
    """``pdf_transfer(fg, ref, rotations, bins)``, once per distinct colour when the pixels came from 8-bit data."""
    a = unique_colours(fg)
    b = unique_colours(ref)
    d0, w0, inv = (fg, None, None) if a is None else (a[0], a[2].astype(np.float64), a[1])
    d1, w1 = (ref, None) if b is None else (b[0], b[2].astype(np.float64))
    if w0 is not None and w1 is None:
        w1 = np.ones(len(d1))
    if w1 is not None and w0 is None:
        w0 = np.ones(len(d0))
    out = pdf_transfer_weighted(d0, d1, rotations, bins, w0=w0, w1=w1, n0=len(fg), n1=len(ref))
    return out if inv is None else out[inv]


# --------------------------------------------------------------------------
# regrain


def _resize_taps(n_in: int, n_out: int, r0: int = 0, r1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Taps ``(j, w)``, each ``(rows, taps)``, of output rows ``r0:r1`` of :func:`_resize_matrix`.

    ``j`` are 0-based input indices (symmetric padding applied), ``w`` the
    normalised weights; a row's taps do not depend on which rows are asked for.
    """
    r1 = n_out if r1 is None else r1
    scale = n_out / n_in
    aa = scale < 1
    width = 2.0 / scale if aa else 2.0
    u = np.arange(r0 + 1, r1 + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
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
    return j, w


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of MATLAB ``imresize(..., 'bilinear')`` along one axis.

    Triangle kernel, widened by 1/scale when shrinking (MATLAB's default
    antialiasing), symmetric boundary, rows normalised to 1.
    """
    j, w = _resize_taps(n_in, n_out)
    taps = j.shape[1]
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.repeat(np.arange(n_out), taps), j.ravel()), w.ravel())
    return out


def imresize_bilinear(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """MATLAB-style bilinear resize of float ``(H, W, C)`` to ``shape = (h, w)`` (same dtype)."""
    h, w, c = img.shape
    a_h = sparse.csr_matrix(_resize_matrix(h, shape[0]).astype(img.dtype))
    a_w = sparse.csr_matrix(_resize_matrix(w, shape[1]).astype(img.dtype))
    tmp = (a_h @ img.reshape(h, w * c)).reshape(shape[0], w, c)
    tmp = a_w @ swap_rows_cols(tmp).reshape(w, shape[0] * c)
    return swap_rows_cols(tmp.reshape(shape[1], shape[0], c))


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """Edge-replicated neighbour ``k`` (0 right, 1 down, 2 left, 3 up) of a 2-D/3-D array."""
    if k == 0:
        return np.concatenate([a[:, 1:], a[:, -1:]], axis=1)
    if k == 1:
        return np.concatenate([a[1:], a[-1:]], axis=0)
    if k == 2:
        return np.concatenate([a[:, :1], a[:, :-1]], axis=1)
    return np.concatenate([a[:1], a[:-1]], axis=0)


def _shifts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edge-replicated neighbours (right, down, left, up) of a 2-D/3-D array."""
    return _shift(a, 0), _shift(a, 1), _shift(a, 2), _shift(a, 3)


def _neighbour_terms(out: np.ndarray, w: tuple[np.ndarray, ...], a: np.ndarray):
    """``(out part, weight part, neighbour part)`` triples of :func:`_add_weighted_neighbours`, in its order."""
    wr, wd, wl, wu = w
    return (
        (out[:, :-1], wr[:, :-1], a[:, 1:]),
        (out[:, -1:], wr[:, -1:], a[:, -1:]),
        (out[:-1], wd[:-1], a[1:]),
        (out[-1:], wd[-1:], a[-1:]),
        (out[:, 1:], wl[:, 1:], a[:, :-1]),
        (out[:, :1], wl[:, :1], a[:, :1]),
        (out[1:], wu[1:], a[:-1]),
        (out[:1], wu[:1], a[:1]),
    )


def _add_weighted_neighbours(
    out: np.ndarray, w: tuple[np.ndarray, ...], a: np.ndarray, scratch: np.ndarray | None = None
) -> None:
    """``out += Σ_k w_k · a[neighbour_k]`` (right, down, left, up; edge-replicated).

    ``scratch``: a buffer shaped like ``out`` with the products' dtype, reused
    for the products instead of allocating one per term (same arithmetic).
    """
    for dst, wk, src in _neighbour_terms(out, w, a):
        if scratch is None:
            dst += wk * src
        else:
            t = scratch[: dst.shape[0], : dst.shape[1]]
            np.multiply(wk, src, out=t)
            dst += t


def _solve(irr: np.ndarray, i0: np.ndarray, ir: np.ndarray, n_iter: int, smoothness: float, level: int) -> np.ndarray:
    """``n_iter`` damped Jacobi sweeps of the regrain system at one pyramid level.

    ``irr``, ``i0``, ``ir`` ``(h, w, 3)``; the state keeps ``irr``'s dtype. The
    arithmetic is that of the plain formulation, element for element (set-up
    in float64 where it mixes with the float64 gradients, as regrain.m):
    ψ = min(256|∇I₀|/5, 1), φ = 30/(1 + 10|∇I₀|/smoothness)·2^(−level), edge
    weights φ_k = (φ + φ[k])/2, scale = (1 − ρ)/(ψ + Σφ_k + eps),
    base = ψ·IR + Σφ_k·I0 − Σ φ_k·I0[k], with ρ = 1/5.
    """
    import cv2

    dt = irr.dtype
    gx = _edge_diff(i0, 1)  # right - left
    np.square(gx, out=gx)
    gy = _edge_diff(i0, 0)  # down - up
    np.square(gy, out=gy)
    gx += gy
    del gy
    grad = _channel_sum64(gx)
    np.sqrt(grad, out=grad)
    del gx
    psi = np.minimum(256.0 * grad / 5.0, 1.0)
    phi = 30.0 / (1.0 + 10.0 * grad / max(smoothness, _EPS)) * 2.0 ** (-level)
    del grad
    phis = tuple(((_shift(phi, k) + phi) / 2.0).astype(dt) for k in range(4))
    del phi
    rho = 0.2
    c = irr.shape[2]
    # scale = (1 - ρ)/(ψ + Σφ + eps); base = ψ·IR + Σ φ_k·(I0 − I0[k])
    phi_sum = sum(phis)
    scale = _channels((1 - rho) / (psi + phi_sum + _EPS), dt, c)
    base = _channels(psi, np.float64, c)
    del psi
    base *= ir
    same = i0.dtype == dt
    i0c = np.ascontiguousarray(i0)
    w3 = tuple(_channels(p, dt, c) for p in phis)
    del phis
    t = np.empty(irr.shape, dtype=np.result_type(dt, i0.dtype))
    if same:
        _cv_out(cv2.multiply(_channels(phi_sum, dt, c), i0c, dst=t), t)
    else:
        np.multiply(_channels(phi_sum, dt, c), i0c, out=t)
    base += t
    del phi_sum
    for dst, wk, src in _neighbour_terms(base, w3, i0c):  # base += (−φ_k)·I0[k], i.e. base −= φ_k·I0[k]
        tk = t[: dst.shape[0], : dst.shape[1]]
        if same:
            _cv_out(cv2.multiply(wk, src, dst=tk), tk)
        else:
            np.multiply(wk, src, out=tk)
        dst -= tk
    del t
    base = base.astype(dt)
    return _sweeps(np.ascontiguousarray(irr), base, w3, scale, rho, n_iter)


def _channel_sum64(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=2, dtype=float64)`` for ``(h, w, c)``, ``c < 8``, without the strided reduction.

    numpy sums fewer than 8 elements one after the other from the first, so adding the
    channel planes in order gives the same float64 values (and runs ~3x faster).
    """
    if a.shape[2] >= 8:
        return a.sum(axis=2, dtype=np.float64)
    out = a[..., 0].astype(np.float64)
    for k in range(1, a.shape[2]):
        out += a[..., k]
    return out


def _spread(points: np.ndarray) -> float:
    """``np.ptp(points, axis=0).max()`` of ``(N, C)`` points, reduced along contiguous rows (~15x faster)."""
    cols = swap_rows_cols(points)
    return float((cols.max(axis=1) - cols.min(axis=1)).max())


def _channels(a: np.ndarray, dtype, c: int) -> np.ndarray:
    """``(h, w)`` -> ``(h, w, c)`` copies of ``a`` cast to ``dtype`` (C-contiguous).

    OpenCV's channel merge writes the interleaved copy ~5x faster than ``np.repeat`` on the last axis.
    """
    import cv2

    plane = np.ascontiguousarray(a, dtype=dtype)
    if 2 <= c <= 4 and plane.ndim == 2 and plane.dtype in (np.float32, np.float64):
        return cv2.merge([plane] * c)
    return np.repeat(plane[..., None], c, axis=2)


def _edge_diff(a: np.ndarray, axis: int) -> np.ndarray:
    """Next minus previous neighbour along ``axis`` (0 rows, 1 columns), edges replicated:
    ``_shift(a, down/right) − _shift(a, up/left)`` without the shifted copies."""
    n = a.shape[axis]
    out = np.empty_like(a)
    if n == 1:
        out[...] = 0
        return out
    sl = [slice(None)] * a.ndim

    def at(s):
        sl[axis] = s
        return tuple(sl)

    np.subtract(a[at(slice(2, None))], a[at(slice(None, -2))], out=out[at(slice(1, -1))])
    np.subtract(a[at(slice(1, 2))], a[at(slice(0, 1))], out=out[at(slice(0, 1))])
    np.subtract(a[at(slice(n - 1, n))], a[at(slice(n - 2, n - 1))], out=out[at(slice(n - 1, n))])
    return out


def _cv_out(result: np.ndarray, dst: np.ndarray) -> None:
    """Make sure an OpenCV result landed in ``dst`` (it does for the strided views used here)."""
    if result is not dst:
        dst[...] = result


def _sweeps(
    irr: np.ndarray, base: np.ndarray, phis: tuple[np.ndarray, ...], scale: np.ndarray, rho: float, n_iter: int
) -> np.ndarray:
    """``n_iter`` damped Jacobi sweeps ``irr <- scale·(base + Σ_k φ_k·irr[neighbour_k]) + ρ·irr``.

    All arrays ``(h, w, 3)`` of one float dtype, C-contiguous. Element for
    element these are the IEEE operations of the plain numpy formulation in
    its order (a product, then a sum, per neighbour term; no fused
    multiply-add), so the result is bit-identical to it; OpenCV's kernels run
    them without numpy's broadcasting overhead.
    """
    import cv2

    rho_t = np.asarray(rho, dtype=irr.dtype)  # as numpy's ``rho * irr``: rho rounded to irr's dtype first
    scratch = np.empty_like(irr)
    num = np.empty_like(irr)
    for _ in range(n_iter):
        np.copyto(num, base)
        for dst, wk, src in _neighbour_terms(num, phis, irr):
            t = scratch[: dst.shape[0], : dst.shape[1]]
            _cv_out(cv2.multiply(wk, src, dst=t), t)
            _cv_out(cv2.add(dst, t, dst=dst), dst)
        _cv_out(cv2.multiply(num, scale, dst=num), num)
        np.multiply(irr, rho_t, out=scratch)
        _cv_out(cv2.add(num, scratch, dst=num), num)
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


_REGRAIN_ITERS = (4, 16, 32, 64, 64, 64)


def _pyramid_shapes(h: int, w: int) -> list[tuple[int, int]]:
    """Level shapes of :func:`regrain`'s pyramid on an ``h×w`` frame, finest first."""
    shapes = [(int(h), int(w))]
    while len(shapes) < len(_REGRAIN_ITERS):
        h2, w2 = -(-shapes[-1][0] // 2), -(-shapes[-1][1] // 2)
        if not (h2 > 20 and w2 > 20):
            break
        shapes.append((h2, w2))
    return shapes


def _window_matrix(n_in: int, n_out: int, rows: tuple[int, int], cols: tuple[int, int], dtype) -> sparse.csr_matrix:
    """Rows ``rows`` and columns ``cols`` of ``_resize_matrix(n_in, n_out)`` (taps outside ``cols`` dropped)."""
    j, w = _resize_taps(n_in, n_out, *rows)
    r = np.repeat(np.arange(rows[1] - rows[0]), j.shape[1])
    j, w = j.ravel(), w.ravel()
    keep = (j >= cols[0]) & (j < cols[1])
    out = np.zeros((rows[1] - rows[0], cols[1] - cols[0]))
    np.add.at(out, (r[keep], j[keep] - cols[0]), w[keep])
    return sparse.csr_matrix(out.astype(dtype))


def _tap_span(n_in: int, n_out: int, rows: tuple[int, int]) -> tuple[int, int]:
    """Input indices ``[lo, hi)`` carrying a non-zero weight for output rows ``rows``."""
    j, w = _resize_taps(n_in, n_out, *rows)
    used = j[w != 0]
    return int(used.min()), int(used.max()) + 1


def _rows_reached(n_in: int, n_out: int, cols: tuple[int, int]) -> tuple[int, int]:
    """Output rows ``[lo, hi)`` with a non-zero weight on an input index in ``cols``."""
    j, w = _resize_taps(n_in, n_out)
    hit = np.flatnonzero(((w != 0) & (j >= cols[0]) & (j < cols[1])).any(axis=1))
    return int(hit[0]), int(hit[-1]) + 1


def _axis_windows(sizes: list[int], box: tuple[int, int]) -> tuple[list, list, list]:
    """Per level, along one axis: ``support`` (where the zero-padded inputs can be non-zero),
    ``need`` (where the level's result is used) and ``solve`` (where it is computed) as ``(lo, hi)``.

    A Jacobi sweep reads the 4 neighbours and the set-up (gradients, weights)
    2 more, so a level solved on ``need`` widened by its sweep count + 3 is exact
    on ``need`` whatever the window's edges hold; the finer level's ``solve``
    window then fixes, through the upsampling taps, the coarser ``need``.
    """
    n = len(sizes)
    support = [box]
    for lv in range(1, n):
        support.append(_rows_reached(sizes[lv - 1], sizes[lv], support[-1]))
    need, solve = [box], []
    for lv in range(n):
        m = _REGRAIN_ITERS[lv] + 3
        solve.append((max(0, need[lv][0] - m), min(sizes[lv], need[lv][1] + m)))
        if lv + 1 < n:
            need.append(_tap_span(sizes[lv + 1], sizes[lv], solve[lv]))
    return support, need, solve


def _resize_window(img: np.ndarray, a_h: sparse.csr_matrix, a_w: sparse.csr_matrix) -> np.ndarray:
    """:func:`imresize_bilinear` with given (windowed) matrices, same operation order."""
    h, w, c = img.shape
    oh, ow = a_h.shape[0], a_w.shape[0]
    tmp = (a_h @ np.ascontiguousarray(img).reshape(h, w * c)).reshape(oh, w, c)
    tmp = a_w @ swap_rows_cols(tmp).reshape(w, oh * c)
    return swap_rows_cols(tmp.reshape(ow, oh, c))


def _paste(
    src: np.ndarray, at: tuple[tuple[int, int], tuple[int, int]], win: tuple[tuple[int, int], tuple[int, int]]
) -> np.ndarray:
    """Zero array over window ``win`` holding ``src`` (which covers ``at``) where they overlap."""
    (y0, y1), (x0, x1) = win
    out = np.zeros((y1 - y0, x1 - x0, src.shape[2]), dtype=src.dtype)
    (sy0, sy1), (sx0, sx1) = at
    a, b = max(y0, sy0), min(y1, sy1)
    c, d = max(x0, sx0), min(x1, sx1)
    if a < b and c < d:
        out[a - y0 : b - y0, c - x0 : d - x0] = src[a - sy0 : b - sy0, c - sx0 : d - sx0]
    return out


def regrain_masked(
    fg_original: np.ndarray,
    fg_graded: np.ndarray,
    mask: np.ndarray,
    frame: tuple[int, int, int, int] | None = None,
    smoothness: float = 1.0,
) -> np.ndarray:
    """``regrain(i0, ir)[mask]`` with ``i0``/``ir`` = the frame holding ``fg_original``/``fg_graded``
    on the mask and 0 elsewhere (as ``idt.m`` calls it), computed only where the mask's result depends on.

    ``fg_*`` are ``(N, 3)`` on 0–1 in the mask's raster order; ``mask`` is
    ``bool (h, w)``, the window of an ``H×W`` frame at ``(top, left)`` given by
    ``frame = (H, W, top, left)`` (default: the mask is the whole frame).
    Returns float64 ``(N, 3)``, bit-identical to the whole-frame computation:
    the frame's pyramid geometry (level sizes, resampling taps) is kept, the
    zero background is never materialised beyond the resampling support, and
    each level is solved on a window exceeding the used part by its sweep count.
    """
    if smoothness <= 0:
        return np.asarray(fg_graded, dtype=np.float64)
    h, w = mask.shape
    big_h, big_w, top, left = (h, w, 0, 0) if frame is None else (int(v) for v in frame)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    sub = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box_y = (top + int(rows[0]), top + int(rows[-1]) + 1)
    box_x = (left + int(cols[0]), left + int(cols[-1]) + 1)
    shapes = _pyramid_shapes(big_h, big_w)
    n = len(shapes)
    sup_y, need_y, solve_y = _axis_windows([s[0] for s in shapes], box_y)
    sup_x, need_x, solve_x = _axis_windows([s[1] for s in shapes], box_x)

    i0 = np.zeros(sub.shape + (3,), dtype=np.float32)
    put_masked(i0, sub, fg_original)
    ir = np.zeros_like(i0)
    put_masked(ir, sub, fg_graded)
    pyramid = [(i0, ir)]  # over the support windows
    for lv in range(1, n):
        a_h = _window_matrix(shapes[lv - 1][0], shapes[lv][0], sup_y[lv], sup_y[lv - 1], np.float32)
        a_w = _window_matrix(shapes[lv - 1][1], shapes[lv][1], sup_x[lv], sup_x[lv - 1], np.float32)
        pyramid.append(tuple(_resize_window(a, a_h, a_w) for a in pyramid[-1]))
    del i0, ir

    irr = None
    for lv in range(n - 1, -1, -1):
        win = (solve_y[lv], solve_x[lv])
        i0_w, ir_w = (_paste(a, (sup_y[lv], sup_x[lv]), win) for a in pyramid[lv])
        pyramid[lv] = None  # type: ignore[call-overload]
        if irr is None:  # coarsest level: starts from the original (as regrain.m)
            irr = i0_w.copy()
        else:  # upsample the coarser result, read on its ``need`` window
            (py0, _), (px0, _) = solve_y[lv + 1], solve_x[lv + 1]
            (ny0, ny1), (nx0, nx1) = need_y[lv + 1], need_x[lv + 1]
            src = irr[ny0 - py0 : ny1 - py0, nx0 - px0 : nx1 - px0]
            a_h = _window_matrix(shapes[lv + 1][0], shapes[lv][0], solve_y[lv], need_y[lv + 1], np.float32)
            a_w = _window_matrix(shapes[lv + 1][1], shapes[lv][1], solve_x[lv], need_x[lv + 1], np.float32)
            irr = _resize_window(src, a_h, a_w)
            del src
        irr = _solve(irr, i0_w, ir_w, _REGRAIN_ITERS[lv], smoothness, lv)
        del i0_w, ir_w
    oy, ox = box_y[0] - solve_y[0][0], box_x[0] - solve_x[0][0]
    out = take_masked(irr[oy : oy + sub.shape[0], ox : ox + sub.shape[1]], sub)
    return out.astype(np.float64)


_regrain_full = regrain  # the op's ``regrain`` flag shadows the name inside it


def _sample_idt(rng: np.random.Generator) -> dict:
    return {"seed": int(rng.integers(0, 2**31 - 1))}


@register_transfer("idt", sampler=_sample_idt, crop="frame", cost=0.8)
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
    frame: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """IDT from ``ref_image[ref_mask]`` onto ``image[mask]``, then (by default) regrain.

    0–1 float in and out (clipped). The random rotations come from
    ``np.random.default_rng(seed)``; without ``seed`` it is drawn from ``rng``
    exactly as ``sample_params('idt', rng)`` does (fresh entropy if no ``rng``).
    ``regrain=False`` skips the grain-removal pass (about as costly as the IDT
    itself; it works on the mask's surroundings, not the whole frame).

    ``frame=(H, W, top, left)``: ``image``/``mask`` are the window of an
    ``H×W`` frame at ``(top, left)`` and the mask lies inside the window; the
    foreground then equals the op's on the whole frame (regrain keeps the
    frame's pyramid). Default: ``image`` is the whole frame.
    """
    fg, ref = gather("idt", image, mask, ref_image, ref_mask)
    if iterations < 1 or bins < 2:
        raise ValueError(f"idt: iterations must be >= 1 and bins >= 2, got {iterations}, {bins}")
    if seed is None:
        seed = _sample_idt(fresh_rng(rng))["seed"]
    if frame is not None:
        big_h, big_w, top, left = (int(v) for v in frame)
        if not (top >= 0 and left >= 0 and top + mask.shape[0] <= big_h and left + mask.shape[1] <= big_w):
            raise ValueError(
                f"idt: a {mask.shape[1]}x{mask.shape[0]} window at (top={top}, left={left}) "
                f"does not fit in a {big_w}x{big_h} frame"
            )
    rotations = idt_rotations(iterations, np.random.default_rng(seed))
    if _spread(fg) <= 1e-12:
        return composite(image, mask, np.broadcast_to(ref.mean(axis=0), fg.shape))
    new = idt_points(fg, ref, rotations, bins)
    if regrain:
        new = regrain_masked(fg, new, mask, frame, smoothness)
    return composite(image, mask, new)
