"""``harmbench.arrays``: the fast copies equal numpy's plain indexing, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from harmbench.arrays import put_masked, swap_rows_cols, take_masked
from harmbench.transfer import idt as idt_mod

DTYPES = [np.uint8, np.uint16, np.int64, np.float32, np.float64, np.bool_]


def _image(rng, shape, dtype):
    return (rng.random(shape) * 200).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 9, 3), (5, 6, 1), (4, 4, 4), (1, 1, 3), (6, 11, 5)])
def test_take_and_put_equal_boolean_indexing(dtype, shape):
    rng = np.random.default_rng(shape[0] * 31 + shape[2])
    img = _image(rng, shape, dtype)
    for mask in (rng.random(shape[:2]) < 0.4, np.zeros(shape[:2], bool), np.ones(shape[:2], bool)):
        got = take_masked(img, mask)
        assert got.dtype == img.dtype and got.shape == (int(mask.sum()), shape[2])
        assert np.array_equal(got, img[mask])
        for values in (_image(rng, (int(mask.sum()), shape[2]), dtype), rng.random((int(mask.sum()), shape[2])) * 150):
            want, out = img.copy(), img.copy()
            want[mask] = values
            put_masked(out, mask, values)
            assert np.array_equal(out, want)


def test_put_rounds_float64_into_float32_as_numpy_assignment():
    rng = np.random.default_rng(3)
    img = np.zeros((40, 50, 3), np.float32)
    mask = rng.random((40, 50)) < 0.5
    values = rng.random((int(mask.sum()), 3)) / 3.0  # not representable in float32: rounding is visible
    want = img.copy()
    want[mask] = values
    put_masked(img, mask, values)
    assert np.array_equal(img, want)
    assert not np.array_equal(img[mask].astype(np.float64), values)


def test_views_of_a_larger_frame_and_strided_pixels():
    rng = np.random.default_rng(5)
    frame = _image(rng, (30, 40, 3), np.uint8)
    box = (slice(4, 19), slice(7, 33))
    mask = rng.random((15, 26)) < 0.5
    assert np.array_equal(take_masked(frame[box], mask), frame[box][mask])
    values = _image(rng, (int(mask.sum()), 3), np.uint8)
    want, out = frame.copy(), frame.copy()
    want[box][mask] = values
    put_masked(out[box], mask, values)
    assert np.array_equal(out, want)
    assert np.array_equal(out[:4], frame[:4]) and np.array_equal(out[19:], frame[19:])  # outside the box untouched
    bgr = frame[:, :, ::-1]  # pixels not contiguous: falls back to numpy, same result
    full = rng.random((30, 40)) < 0.5
    assert np.array_equal(take_masked(bgr, full), bgr[full])


def test_wrong_count_is_refused_like_numpy():
    img = np.zeros((4, 5, 3), np.uint8)
    mask = np.zeros((4, 5), bool)
    mask[1, 1:4] = True
    with pytest.raises(ValueError):
        put_masked(img, mask, np.ones((2, 3), np.uint8))
    with pytest.raises(ValueError):
        img[mask] = np.ones((2, 3), np.uint8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 8), (5, 8, 1), (5, 8, 3), (9, 2, 4), (3, 4, 6), (0, 4, 3)])
def test_swap_rows_cols_equals_numpy_transpose(dtype, shape):
    a = _image(np.random.default_rng(len(shape)), shape, dtype)
    got = swap_rows_cols(a)
    want = np.swapaxes(a, 0, 1)
    assert got.shape == want.shape and got.dtype == a.dtype and got.flags.c_contiguous
    assert np.array_equal(got, want)


def test_idt_helpers_equal_the_numpy_reductions():
    rng = np.random.default_rng(8)
    g = rng.random((33, 47, 3)).astype(np.float32)
    assert np.array_equal(idt_mod._channel_sum64(g), g.sum(axis=2, dtype=np.float64))
    pts = rng.random((1001, 3))
    assert idt_mod._spread(pts) == np.ptp(pts, axis=0).max()
    same = np.tile(pts[:1], (500, 1))
    assert idt_mod._spread(same) == 0.0
    plane = rng.random((13, 17))
    for dtype in (np.float32, np.float64):
        assert np.array_equal(idt_mod._channels(plane, dtype, 3), np.repeat(plane.astype(dtype)[..., None], 3, axis=2))
