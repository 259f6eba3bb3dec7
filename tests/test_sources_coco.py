"""COCO source: counts, mask fidelity against pycocotools, licences, filters, skips, labelme_outdoor."""

from __future__ import annotations

import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _helpers import coco_api
from PIL import Image

from harmbench.sources import SourceRecords, get_source
from harmbench.sources.coco import apply_object_filters, coco_source, segmentation_to_rle

VAL = ("data", "coco_val2017_sample")
VAL_JSON = "annotations/instances_val2017_subset.json"


def _runs_uncompressed(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with background (written here, not by pycocotools)."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    runs, current, n = [], 0, 0
    for v in flat:
        if v == current:
            n += 1
        else:
            runs.append(n)
            current, n = v, 1
    runs.append(n)
    return runs


def test_registered():
    assert get_source("coco") is coco_source


def test_val2017_counts_and_masks_match_pycocotools(shared):
    root = shared(*VAL)
    recs = get_source("coco")(root=root)
    assert isinstance(recs, SourceRecords)
    assert len(recs) == 76  # 77 instances, 1 crowd
    assert recs.filtered == {"iscrowd": 1}
    assert recs.skipped == []
    assert [r.key for r in recs] == sorted(r.key for r in recs)
    cats = Counter(r.category for r in recs)
    assert cats["person"] == 40 and cats["kite"] == 13 and len(cats) == 18

    api = coco_api(root / VAL_JSON)
    for r in recs:
        ann = api.anns[int(r.object_id)]
        assert ann["iscrowd"] == 0
        assert isinstance(r.mask_rle["counts"], str)
        expected = api.annToMask(ann).astype(bool)
        got = r.decode_mask()
        assert got.shape == r.size == (api.imgs[int(r.image_id)]["height"], api.imgs[int(r.image_id)]["width"])
        assert np.array_equal(got, expected), r.key
        assert r.meta["area"] == int(expected.sum())
        assert Path(r.image_path).is_file()


def test_val2017_licences_from_table(shared):
    root = shared(*VAL)
    data = json.loads((root / VAL_JSON).read_text())
    table = {lic["id"]: lic for lic in data["licenses"]}
    by_img = {str(im["id"]): im for im in data["images"]}
    recs = coco_source(root=root)
    for r in recs:
        lic = table[by_img[r.image_id]["license"]]
        assert r.license == lic["name"]
        assert r.meta["license_url"] == lic["url"]


def test_polygon_compressed_and_uncompressed_rle_equivalent(shared, tmp_path):
    """Each instance re-encoded three ways decodes to exactly COCO.annToMask of the original."""
    root = shared(*VAL)
    data = json.loads((root / VAL_JSON).read_text())
    api = coco_api(root / VAL_JSON)
    from pycocotools import mask as mask_utils

    picked = [a for a in data["annotations"] if not a["iscrowd"]][:12]
    anns = []
    for a in picked:
        img = api.imgs[a["image_id"]]
        h, w = img["height"], img["width"]
        m = api.annToMask(a)
        comp = mask_utils.encode(np.asfortranarray(m))
        variants = {
            1: a["segmentation"],  # polygons
            2: {"size": [h, w], "counts": _runs_uncompressed(m)},  # uncompressed RLE
            3: {"size": [h, w], "counts": comp["counts"].decode("ascii")},  # compressed RLE
            4: json.dumps({"size": [h, w], "counts": comp["counts"].decode("ascii")}),  # RLE stored as a string
        }
        for k, seg in variants.items():
            anns.append({**a, "id": a["id"] * 10 + k, "segmentation": seg})
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert crowd and isinstance(crowd[0]["segmentation"]["counts"], list)
    anns += crowd
    (tmp_path / "ann.json").write_text(json.dumps({**data, "annotations": anns}))
    recs = coco_source(annotations=tmp_path / "ann.json", images=root / "images", include_crowd=True)
    assert len(recs) == len(anns) and recs.skipped == []
    originals = {a["id"]: a for a in data["annotations"]}
    for r in recs:
        oid = int(r.object_id)
        orig = originals.get(oid) or originals[oid // 10]
        assert isinstance(r.mask_rle["counts"], str)
        assert np.array_equal(r.decode_mask(), api.annToMask(orig).astype(bool)), r.key
    assert sum(r.meta["iscrowd"] for r in recs) == 1


def test_bad_inputs_are_skipped_with_reasons(shared, tmp_path):
    root = shared(*VAL)
    data = json.loads((root / VAL_JSON).read_text())
    images = tmp_path / "images"
    shutil.copytree(root / "images", images)
    first, second, third = data["images"][:3]
    (images / first["file_name"]).unlink()  # missing file
    (images / second["file_name"]).write_bytes(b"not an image")  # unreadable
    Image.new("RGB", (50, 40)).save(images / third["file_name"], format="JPEG")  # size mismatch
    fourth = data["images"][3]
    h, w = fourth["height"], fourth["width"]
    extra = [
        {
            "id": 1,
            "image_id": fourth["id"],
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[w + 500, 0, w + 600, 10, w + 550, 50]],
        },
        {"id": 2, "image_id": fourth["id"], "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 5, 5]]},
        {
            "id": 3,
            "image_id": fourth["id"],
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": {"size": [h, w], "counts": [h * w]},
        },
        {
            "id": 4,
            "image_id": fourth["id"],
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": {"size": [h + 1, w], "counts": [h * w + w]},
        },
        {"id": 5, "image_id": fourth["id"], "category_id": 999, "iscrowd": 0, "segmentation": [[1, 1, 50, 1, 50, 50]]},
        {"id": 6, "image_id": 123456789, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 50, 1, 50, 50]]},
        {
            "id": 7,
            "image_id": fourth["id"],
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": {"size": [h, w], "counts": "zzzz"},
        },
    ]
    (tmp_path / "ann.json").write_text(json.dumps({**data, "annotations": data["annotations"] + extra}))
    recs = coco_source(annotations=tmp_path / "ann.json", images=images)

    n_first = sum(1 for a in data["annotations"] if a["image_id"] == first["id"] and not a["iscrowd"])
    n_lost = sum(
        1 for a in data["annotations"] if a["image_id"] in {first["id"], second["id"], third["id"]} and not a["iscrowd"]
    )
    assert n_first > 0
    assert len(recs) == 76 - n_lost
    reasons = [s["reason"] for s in recs.skipped]
    by_path = {s["path"]: s["reason"] for s in recs.skipped}
    assert "file not found" in by_path[str(images / first["file_name"])]
    assert "readable" in by_path[str(images / second["file_name"])]
    assert "50x40" in by_path[str(images / third["file_name"])]
    assert any("annotation 1 " in r and "out of range" in r for r in reasons)
    assert any("annotation 2 " in r and "degenerate" in r for r in reasons)
    assert any("annotation 3 " in r and "empty mask" in r for r in reasons)
    assert any("annotation 4 " in r and "does not match" in r for r in reasons)
    assert any("annotation 5 " in r and "unknown category" in r for r in reasons)
    assert any("annotation 6" in r and "unknown image" in r for r in reasons)
    assert any("annotation 7 " in r and "corrupt" in r for r in reasons)
    assert len(recs.skipped) == 3 + 7


def test_segmentation_to_rle_errors():
    with pytest.raises(ValueError, match="empty"):
        segmentation_to_rle({"size": [4, 4], "counts": [16]}, 4, 4)
    with pytest.raises(ValueError, match="out of range"):
        segmentation_to_rle([[0, 0, 100, 0, 100, 100]], 10, 10)
    rle = segmentation_to_rle([[0, 0, 9, 0, 9, 9, 0, 9]], 10, 10)
    assert isinstance(rle["counts"], str) and rle["size"] == [10, 10]


def test_filters(shared):
    root = shared(*VAL)
    allrecs = coco_source(root=root)
    persons = coco_source(root=root, categories=["Person"])
    assert len(persons) == 40 and {r.category for r in persons} == {"person"}
    assert persons.filtered["category"] == 36
    no_person = coco_source(root=root, exclude_categories="person")
    assert len(no_person) == 36
    big = coco_source(root=root, min_area=5000)
    assert big and all(r.meta["area"] >= 5000 for r in big)
    assert len(big) + big.filtered["min_area"] == 76
    ratio = coco_source(root=root, min_fg_ratio=0.01, max_fg_ratio=0.5)
    for r in ratio:
        assert 0.01 <= r.meta["area"] / (r.size[0] * r.size[1]) <= 0.5
    capped = coco_source(root=root, max_objects_per_image=2)
    per_img = Counter(r.image_id for r in capped)
    assert max(per_img.values()) == 2
    for img_id in per_img:
        areas = sorted((r.meta["area"] for r in allrecs if r.image_id == img_id), reverse=True)
        kept = sorted((r.meta["area"] for r in capped if r.image_id == img_id), reverse=True)
        assert kept == areas[:2]
    assert [r.key for r in apply_object_filters(list(reversed(allrecs)))] == [r.key for r in allrecs]
    with pytest.raises(Exception, match="unknown option"):
        coco_source(root=root, min_areaa=3)


def test_source_records_pickle(shared):
    recs = coco_source(root=shared(*VAL))
    back = pickle.loads(pickle.dumps(recs))
    assert back == recs and back.filtered == recs.filtered and back.skipped == recs.skipped


README_COUNTS = {
    "car": 110,
    "building": 55,
    "tree": 55,
    "mountain": 40,
    "water": 40,
    "plant": 30,
    "road": 30,
    "sky": 30,
    "field": 20,
    "person": 19,
}


def test_labelme_outdoor(shared):
    root = shared("data", "labelme_outdoor")
    recs = get_source("coco")(root=root, source_name="labelme_outdoor")
    assert len(recs) == 497 and recs.skipped == [] and recs.filtered == {}
    cats = Counter(r.category for r in recs)
    assert len(cats) == 23
    for name, n in README_COUNTS.items():
        assert cats[name] == n, name
    assert all(r.source == "labelme_outdoor" and r.key.startswith("labelme_outdoor_") for r in recs)
    assert len({r.image_id for r in recs}) == 497
    raw = Counter(r.meta["raw_label"] for r in recs)
    assert raw["trees"] == 23 and raw["carLeft"] == 10
    data = json.loads((root / "annotations" / "instances.json").read_text())
    anns = {str(a["id"]): a for a in data["annotations"]}
    for r in recs[::25]:
        m = r.decode_mask()
        assert m.shape == r.size == (256, 256)
        assert m.any() and int(m.sum()) == int(anns[r.object_id]["area"])
        assert r.meta["raw_label"] == anns[r.object_id]["attributes"]["labelme_name"]


def test_rle_masks_decode_to_c_order_bool():
    """decode_mask returns a C-ordered bool mask equal to pycocotools' (Fortran-ordered) decode."""
    from pycocotools import mask as mask_utils

    from harmbench.sources.base import ObjectRecord, c_order_mask

    rng = np.random.default_rng(0)
    m = np.asfortranarray(rng.random((37, 53)) > 0.6).astype(np.uint8)
    rle = mask_utils.encode(m)
    rec = ObjectRecord(
        key="k",
        source="coco",
        image_id="1",
        object_id="2",
        image_path="x.jpg",
        category="c",
        size=(37, 53),
        mask_rle={"size": rle["size"], "counts": rle["counts"].decode("ascii")},
    )
    out = rec.decode_mask()
    assert out.dtype == bool and out.flags.c_contiguous and out.shape == (37, 53)
    np.testing.assert_array_equal(out, m.astype(bool))
    # other layouts: already C-ordered, or not uint8
    np.testing.assert_array_equal(c_order_mask(np.ascontiguousarray(m)), m.astype(bool))
    f32 = np.asfortranarray(m.astype(np.float32))
    assert c_order_mask(f32).flags.c_contiguous and (c_order_mask(f32) == m.astype(bool)).all()
