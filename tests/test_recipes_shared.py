"""Recipes on the real reference data in ../shared (skipped when absent)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmbench.errors import InputError
from harmbench.imaging import read_rgb
from harmbench.recipes import build_config_from_text, load_build_config, plan_dataset, synthesize

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def labelme_cfg(shared):
    root = shared("data", "labelme_outdoor")
    return load_build_config(REPO / "datasets" / "labelme-outdoor.toml", {"sources.labelme.root": str(root)})


def test_labelme_outdoor_plan_size_and_split(labelme_cfg):
    plan = plan_dataset(labelme_cfg)
    assert len(plan.specs) >= 1500
    assert plan.counts["by_recipe"]["hcoco"] == 2 * plan.counts["by_recipe"]["identical"]
    split_of = defaultdict(set)
    for s in plan.specs:
        split_of[s.inputs["record"].image_id].add(s.split)
    assert all(len(v) == 1 for v in split_of.values())
    n_test = sum(1 for v in split_of.values() if v == {"test"})
    assert 0.1 < n_test / len(split_of) < 0.3
    again = plan_dataset(labelme_cfg)
    assert [(s.key, s.split, s.seed) for s in again.specs] == [(s.key, s.split, s.seed) for s in plan.specs]


def test_labelme_outdoor_each_recipe_on_real_photos(labelme_cfg):
    from skimage.color import rgb2lab

    plan = plan_dataset(labelme_cfg)
    by = defaultdict(list)
    for s in plan.specs:
        by[s.recipe].append(s)
    for recipe, specs in by.items():
        done = 0
        for s in specs[:: max(1, len(specs) // 6)][:6]:
            try:
                a = synthesize(s)
            except InputError as exc:
                assert recipe == "hue" and "too close" in exc.reason
                continue
            done += 1
            assert a.composite.shape == a.real.shape and np.array_equal(a.composite[~a.mask], a.real[~a.mask])
            assert a.meta["category"] == s.inputs["record"].category
            if recipe == "identical":
                assert np.array_equal(a.composite, a.real)
            else:
                assert a.meta["fmse"] >= labelme_cfg.filters.min_fmse
                assert a.real_bytes == Path(s.inputs["record"].image_path).read_bytes()
            if recipe == "hcoco":
                assert a.meta["reference_category"] == a.meta["category"] or a.meta["reference_fallback"]
            if recipe == "hue":
                dl = np.abs(rgb2lab(a.composite / 255.0)[..., 0] - rgb2lab(a.real / 255.0)[..., 0])[a.mask]
                assert np.median(dl) < 1.0
        assert done >= 3, recipe


def _fivek_setup(shared, tmp_path: Path) -> tuple[Path, Path]:
    root = shared("data", "fivek_experts_sample")
    masks = tmp_path / "masks"
    masks.mkdir()
    stems = sorted({p.stem.rsplit("_", 1)[0] for p in root.iterdir() if p.suffix == ".jpg"})
    for i, stem in enumerate(stems):
        w, h = Image.open(root / f"{stem}_B.jpg").size
        m = np.zeros((h, w), dtype=np.uint8)
        m[h // 4 : h // 4 + h // 3, w // 5 + 40 * i : w // 5 + 40 * i + w // 3] = 255
        Image.fromarray(m).save(masks / f"{stem}_1.png")
    return root, masks


HADOBE = """
[dataset]
name = "fivek-test"
seed = 5

[filters]
min_fmse = 10.0

[sources.fivek]
root = "{root}"
masks = "{masks}"

[[recipes]]
type = "hadobe5k"
source = "fivek"
per_object = 3
{extra}
"""


def test_hadobe5k_fg_from_other_version_bg_from_real(shared, tmp_path):
    from harmbench.sources.fivek import load_versions

    root, masks = _fivek_setup(shared, tmp_path)
    text = HADOBE.format(root=root, masks=masks, extra="").replace("[filters]", "[output]\nmax_side = 400\n\n[filters]")
    cfg = build_config_from_text(text, tmp_path / "h.toml")
    plan = plan_dataset(cfg)
    assert plan.counts["by_recipe"]["hadobe5k"] == 9
    per_obj = defaultdict(list)
    for s in plan.specs:
        per_obj[s.inputs["record"].key].append(s)
    for specs in per_obj.values():
        assert len({s.inputs["real_version"] for s in specs}) == 1
        assert len({s.inputs["fg_versions"][0] for s in specs}) == 3  # different fg versions per photo
    for s in plan.specs[:4]:
        a = synthesize(s)
        m = a.meta
        assert m["real_version"] != m["foreground_version"]
        rec = s.inputs["record"]
        vs = load_versions(rec, [m["real_version"], m["foreground_version"]])
        size = a.real.shape[:2]
        assert max(size) == 400
        real = np.asarray(Image.fromarray(vs[m["real_version"]]).resize(size[::-1], Image.Resampling.LANCZOS))
        fg = np.asarray(Image.fromarray(vs[m["foreground_version"]]).resize(size[::-1], Image.Resampling.LANCZOS))
        assert np.array_equal(a.real, real)
        assert np.array_equal(a.composite[a.mask], fg[a.mask])
        assert np.array_equal(a.composite[~a.mask], real[~a.mask])
        assert m["fmse"] >= 10.0 and m["image_id"] == rec.image_id and m["license"]
        assert a.real_bytes is None  # resized


def test_hadobe5k_fixed_real_version_keeps_original_bytes(shared, tmp_path):
    root, masks = _fivek_setup(shared, tmp_path)
    cfg = build_config_from_text(
        HADOBE.format(root=root, masks=masks, extra='real_version = "B"\nversions = ["A", "B", "C"]'),
        tmp_path / "h.toml",
    )
    plan = plan_dataset(cfg)
    assert plan.counts["by_recipe"]["hadobe5k"] == 6  # 2 other versions per photo
    s = plan.specs[0]
    a = synthesize(s)
    assert a.meta["real_version"] == "B" and a.meta["foreground_version"] in ("A", "C")
    assert a.real_bytes == Path(s.inputs["record"].versions["B"]).read_bytes()
    assert np.array_equal(read_rgb(a.real_bytes), a.real)


def test_iharmony4_passthrough(shared, tmp_path):
    root = shared("data", "iharmony4_sample")
    text = f"""
[dataset]
name = "ih"

[sources.ih]
type = "iharmony4"
root = "{root}"
split = "test"

[[recipes]]
type = "iharmony4"
source = "ih"
"""
    plan = plan_dataset(build_config_from_text(text, tmp_path / "i.toml"))
    assert plan.specs and all(s.split == "test" for s in plan.specs)
    s = plan.specs[0]
    a = synthesize(s)
    rec = s.inputs["record"]
    assert a.meta["subset"] == rec.subset and a.meta["method"] == "passthrough"
    assert np.array_equal(a.composite, read_rgb(rec.composite_path))
    assert np.array_equal(a.real, read_rgb(rec.real_path))
    assert a.real_bytes == Path(rec.real_path).read_bytes()
