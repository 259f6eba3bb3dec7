"""The embedded demo source: works without ../shared, masks are sane and sit on their objects."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from harmbench.imaging import read_rgb
from harmbench.sources import get_source
from harmbench.sources.demo import demo_annotations_path, demo_photo_path, demo_source, load_demo_annotations

# (photo, category) -> points (x, y) that must lie inside the object, and points that must not
INSIDE = {
    ("astronaut", "person"): [(230, 130), (150, 420)],
    ("astronaut", "helmet"): [(400, 440)],
    ("astronaut", "flag"): [(30, 60)],
    ("astronaut", "rocket"): [(445, 150)],
    ("camera", "person"): [(100, 300), (200, 100)],
    ("camera", "camera"): [(290, 158)],
    ("chelsea", "cat"): [(220, 150)],
    ("coffee", "cup"): [(290, 150)],
    ("coffee", "spoon"): [(365, 285)],
    ("coffee", "saucer"): [(130, 250)],
    ("motorcycle_left", "motorcycle"): [(200, 330), (600, 380)],
    ("motorcycle_right", "motorcycle"): [(160, 330), (560, 380)],
    ("rocket", "rocket"): [(322, 300)],
}
OUTSIDE = {
    ("astronaut", "person"): [(480, 100), (400, 440)],
    ("chelsea", "cat"): [(430, 200)],
    ("coffee", "cup"): [(365, 285), (500, 50)],
    ("rocket", "rocket"): [(100, 300), (322, 60)],
    ("camera", "person"): [(450, 300)],
}


def test_registered_and_packaged():
    assert get_source("demo") is demo_source
    path = demo_annotations_path()
    assert path.is_file() and path.parent.name == "demo_assets"
    assert "harmbench" in path.parts


def test_demo_records(monkeypatch):
    monkeypatch.setenv("HARMBENCH_SHARED", "/nonexistent")  # the demo never needs ../shared
    recs = demo_source()
    assert recs.skipped == [] and recs.filtered == {}
    assert [r.key for r in recs] == sorted(r.key for r in recs)
    photos = {r.meta["skimage_name"] for r in recs}
    assert len(photos) >= 6 and len(recs) >= 10
    cats = defaultdict(set)
    for r in recs:
        cats[r.category].add(r.image_id)
    assert len(cats) >= 4
    assert sum(1 for ids in cats.values() if len(ids) >= 2) >= 2  # same-category references exist
    assert all(r.license for r in recs)

    seen = set()
    for r in recs:
        img = read_rgb(r.image_path)
        m = r.decode_mask()
        assert img.shape[:2] == m.shape == r.size
        ratio = m.mean()
        assert 0.002 < ratio < 0.9, (r.key, ratio)
        assert r.meta["area"] == int(m.sum())
        key = (r.meta["skimage_name"], r.category)
        seen.add(key)
        for x, y in INSIDE.get(key, []):
            assert m[y, x], (r.key, x, y)
        for x, y in OUTSIDE.get(key, []):
            assert not m[y, x], (r.key, x, y)
    assert seen == set(INSIDE)


def test_polygons_inside_images_and_vertex_counts():
    data = load_demo_annotations()
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    for ann in data["annotations"]:
        w, h = sizes[ann["image_id"]]
        for poly in ann["segmentation"]:
            xs, ys = poly[0::2], poly[1::2]
            assert 12 <= len(xs) <= 120
            assert min(xs) >= 0 and max(xs) <= w and min(ys) >= 0 and max(ys) <= h


def test_filters():
    persons = demo_source(categories=["person"])
    assert len(persons) == 2 and {r.meta["skimage_name"] for r in persons} == {"astronaut", "camera"}
    one = demo_source(max_objects_per_image=1)
    assert len(one) == len({r.image_id for r in one}) == 7


def test_photo_materialised_when_not_bundled(monkeypatch, tmp_path):
    import skimage.data

    bundled = demo_photo_path("chelsea.png")
    monkeypatch.setattr(skimage.data, "data_dir", str(tmp_path / "empty"))
    cached = demo_photo_path("chelsea.png", "chelsea", cache_dir=tmp_path / "cache")
    assert cached.parent == tmp_path / "cache" / "demo" and cached.is_file()
    assert np.array_equal(read_rgb(cached), read_rgb(bundled))
    right = demo_photo_path("motorcycle_right.png", "motorcycle_right", cache_dir=tmp_path / "cache")
    assert read_rgb(right).shape == (500, 741, 3)
    recs = demo_source(cache_dir=tmp_path / "cache", categories=["cat"])
    assert len(recs) == 1 and Path(recs[0].image_path) == cached
    from harmbench.errors import InputError

    with pytest.raises(InputError):
        demo_photo_path("nope.png", "no_such_photo", cache_dir=tmp_path / "cache")
