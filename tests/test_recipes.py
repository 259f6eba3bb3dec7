"""Recipes on a small synthetic COCO-layout dataset: plan, splits, references, filters, synthesis, meta."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmbench.errors import ConfigError, InputError
from harmbench.recipes import load_build_config, plan_dataset, synthesize
from harmbench.recipes.base import sample_seed
from harmbench.recipes.common import fmse
from harmbench.transfer import register_transfer
from harmbench.transfer._common import composite, gather

# photo -> [(category, (y0, y1, x0, x1))] on 48x64 photos
OBJECTS = {
    1: [("cat", (5, 30, 5, 30)), ("dog", (30, 45, 35, 60))],
    2: [("cat", (10, 40, 10, 40))],
    3: [("cat", (0, 20, 40, 64)), ("dog", (20, 46, 0, 30))],
    4: [("dog", (8, 40, 8, 56))],
    5: [("lonely", (10, 30, 10, 40))],
    6: [("cat", (20, 24, 20, 26))],  # ~15 px: below 1 %
    7: [("dog", (0, 48, 0, 60))],  # 94 %: above 80 %
    8: [("cat", (4, 44, 4, 30)), ("cat", (4, 44, 34, 60))],
}
H, W = 48, 64


def _photo(i: int) -> np.ndarray:
    """A colourful photo with texture (distinct per id)."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:H, 0:W]
    base = rng.uniform(40, 200, size=3)
    img = np.stack([base[c] + 30 * np.sin(xx / (3 + c + i) + yy / (5 + i)) for c in range(3)], axis=-1)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    cats = sorted({c for objs in OBJECTS.values() for c, _ in objs})
    cat_id = {c: i + 1 for i, c in enumerate(cats)}
    images, anns = [], []
    aid = 100
    for i, objs in OBJECTS.items():
        name = f"photo{i}.jpg"
        Image.fromarray(_photo(i)).save(root / "images" / name, quality=95)
        images.append({"id": i, "file_name": name, "height": H, "width": W, "license": 1})
        for cat, (y0, y1, x0, x1) in objs:
            aid += 1
            poly = [x0, y0, x1 - 1, y0, x1 - 1, y1 - 1, x0, y1 - 1]
            anns.append(
                {
                    "id": aid,
                    "image_id": i,
                    "category_id": cat_id[cat],
                    "segmentation": [poly],
                    "iscrowd": 0,
                    "area": float((y1 - y0) * (x1 - x0)),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    data = {
        "images": images,
        "annotations": anns,
        "licenses": [{"id": 1, "name": "CC-BY-4.0", "url": ""}],
        "categories": [{"id": v, "name": k} for k, v in cat_id.items()],
    }
    (root / "annotations" / "instances.json").write_text(json.dumps(data))
    return root


TOML = """
[dataset]
name = "synth"
seed = 7
shard_size = 4

[split]
test_fraction = 0.4

[filters]
min_fmse = 1.0
max_attempts = 4

[sources.synth]
type = "coco"
root = "{root}"
source_name = "synth"

[[recipes]]
type = "hcoco"
source = "synth"
per_object = 2
methods = ["reinhard", "xiao", "ychist", "histmatch"]

[[recipes]]
type = "hue"
source = "synth"

[[recipes]]
type = "identical"
source = "synth"
"""


def _cfg(tmp: Path, root: Path, text: str = TOML, overrides=None):
    p = tmp / "r.toml"
    p.write_text(text.replace("{root}", str(root)))
    return load_build_config(p, overrides)


def _digest(arr) -> str:
    h = hashlib.sha256()
    for a in (arr.composite, arr.mask, arr.real):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(arr.meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def test_plan_is_deterministic_sorted_and_keyed(tmp_path, coco_root):
    cfg = _cfg(tmp_path, coco_root)
    p1, p2 = plan_dataset(cfg), plan_dataset(_cfg(tmp_path, coco_root))
    assert [(s.key, s.split, s.seed) for s in p1.specs] == [(s.key, s.split, s.seed) for s in p2.specs]
    assert pickle.dumps(p1.specs) == pickle.dumps(p2.specs)
    assert [(s.split, s.key) for s in p1.specs] == sorted((s.split, s.key) for s in p1.specs)
    keys = [s.key for s in p1.specs]
    assert len(set(keys)) == len(keys) and all("." not in k and "/" not in k for k in keys)
    assert all(s.seed == sample_seed(7, s.key) for s in p1.specs)
    assert "hcoco_synth_1_101_1" in keys and "hcoco_synth_1_101_2" in keys and "hue_synth_1_101" in keys
    assert "identical_synth_1_101" in keys
    # 9 objects pass the fg-ratio filter: 2 hcoco + 1 hue + 1 identical each
    assert p1.counts["by_recipe"] == {"hcoco": 18, "hue": 9, "identical": 9}
    assert p1.counts["total"] == len(p1.specs) == 36


def test_fg_ratio_filter_skips_with_reason(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root))
    reasons = [s["reason"] for s in plan.skipped]
    assert any("synth_6_" in r and "foreground ratio" in r for r in reasons)
    assert any("synth_7_" in r and "foreground ratio" in r for r in reasons)
    assert not any("_6_" in s.key or "_7_" in s.key for s in plan.specs)
    assert all(set(s) == {"path", "reason"} for s in plan.skipped)
    # widened range keeps them
    plan = plan_dataset(_cfg(tmp_path, coco_root, overrides={"filters.fg_ratio_min": 0.0, "filters.fg_ratio_max": 1.0}))
    assert any("_6_" in s.key for s in plan.specs) and any("_7_" in s.key for s in plan.specs)


def test_split_by_image(tmp_path, coco_root):
    for seed in range(6):
        plan = plan_dataset(_cfg(tmp_path, coco_root, overrides={"dataset.seed": seed}))
        split_of: dict[str, set[str]] = defaultdict(set)
        for s in plan.specs:
            split_of[s.inputs["record"].image_id].add(s.split)
        assert all(len(v) == 1 for v in split_of.values()), split_of
    assert plan_dataset(_cfg(tmp_path, coco_root, overrides={"split.test_fraction": 0.0})).counts[
        "by_split"
    ].keys() == {"train"}
    assert plan_dataset(_cfg(tmp_path, coco_root, overrides={"split.test_fraction": 1.0})).counts[
        "by_split"
    ].keys() == {"test"}


def test_split_from_lists(tmp_path, coco_root):
    text = TOML.replace(
        "test_fraction = 0.4", 'test_list = ["2", "photo3.jpg"]\ntrain_list = ["synth/1"]\nunlisted = "skip"'
    )
    plan = plan_dataset(_cfg(tmp_path, coco_root, text))
    got = {s.inputs["record"].image_id: s.split for s in plan.specs}
    assert got == {"1": "train", "2": "test", "3": "test"}
    assert any("in no split list" in s["reason"] for s in plan.skipped)


def test_same_category_references_and_fallback(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root))
    hcoco = [s for s in plan.specs if s.recipe == "hcoco"]
    for s in hcoco:
        rec, refs = s.inputs["record"], s.inputs["references"]
        assert refs, s.key
        assert all(r.image_id != rec.image_id for r in refs)
        if rec.category == "lonely":
            assert s.inputs["reference_fallback"] is True
        else:
            assert all(r.category == rec.category for r in refs), s.key
            assert s.inputs["reference_fallback"] is False
        assert len({r.key for r in refs}) == len(refs)
    # the two composites of one object start with different methods
    by_obj = defaultdict(list)
    for s in hcoco:
        by_obj[s.inputs["record"].key].append(s.inputs["methods"][0])
    assert all(len(set(m)) == 2 for m in by_obj.values())
    plan = plan_dataset(
        _cfg(tmp_path, coco_root, TOML.replace('"histmatch"]', '"histmatch"]\nreference_fallback = "skip"'))
    )
    assert not any(s.inputs["record"].category == "lonely" for s in plan.specs if s.recipe == "hcoco")
    assert any("lonely" in s["reason"] for s in plan.skipped)


def test_synthesize_deterministic_and_order_independent(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root))
    specs = plan.specs
    first = {s.key: _digest(synthesize(s)) for s in specs}
    again = {s.key: _digest(synthesize(pickle.loads(pickle.dumps(s)))) for s in reversed(specs)}
    assert first == again
    # a fresh plan (as another worker would receive) gives the same pixels
    plan2 = plan_dataset(_cfg(tmp_path, coco_root))
    assert {s.key: _digest(synthesize(s)) for s in plan2.specs[::3]} == {s.key: first[s.key] for s in plan2.specs[::3]}


def test_each_recipe_output_and_meta(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root, overrides={"output.store_reference": True}))
    seen = set()
    for s in plan.specs:
        a = synthesize(s)
        seen.add(s.recipe)
        assert a.key == s.key
        assert a.composite.dtype == np.uint8 and a.real.dtype == np.uint8 and a.mask.dtype == bool
        assert a.composite.shape == a.real.shape == (H, W, 3) and a.mask.shape == (H, W)
        assert np.array_equal(a.composite[~a.mask], a.real[~a.mask])  # background untouched
        assert a.reference is not None and a.reference.dtype == np.uint8
        m = a.meta
        for f in (
            "key",
            "recipe",
            "split",
            "seed",
            "sample_seed",
            "source",
            "image_key",
            "object_key",
            "category",
            "method",
            "params",
            "fg_ratio",
            "size",
            "original_size",
            "license",
        ):
            assert f in m, (s.key, f)
        assert m["key"] == s.key and m["split"] == s.split and m["seed"] == 7 and m["license"] == "CC-BY-4.0"
        assert 0.01 <= m["fg_ratio"] <= 0.8
        json.dumps(m)
        if s.recipe == "identical":
            assert np.array_equal(a.composite, a.real) and a.real_bytes is None
        else:
            assert m["fmse"] >= 1.0 and fmse(a.composite, a.real, a.mask) == pytest.approx(m["fmse"], abs=1e-3)
            assert a.real_bytes is not None and a.real_ext == "jpg"
        if s.recipe == "hcoco":
            assert m["reference_category"] == m["category"] or m["reference_fallback"]
            assert m["reference_image_id"] != m["image_id"]
            assert m["method"] in ("reinhard", "xiao", "ychist", "histmatch")
            assert "reference_key" in m and "reference_license" in m
        if s.recipe == "hue":
            assert set(m["params"]) == {"hue_shift", "sat_scale"} and m["params"]["sat_scale"] >= 0.3
    assert seen == {"hcoco", "hue", "identical"}


def test_real_bytes_are_the_original_file(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root))
    s = next(s for s in plan.specs if s.recipe == "hcoco")
    a = synthesize(s)
    assert a.real_bytes == Path(s.inputs["record"].image_path).read_bytes()


def test_hue_keeps_lightness(tmp_path, coco_root):
    from skimage.color import rgb2lab

    plan = plan_dataset(_cfg(tmp_path, coco_root))
    for s in [s for s in plan.specs if s.recipe == "hue"]:
        a = synthesize(s)
        lc = rgb2lab(a.composite / 255.0)[..., 0][a.mask]
        lr = rgb2lab(a.real / 255.0)[..., 0][a.mask]
        assert np.median(np.abs(lc - lr)) < 1.0, s.key
        assert np.mean(np.abs(lc - lr)) < 3.0, s.key
        assert a.meta["fmse"] >= 1.0


def test_hue_amounts_come_from_the_configured_ranges(tmp_path, coco_root):
    text = TOML.replace(
        'type = "hue"\nsource = "synth"',
        'type = "hue"\nsource = "synth"\nhue_shift = [0.4, 0.6]\nsat_scale = [1.0, 1.0]',
    )
    plan = plan_dataset(_cfg(tmp_path, coco_root, text))
    for s in [s for s in plan.specs if s.recipe == "hue"][:4]:
        p = synthesize(s).meta["params"]
        assert 0.4 <= p["hue_shift"] <= 0.6 and p["sat_scale"] == 1.0


# ---------------------------------------------------------------- min-change filter and redraw


def _sample_flaky(rng: np.random.Generator) -> dict:
    return {"amount": float(rng.choice([0.0, 0.2]))}


@register_transfer("_test_flaky", sampler=_sample_flaky)
def _flaky(image, mask, ref_image=None, ref_mask=None, *, rng=None, amount: float = 0.0):
    """Brightens the foreground by ``amount`` (0–1); ``amount = 0`` is a no-op."""
    fg, _ = gather("_test_flaky", image, mask, ref_image, ref_mask)
    return composite(image, mask, fg + amount)


def test_min_change_filter_redraws_then_skips(tmp_path, coco_root):
    text = TOML.replace('["reinhard", "xiao", "ychist", "histmatch"]', '["_test_flaky"]')
    plan = plan_dataset(_cfg(tmp_path, coco_root, text, overrides={"filters.max_attempts": 8}))
    hc = [s for s in plan.specs if s.recipe == "hcoco"]
    attempts = []
    for s in hc:
        # replay the per-sample RNG: the first attempt drawing a non-zero amount wins
        rng = np.random.default_rng(s.seed)
        draws = [_sample_flaky(rng)["amount"] for _ in range(8)]
        expected = next((i for i, d in enumerate(draws) if d > 0), None)
        try:
            a = synthesize(s)
        except InputError as exc:
            assert expected is None and "too close to the real image after 8 attempt(s)" in exc.reason
            continue
        assert a.meta["attempt"] == expected and a.meta["params"] == {"amount": 0.2} and a.meta["fmse"] >= 1.0
        attempts.append(expected)
    assert any(a > 0 for a in attempts), "no sample needed a redraw; enlarge the test set"
    # one attempt only: those samples are skipped with the reason
    plan = plan_dataset(_cfg(tmp_path, coco_root, text, overrides={"filters.max_attempts": 1}))
    reasons = []
    for s in [s for s in plan.specs if s.recipe == "hcoco"]:
        try:
            synthesize(s)
        except InputError as exc:
            reasons.append(exc.reason)
    assert reasons and all("after 1 attempt(s)" in r and "best fMSE 0.0" in r for r in reasons)


def test_min_fmse_threshold_is_respected(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root, overrides={"filters.min_fmse": 400.0}))
    ok = skipped = 0
    for s in plan.specs:
        try:
            a = synthesize(s)
        except InputError as exc:
            assert s.recipe != "identical" and "fMSE" in exc.reason
            skipped += 1
            continue
        ok += 1
        if s.recipe != "identical":
            assert a.meta["fmse"] >= 400.0
    assert ok > 0


# ---------------------------------------------------------------- options


def test_max_side_resizes_and_drops_original_bytes(tmp_path, coco_root):
    plan = plan_dataset(_cfg(tmp_path, coco_root, overrides={"output.max_side": 32}))
    for s in plan.specs[:6]:
        a = synthesize(s)
        assert max(a.real.shape[:2]) == 32 and a.composite.shape == a.real.shape and a.mask.shape == a.real.shape[:2]
        assert a.real_bytes is None
        assert a.meta["original_size"] == [H, W] and a.meta["size"] == [24, 32]


def test_max_samples_is_a_deterministic_mix(tmp_path, coco_root):
    cfg = _cfg(tmp_path, coco_root)
    a, b = plan_dataset(cfg, max_samples=10), plan_dataset(cfg, max_samples=10)
    assert [s.key for s in a.specs] == [s.key for s in b.specs] and len(a.specs) == 10
    full = {s.key for s in plan_dataset(cfg).specs}
    assert {s.key for s in a.specs} <= full
    assert len({s.recipe for s in a.specs}) > 1
    text = TOML.replace('type = "hue"\nsource = "synth"', 'type = "hue"\nsource = "synth"\nmax_samples = 3')
    assert plan_dataset(_cfg(tmp_path, coco_root, text)).counts["by_recipe"]["hue"] == 3


def test_two_recipes_of_one_type_need_names(tmp_path, coco_root):
    text = TOML + '\n[[recipes]]\ntype = "hue"\nsource = "synth"\nname = "hue2"\nper_object = 2\n'
    plan = plan_dataset(_cfg(tmp_path, coco_root, text))
    assert plan.counts["by_recipe"]["hue2"] == 18
    assert any(s.key.startswith("hue2_synth_1_101_2") for s in plan.specs)
    a = synthesize(next(s for s in plan.specs if s.key.startswith("hue2_")))
    assert a.meta["recipe"] == "hue2" and a.meta["recipe_type"] == "hue"


def test_recipe_splits_adds_training_samples_and_keeps_the_test_split(tmp_path, coco_root):
    base = plan_dataset(_cfg(tmp_path, coco_root))
    extra = (
        TOML + '\n[[recipes]]\ntype = "hue"\nsource = "synth"\nname = "hue_more"\nper_object = 3\nsplits = ["train"]\n'
    )
    plan = plan_dataset(_cfg(tmp_path, coco_root, extra))

    def test_of(p):
        return [(s.key, s.seed) for s in p.specs if s.split == "test"]

    assert test_of(plan) == test_of(base) and test_of(base)
    train_objects = {s.inputs["record"].key for s in base.specs if s.split == "train" and s.recipe == "identical"}
    more = [s for s in plan.specs if s.key.startswith("hue_more_")]
    assert {s.split for s in more} == {"train"}
    assert len(more) == 3 * len(train_objects) and {s.inputs["record"].key for s in more} == train_objects
    with pytest.raises(ConfigError, match=r"recipes\[3\]\.splits"):
        _cfg(tmp_path, coco_root, extra.replace('splits = ["train"]', "splits = []"))
    with pytest.raises(ConfigError, match=r"recipes\[3\]\.splits"):
        _cfg(tmp_path, coco_root, extra.replace('splits = ["train"]', 'splits = ["train", "train"]'))


def test_unreadable_image_is_an_input_error(tmp_path, coco_root):
    import dataclasses

    plan = plan_dataset(_cfg(tmp_path, coco_root))
    s = next(s for s in plan.specs if s.recipe == "identical")
    bad = dataclasses.replace(s.inputs["record"], image_path=str(tmp_path / "gone.jpg"))
    spec = dataclasses.replace(s, inputs={**s.inputs, "record": bad})
    with pytest.raises(InputError) as ei:
        synthesize(spec)
    assert ei.value.path.endswith("gone.jpg")


def test_references_from_the_same_split(tmp_path, coco_root):
    text = TOML.replace('"histmatch"]', '"histmatch"]\nreference_split = "same"')
    plan = plan_dataset(_cfg(tmp_path, coco_root, text, overrides={"split.test_fraction": 0.5}))
    split_of = {s.inputs["record"].image_id: s.split for s in plan.specs}
    for s in plan.specs:
        if s.recipe == "hcoco":
            assert all(split_of[r.image_id] == s.split for r in s.inputs["references"]), s.key


def test_demo_recipe_plans_and_synthesizes():
    from harmbench.recipes.common import read_image, resize_rgb

    repo = Path(__file__).resolve().parents[1]
    cfg = load_build_config(repo / "datasets" / "demo.toml")
    plan = plan_dataset(cfg)
    assert set(plan.counts["by_recipe"]) == {"hcoco", "hadobe5k", "hue", "identical"}
    assert 30 <= plan.counts["total"] <= 200
    assert [(s.key, s.seed) for s in plan_dataset(cfg).specs] == [(s.key, s.seed) for s in plan.specs]
    done = set()
    for s in plan.specs[::3]:
        try:
            a = synthesize(s)
        except InputError as exc:
            assert "too close to the real image" in exc.reason
            continue
        done.add(s.recipe)
        assert max(a.real.shape[:2]) <= 256
        if s.recipe == "hadobe5k":
            rec = s.inputs["record"]
            fg_v, real_v = a.meta["foreground_version"], a.meta["real_version"]
            assert fg_v != real_v
            size = a.real.shape[:2]
            fg = resize_rgb(resize_rgb(read_image(rec.versions[fg_v])[0], tuple(rec.size)), size)
            assert np.array_equal(a.composite[a.mask], fg[a.mask])
    assert done == {"hcoco", "hadobe5k", "hue", "identical"}
