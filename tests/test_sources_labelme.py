"""LabelMe source: rasterisation vs labelme2coco output, shape types, grouping, image resolution, skips."""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _helpers import coco_api
from PIL import Image

from harmbench.sources import get_source
from harmbench.sources.labelme import labelme_source, rasterize_shape


def test_registered():
    assert get_source("labelme") is labelme_source


def test_voc_sample_matches_labelme2coco(shared):
    root = shared("data", "voc_labelme_sample")
    recs = labelme_source(root)
    assert len(recs) == 12 and recs.skipped == []
    assert recs.filtered == {"ignored_label": 2, "not_labelme_json": 1}
    assert Counter(r.category for r in recs) == {"person": 6, "bus": 2, "sofa": 1, "bottle": 1, "chair": 1, "car": 1}
    sofa = next(r for r in recs if r.category == "sofa")
    assert sofa.meta["group_id"] == 0 and len(sofa.meta["shape_types"]) == 4

    api = coco_api(root / "coco_annotations.json")
    stem_to_id = {Path(im["file_name"]).stem: im["id"] for im in api.dataset["images"]}
    cats = {c["id"]: c["name"] for c in api.dataset["categories"]}
    used: set[int] = set()
    for r in recs:
        m = r.decode_mask()
        assert m.shape == r.size
        best_iou, best = 0.0, None
        for ann in api.loadAnns(api.getAnnIds(imgIds=[stem_to_id[r.image_id]])):
            ref = api.annToMask(ann).astype(bool)
            iou = np.logical_and(m, ref).sum() / np.logical_or(m, ref).sum()
            if iou > best_iou:
                best_iou, best = iou, ann
        assert best is not None and cats[best["category_id"]] == r.category
        assert best_iou >= 0.9, (r.key, best_iou)
        # labelme2coco's "area" comes from labelme's own (PIL) rasterisation: ours is the same
        assert r.meta["area"] == int(best["area"]), r.key
        used.add(best["id"])
    assert len(used) == 12  # one-to-one


def _write_labelme(
    path: Path, shapes: list, image_path: str | None, h: int, w: int, image_data: str | None = None
) -> None:
    path.write_text(
        json.dumps(
            {
                "version": "5.0.1",
                "flags": {},
                "shapes": shapes,
                "imagePath": image_path,
                "imageData": image_data,
                "imageHeight": h,
                "imageWidth": w,
            }
        )
    )


def _shape(label, points, kind="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": kind, "flags": {}}


def test_shape_types_grouping_and_skips(tmp_path):
    h, w = 60, 80
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (w, h), (10, 20, 30)).save(tmp_path / "imgs" / "photo.png")
    shapes = [
        _shape("Box", [[10, 10], [19, 29]], "rectangle"),
        _shape("ball", [[40, 30], [45, 30]], "circle"),
        _shape("dog", [[0, 0], [10, 0], [10, 10]], group_id=3),
        _shape("dog", [[50, 50], [60, 50], [60, 58], [50, 58]], group_id=3),
        _shape("dog", [[5, 50], [6, 55]], "line", group_id=3),  # no area: ignored inside a group
        _shape("wire", [[1, 1], [30, 30]], "line"),  # only a line: skipped
        _shape("far", [[500, 500], [600, 500], [600, 600]]),  # out of range: skipped
        _shape("tiny", [[1, 1], [2, 2]]),  # 2 points: skipped
        _shape("__ignore__", [[0, 0], [5, 0], [5, 5]]),
    ]
    _write_labelme(tmp_path / "photo.json", shapes, "imgs\\photo.png", h, w)  # Windows separator
    recs = labelme_source(tmp_path)
    by_cat = {r.category: r for r in recs}
    assert sorted(by_cat) == ["ball", "box", "dog"]
    box = by_cat["box"].decode_mask()
    assert box.sum() == 10 * 20 and box[10:30, 10:20].all()
    ball = by_cat["ball"].decode_mask()
    assert abs(int(ball.sum()) - np.pi * 25) < 20 and ball[30, 40]
    dog = by_cat["dog"]
    assert dog.meta["shape_types"] == ["polygon", "polygon"] and dog.meta["group_id"] == 3
    dm = dog.decode_mask()
    assert dm[2, 8] and dm[54, 55] and not dm[30, 30]
    assert by_cat["box"].meta["raw_label"] == "Box"
    assert Path(by_cat["box"].image_path) == tmp_path / "imgs" / "photo.png"
    reasons = " | ".join(s["reason"] for s in recs.skipped)
    assert "no area shape" in reasons and "out of range" in reasons and "fewer than 3" in reasons
    assert len(recs.skipped) == 3
    assert recs.filtered["ignored_label"] == 1
    assert [r.key for r in recs] == sorted(r.key for r in recs)


def test_embedded_image_data_and_missing_images(tmp_path):
    h, w = 32, 48
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 0, 0)).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    ds = tmp_path / "ds"
    ds.mkdir()
    poly = [_shape("cup", [[4, 4], [20, 4], [20, 20], [4, 20]])]
    _write_labelme(ds / "embedded.json", poly, "gone/embedded.jpg", h, w, image_data=data)
    _write_labelme(ds / "missing.json", poly, "gone/missing.jpg", h, w)
    Image.new("RGB", (10, 10)).save(ds / "wrongsize.png")
    _write_labelme(ds / "wrongsize.json", poly, "wrongsize.png", h, w)
    (ds / "broken.json").write_text("{not json")
    sub = ds / "sub"
    sub.mkdir()
    Image.new("RGB", (w, h)).save(sub / "embedded.png")  # same stem elsewhere: distinct key, found by stem
    _write_labelme(sub / "embedded.json", poly, None, h, w)

    cache = tmp_path / "cache"
    recs = labelme_source(ds, cache_dir=cache)
    assert [r.image_id for r in recs] == ["embedded", "sub/embedded"]
    assert len({r.key for r in recs}) == 2
    cached = Path(recs[0].image_path)
    assert cached.parent.parent == cache and cached.suffix == ".png" and cached.is_file()
    assert cached.read_bytes() == buf.getvalue()
    assert Path(recs[1].image_path) == sub / "embedded.png"
    skipped = {Path(s["path"]).name: s["reason"] for s in recs.skipped}
    assert "not found" in skipped["missing.jpg"]
    assert "10x10" in skipped["wrongsize.png"]
    assert "JSON" in skipped["broken.json"]
    assert len(recs.skipped) == 3
    # a second run reuses the cached file
    again = labelme_source(ds, cache_dir=cache)
    assert again[0].image_path == recs[0].image_path


def test_rasterize_mask_shape():
    sub = np.zeros((4, 6), np.uint8)
    sub[1:3, 2:5] = 255
    buf = io.BytesIO()
    Image.fromarray(sub).save(buf, format="PNG")
    shape = {"shape_type": "mask", "points": [[10, 5], [16, 9]], "mask": base64.b64encode(buf.getvalue()).decode()}
    m = rasterize_shape(shape, 20, 30)
    assert m.sum() == 6 and m[6:8, 12:15].all()
    with pytest.raises(ValueError, match="unsupported"):
        rasterize_shape({"shape_type": "cuboid", "points": [[0, 0]]}, 5, 5)


def test_filters_apply(shared):
    root = shared("data", "voc_labelme_sample")
    recs = labelme_source(root, categories=["person"], min_area=5000, max_objects_per_image=1)
    assert [r.key for r in recs] == ["labelme_2011_000003_1", "labelme_2011_000006_0"]
