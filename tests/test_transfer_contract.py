"""Contract of every colour-transfer op: registry, shapes, masks, errors, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harmbench.transfer import available_transfers, get_transfer, needs_reference, sample_params

OPS = ["reinhard", "histmatch", "ychist", "xiao", "idt", "hue"]
REF_OPS = [n for n in OPS if n != "hue"]


def _scene(seed: int = 0, shape=(40, 56), ref_shape=(33, 47)):
    """Random smooth-ish image, a blob mask, and a reference of another size."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    img = np.stack(
        [0.5 + 0.3 * np.sin(xx / 7.0 + c) * np.cos(yy / 5.0 - c) for c in range(3)], axis=-1
    ) + 0.05 * rng.standard_normal((h, w, 3))
    img = np.clip(img, 0, 1).astype(np.float32)
    mask = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1
    rh, rw = ref_shape
    ref = np.clip(rng.random((rh, rw, 3)) * np.array([0.5, 0.8, 0.3]) + np.array([0.4, 0.1, 0.5]), 0, 1)
    ref = ref.astype(np.float32)
    ref_mask = np.zeros((rh, rw), bool)
    ref_mask[5:25, 8:40] = True
    return img, mask, ref, ref_mask


def _params(name: str) -> dict:
    return sample_params(name, np.random.default_rng(7))


def test_registry_lists_all_ops():
    assert set(OPS) <= set(available_transfers())
    assert needs_reference("hue") is False
    assert all(needs_reference(n) for n in REF_OPS)
    with pytest.raises(KeyError, match="unknown colour transfer"):
        get_transfer("nope")


@pytest.mark.parametrize("name", OPS)
def test_sample_params_json_ready_and_deterministic(name):
    a = sample_params(name, np.random.default_rng(3))
    b = sample_params(name, np.random.default_rng(3))
    assert a == b
    assert json.loads(json.dumps(a)) == a


def test_sample_params_contents():
    assert sample_params("reinhard", np.random.default_rng(0)) == {}
    assert set(sample_params("idt", np.random.default_rng(0))) == {"seed"}
    for s in range(50):
        p = sample_params("hue", np.random.default_rng(s))
        assert 0.0 <= p["hue_shift"] < 1.0
        assert 0.3 <= p["sat_scale"] < 1.2


@pytest.mark.parametrize("name", OPS)
def test_output_contract(name):
    img, mask, ref, ref_mask = _scene()
    before = img.copy()
    out = get_transfer(name)(img, mask, ref, ref_mask, **_params(name))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.array_equal(img, before)  # input untouched
    assert np.array_equal(out[~mask], img[~mask])  # background bit-exact
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out[mask], img[mask], atol=1e-3)  # the foreground did change


@pytest.mark.parametrize("name", ["idt", "hue"])
def test_rng_deterministic_and_equal_to_recorded_params(name):
    img, mask, ref, ref_mask = _scene(1)
    op = get_transfer(name)
    a = op(img, mask, ref, ref_mask, rng=np.random.default_rng(11))
    b = op(img, mask, ref, ref_mask, rng=np.random.default_rng(11))
    c = op(img, mask, ref, ref_mask, **sample_params(name, np.random.default_rng(11)))
    d = op(img, mask, ref, ref_mask, rng=np.random.default_rng(12))
    assert np.array_equal(a, b)
    assert np.array_equal(a, c)
    assert not np.array_equal(a, d)


@pytest.mark.parametrize("name", REF_OPS)
def test_reference_defaults_to_same_image(name):
    img, mask, _, _ = _scene(2)
    op = get_transfer(name)
    p = _params(name)
    assert np.array_equal(op(img, mask, None, ~mask, **p), op(img, mask, img, ~mask, **p))


@pytest.mark.parametrize("name", OPS)
def test_empty_foreground_is_an_error(name):
    img, mask, ref, ref_mask = _scene()
    with pytest.raises(ValueError, match="foreground mask is empty"):
        get_transfer(name)(img, np.zeros_like(mask), ref, ref_mask, **_params(name))


@pytest.mark.parametrize("name", REF_OPS)
def test_reference_errors(name):
    img, mask, ref, ref_mask = _scene()
    op = get_transfer(name)
    with pytest.raises(ValueError, match="reference mask is empty"):
        op(img, mask, ref, np.zeros_like(ref_mask))
    with pytest.raises(ValueError, match="needs a reference"):
        op(img, mask)
    with pytest.raises(ValueError, match="shape"):
        op(img, mask, ref, ref_mask[:-1])


@pytest.mark.parametrize("name", OPS)
def test_bad_inputs(name):
    img, mask, ref, ref_mask = _scene()
    op = get_transfer(name)
    with pytest.raises(TypeError, match="bool"):
        op(img, mask.astype(np.uint8) * 255, ref, ref_mask)
    with pytest.raises(ValueError, match="0–1"):
        op(img * 255, mask, ref, ref_mask)
    with pytest.raises(TypeError, match="float"):
        op((img * 255).astype(np.uint8), mask, ref, ref_mask)


@pytest.mark.parametrize("name", OPS)
def test_single_colour_regions_are_finite(name):
    img, mask, ref, ref_mask = _scene(3)
    flat = img.copy()
    flat[mask] = (0.2, 0.5, 0.7)
    flat_ref = ref.copy()
    flat_ref[ref_mask] = (0.6, 0.3, 0.1)
    op = get_transfer(name)
    p = _params(name)
    for a, b in [(flat, ref), (img, flat_ref), (flat, flat_ref)]:
        out = op(a, mask, b, ref_mask, **p)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert np.array_equal(out[~mask], a[~mask])


@pytest.mark.parametrize("name", ["xiao", "idt"])
def test_single_colour_foreground_goes_to_reference_mean(name):
    img, mask, ref, ref_mask = _scene(4)
    img[mask] = (0.2, 0.5, 0.7)
    out = get_transfer(name)(img, mask, ref, ref_mask, **_params(name))
    fg = out[mask].astype(np.float64)
    assert np.ptp(fg, axis=0).max() < 1e-6
    np.testing.assert_allclose(fg[0], ref[ref_mask].mean(0), atol=1e-5)


@pytest.mark.parametrize("name", OPS)
def test_float64_input_accepted(name):
    img, mask, ref, ref_mask = _scene(5)
    out = get_transfer(name)(img.astype(np.float64), mask, ref.astype(np.float64), ref_mask, **_params(name))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, get_transfer(name)(img, mask, ref, ref_mask, **_params(name)), atol=1e-5)
