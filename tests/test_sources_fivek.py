"""FiveK source: version grouping (both layouts), mask pairing, one-size loading, skips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmbench.errors import UserError
from harmbench.sources import ObjectRecord, get_source
from harmbench.sources.coco import encode_mask
from harmbench.sources.fivek import find_fivek_photos, fivek_source, load_versions, short_id

A0001 = "a0001-jmac_DSC1459"
IDS = ["a0001-jmac_DSC1459", "a1384-dvf_095", "a4607-050801_080948__I2E5512"]


def _mask(path: Path, w: int, h: int, box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)
    return m > 0


def _gray(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64).mean(axis=2)


def test_registered():
    assert get_source("fivek") is fivek_source


def test_flat_grouping(shared):
    photos = find_fivek_photos(shared("data", "fivek_experts_sample"))
    assert sorted(photos) == IDS
    for versions in photos.values():
        assert sorted(versions) == ["A", "B", "C", "D", "E"]
    assert short_id(A0001) == "a0001" and short_id("IMG_1") is None


def test_folder_per_expert_layout(shared, tmp_path):
    src = shared("data", "fivek_experts_sample")
    for pid in IDS:
        for v, folder in (("A", "expertA"), ("C", "Expert_C"), ("E", "e")):
            (tmp_path / folder).mkdir(exist_ok=True)
            shutil.copy(src / f"{pid}_{v}.jpg", tmp_path / folder / f"{pid}.jpg")
    (tmp_path / "original").mkdir()
    shutil.copy(src / f"{A0001}_B.jpg", tmp_path / "original" / f"{A0001}.jpg")
    photos = find_fivek_photos(tmp_path)
    assert sorted(photos) == IDS
    assert sorted(photos[A0001]) == ["A", "C", "E", "original"]
    assert sorted(photos[IDS[1]]) == ["A", "C", "E"]


def test_records_and_same_size_loading(shared, tmp_path):
    src = shared("data", "fivek_experts_sample")
    masks = tmp_path / "masks"
    masks.mkdir()
    full = _mask(masks / "a0001.png", 1504, 1000, (400, 300, 900, 700))  # short id, full size
    _mask(masks / "a1384-dvf_095_2.png", *Image.open(src / "a1384-dvf_095_C.jpg").size, (10, 10, 60, 50))
    _mask(masks / "a9999.png", 100, 100, (1, 1, 5, 5))  # no such photo
    _mask(masks / "a4607.png", 80, 80, (0, 0, 0, 0))  # empty
    recs = fivek_source(src, masks=masks)
    assert [r.key for r in recs] == ["fivek_a0001-jmac_DSC1459_0", "fivek_a1384-dvf_095_2"]
    rec = recs[0]
    assert rec.size == (1000, 1504) and rec.image_id == A0001
    assert sorted(rec.versions) == ["A", "B", "C", "D", "E"]
    assert rec.meta["native_sizes"]["A"] == (600, 902) and rec.meta["native_sizes"]["C"] == (1000, 1504)
    assert rec.meta["default_version"] == "C" and rec.image_path.endswith("_C.jpg")
    assert np.array_equal(rec.decode_mask(), full)
    reasons = {Path(s["path"]).name: s["reason"] for s in recs.skipped}
    assert "no FiveK photo" in reasons["a9999.png"] and "empty" in reasons["a4607.png"]
    assert recs.filtered["no_mask"] == 1
    assert recs[1].object_id == "2"

    arrays = load_versions(rec)
    assert sorted(arrays) == ["A", "B", "C", "D", "E"]
    for a in arrays.values():
        assert a.shape == (1000, 1504, 3) and a.dtype == np.uint8
    # A was upsampled from 902x600: same scene geometry as the full-size versions
    b = _gray(arrays["B"])
    a = _gray(arrays["A"])
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.8, corr
    shifted = np.corrcoef(a[:, 40:].ravel(), b[:, :-40].ravel())[0, 1]
    assert corr > shifted
    only = load_versions(rec, ["a", "C"])
    assert sorted(only) == ["A", "C"]
    with pytest.raises(KeyError):
        load_versions(rec, ["original"])


def test_mask_size_drives_the_size(shared, tmp_path):
    """A mask drawn on the small version A: every version is brought down to 902x600."""
    src = shared("data", "fivek_experts_sample")
    masks = tmp_path / "m"
    masks.mkdir()
    _mask(masks / f"{A0001}.png", 902, 600, (100, 100, 300, 250))
    _mask(masks / "a1384.png", 300, 300, (10, 10, 50, 50))  # square: no version has that aspect ratio
    recs = fivek_source(src, masks=masks, default_version="B")
    assert len(recs) == 1
    rec = recs[0]
    assert rec.size == (600, 902)
    assert rec.meta["default_version"] == "B"
    arrays = load_versions(rec)
    assert all(a.shape == (600, 902, 3) for a in arrays.values())
    a_native = np.asarray(Image.open(src / f"{A0001}_A.jpg").convert("RGB"))
    assert np.array_equal(arrays["A"], a_native)  # already at the mask size: untouched
    reasons = [s["reason"] for s in recs.skipped]
    assert sum("aspect ratio differs" in r for r in reasons) == 5
    assert any("no version matches" in r for r in reasons)


def test_mask_records_from_another_source(shared, tmp_path):
    src = shared("data", "fivek_experts_sample")
    w, h = Image.open(src / f"{A0001}_C.jpg").size
    m = np.zeros((h, w), bool)
    m[100:200, 300:500] = True
    rec = ObjectRecord(
        key="folder_a0001_7",
        source="folder",
        image_id="a0001",
        object_id="7",
        image_path=str(tmp_path / f"{A0001}_C.jpg"),
        category="boat",
        size=(h, w),
        mask_rle=encode_mask(m),
    )
    recs = fivek_source(src, mask_records=[rec], versions=["C", "D"])
    assert len(recs) == 1
    out = recs[0]
    assert out.category == "boat" and sorted(out.versions) == ["C", "D"]
    assert out.meta["mask_key"] == "folder_a0001_7" and out.object_id == "folder_7"
    assert np.array_equal(out.decode_mask(), m)
    with pytest.raises(UserError):
        fivek_source(src)


def test_folder_source_hcoco_pairs(shared):
    """The generic image+mask folder source (a mask source for FiveK too) on HCOCO-named pairs."""
    root = shared("data", "hcoco_real_mask_pairs")
    recs = get_source("folder")(images=root, category="person")
    assert [r.key for r in recs] == ["folder_c172513_1275867", "folder_c35030_434421"]
    assert recs.skipped == []
    for r in recs:
        raw = np.asarray(Image.open(r.mask_path).convert("L"))
        assert np.array_equal(r.decode_mask(), raw >= 128)
        assert r.decode_mask().shape == r.size and r.category == "person"


def test_folder_masks_feed_fivek(shared, tmp_path):
    src = shared("data", "fivek_experts_sample")
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks / f"{A0001}_C_1.png", 1504, 1000, (0, 0, 100, 100))
    _mask(masks / f"{A0001}_C_2.png", 10, 10, (0, 0, 5, 5))  # wrong size for the photo
    _mask(masks / "unknown_1.png", 10, 10, (0, 0, 5, 5))
    folder = get_source("folder")(images=src, masks=masks, category="dog")
    assert [r.key for r in folder] == [f"folder_{A0001}_C_1"]
    reasons = {Path(s["path"]).name: s["reason"] for s in folder.skipped}
    assert "1504x1000" in reasons[f"{A0001}_C_2.png"] and "no photo" in reasons["unknown_1.png"]
    recs = fivek_source(src, mask_records=folder)
    assert len(recs) == 1 and recs[0].category == "dog" and recs[0].image_id == A0001
    assert recs[0].size == (1000, 1504) and len(recs[0].versions) == 5
