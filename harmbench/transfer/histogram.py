"""Non-parametric per-channel histogram transfers, restricted to a mask.

* ``histmatch``: per-channel CDF matching with the semantics of
  ``skimage.exposure.match_histograms`` (``_match_cumulative_cdf``): sorted
  unique values and their cumulative counts / N give each side's quantiles;
  every source value becomes ``np.interp(q_src, q_ref, ref_values)``. Source =
  foreground pixels, reference = reference-region pixels. On float input
  nothing is quantised; ``uint8=True`` reproduces skimage's uint8 path
  (0–255 codes, bincount, and the result *truncated* into uint8).
  A single-colour foreground (quantile 1) goes to the reference maximum.
* ``ychist``: iHarmony4's cumulative histogram mapping
  (``cumulative_histogram_mapping/*.m``, Fecker et al. 2008) in MATLAB YCbCr
  (0–255 scale): 1-wide bins centred on the integer codes (Y 16–235, Cb/Cr
  16–240); each source bin ``v`` goes to the centre of the last reference bin
  whose CDF is ≤ CDF_src(v) (bin 1 when none is); bins mapped to the first or
  last bin take the mean reference value inside that bin.
"""

from __future__ import annotations

import numpy as np

from harmbench.arrays import take_masked
from harmbench.transfer import register_transfer
from harmbench.transfer._common import (
    composite,
    gather,
    rgb_to_ycbcr,
    unique_colours,
    ycbcr_to_rgb,
)


def _byte_codes(values: np.ndarray) -> np.ndarray | None:
    """Codes ``k`` when every value of a float32 array is ``float32(k / 255)``, else None."""
    if values.dtype != np.float32 or values.size == 0:
        return None
    flat = values.ravel()
    codes = np.rint(flat * np.float32(255.0))
    if not (codes.min() >= 0 and codes.max() <= 255):
        return None
    codes = codes.astype(np.intp)
    if not np.array_equal(codes.astype(np.float32) / np.float32(255.0), flat):
        return None
    return codes


def match_cumulative_cdf(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """1-D CDF matching of ``source`` onto ``reference`` (skimage semantics, float64 out).

    Integer (unsigned) inputs use bincount over codes, float inputs use the
    sorted unique values; any scale.
    """
    if source.dtype.kind == "u":
        lookup = source.ravel()
        src_counts = np.bincount(lookup)
        ref_counts = np.bincount(reference.ravel())
        ref_values = np.nonzero(ref_counts)[0]
        ref_counts = ref_counts[ref_values]
    elif (codes := _byte_codes(source)) is not None and (ref_codes := _byte_codes(reference)) is not None:
        # values k/255 from 8-bit data: sorted distinct values and counts by counting codes (as np.unique)
        counts = np.bincount(codes, minlength=256)
        present = counts > 0
        lookup = (np.cumsum(present) - 1)[codes]
        src_counts = counts[present]
        ref_counts = np.bincount(ref_codes, minlength=256)
        ref_values = (np.flatnonzero(ref_counts).astype(np.float32) / np.float32(255.0)).astype(reference.dtype)
        ref_counts = ref_counts[ref_counts > 0]
    else:
        _, lookup, src_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
        ref_values, ref_counts = np.unique(reference.ravel(), return_counts=True)
    src_q = np.cumsum(src_counts) / source.size
    ref_q = np.cumsum(ref_counts) / reference.size
    mapped = np.interp(src_q, ref_q, ref_values)
    return mapped[lookup.ravel()].reshape(source.shape)


@register_transfer("histmatch", crop="mask", cost=0.2)
def histmatch(
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
    uint8: bool = False,
) -> np.ndarray:
    """Per-channel histogram matching of ``image[mask]`` onto ``ref_image[ref_mask]``.

    0–1 float in and out. ``uint8=True``: quantise both to 0–255 codes
    (round) and truncate the matched values to integers, like skimage on uint8
    images. ``rng`` is unused.
    """
    fg, ref = gather("histmatch", image, mask, ref_image, ref_mask)
    if uint8:
        fg_c = np.rint(fg * 255.0).astype(np.uint8)
        ref_c = np.rint(ref * 255.0).astype(np.uint8)
        new = np.empty(fg.shape, dtype=np.float64)
        for c in range(3):
            new[:, c] = match_cumulative_cdf(fg_c[:, c], ref_c[:, c]).astype(np.uint8)
        return composite(image, mask, new / 255.0)
    # match on the values as stored (float32 input stays float32, like skimage)
    src = take_masked(image, mask)
    rsrc = take_masked(image if ref_image is None else ref_image, ref_mask)
    new = np.empty(fg.shape, dtype=np.float64)
    for c in range(3):
        new[:, c] = match_cumulative_cdf(src[:, c], rsrc[:, c])
    return composite(image, mask, new)


# --------------------------------------------------------------------------
# ychist

# Bin ranges of MATLAB rgb2ycbcr codes: Y in [16, 235], Cb and Cr in [16, 240].
_YCC_LO = np.array([16, 16, 16])
_YCC_HI = np.array([235, 240, 240])


def cumulative_histogram_map(
    src: np.ndarray,
    ref: np.ndarray,
    lo: int,
    hi: int,
    src_counts: np.ndarray | None = None,
    ref_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Map 1-D ``src`` values (0–255 scale) onto ``ref`` by cumulative histogram mapping.

    Bins are 1 wide, centred on the integers ``lo..hi``. Values are returned per
    source pixel: the centre of the reference bin chosen by the "last reference
    bin with CDF ≤ CDF_src" rule, or the mean reference value inside the bin
    when the chosen bin is the first or the last one.

    CDFs are compared exactly (integer counts). The chosen bin is clamped to
    the reference's occupied bins, so outputs never leave the reference's
    range; the MATLAB code can pick an empty first/last bin there, whose mean
    is NaN (written as 0).

    ``src_counts``/``ref_counts``: multiplicity of each ``src``/``ref`` value
    (distinct colours standing for their pixels); the histograms count them
    (exactly), the edge bins' means weigh them; the result is per entry of ``src``.
    """
    n = hi - lo + 1
    sb = np.clip(np.floor(src - (lo - 0.5)).astype(np.int64), 0, n - 1)
    rb = np.clip(np.floor(ref - (lo - 0.5)).astype(np.int64), 0, n - 1)
    if src_counts is None:
        cs = np.cumsum(np.bincount(sb, minlength=n))  # int64 cumulative counts
    else:
        cs = np.cumsum(np.bincount(sb, weights=src_counts, minlength=n)).astype(np.int64)  # exact below 2^53
    if ref_counts is None:
        cr_counts = np.bincount(rb, minlength=n)
    else:
        cr_counts = np.bincount(rb, weights=ref_counts, minlength=n).astype(np.int64)
    cr = np.cumsum(cr_counts)
    ns, nr = int(cs[-1]), int(cr[-1])
    # last b with cr[b]/nr <= cs[v]/ns  <=>  cr[b]*ns <= cs[v]*nr (exact in int64 / object)
    if ns * nr < 2**62:
        k = np.searchsorted(cr * ns, cs * nr, side="right")
    else:  # pragma: no cover - > 2e9 pixels per side
        k = np.searchsorted(cr.astype(object) * ns, cs.astype(object) * nr, side="right")
    m = np.maximum(k - 1, 0)
    occupied = np.nonzero(cr_counts)[0]
    m = np.clip(m, occupied[0], occupied[-1])
    value = (lo + m).astype(np.float64)
    for edge in (0, n - 1):
        if cr_counts[edge]:
            at = rb == edge
            if ref_counts is None:
                value[m == edge] = ref[at].mean()
            else:
                w = np.asarray(ref_counts, dtype=np.float64)[at]
                value[m == edge] = float(w @ ref[at]) / float(w.sum())
    return value[sb]


@register_transfer("ychist", crop="mask", cost=0.11)
def ychist(
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
    quantize: bool = False,
) -> np.ndarray:
    """iHarmony4 cumulative histogram mapping in YCbCr, ``ref_image[ref_mask]`` -> ``image[mask]``.

    0–1 float in and out; YCbCr internally on MATLAB's 0–255 scale.
    ``quantize=True`` mimics the MATLAB uint8 pipeline: RGB and YCbCr rounded
    to integer codes and the output RGB rounded to 0–255 codes. ``rng`` is unused.
    """
    fg, ref = gather("ychist", image, mask, ref_image, ref_mask)
    if quantize:
        fg = np.rint(fg * 255.0) / 255.0
        ref = np.rint(ref * 255.0) / 255.0
    # the foreground's mapping is per pixel: done once per distinct colour (with its count in the histogram)
    distinct = unique_colours(fg)
    colours, inverse, counts = (fg, None, None) if distinct is None else distinct
    y_fg = rgb_to_ycbcr(colours)
    distinct_ref = unique_colours(ref)
    ref_colours, ref_counts = (ref, None) if distinct_ref is None else (distinct_ref[0], distinct_ref[2])
    y_ref = rgb_to_ycbcr(ref_colours)
    if quantize:
        y_fg = np.rint(y_fg)
        y_ref = np.rint(y_ref)
    new = np.empty_like(y_fg)
    for c in range(3):
        new[:, c] = cumulative_histogram_map(
            y_fg[:, c], y_ref[:, c], int(_YCC_LO[c]), int(_YCC_HI[c]), counts, ref_counts
        )
    if quantize:
        new = np.rint(new)
    rgb = ycbcr_to_rgb(new)
    if quantize:
        rgb = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0) / 255.0
    return composite(image, mask, rgb if inverse is None else rgb[inverse])
