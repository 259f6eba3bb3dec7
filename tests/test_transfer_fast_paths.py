"""The colour transfers' fast paths against frozen copies of their plain formulations.

The regrain solver, Reinhard's statistics, ``ychist``'s reference histogram,
``unique_colours`` and ``composite`` have faster implementations; the plain
versions they replaced are kept below, verbatim in their arithmetic, and the
fast ones must give the same pixels:

* regrain: bit-identical (same IEEE operations in the same order);
* ``unique_colours``, ``composite``, ``ychist``: bit-identical;
* Reinhard: statistics as weight-vector products, per distinct colour
  (weighted by its count) on large regions, instead of numpy's mean/std over
  the expanded pixel list, change only the float summation order: the float
  output agrees within 1e-6 and the uint8 pixels are equal.
"""

from __future__ import annotations

import numpy as np
import pytest

from harmbench.transfer import get_transfer
from harmbench.transfer import idt as idt_mod
from harmbench.transfer._common import (
    _check_pixels,
    composite,
    gather,
    lalphabeta_to_rgb,
    rgb_to_lalphabeta,
    rgb_to_ycbcr,
    unique_colours,
    ycbcr_to_rgb,
)
from harmbench.transfer.histogram import _YCC_HI, _YCC_LO

EPS = np.finfo(np.float64).eps


def _unit(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / np.float32(255.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """Textured uint8 photo with many distinct colours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    img = np.stack([base[c] + 45 * np.sin(xx / (19 + 7 * c) + yy / (27 + 5 * c) + seed) for c in range(3)], -1)
    img[(xx // 41 + yy // 23) % 3 == 0] *= 0.65
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _blob(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h * rng.uniform(0.3, 0.6), w * rng.uniform(0.3, 0.6)
    return ((yy - cy) / (h * 0.28)) ** 2 + ((xx - cx) / (w * 0.25)) ** 2 <= 1


# ------------------------------------------------------------------ frozen plain formulations


def _plain_shift(a, k):
    if k == 0:
        return np.concatenate([a[:, 1:], a[:, -1:]], axis=1)
    if k == 1:
        return np.concatenate([a[1:], a[-1:]], axis=0)
    if k == 2:
        return np.concatenate([a[:, :1], a[:, :-1]], axis=1)
    return np.concatenate([a[:1], a[:-1]], axis=0)


def _plain_add_neighbours(out, w, a):
    wr, wd, wl, wu = w
    for dst, wk, src in (
        (out[:, :-1], wr[:, :-1], a[:, 1:]),
        (out[:, -1:], wr[:, -1:], a[:, -1:]),
        (out[:-1], wd[:-1], a[1:]),
        (out[-1:], wd[-1:], a[-1:]),
        (out[:, 1:], wl[:, 1:], a[:, :-1]),
        (out[:, :1], wl[:, :1], a[:, :1]),
        (out[1:], wu[1:], a[:-1]),
        (out[:1], wu[:1], a[:1]),
    ):
        dst += wk * src


def _plain_solve(irr, i0, ir, n_iter, smoothness, level):
    """The regrain level solver as it was: (h, w, 1) weights broadcast over the channels."""
    gx = (_plain_shift(i0, 0) - _plain_shift(i0, 2)) ** 2
    gy = (_plain_shift(i0, 1) - _plain_shift(i0, 3)) ** 2
    grad = np.sqrt((gx + gy).sum(axis=2, dtype=np.float64))
    psi = np.minimum(256.0 * grad / 5.0, 1.0)
    phi = 30.0 / (1.0 + 10.0 * grad / max(smoothness, EPS)) * 2.0 ** (-level)
    phis = tuple(((_plain_shift(phi, k) + phi) / 2.0)[..., None].astype(irr.dtype) for k in range(4))
    rho = 0.2
    scale = ((1 - rho) / (psi + sum(p[..., 0] for p in phis) + EPS))[..., None].astype(irr.dtype)
    base = psi[..., None] * ir
    base += sum(phis) * i0
    _plain_add_neighbours(base, tuple(-p for p in phis), i0)
    base = base.astype(irr.dtype)
    for _ in range(n_iter):
        num = base.copy()
        _plain_add_neighbours(num, phis, irr)
        num *= scale
        num += rho * irr
        irr = num
    return irr


def _plain_reinhard(image, mask, ref_image, ref_mask):
    """Reinhard transfer with the statistics over every pixel (as before the per-colour statistics)."""
    fg, ref = gather("reinhard", image, mask, ref_image, ref_mask)

    def stats(lab):
        v = lab[np.isfinite(lab).all(axis=1)]
        return v.mean(axis=0), (v.std(axis=0, ddof=1) if len(v) > 1 else np.zeros(3))

    lab_fg = rgb_to_lalphabeta(fg)
    valid = np.isfinite(lab_fg).all(axis=1)
    mu_fg, sd_fg = stats(lab_fg)
    mu_ref, sd_ref = stats(rgb_to_lalphabeta(ref))
    scale = np.divide(sd_ref, sd_fg, out=np.ones(3), where=sd_fg > 1e-9)
    new = np.zeros(lab_fg.shape)
    new[valid] = lalphabeta_to_rgb((lab_fg[valid] - mu_fg) * scale + mu_ref)
    return composite(image, mask, new)


def _plain_ychist(image, mask, ref_image, ref_mask):
    """``ychist`` on every pixel of both regions (no distinct-colour shortcut)."""
    fg, ref = gather("ychist", image, mask, ref_image, ref_mask)
    y_fg, y_ref = rgb_to_ycbcr(fg), rgb_to_ycbcr(ref)
    new = np.empty_like(y_fg)
    for c in range(3):
        lo, hi = int(_YCC_LO[c]), int(_YCC_HI[c])
        n = hi - lo + 1
        sb = np.clip(np.floor(y_fg[:, c] - (lo - 0.5)).astype(np.int64), 0, n - 1)
        rb = np.clip(np.floor(y_ref[:, c] - (lo - 0.5)).astype(np.int64), 0, n - 1)
        cs, cr_counts = np.cumsum(np.bincount(sb, minlength=n)), np.bincount(rb, minlength=n)
        cr = np.cumsum(cr_counts)
        k = np.searchsorted(cr * int(cs[-1]), cs * int(cr[-1]), side="right")
        occ = np.nonzero(cr_counts)[0]
        m = np.clip(np.maximum(k - 1, 0), occ[0], occ[-1])
        value = (lo + m).astype(np.float64)
        for edge in (0, n - 1):
            if cr_counts[edge]:
                value[m == edge] = y_ref[rb == edge, c].mean()
        new[:, c] = value[sb]
    return composite(image, mask, ycbcr_to_rgb(new))


def _plain_unique(px):
    scaled = np.rint(np.asarray(px, dtype=np.float64) * 255.0)
    if not (scaled.min() >= 0 and scaled.max() <= 255):  # NaN fails too
        return None
    rgb = scaled.astype(np.uint8)
    if not np.array_equal(rgb.astype(np.float32) / np.float32(255.0), px):
        return None
    key = (rgb[:, 0].astype(np.int64) << 16) | (rgb[:, 1].astype(np.int64) << 8) | rgb[:, 2]
    codes, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    values = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], 1).astype(np.float32) / np.float32(255)
    return values.astype(np.float64), inverse.reshape(-1), counts


def _plain_composite(image, mask, fg_new):
    fg = np.clip(np.asarray(fg_new, dtype=np.float64), 0.0, 1.0)
    fg[np.isnan(fg)] = 0.0
    out = np.array(image, dtype=np.float32, copy=True)
    out[mask] = fg.astype(np.float32)
    return out


# ------------------------------------------------------------------ regrain


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 9), (2, 2), (7, 1), (23, 31), (60, 45)])
def test_regrain_solver_is_bit_identical_to_the_broadcast_formulation(shape, dtype):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    i0, ir, irr = (rng.random((*shape, 3)).astype(dtype) for _ in range(3))
    for level, n_iter in ((0, 4), (3, 9)):
        got = idt_mod._solve(irr.copy(), i0, ir, n_iter, 1.0, level)
        want = _plain_solve(irr.copy(), i0, ir, n_iter, 1.0, level)
        assert got.dtype == want.dtype == dtype
        assert np.array_equal(got, want)


def test_regrain_solver_mixed_dtypes_match():
    rng = np.random.default_rng(4)
    i0 = rng.random((19, 27, 3))  # float64 original, float32 state
    ir, irr = (rng.random((19, 27, 3)).astype(np.float32) for _ in range(2))
    assert np.array_equal(idt_mod._solve(irr.copy(), i0, ir, 5, 0.5, 1), _plain_solve(irr.copy(), i0, ir, 5, 0.5, 1))


def test_idt_with_regrain_pixels_unchanged(monkeypatch):
    """The whole op on a photo-sized window of a larger frame (5 pyramid levels), both solvers."""
    op = get_transfer("idt")
    h, w = 420, 560
    img, mask = _unit(_photo(h, w, 1)), _blob(h, w, 2)
    ref, ref_mask = _unit(_photo(300, 380, 3)), _blob(300, 380, 4)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, x0 = rows[0], cols[0]
    win, wmask = img[y0 : rows[-1] + 1, x0 : cols[-1] + 1], mask[y0 : rows[-1] + 1, x0 : cols[-1] + 1]
    frame = (h, w, int(y0), int(x0))
    fast = op(win, wmask, ref, ref_mask, seed=11, frame=frame)
    whole = op(img, mask, ref, ref_mask, seed=11)
    monkeypatch.setattr(idt_mod, "_solve", _plain_solve)
    plain = op(win, wmask, ref, ref_mask, seed=11, frame=frame)
    assert np.array_equal(fast, plain)
    assert np.array_equal(whole[mask], fast[wmask])
    assert np.abs(fast[wmask] - win[wmask]).mean() > 0.01  # the transfer did change the colours


# ------------------------------------------------------------------ Reinhard, ychist


def _pair(seed: int):
    img, mask = _unit(_photo(150, 210, seed)), _blob(150, 210, seed + 1)
    ref, ref_mask = _unit(_photo(130, 170, seed + 2)), _blob(130, 170, seed + 3)
    return img, mask, ref, ref_mask


@pytest.mark.parametrize("distinct_from", [0, None])  # once per distinct colour / per pixel (small regions)
@pytest.mark.parametrize("seed", [0, 10, 20])
def test_reinhard_per_colour_statistics_match_per_pixel(seed, distinct_from, monkeypatch):
    from harmbench.transfer import reinhard as reinhard_mod

    if distinct_from is not None:
        monkeypatch.setattr(reinhard_mod, "_DISTINCT_FROM", distinct_from)
    img, mask, ref, ref_mask = _pair(seed)
    img[mask & (np.arange(210) % 17 == 0)] = 0.0  # black pixels: left out of the statistics, stay black
    assert unique_colours(img[mask].astype(np.float64)) is not None
    got = get_transfer("reinhard")(img, mask, ref, ref_mask)
    want = _plain_reinhard(img, mask, ref, ref_mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.array_equal(_to_uint8(got), _to_uint8(want))
    # not 8-bit data: the per-pixel path
    noisy = np.clip(img + np.float32(1e-4), 0, 1)
    got, want = get_transfer("reinhard")(noisy, mask, ref, ref_mask), _plain_reinhard(noisy, mask, ref, ref_mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.array_equal(_to_uint8(got), _to_uint8(want))


@pytest.mark.parametrize("seed", [0, 10])
def test_ychist_per_colour_reference_matches_per_pixel(seed):
    img, mask, ref, ref_mask = _pair(seed)
    ref = ref.copy()
    ref[ref_mask & (np.arange(170) % 5 == 0)] = 0.0  # reference pixels in the first Y bin: its edge mean
    ref[ref_mask & (np.arange(170) % 7 == 0)] = 1.0  # and in the last
    got = get_transfer("ychist")(img, mask, ref, ref_mask)
    want = _plain_ychist(img, mask, ref, ref_mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.array_equal(_to_uint8(got), _to_uint8(want))


# ------------------------------------------------------------------ unique_colours, composite


def test_unique_colours_equals_np_unique_and_rejects_non_8bit():
    rng = np.random.default_rng(5)
    px = _unit(rng.integers(0, 256, (70001, 3), dtype=np.uint8)).astype(np.float64)
    px[::3] = px[0]  # repeated colours
    got, want = unique_colours(px), _plain_unique(px)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    assert np.array_equal(got[0][got[1]], px)
    for bad in (
        px + 1e-9,
        np.where(np.arange(len(px))[:, None] == 40000, np.nan, px),
        np.where(np.arange(len(px))[:, None] == 50000, 256 / 255, px),
        -px,
    ):
        assert unique_colours(bad) is None and _plain_unique(bad) is None
    assert np.array_equal(unique_colours(-0.0 * px)[0], np.zeros((1, 3)))  # -0.0 is the code 0


def test_composite_clips_like_float64_clip_and_zeros_nan():
    rng = np.random.default_rng(6)
    img, mask = _unit(_photo(40, 50, 7)), _blob(40, 50, 8)
    n = int(mask.sum())
    vals = rng.normal(0.5, 0.7, (n, 3))
    vals[:5] = [np.nan, np.inf, -np.inf]
    vals[5:10] = np.nextafter(1.0, 2.0)  # rounds to 1.0 in float32 either way
    got, want = composite(img, mask, vals), _plain_composite(img, mask, vals)
    assert np.array_equal(got, want)
    assert np.array_equal(got[~mask], img[~mask])
    full = np.ones((1, n), bool)
    assert np.array_equal(
        composite(vals[None].astype(np.float32), full, vals), _plain_composite(vals[None], full, vals)
    )
    assert _check_pixels("t", got, "out") == (0.0, 1.0)


def test_rows_matmul_equals_the_whole_product():
    from harmbench.transfer._common import RGB2LMS, rows_matmul

    rng = np.random.default_rng(9)
    for n in (1, 2, 4096, 4097, 4098, 8193, 70001):
        x = rng.random((n, 3))
        assert np.array_equal(rows_matmul(x, RGB2LMS.T), x @ RGB2LMS.T)
        assert np.array_equal(rows_matmul(x, np.ones((3, 1))), x @ np.ones((3, 1)))
