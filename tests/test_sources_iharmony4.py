"""The iHarmony4 / flat-triplet source: layouts, name rules, split files and skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmbench.sources import get_source
from harmbench.sources.iharmony4 import detect_layout, scan_triplets, split_composite_name


def _img(path: Path, size=(8, 6), value=100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _mask(path: Path, size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    m[1:4, 2:6] = 255
    Image.fromarray(m).save(path)
    return path


def _subset(root: Path, name: str, triplets: dict[str, tuple[str, str]]) -> None:
    """``triplets``: composite file name -> (mask file name or '', real file name or '')."""
    for comp, (mask, real) in triplets.items():
        _img(root / name / "composite_images" / comp)
        if mask:
            _mask(root / name / "masks" / mask)
        if real:
            _img(root / name / "real_images" / real, value=120)
    for d in ("composite_images", "masks", "real_images"):
        (root / name / d).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def layout_root(tmp_path: Path) -> Path:
    root = tmp_path / "IHD"
    _subset(
        root,
        "HCOCO",
        {
            "c1_10_1.jpg": ("c1_10.png", "c1.jpg"),
            "c1_10_2.jpg": ("c1_10.png", "c1.jpg"),
            "c2_20_1.jpg": ("", "c2.jpg"),  # mask missing
            "c3_30_1.jpg": ("c3_30.png", ""),  # real missing
            "c4_40_1.jpg": ("c4_40.png", "c4.png"),  # real stored as PNG
        },
    )
    _subset(root, "HFlickr", {"f5_1_1.jpg": ("f5_1.png", "f5.jpg"), "f6_1_1.jpg": ("f6_1.png", "f6.jpg")})
    (root / "IHD_test.txt").write_text(
        "HCOCO/composite_images/c1_10_1.jpg\n"
        "HCOCO/composite_images/c2_20_1.jpg\n"
        "HCOCO/composite_images/c3_30_1.jpg\n"
        "HCOCO/composite_images/c4_40_1.jpg\n"
        "HCOCO/composite_images/c9_90_1.jpg\n"  # listed, files absent
        "\n"
    )
    (root / "HFlickr" / "HFlickr_test.txt").write_text("f5_1_1.jpg\n")
    (root / "IHD_train.txt").write_text("HCOCO/composite_images/c1_10_2.jpg\nHFlickr/composite_images/f6_1_1.jpg\n")
    return root


def test_name_rule():
    assert split_composite_name("a0001_1_1") == ("a0001_1", "a0001")
    assert split_composite_name("d21901-20130410-181833_1_9") == ("d21901-20130410-181833_1", "d21901-20130410-181833")
    assert split_composite_name("c100300_1602094") is None
    assert split_composite_name("plain") is None


def test_layout_with_split_files(layout_root: Path):
    assert detect_layout(layout_root) == "iharmony4"
    records, skipped = scan_triplets(layout_root, split="test")
    assert [r.key for r in records] == ["c1_10_1", "c4_40_1", "f5_1_1"]
    by_key = {r.key: r for r in records}
    assert by_key["c1_10_1"].subset == "HCOCO" and by_key["f5_1_1"].subset == "HFlickr"
    assert by_key["c4_40_1"].real_path.endswith("real_images/c4.png")
    assert by_key["c1_10_1"].mask_path.endswith("masks/c1_10.png")
    assert all(r.split == "test" for r in records)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert "mask" in reasons["c2_20_1.jpg"] and "c2_20" in reasons["c2_20_1.jpg"]
    assert "real image" in reasons["c3_30_1.jpg"] and "c3" in reasons["c3_30_1.jpg"]
    assert "IHD_test.txt" in reasons["c9_90_1.jpg"] and "missing" in reasons["c9_90_1.jpg"]


def test_layout_other_split_and_no_split(layout_root: Path):
    records, skipped = scan_triplets(layout_root, split="train")
    assert [r.key for r in records] == ["c1_10_2", "f6_1_1"] and not skipped
    records, skipped = scan_triplets(layout_root, split=None)
    assert [r.key for r in records] == ["c1_10_1", "c1_10_2", "c4_40_1", "f5_1_1", "f6_1_1"]
    assert all(r.split is None for r in records)
    assert len(skipped) == 2  # c2 (mask) and c3 (real)


def test_layout_without_split_files_uses_everything(layout_root: Path):
    for f in list(layout_root.glob("*.txt")) + list(layout_root.glob("*/*.txt")):
        f.unlink()
    records, _ = scan_triplets(layout_root, split="test")
    assert len(records) == 5 and all(r.split is None for r in records)


def test_single_subset_folder_as_root(layout_root: Path):
    records, _ = scan_triplets(layout_root / "HFlickr", split="test")
    assert [r.key for r in records] == ["f5_1_1"]  # the subset's own split file applies


def test_flat_folder_iharmony4_names_and_orphans(tmp_path: Path):
    d = tmp_path / "flat"
    _img(d / "c7_70_1.jpg")
    _img(d / "c7_70_2.png")
    _mask(d / "c7_70.jpg")  # grayscale JPEG mask (HCOCO pairs style)
    _img(d / "c7.jpg", value=130)
    _img(d / "c8_80_1.jpg")  # no mask, no real: named like a composite
    _img(d / "stray.png")
    assert detect_layout(d) == "flat"
    records, skipped = scan_triplets(d)
    assert [r.key for r in records] == ["c7_70_1", "c7_70_2"]
    assert records[0].mask_path.endswith("c7_70.jpg") and records[0].real_path.endswith("c7.jpg")
    assert {r.subset for r in records} == {"flat"}
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"c8_80_1.jpg", "stray.png"}
    assert "mask" in reasons["c8_80_1.jpg"]
    assert "no triplet" in reasons["stray.png"]


def test_flat_folder_rainnet_names(tmp_path: Path):
    d = tmp_path / "rn"
    for n in ("1", "2"):
        _img(d / f"{n}.png")
        _img(d / f"{n}-gt.png")
    _mask(d / "1-mask.png")
    records, skipped = scan_triplets(d)
    assert [r.key for r in records] == ["1"]
    assert len(skipped) == 1 and skipped[0].path.endswith("2.png") and "2-mask" in skipped[0].reason


def test_keys_are_dot_free(tmp_path: Path):
    d = tmp_path / "dots"
    _img(d / "img.v2_1_1.png")
    _mask(d / "img.v2_1.png")
    _img(d / "img.v2.png")
    records, _ = scan_triplets(d)
    assert len(records) == 1 and "." not in records[0].key


def test_registered_source_reports_skips(layout_root: Path):
    recs = get_source("iharmony4")(root=layout_root, split="test")
    assert [r.key for r in recs] == ["c1_10_1", "c4_40_1", "f5_1_1"]
    assert len(recs.skipped) == 3 and all(set(s) == {"path", "reason"} for s in recs.skipped)


def test_missing_root_is_an_input_error(tmp_path: Path):
    from harmbench.errors import InputError

    with pytest.raises(InputError, match="not found"):
        scan_triplets(tmp_path / "nope")


def test_shared_iharmony4_sample(shared):
    root = shared("data", "iharmony4_sample")
    records, skipped = scan_triplets(root, split="test")
    assert not skipped
    assert [(r.key, r.subset, r.split) for r in records] == [("a0002_1_4", "HAdobe5k", "test")]
    r = records[0]
    assert Path(r.mask_path).name == "a0002_1.png" and Path(r.real_path).name == "a0002.jpg"


def test_shared_triplets_256(shared):
    records, skipped = scan_triplets(shared("data", "triplets_256"))
    assert [r.key for r in records] == ["1", "2", "3"] and not skipped
    assert Path(records[0].real_path).name == "1-gt.png" and Path(records[0].mask_path).name == "1-mask.png"
