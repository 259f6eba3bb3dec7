"""Every colour-transfer op once on real photos from ../shared (skipped when absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from skimage import color

from harmbench.imaging import read_mask, read_rgb
from harmbench.transfer import get_transfer, sample_params
from harmbench.transfer._common import rgb_to_lalphabeta

pytestmark = pytest.mark.shared

OPS = ["reinhard", "histmatch", "ychist", "xiao", "idt", "hue"]


def _rgb(path) -> np.ndarray:
    return read_rgb(path).astype(np.float32) / 255.0


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-channel 1-D Wasserstein distance between two pixel sets (N, 3) (every 3rd pixel)."""
    return float(np.mean([wasserstein_distance(a[::3, c], b[::3, c]) for c in range(3)]))


def _lab_mean(px: np.ndarray) -> np.ndarray:
    lab = rgb_to_lalphabeta(px)
    return lab[np.isfinite(lab).all(axis=1)].mean(axis=0)


def _moved_toward(name: str, src: np.ndarray, out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(distance before, distance after) to the reference in the statistic the op matches."""
    if name == "reinhard":  # lαβ means (RGB statistics suffer from clipping after the log-space transfer)
        return float(np.abs(_lab_mean(src) - _lab_mean(ref)).max()), float(
            np.abs(_lab_mean(out) - _lab_mean(ref)).max()
        )
    if name == "xiao":  # RGB means
        return float(np.abs(src.mean(0) - ref.mean(0)).max()), float(np.abs(out.mean(0) - ref.mean(0)).max())
    return _w1(src, ref), _w1(out, ref)  # marginals


def _check(out: np.ndarray, img: np.ndarray, mask: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.array_equal(out[~mask], img[~mask])
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.fixture
def hcoco_pair(shared):
    """iHarmony4's demo pair: tennis player (target) and an officer (reference object)."""
    d = shared("data", "hcoco_real_mask_pairs")
    img = _rgb(d / "c35030.jpg")
    mask = read_mask(d / "c35030_434421.jpg") >= 128
    ref = _rgb(d / "c172513.jpg")
    ref_mask = read_mask(d / "c172513_1275867.jpg") >= 128
    assert img.shape[:2] != ref.shape[:2] and mask.any() and ref_mask.any()
    return img, mask, ref, ref_mask


@pytest.mark.parametrize("name", OPS)
def test_hcoco_object_to_object(hcoco_pair, name):
    img, mask, ref, ref_mask = hcoco_pair
    out = get_transfer(name)(img, mask, ref, ref_mask, **sample_params(name, np.random.default_rng(0)))
    _check(out, img, mask)
    src, fg, r = img[mask].astype(np.float64), out[mask].astype(np.float64), ref[ref_mask].astype(np.float64)
    if name == "hue":
        l_in = color.rgb2lab(src[None])[0, :, 0]
        l_out = color.rgb2lab(fg[None])[0, :, 0]
        assert np.median(np.abs(l_out - l_in)) < 1.0
    else:  # the foreground moved toward the reference object
        before, after = _moved_toward(name, src, fg, r)
        assert after < (0.75 if name == "idt" else 0.5) * before, (before, after)


def test_color_transfer_pairs_whole_image(shared):
    d = shared("data", "color_transfer_pairs")
    pairs = sorted(d.glob("input_*A.jpg"))[:1]
    assert pairs
    for src_path in pairs:
        tgt_path = d / src_path.name.replace("input_", "target_").replace("A.jpg", "B.jpg")
        img, ref = _rgb(src_path), _rgb(tgt_path)
        full = np.ones(img.shape[:2], bool)
        rfull = np.ones(ref.shape[:2], bool)
        for name in ["reinhard", "histmatch", "ychist", "xiao", "idt"]:
            out = get_transfer(name)(img, full, ref, rfull, **sample_params(name, np.random.default_rng(1)))
            _check(out, img, full)
            a, b, o = (x.reshape(-1, 3).astype(np.float64) for x in (img, ref, out))
            before, after = _moved_toward(name, a, o, b)
            assert after < before, (name, before, after)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_labelme_outdoor_harmonization_setting(shared):
    """Baseline setting: the reference region is the photo's own background."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    d = shared("data", "labelme_outdoor")
    coco = json.loads((d / "annotations" / "instances.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    anns = [a for a in coco["annotations"] if 0.1 < a["area"] / (256 * 256) < 0.5][:2]
    assert anns
    for ann in anns:
        img = _rgb(d / "images" / files[ann["image_id"]])
        rle = dict(ann["segmentation"])
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        mask = mask_utils.decode(rle).astype(bool)
        assert mask.shape == img.shape[:2]
        for name in OPS:
            out = get_transfer(name)(img, mask, img, ~mask, **sample_params(name, np.random.default_rng(2)))
            _check(out, img, mask)
            if name in ("reinhard", "xiao", "idt", "histmatch"):
                bg = img[~mask].astype(np.float64)
                before = np.abs(img[mask].mean(0) - bg.mean(0)).max()
                after = np.abs(out[mask].mean(0) - bg.mean(0)).max()
                assert after < max(0.5 * before, 0.02), name
