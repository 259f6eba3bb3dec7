"""Object-sized synthesis: the recipes' cropped paths give the whole-frame ops' results, in bounded memory.

The recipes hand a colour transfer only what its ``crop_mode`` says it reads
(distinct colours, the foreground pixels, the mask's box plus the frame
geometry) and compare/paste foreground pixels only. Here every built-in op is
run both ways on synthetic and real photos and the uint8 composites must be
identical; the ops' internal shortcuts (once-per-colour evaluation, windowed
regrain, chunked IDT) are checked against their plain formulations.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from harmbench.errors import InputError
from harmbench.recipes import (
    build_config_from_text,
    load_build_config,
    plan_dataset,
    synthesize,
)
from harmbench.recipes.common import (
    Foreground,
    Recoloured,
    TransferSource,
    TransferTarget,
    fmse,
    load_object,
)
from harmbench.transfer import (
    crop_mode,
    get_transfer,
    needs_reference,
    register_transfer,
    sample_params,
)
from harmbench.transfer._common import composite, gather

REPO = Path(__file__).resolve().parents[1]
OPS = ["reinhard", "histmatch", "ychist", "xiao", "idt", "hue"]


# ------------------------------------------------------------------ references


def _unit(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / np.float32(255.0)


def _whole_frame(name, real, mask, ref_real, ref_mask, params) -> np.ndarray:
    """The composite as the op gives it on the whole frame (rounded in float64, background kept)."""
    ref = None if ref_real is None else _unit(ref_real)
    out = get_transfer(name)(_unit(real), mask, ref, ref_mask, **params)
    fg = np.clip(np.rint(out.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return np.where(mask[..., None], fg, real)


def _fmse_float(a, b, mask) -> float:
    d = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    return float(np.sum(d * d) / (3.0 * np.count_nonzero(mask)))


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """Textured uint8 photo: smooth colour field, edges and noise (many distinct colours)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    img = np.stack([base[c] + 40 * np.sin(xx / (23 + 7 * c) + yy / (31 + 5 * c) + seed) for c in range(3)], -1)
    img[(xx // 37 + yy // 29) % 3 == 0] *= 0.7
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _blob(h: int, w: int, seed: int) -> np.ndarray:
    """An off-centre ellipse with a notch (not a box), away from the frame centre."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h * rng.uniform(0.25, 0.7), w * rng.uniform(0.2, 0.7)
    ry, rx = h * rng.uniform(0.08, 0.25), w * rng.uniform(0.08, 0.25)
    m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    m &= ~((np.abs(yy - cy) < ry / 5) & (xx > cx))
    return m


def _apply_cropped(name, real, mask, ref_real, ref_mask, params) -> tuple[np.ndarray, float]:
    target = TransferTarget(real, mask)
    src = TransferSource.of(ref_real, ref_mask, keep_full=False) if ref_real is not None else None
    new = target.apply(name, src, params)
    return target.fg.paste(real, new), target.fg.fmse(new)


# ------------------------------------------------------------------ registry


def test_builtin_ops_declare_what_they_read():
    assert crop_mode("hue") == "pixel"
    assert {crop_mode(n) for n in ("reinhard", "histmatch", "ychist", "xiao")} == {"mask"}
    assert crop_mode("idt") == "frame"
    with pytest.raises(ValueError, match="crop must be one of"):
        register_transfer("_test_bad_crop", crop="box")


# ------------------------------------------------------------------ cropped path == whole frame


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape", [(180, 240), (520, 700)])
def test_cropped_path_equals_whole_frame_synthetic(name, shape):
    h, w = shape
    real, mask = _photo(h, w, 1), _blob(h, w, 2)
    ref_real, ref_mask = _photo(h + 37, w - 51, 3), _blob(h + 37, w - 51, 4)
    params = sample_params(name, np.random.default_rng(5))
    refs = (ref_real, ref_mask) if needs_reference(name) else (None, None)
    got, f = _apply_cropped(name, real, mask, *refs, params)
    want = _whole_frame(name, real, mask, *refs, params)
    assert np.array_equal(got, want), name
    assert f == _fmse_float(want, real, mask) == fmse(want, real, mask)


@pytest.mark.shared
def test_cropped_path_equals_whole_frame_on_real_photos(shared):
    root = shared("data", "labelme_outdoor")
    cfg = load_build_config(REPO / "datasets" / "labelme-outdoor.toml", {"sources.labelme.root": str(root)})
    specs = [s for s in plan_dataset(cfg).specs if s.recipe == "hcoco"][::97][:4]
    assert len(specs) == 4
    for k, s in enumerate(specs):
        obj = load_object(s.inputs["record"], None)
        ref = load_object(s.inputs["references"][0], None)
        for name in OPS:
            params = sample_params(name, np.random.default_rng(k))
            refs = (ref.real, ref.mask) if needs_reference(name) else (None, None)
            got, f = _apply_cropped(name, obj.real, obj.mask, *refs, params)
            want = _whole_frame(name, obj.real, obj.mask, *refs, params)
            assert np.array_equal(got, want), (s.key, name)
            assert f == _fmse_float(want, obj.real, obj.mask)


def test_idt_on_a_window_with_the_frame_equals_the_whole_frame():
    op = get_transfer("idt")
    h, w = 300, 420
    img, mask = _unit(_photo(h, w, 7)), _blob(h, w, 8)
    ref, ref_mask = _unit(_photo(200, 260, 9)), _blob(200, 260, 10)
    full = op(img, mask, ref, ref_mask, seed=3)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    for pad in (0, 5):
        y0, y1 = max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)
        x0, x1 = max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)
        win = op(img[y0:y1, x0:x1], mask[y0:y1, x0:x1], ref, ref_mask, seed=3, frame=(h, w, y0, x0))
        assert np.array_equal(win[mask[y0:y1, x0:x1]], full[mask])
    # without the frame, regrain sees a small frame: another (valid) result
    alone = op(img[y0:y1, x0:x1], mask[y0:y1, x0:x1], ref, ref_mask, seed=3)
    assert not np.array_equal(alone[mask[y0:y1, x0:x1]], full[mask])
    with pytest.raises(ValueError, match="does not fit"):
        op(img[y0:y1, x0:x1], mask[y0:y1, x0:x1], ref, ref_mask, seed=3, frame=(h, w, h - 2, 0))


# ------------------------------------------------------------------ the ops' shortcuts == plain formulations


@pytest.mark.parametrize("shape", [(30, 40), (64, 64), (256, 256), (333, 517)])
def test_regrain_masked_equals_whole_frame_regrain(shape):
    from harmbench.transfer.idt import regrain, regrain_masked

    h, w = shape
    rng = np.random.default_rng(h)
    img = rng.random((h, w, 3))
    graded = np.clip(img + 0.2 * rng.standard_normal((h, w, 3)), 0, 1)
    for seed, edge in ((1, False), (2, True)):
        mask = _blob(h, w, seed)
        if edge:  # touching the frame border
            mask[:, :2] |= mask.any(axis=1)[:, None]
        i0, ir = np.zeros_like(img), np.zeros_like(img)
        i0[mask], ir[mask] = img[mask], graded[mask]
        want = regrain(i0, ir)[mask]
        assert np.array_equal(regrain_masked(img[mask], graded[mask], mask), want)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        y0, x0 = max(0, rows[0] - 3), cols[0]
        win = mask[y0 : rows[-1] + 1, x0 : cols[-1] + 1]
        assert np.array_equal(regrain_masked(img[mask], graded[mask], win, (h, w, y0, x0)), want)


def test_idt_points_weighted_and_chunked_equal_pdf_transfer():
    from harmbench.transfer.idt import (
        idt_points,
        idt_rotations,
        pdf_transfer,
        pdf_transfer_weighted,
    )

    rng = np.random.default_rng(0)
    for n0, n1 in ((3000, 2500), (2, 4000), (5000, 3)):
        d0 = _unit(rng.integers(0, 60, (n0, 3)).astype(np.uint8) * 4).astype(np.float64)
        d1 = _unit(rng.integers(90, 200, (n1, 3)).astype(np.uint8)).astype(np.float64)
        rots = idt_rotations(10, np.random.default_rng(n0))
        want = pdf_transfer(d0, d1, rots)
        assert np.array_equal(idt_points(d0, d1, rots), want)
        assert np.array_equal(pdf_transfer_weighted(d0, d1, rots, chunk=257), want)
        noisy = d0 + 1e-7 * rng.random(d0.shape)  # not 8-bit: no distinct-colour shortcut
        assert np.array_equal(idt_points(noisy, d1, rots), pdf_transfer(noisy, d1, rots))
    one = np.full((400, 3), _unit(np.array([[10, 200, 90]], np.uint8))[0], dtype=np.float64)  # one colour
    rots = idt_rotations(10, np.random.default_rng(1))
    assert np.array_equal(idt_points(d0, one, rots), pdf_transfer(d0, one, rots))


def test_hue_once_per_colour_equals_every_pixel():
    from harmbench.transfer.hue import shift_hue_keep_l

    img, mask = _unit(_photo(120, 160, 11)), _blob(120, 160, 12)
    for x in (img, np.clip(img + np.float32(1e-4), 0, 1)):  # 8-bit input and not
        out = get_transfer("hue")(x, mask, hue_shift=0.3, sat_scale=0.7)
        plain = composite(x, mask, shift_hue_keep_l(x[mask].astype(np.float64), 0.3, 0.7))
        assert np.array_equal(out, plain)


def test_histmatch_on_8bit_input_equals_skimage():
    from skimage.exposure import match_histograms

    img, ref = _unit(_photo(90, 110, 13)), _unit(_photo(70, 80, 14))
    full = np.ones(img.shape[:2], bool)
    out = get_transfer("histmatch")(img, full, ref, np.ones(ref.shape[:2], bool))
    want = np.clip(match_histograms(img, ref, channel_axis=-1), 0, 1).astype(np.float32)
    assert np.array_equal(out, want)


def test_fmse_integer_paths_equal_the_float_formula():
    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(2))
    mask = _blob(50, 70, 4)
    fg = Foreground.of(b, mask)
    assert fmse(a, b, mask) == fg.fmse(a[mask]) == _fmse_float(a, b, mask)
    pal = fg.palette
    recol = Recoloured((255 - pal.colours).astype(np.uint8))
    assert np.array_equal(fg.expand(recol), 255 - b[mask])
    assert fg.fmse(recol) == _fmse_float(fg.paste(b, recol), b, mask)
    assert np.array_equal(fg.paste(b, recol)[~mask], b[~mask])


# ------------------------------------------------------------------ recipes end to end


def _make_photos(root: Path, n: int, h: int, w: int) -> None:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for p in range(n):
        Image.fromarray(_photo(h, w, 20 + p)).save(root / "images" / f"photo{p}.jpg", quality=92)
        for o in range(2):
            m = _blob(h, w, 40 + 2 * p + o)
            Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"photo{p}_{o}.png")


RECIPES = """
[dataset]
name = "large"
seed = 3
shard_size = 4

[output]
store_reference = {store}

[split]
test_fraction = 0.0

[filters]
fg_ratio_min = 0.0
fg_ratio_max = 1.0
min_fmse = 1.0
max_attempts = 3

[sources.photos]
type = "folder"
images = "{root}/images"
masks = "{root}/masks"
category = "object"

[[recipes]]
type = "hcoco"
source = "photos"
per_object = 3
methods = {methods}

[[recipes]]
type = "hue"
source = "photos"

[[recipes]]
type = "identical"
source = "photos"
"""


def _cfg(tmp_path: Path, root: Path, methods, store: bool = True):
    text = RECIPES.format(root=root, methods=json.dumps(list(methods)), store="true" if store else "false")
    return build_config_from_text(text, tmp_path / "large.toml")


def _digest(a) -> str:
    h = hashlib.sha256()
    for arr in (a.composite, a.mask, a.real) + ((a.reference,) if a.reference is not None else ()):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(a.meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def test_recipes_equal_whole_frame_composites_and_are_deterministic(tmp_path):
    root = tmp_path / "src"
    _make_photos(root, 3, 360, 540)
    plan = plan_dataset(_cfg(tmp_path, root, OPS))
    seen = set()
    digests = {}
    for s in plan.specs:
        a = synthesize(s)
        digests[s.key] = _digest(a)
        m = a.meta
        real, mask = a.real, a.mask
        assert np.array_equal(a.composite[~mask], real[~mask])
        if s.recipe == "identical":
            assert np.array_equal(a.composite, real)
            continue
        assert a.real_bytes is not None
        if s.recipe == "hue":
            want = _whole_frame("hue", real, mask, None, None, m["params"])
        else:
            ref_rec = next(r for r in s.inputs["references"] if r.key == m["reference_key"])
            ref = load_object(ref_rec, None)
            assert np.array_equal(a.reference, ref.real) and m["reference_size"] == list(ref.real.shape[:2])
            want = _whole_frame(m["method"], real, mask, ref.real, ref.mask, m["params"])
        seen.add(m["method"])
        assert np.array_equal(a.composite, want), s.key
        assert m["fmse"] == round(_fmse_float(want, real, mask), 3)
    assert seen == set(OPS)
    # same bytes again, from pickled specs (as a worker receives them), in another order
    again = {s.key: _digest(synthesize(pickle.loads(pickle.dumps(s)))) for s in reversed(plan.specs)}
    assert again == digests


def _frame_mean_sampler(rng):
    return {}


@register_transfer("_test_frame_mean", sampler=_frame_mean_sampler)
def _frame_mean(image, mask, ref_image=None, ref_mask=None, *, rng=None):
    """Reads the whole frame (its mean colour) and the whole reference photo: no crop mode."""
    fg, _ = gather("_test_frame_mean", image, mask, ref_image, ref_mask)
    shift = image.reshape(-1, 3).mean(0) - ref_image.reshape(-1, 3).mean(0)
    return composite(image, mask, 1.0 - fg + 0.1 * shift)


def test_op_without_crop_mode_gets_the_whole_frame(tmp_path):
    root = tmp_path / "src"
    _make_photos(root, 2, 120, 160)
    plan = plan_dataset(_cfg(tmp_path, root, ["_test_frame_mean"], store=False))
    for s in [s for s in plan.specs if s.recipe == "hcoco"][:3]:
        a = synthesize(s)
        ref = load_object(next(r for r in s.inputs["references"] if r.key == a.meta["reference_key"]), None)
        want = _whole_frame("_test_frame_mean", a.real, a.mask, ref.real, ref.mask, {})
        assert np.array_equal(a.composite, want) and a.reference is None


def test_change_filter_redraws_on_foreground_pixels(tmp_path):
    root = tmp_path / "src"
    _make_photos(root, 2, 120, 160)
    cfg = _cfg(tmp_path, root, ["hue"], store=False)
    plan = plan_dataset(cfg)
    hue = next(s for s in plan.specs if s.recipe == "hue")
    a = synthesize(hue)
    assert a.meta["fmse"] == round(_fmse_float(a.composite, a.real, a.mask), 3) >= 1.0
    too_high = plan_dataset(
        build_config_from_text(
            RECIPES.format(root=root, methods='["hue"]', store="false").replace("min_fmse = 1.0", "min_fmse = 1e9"),
            tmp_path / "hi.toml",
        )
    )
    with pytest.raises(InputError, match=r"too close to the real image after 3 attempt\(s\) \(best fMSE"):
        synthesize(next(s for s in too_high.specs if s.recipe == "hue"))


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("recipe", ["hue", "hcoco"])
def test_synthesis_memory_is_frame_uint8_plus_object_sized(tmp_path, recipe):
    """No float copy of the frame: the traced peak stays within a few uint8 frames on a 3000x2000 photo."""
    h, w = 2000, 3000
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    from PIL import Image

    small = _photo(100, 150, 1)
    for p in range(2):
        Image.fromarray(np.roll(small, 40 * p, axis=1)).resize((w, h)).save(
            root / "images" / f"photo{p}.jpg", quality=90
        )
        m = np.zeros((h, w), np.uint8)
        m[300 + 200 * p : 500 + 200 * p, 500:800] = 255  # 1 % of the frame: object-sized arrays are small
        Image.fromarray(m).save(root / "masks" / f"photo{p}_0.png")
    plan = plan_dataset(_cfg(tmp_path, root, ["reinhard"], store=False))
    spec = next(s for s in plan.specs if s.recipe == recipe)
    frame = h * w * 3  # one uint8 frame
    tracemalloc.start()
    try:
        a = synthesize(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert a.composite.shape == (h, w, 3)
    # uint8 photo + composite (or + the reference photo while it is reduced to its region), masks,
    # a decode band; one float32 copy of the frame alone would be 4 frames
    assert peak < 3.6 * frame, peak / frame
