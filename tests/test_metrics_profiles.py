"""Profiles: preparation vs the codebases' own libraries, resize strategies, buckets, records."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from harmbench.errors import UserError
from harmbench.metrics import BUCKET_NAMES, PROFILES, RESIZES, compute_metrics, get_profile, stack_samples
from harmbench.metrics.resize import target_size


def _sample(h=300, w=420, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    real = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 256)], -1).astype(np.uint8)
    real = np.clip(real.astype(int) + rng.integers(-20, 20, real.shape), 0, 255).astype(np.uint8)
    pred = np.clip(real.astype(int) + rng.integers(-30, 30, real.shape), 0, 255).astype(np.uint8)
    mask = (((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2 <= 1).astype(np.uint8) * 255
    return pred, real, mask


def test_registry_and_errors():
    assert set(PROFILES) == {"harmbench", "iharm", "dovenet", "zhenglab", "pctnet", "dccf"}
    assert get_profile(None).name == "harmbench"
    assert get_profile(" IHARM ").name == "iharm"
    with pytest.raises(UserError, match="dovenet"):  # lists the choices
        get_profile("samsung")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["iharm"].psnr_eps = 0.0
    assert RESIZES == ("fixed256", "limit1024", "none")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_to_dict_records_every_choice(name):
    d = get_profile(name).to_dict()
    json.dumps(d)  # serialisable
    for key in (
        "image_filter",
        "mask_rule",
        "mask_binary",
        "mask_threshold",
        "psnr_peak",
        "psnr_eps",
        "fmse_formula",
        "fmse_eps",
        "fpsnr_peak",
        "fpsnr_eps",
        "dtype",
        "ssim",
        "ssim_origin",
        "bucket_edges",
        "bucket_inclusive",
        "bucket_names",
        "fg_ratio_rule",
        "empty_mask",
        "source",
        "mse_formula",
        "ssim_input",
        "resolutions",
    ):
        assert key in d, key
    assert {"window", "sigma", "k1", "k2", "data_range", "padding"} <= set(d["ssim"])
    assert d["bucket_names"] == list(BUCKET_NAMES)


def test_iharm_prepare_matches_opencv_albumentations_rule():
    pred, real, mask = _sample()
    s = get_profile("iharm").prepare(pred, real, mask, "fixed256")
    want_t = cv2.resize(real, (256, 256), interpolation=cv2.INTER_LINEAR)
    want_m = cv2.resize(mask.astype(np.float32) / 255.0, (256, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(s.target, want_t.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(
        s.pred, cv2.resize(pred, (256, 256), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    )
    np.testing.assert_array_equal(s.mask[0], want_m)
    assert ((s.mask > 0) & (s.mask < 1)).any()  # continuous mask kept
    assert s.fg_ratio == pytest.approx(float((want_m > 0.5).sum()) / 256**2)
    assert s.pred.dtype == s.mask.dtype == np.float32 and s.mask.shape == (1, 256, 256)


@pytest.mark.parametrize("name", ["dovenet", "zhenglab"])
def test_bcmi_and_zhenglab_prepare_match_pil(name):
    pred, real, mask = _sample()
    s = get_profile(name).prepare(pred, real, mask, "fixed256")
    want_t = np.asarray(Image.fromarray(real).resize((256, 256), Image.Resampling.BICUBIC))
    m1 = Image.fromarray(mask).convert("1").resize((256, 256), Image.Resampling.BICUBIC)  # PIL uses NEAREST for '1'
    np.testing.assert_array_equal(s.target, want_t.transpose(2, 0, 1))
    np.testing.assert_array_equal(s.mask[0], np.asarray(m1, dtype=np.float32))
    assert set(np.unique(s.mask)) <= {0.0, 1.0}


def test_one_bit_conversion_dithers_grey_masks():
    grey = np.full((64, 64), 100, np.uint8)  # a soft mask level below 128
    _, real, _ = _sample(64, 64)
    s = get_profile("dovenet").prepare(real, real, grey, "none")
    frac = s.mask.mean()
    assert 0.3 < frac < 0.5  # Floyd–Steinberg: ~100/255 of the pixels on
    np.testing.assert_array_equal(s.mask[0], np.asarray(Image.fromarray(grey).convert("1"), dtype=np.float32))
    hb = get_profile("harmbench").prepare(real, real, grey, "none")
    assert hb.mask.max() == 0.0  # thresholded, not dithered


def test_harmbench_prepare_threshold_after_antialiased_resize():
    pred, real, mask = _sample(600, 800)
    s = get_profile("harmbench").prepare(pred, real, mask, "fixed256")
    soft = np.asarray(Image.fromarray(mask.astype(np.float32) / 255.0).resize((256, 256), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(s.mask[0], (soft > 0.5).astype(np.float32))
    np.testing.assert_array_equal(
        s.target, np.asarray(Image.fromarray(real).resize((256, 256), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    )
    assert s.fg_ratio == pytest.approx(float(s.mask.mean()))


def test_resize_strategies():
    assert target_size(300, 420, "fixed256") == (256, 256)
    assert target_size(300, 420, "none") == (300, 420)
    assert target_size(800, 1024, "limit1024") == (800, 1024)  # never upscaled, 1024 kept
    assert target_size(2832, 4256, "limit1024") == (681, 1024)  # round(2832 * 1024 / 4256) = 681.4
    assert target_size(4000, 1000, "limit1024") == (1024, 256)
    with pytest.raises(UserError, match="limit1024"):
        target_size(10, 10, "fixed512")
    pred, real, mask = _sample(1100, 1500)
    s = get_profile("iharm").prepare(pred, real, mask, "limit1024")
    assert s.size == (751, 1024)
    np.testing.assert_array_equal(
        s.target, cv2.resize(real, (1024, 751), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    )


def test_prediction_at_target_size_is_not_resized_again():
    pred, real, mask = _sample()
    pred256 = np.asarray(Image.fromarray(pred).resize((256, 256), Image.Resampling.NEAREST))
    for name in PROFILES:
        s = get_profile(name).prepare(pred256, real, mask, "fixed256")
        np.testing.assert_array_equal(s.pred, pred256.transpose(2, 0, 1).astype(np.float32))
    small = pred[:256, :256].copy()
    s = get_profile("zhenglab").prepare(small, real[:256, :256].copy(), mask[:256, :256].copy(), "fixed256")
    np.testing.assert_array_equal(s.target, real[:256, :256].transpose(2, 0, 1))  # already 256: untouched


def test_prepare_rejects_bad_inputs_naming_the_field():
    pred, real, mask = _sample()
    p = get_profile("harmbench")
    with pytest.raises(UserError, match=r"x\.png: pred is 10x10"):
        p.prepare(pred[:10, :10], real, mask, "fixed256", name="x.png")
    with pytest.raises(UserError, match="mask is"):
        p.prepare(pred, real, mask[:20], "fixed256")
    with pytest.raises(UserError, match="real must be a uint8"):
        p.prepare(pred, real.astype(np.float32), mask, "fixed256")
    with pytest.raises(UserError, match="mask must be"):
        p.prepare(pred, real, mask.astype(np.float32), "fixed256")
    with pytest.raises(UserError, match="resize"):
        p.prepare(pred, real, mask, "Fixed256")


def test_fg_buckets():
    ih, hb = get_profile("iharm"), get_profile("harmbench")
    assert ih.fg_buckets(0.05) == ["0-5", "5-15"]  # Samsung: both ends inclusive
    assert ih.fg_buckets(0.15) == ["5-15", "15-100"]
    assert hb.fg_buckets(0.05) == ["5-15"]  # harmbench: [lo, hi), last closed
    assert hb.fg_buckets(0.15) == ["15-100"]
    assert hb.fg_buckets(0.0) == ["0-5"] and hb.fg_buckets(1.0) == ["15-100"]
    assert hb.fg_buckets(0.1) == ih.fg_buckets(0.1) == ["5-15"]


def test_profiles_give_different_numbers_on_the_same_sample():
    pred, real, mask = _sample(500, 700)
    vals = {}
    for name, prof in PROFILES.items():
        s = prof.prepare(pred, real, mask, "fixed256")
        vals[name] = {k: v.item() for k, v in compute_metrics(*stack_samples([s]), prof).items()}
    assert vals["iharm"]["psnr"] != pytest.approx(vals["harmbench"]["psnr"], abs=1e-3)
    assert vals["zhenglab"]["ssim"] != pytest.approx(vals["harmbench"]["ssim"], abs=1e-4)
    with pytest.raises(UserError, match="different sizes"):
        stack_samples(
            [
                PROFILES["iharm"].prepare(pred, real, mask, "fixed256"),
                PROFILES["iharm"].prepare(pred, real, mask, "none"),
            ]
        )


def test_real_triplets_from_shared(shared):
    from harmbench.imaging import read_mask, read_rgb

    folder = shared("data", "triplets_256")
    comps = sorted(p for p in folder.glob("*.png") if "-" not in p.stem)
    assert comps
    for comp in comps[:2]:
        pred = read_rgb(comp)
        real = read_rgb(folder / f"{comp.stem}-gt.png")
        mask = read_mask(folder / f"{comp.stem}-mask.png")
        for name, prof in PROFILES.items():
            s = prof.prepare(pred, real, mask, "fixed256")
            out = compute_metrics(*stack_samples([s]), prof)
            assert out["mse"].item() > 0 and out["fmse"].item() > 0, name
            assert out["fmse"].item() > out["mse"].item()  # composites differ only in the foreground
            assert -1 <= out["ssim"].item() <= 1


def test_pred_8bit_is_a_recorded_profile_field():
    """Whether outputs are rounded to 8 bits before scoring is part of the protocol (``harmbench eval`` reads it)."""
    want = {"harmbench": True, "dovenet": True, "zhenglab": True, "iharm": False, "pctnet": False, "dccf": False}
    for name, rounded in want.items():
        assert get_profile(name).pred_8bit is rounded
        assert get_profile(name).to_dict()["pred_8bit"] is rounded
