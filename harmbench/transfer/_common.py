"""Input checks, compositing and colour-space conversions shared by the ops.

All arrays here are RGB on the 0–1 scale unless a function says otherwise.
"""

from __future__ import annotations

import numpy as np

from harmbench.arrays import put_masked, take_masked

# Tolerance above 1.0 accepted on input (float rounding of 0–1 data).
_RANGE_TOL = 1e-3


def _check_image(name: str, arr: object, what: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: {what} must be a numpy array, got {type(arr).__name__}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name}: {what} must have shape (H, W, 3), got {arr.shape}")
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: {what} must be float on the 0–1 scale, got dtype {arr.dtype} (divide uint8 by 255)")
    return arr


def _check_mask(name: str, mask: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name}: {what} must be a numpy bool array, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name}: {what} must have dtype bool, got {mask.dtype} (binarise raw masks first)")
    if mask.shape != shape[:2]:
        raise ValueError(f"{name}: {what} has shape {mask.shape}, expected {shape[:2]}")
    return mask


def _check_pixels(name: str, px: np.ndarray, what: str) -> tuple[float, float]:
    """Raise for NaN/Inf or values off the 0–1 scale; returns ``(min, max)``."""
    # min/max propagate NaN and reach ±Inf: both finite <=> every value is
    lo, hi = float(px.min()), float(px.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: {what} contains NaN or Inf")
    if hi > 1.0 + _RANGE_TOL or lo < -_RANGE_TOL:
        raise ValueError(
            f"{name}: {what} values lie in [{lo:g}, {hi:g}]; expected the 0–1 scale (divide 0–255 images by 255)"
        )
    return lo, hi


def _clip_unit(px: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip(px, 0, 1)``; ``px`` itself (a fresh array) when already inside."""
    return px if lo >= 0.0 and hi <= 1.0 else np.clip(px, 0.0, 1.0)


def _pixels(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image[mask]`` as a new float64 ``(N, 3)`` array (a plain reshape when the mask is all true)."""
    if mask.all():
        return image.reshape(-1, 3).astype(np.float64)
    return take_masked(image, mask).astype(np.float64)


def per_colour(px: np.ndarray, fn) -> np.ndarray:
    """``fn(px)`` for a row-wise function ``fn`` of ``(N, 3)`` pixels, evaluated once per distinct colour.

    Falls back to ``fn(px)`` when the pixels did not come from 8-bit data
    (see :func:`unique_colours`); the result is the same either way.
    """
    distinct = unique_colours(px)
    if distinct is None:
        return fn(px)
    values, inverse, _ = distinct
    return fn(values)[inverse]


def gather(
    name: str,
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    needs_reference: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the op's inputs and return ``(fg, ref)`` pixel lists.

    ``fg`` is ``float64 (N, 3)`` = ``image[mask]``; ``ref`` is ``float64 (M, 3)``
    = ``ref_image[ref_mask]`` (``None`` when ``needs_reference`` is False). Both
    on 0–1 and clipped to it.
    """
    _check_image(name, image, "image")
    _check_mask(name, mask, image.shape, "mask")
    if not mask.any():
        raise ValueError(f"{name}: the foreground mask is empty")
    fg = _pixels(image, mask)
    fg = _clip_unit(fg, *_check_pixels(name, fg, "foreground"))
    if not needs_reference:
        return fg, None
    if ref_mask is None:
        raise ValueError(f"{name}: needs a reference region: pass ref_mask (and ref_image if not the same photo)")
    if ref_image is None:
        ref_image = image
    _check_image(name, ref_image, "ref_image")
    _check_mask(name, ref_mask, ref_image.shape, "ref_mask")
    if not ref_mask.any():
        raise ValueError(f"{name}: the reference mask is empty")
    ref = _pixels(ref_image, ref_mask)
    ref = _clip_unit(ref, *_check_pixels(name, ref, "reference region"))
    return fg, ref


def composite(image: np.ndarray, mask: np.ndarray, fg_new: np.ndarray) -> np.ndarray:
    """``float32`` copy of ``image`` with ``image[mask] = clip(fg_new, 0, 1)`` (NaN -> 0, ±Inf -> 1/0)."""
    # float32(clip(x, 0, 1)) == clip(float32(x), 0, 1) (rounding is monotonic, 0 and 1 exact), so the
    # clip runs on the float32 copy; fmax/fmin send NaN to 0 and ±Inf to 1/0
    fg = np.asarray(fg_new).astype(np.float32)
    np.fmax(fg, np.float32(0.0), out=fg)
    np.fmin(fg, np.float32(1.0), out=fg)
    if fg.size == image.size and mask.all():  # every pixel replaced (pixel strips): image[mask] is a reshape
        return fg.reshape(image.shape)
    out = np.array(image, dtype=np.float32, copy=True)
    put_masked(out, mask, fg)
    return out


_CODES = 1 << 24
# float32(k / 255) for the 8-bit codes k, as float64: what ``uint8 / 255`` in float32 gives
_UNIT8 = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64)
# Rows per block in :func:`unique_colours`.
_UNIQUE_BLOCK = 1 << 15
# Below this many pixels a sort is cheaper than the 2^24-entry presence table.
_SORT_BELOW = 1 << 18


def distinct_codes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, inverse, counts)`` of 24-bit colour codes ``key`` (``int32 (N,)``), codes sorted."""
    if len(key) < _SORT_BELOW:
        codes, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        return codes, inverse.astype(np.intp, copy=False).reshape(-1), counts
    seen = np.zeros(_CODES, dtype=np.bool_)
    seen[key] = True
    codes = np.flatnonzero(seen)
    del seen
    lut = np.empty(_CODES, dtype=np.int32)
    lut[codes] = np.arange(len(codes), dtype=np.int32)
    inverse = lut[key].astype(np.intp)
    del lut
    return codes, inverse, np.bincount(inverse, minlength=len(codes))


def colour_key(rgb: np.ndarray) -> np.ndarray:
    """``uint8 (N, 3)`` -> ``int32 (N,)`` codes ``r·2¹⁶ + g·2⁸ + b``."""
    key = rgb[:, 0].astype(np.int32) << 16
    key |= rgb[:, 1].astype(np.int32) << 8
    key |= rgb[:, 2]
    return key


def code_rgb(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`colour_key`: codes -> ``uint8 (K, 3)``."""
    return np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)


def unique_colours(px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Distinct colours of pixels that came from 8-bit data: ``(values, inverse, counts)`` or None.

    ``px`` is ``(N, 3)`` float on 0–1 whose values are all ``float32(k / 255)``
    for integer codes ``k`` (what ``uint8 / 255`` in float32 gives, as the
    recipes pass); otherwise None. ``values`` ``(K, 3)`` float64 holds the
    distinct rows (exactly equal to those of ``px``) in code order,
    ``values[inverse] == px`` and ``counts`` ``(K,)`` int64 their multiplicities.

    A per-pixel colour function evaluated on ``values`` then gathered with
    ``inverse`` equals the function evaluated on every pixel, so ops use it to
    do their per-pixel work once per colour; photos repeat colours a lot.
    """
    n = len(px)
    if n == 0:
        return None
    px = np.asarray(px)
    rgb = np.empty((n, 3), dtype=np.uint8)
    # in row blocks: the temporaries stay small (no page faults, cache-resident)
    step = _UNIQUE_BLOCK
    buf = np.empty((min(n, step), 3), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        for a in range(0, n, step):
            b = min(n, a + step)
            s = buf[: b - a]
            np.multiply(px[a:b], 255.0, out=s)
            np.rint(s, out=s)
            np.clip(s, 0.0, 255.0, out=s)  # off-scale values then fail the exactness check below
            q = rgb[a:b]
            q[...] = s
            # every value must be exactly float32(k / 255) (NaN compares unequal)
            if not np.array_equal(_UNIT8[q], px[a:b]):
                return None
    codes, inverse, counts = distinct_codes(colour_key(rgb))
    del rgb
    values = (code_rgb(codes).astype(np.float32) / np.float32(255.0)).astype(np.float64)
    return values, inverse, counts


def fresh_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` itself, or a new entropy-seeded generator when ``None``."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


# Rows per block in :func:`rows_matmul`: small enough that OpenBLAS stays single-threaded.
_MATMUL_ROWS = 4096


def rows_matmul(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for tall ``(N, k)`` rows and a small ``(k, j)`` matrix, in row blocks.

    Each output row depends only on its own input row, so the blocks give the
    whole product's values; kept small, each block runs on one thread, while
    OpenBLAS splits one tall product over threads, which in a busy process
    (the evaluator beside its DataLoader workers) spin and wait many times
    longer than the product takes.
    """
    n = len(x)
    if n <= _MATMUL_ROWS:
        return x @ m
    out = np.empty((n, m.shape[1]), dtype=np.result_type(x, m))
    cuts = list(range(0, n, _MATMUL_ROWS)) + [n]
    if cuts[-1] - cuts[-2] == 1:  # BLAS takes a lone row by another code path (last-bit differences)
        del cuts[-2]
    for a, b in zip(cuts[:-1], cuts[1:]):
        np.matmul(x[a:b], m, out=out[a:b])
    return out


# --------------------------------------------------------------------------
# Reinhard lαβ (Reinhard et al. 2001, matrices as in iHarmony4's rgb2lab.m/lab2rgb.m)

RGB2LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
LMS2RGB = np.array([[4.4687, -3.5887, 0.1196], [-1.2197, 2.3831, -0.1626], [0.0585, -0.2611, 1.2057]])
LOGLMS2LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
LAB2LOGLMS = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, -1.0], [1.0, -2.0, 0.0]]) @ np.diag(
    [np.sqrt(3) / 3, np.sqrt(6) / 6, np.sqrt(2) / 2]
)


def rgb_to_lalphabeta(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` RGB on 0–1 -> lαβ (log10 LMS). Black gives -Inf/NaN, as in MATLAB."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return rows_matmul(np.log10(rows_matmul(rgb, RGB2LMS.T)), LOGLMS2LAB.T)


def lalphabeta_to_rgb(lab: np.ndarray) -> np.ndarray:
    """lαβ ``(N, 3)`` -> RGB (0–1 scale, unclipped); NaN LMS become 0 (MATLAB: NaN/-Inf -> 0).

    log10 LMS is capped at 10 so that extreme outliers saturate instead of overflowing.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        lms = 10.0 ** np.minimum(rows_matmul(lab, LAB2LOGLMS.T), 10.0)
    lms[~np.isfinite(lms)] = 0.0
    return rows_matmul(lms, LMS2RGB.T)


# --------------------------------------------------------------------------
# YCbCr as MATLAB rgb2ycbcr (ITU-R BT.601, "studio" ranges), 0–255 output scale

RGB2YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
YCBCR2RGB = np.linalg.inv(RGB2YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` RGB on 0–1 -> YCbCr on the 0–255 scale (Y in [16, 235], Cb/Cr in [16, 240])."""
    return rows_matmul(rgb, RGB2YCBCR.T) + YCBCR_OFFSET


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """YCbCr on 0–255 -> RGB on 0–1 (unclipped)."""
    return rows_matmul(ycc - YCBCR_OFFSET, YCBCR2RGB.T)
