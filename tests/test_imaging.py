import io

import numpy as np
import pytest
from PIL import Image

from harmbench.errors import InputError
from harmbench.imaging import binarize, encode_image, read_mask, read_rgb


def _png(arr, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_rgba_alpha_dropped_not_composited(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: a compositing reader would return white/black
    p = tmp_path / "x.png"
    p.write_bytes(_png(rgba))
    rgb = read_rgb(p)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()


def test_mask_01_scaled_and_rgb_reduced(tmp_path):
    m = np.zeros((6, 6), np.uint8)
    m[2:4, 1:5] = 1
    p = tmp_path / "m01.png"
    p.write_bytes(_png(m))
    raw = read_mask(p)
    assert raw.max() == 255 and binarize(raw).sum() == 8
    rgb = np.repeat((m * 255)[..., None], 3, axis=2)
    q = tmp_path / "mrgb.png"
    q.write_bytes(_png(rgb))
    assert np.array_equal(read_mask(q), m * 255)


def test_mask_in_alpha_channel(tmp_path):
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[1:3, 1:3, 3] = 255
    p = tmp_path / "alpha.png"
    p.write_bytes(_png(rgba))
    assert binarize(read_mask(p)).sum() == 4


def test_truncated_and_missing_files_name_the_file(tmp_path):
    data = encode_image(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "jpg")
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_rgb(p)
    assert "cut.jpg" in str(e.value)
    with pytest.raises(InputError, match="nope.png: file not found"):
        read_mask(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="junk.png"):
        read_rgb(tmp_path / "junk.png")


def test_encode_roundtrip_png_is_lossless_and_deterministic():
    arr = np.random.default_rng(1).integers(0, 255, (17, 23, 3), dtype=np.uint8)
    a, b = encode_image(arr, "png"), encode_image(arr, "png")
    assert a == b
    assert np.array_equal(read_rgb(a), arr)
    jpg = read_rgb(encode_image(arr, "jpg", quality=95))
    assert jpg.shape == arr.shape
