from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2hsv

from harmbench.transfer.retouch import RETOUCHES, Retouch, retouch


def _img(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (32, 40, 3), dtype=np.uint8)


def test_identity_retouch_is_lossless():
    img = _img()
    assert np.array_equal(retouch(img, Retouch()), img)


def test_white_balance_and_exposure_follow_the_formula():
    img = _img(1)
    out = retouch(img, Retouch(wb=(1.1, 1.0, 0.9), exposure=-1.0))
    ref = np.round(np.clip(img.astype(np.float64) / 255 * np.array([1.1, 1.0, 0.9]) * 0.5, 0, 1) * 255)
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_saturation_keeps_gray_and_scales_chroma():
    gray = np.full((4, 4, 3), 120, np.uint8)
    assert np.array_equal(retouch(gray, Retouch(saturation=1.5)), gray)
    img = _img(2)
    s0 = rgb2hsv(img)[..., 1].mean()
    assert (
        rgb2hsv(retouch(img, Retouch(saturation=0.5)))[..., 1].mean()
        < s0
        < rgb2hsv(retouch(img, Retouch(saturation=1.4)))[..., 1].mean()
    )


def test_black_lift_and_contrast_endpoints():
    ramp = np.repeat(np.linspace(0, 255, 256).astype(np.uint8)[None, :, None], 3, axis=2)
    lifted = retouch(ramp, Retouch(black=0.1))
    assert lifted[0, 0, 0] == round(0.1 * 255) and lifted[0, -1, 0] == 255
    s = retouch(ramp, Retouch(contrast=1.0))
    assert s[0, 0, 0] == 0 and s[0, -1, 0] == 255 and s[0, 64, 0] < 64 and s[0, 192, 0] > 192


@pytest.mark.parametrize("name", sorted(RETOUCHES))
def test_presets_change_the_photo(name):
    img = _img(3)
    out = retouch(img, name)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 3


def test_demo_versions_are_cached_and_deterministic(tmp_path):
    from harmbench.sources import get_source

    recs = get_source("demo")(versions=True, cache_dir=tmp_path)
    assert all(set(r.versions) == {"original", *RETOUCHES} for r in recs)
    from harmbench.imaging import read_rgb

    r = recs[0]
    arrs = {v: read_rgb(p) for v, p in r.versions.items()}
    assert {a.shape for a in arrs.values()} == {(r.size[0], r.size[1], 3)}
    first = {v: Path(p).read_bytes() for v, p in r.versions.items()}
    again = get_source("demo")(versions=True, cache_dir=tmp_path)[0]
    assert {v: Path(p).read_bytes() for v, p in again.versions.items()} == first
    assert np.array_equal(arrs["warm"], retouch(arrs["original"], "warm"))
