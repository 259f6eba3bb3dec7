"""Reinhard et al. 2001 global colour transfer in lαβ, restricted to a mask.

Follows iHarmony4's ``global_color_transfer/{gct,rgb2lab,lab2rgb,rescale_image}.m``:
RGB (0–1) -> LMS = M₁·RGB -> log10 -> lαβ; per channel
``x' = (x - μ_fg)·σ_ref/σ_fg + μ_ref`` with σ the sample std (N−1) over the
pixels whose lαβ is finite; back with the exact inverse of the lαβ rotation,
``10^·`` and M₂ (iHarmony4's corrected inverse of M₁, so M₂·M₁ ≈ I to 4 digits).

Defined edge cases:

* pure black pixels (LMS = 0, lαβ = −Inf/NaN) are left out of the statistics
  and stay black, as in the MATLAB code;
* a channel with σ_fg = 0 (single-colour foreground, or a single valid pixel)
  is shifted onto μ_ref (scale 1); σ_ref = 0 collapses it onto μ_ref;
* a foreground that is entirely black is returned unchanged; a reference
  region that is entirely black raises ``ValueError`` (statistics undefined).
"""

from __future__ import annotations

import numpy as np

from harmbench.transfer import register_transfer
from harmbench.transfer._common import (
    composite,
    gather,
    lalphabeta_to_rgb,
    rgb_to_lalphabeta,
    rows_matmul,
    unique_colours,
)

# σ below this (in lαβ units, where the channels span a few units) counts as zero.
_SIGMA_EPS = 1e-9


def lab_stats(lab: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(valid, mean, std)`` of lαβ pixels ``(N, 3)`` over finite rows; std with N−1 (0 if N < 2).

    ``counts`` ``(N,)``: row ``i`` stands for ``counts[i]`` pixels (distinct
    colours with their multiplicities); the statistics are those of the
    expanded list. Sums are weighted column sums: the same values as
    ``mean``/``std`` over the rows up to float summation order (~1e-16).
    """
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(
            rows_matmul(lab, np.ones((3, 1)))[:, 0]
        )  # a row sum is finite iff the row is (small values)
    every = bool(valid.all())
    v = lab if every else lab[valid]
    if counts is None:
        w = np.ones(len(v))
    else:
        w = np.asarray(counts, dtype=np.float64)
        w = w if every else w[valid]
    n = float(w.sum())
    if n == 0:
        return valid, np.full(3, np.nan), np.full(3, np.nan)
    mean = np.einsum("i,ij->j", w, v) / n  # weighted column sums (no BLAS threads)
    if n < 2:
        return valid, mean, np.zeros(3)
    d = v - mean
    d *= d
    return valid, mean, np.sqrt(np.einsum("i,ij->j", w, d) / (n - 1))


# Below this many pixels the per-pixel conversion is cheaper than finding the distinct colours.
_DISTINCT_FROM = 1 << 18


def _lab_distinct(px: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(lab, inverse, counts)``: lαβ of the distinct colours of ``px`` (8-bit data, at least
    :data:`_DISTINCT_FROM` pixels), or of every pixel (``inverse``/``counts`` None)."""
    distinct = unique_colours(px) if len(px) >= _DISTINCT_FROM else None
    if distinct is None:
        return rgb_to_lalphabeta(px), None, None
    values, inverse, counts = distinct
    return rgb_to_lalphabeta(values), inverse, counts


@register_transfer("reinhard", crop="mask", cost=0.17)
def reinhard(
    image: np.ndarray,
    mask: np.ndarray,
    ref_image: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Reinhard lαβ mean/std transfer from ``ref_image[ref_mask]`` onto ``image[mask]``.

    Inputs/outputs on the 0–1 scale (float32 out, clipped); ``rng`` is unused.
    On large regions from 8-bit data, conversions and statistics run once per
    distinct colour (weighted by its pixel count).
    """
    fg, ref = gather("reinhard", image, mask, ref_image, ref_mask)
    lab_fg, inverse, counts_fg = _lab_distinct(fg)
    lab_ref, _, counts_ref = _lab_distinct(ref)
    valid_fg, mu_fg, sd_fg = lab_stats(lab_fg, counts_fg)
    _, mu_ref, sd_ref = lab_stats(lab_ref, counts_ref)
    del lab_ref
    if not np.isfinite(mu_ref).all():
        raise ValueError("reinhard: the reference region is entirely black (0,0,0); its lαβ statistics are undefined")
    if not valid_fg.any():
        return composite(image, mask, fg)
    scale = np.divide(sd_ref, sd_fg, out=np.ones(3), where=sd_fg > _SIGMA_EPS)
    new = np.zeros(lab_fg.shape)  # black pixels stay black
    new[valid_fg] = lalphabeta_to_rgb((lab_fg[valid_fg] - mu_fg) * scale + mu_ref)
    return composite(image, mask, new if inverse is None else new[inverse])
