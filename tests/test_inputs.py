"""Real-world inputs at every entry point: each class of unusual or broken input has one exact outcome.

The corpus is generated here (:mod:`_corpus`); expected values come from numpy on the
arrays the files were written from, never from harmbench's own reader.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from _corpus import (
    box_mask,
    exif_bytes,
    palette_mask,
    png_header_only,
    reference_metrics,
    rgb_array,
    save,
    stored_for_orientation_6,
    write_flat_triplet,
    write_shard_dir,
)
from PIL import Image

from harmbench.cli import main
from harmbench.errors import ConfigError, InputError
from harmbench.imaging import image_size, read_mask, read_rgb

FAST = {"workers": 1, "device": "cpu", "progress": False, "batch_size": 4}


def _values(res) -> list[dict]:
    """Per-sample rows without the subset (the folder's name)."""
    return [{k: v for k, v in r.items() if k != "subset"} for r in res.per_sample]


def _score(folder: Path, **kw):
    from harmbench.eval.score import score_dataset

    return score_dataset(folder, split=None, **{**FAST, **kw})


# --------------------------------------------------------------------------- colour modes


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_colour_modes_become_8bit_rgb():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey3 = np.repeat(g[..., None], 3, axis=2)
    # L, LA: grey replicated; LA's alpha dropped
    assert np.array_equal(read_rgb(_bytes(Image.fromarray(g))), grey3)
    la = Image.merge("LA", (Image.fromarray(g), Image.fromarray(255 - g)))
    assert np.array_equal(read_rgb(_bytes(la)), grey3)
    # RGBA: alpha dropped, not composited
    rgba = np.dstack([rgb, np.zeros((5, 7), np.uint8)])
    assert np.array_equal(read_rgb(_bytes(Image.fromarray(rgba))), rgb)
    # P: through the palette
    idx = rng.integers(0, 4, (5, 7), dtype=np.uint8)
    pal = np.array([[10, 20, 30], [200, 0, 0], [0, 250, 5], [7, 7, 7]], np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(pal.ravel().tolist() + [0] * (768 - 12))
    assert np.array_equal(read_rgb(_bytes(p)), pal[idx])
    # CMYK (TIFF): R = (255 - C)(255 - K) / 255 rounded, the conversion without a colour profile
    cmyk = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8).astype(int)
    expect = np.round((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255.0)
    cmyk = cmyk.astype(np.uint8)
    got = read_rgb(_bytes(Image.fromarray(cmyk, mode="CMYK"), "TIFF"))
    assert np.array_equal(got, expect.astype(np.uint8))
    # 16-bit grey and 16-bit RGB (written by OpenCV): the high byte
    g16 = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", g16)
    assert ok
    assert np.array_equal(read_rgb(enc.tobytes()), np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, axis=2))
    c16 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", c16[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_rgb(enc.tobytes()), (c16 >> 8).astype(np.uint8))


# --------------------------------------------------------------------------- masks


def test_mask_modes_read_as_raw_0_255():
    m = box_mask(6, 8, 1, 2, 3, 4)
    u = m.astype(np.uint8)
    want = u * 255
    cases = {
        "0/1 L": Image.fromarray(u),
        "0/255 L": Image.fromarray(want),
        "mode 1": Image.fromarray(m),
        "16-bit 0/65535": Image.fromarray(u.astype(np.uint16) * 65535),
        "16-bit 0/1": Image.fromarray(u.astype(np.uint16)),
        "red on black RGB": Image.fromarray(np.dstack([want, np.zeros_like(want), np.zeros_like(want)])),
        "alpha": Image.fromarray(np.dstack([np.zeros((6, 8, 3), np.uint8), want])),
        "VOC palette": palette_mask(m, 1, border=False),
    }
    for name, img in cases.items():
        assert np.array_equal(read_mask(_bytes(img)), want), name
    soft = np.array([[0, 64, 128, 255]], np.uint8)
    assert np.array_equal(read_mask(_bytes(Image.fromarray(soft))), soft)  # soft masks keep their values
    grey_pal = Image.fromarray(np.array([[0, 1, 2]], np.uint8), mode="P")
    grey_pal.putpalette([0, 0, 0, 100, 100, 100, 255, 255, 255] + [0] * 759)
    assert read_mask(_bytes(grey_pal)).tolist() == [[0, 100, 255]]  # a grey palette is a grey mask


def test_palette_mask_index_rule_and_option():
    m = box_mask(10, 10, 2, 2, 4, 4)
    other = box_mask(10, 10, 7, 7, 2, 2)
    img = palette_mask(m, 1)
    arr = np.asarray(img).copy()
    arr[other] = 2
    two = Image.fromarray(arr, mode="P")
    two.putpalette(img.getpalette())
    data = _bytes(two)
    assert np.array_equal(read_mask(data) > 0, arr != 0)  # every index but 0 (void border included)
    assert np.array_equal(read_mask(data, palette_index=1) > 0, m)
    assert np.array_equal(read_mask(data, palette_index=2) > 0, other)


def test_jpeg_noisy_mask_binarises_to_its_shape(tmp_path):
    m = box_mask(32, 32, 5, 7, 15, 13)  # edges inside 8x8 blocks: ringing
    p = save(Image.fromarray(m.astype(np.uint8) * 255), tmp_path / "m.jpg", quality=75)
    raw = read_mask(p)
    assert len(np.unique(raw)) > 2  # really noisy
    assert np.array_equal(raw >= 128, m)


def test_palette_mask_triplet_scores_like_its_0_255_twin(tmp_path):
    real = rgb_array(30, 40, 1)
    m = box_mask(30, 40, 5, 8, 12, 15)
    comp = real.copy()
    comp[m] = 255 - comp[m]
    write_flat_triplet(tmp_path / "pal", "1", comp, real, palette_mask(m, 1, border=False))
    write_flat_triplet(tmp_path / "bin", "1", comp, real, m)
    a = _score(tmp_path / "pal", resize="none")
    b = _score(tmp_path / "bin", resize="none")
    assert a.n == b.n == 1 and not a.skipped
    assert _values(a) == _values(b)
    ref = reference_metrics(comp, real, m)
    assert a.per_sample[0]["fmse"] == pytest.approx(ref["fmse"], rel=1e-12)
    assert a.per_sample[0]["mse"] == pytest.approx(ref["mse"], rel=1e-12)


# --------------------------------------------------------------------------- EXIF orientation


def _rotated_folder(folder: Path, comp: np.ndarray, real: np.ndarray, mask: np.ndarray, fmt: str) -> None:
    """Composite and real stored rotated with orientation 6; the mask drawn on the photo as displayed."""
    folder.mkdir(parents=True)
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    kw = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    for stem, arr in (("1", comp), ("1-gt", real)):
        Image.fromarray(stored_for_orientation_6(arr)).save(
            folder / f"{stem}.{ext}", format=fmt, exif=exif_bytes(6), **kw
        )
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "1-mask.png")


def test_exif_orientation_is_applied_as_displayed(tmp_path):
    disp = rgb_array(20, 30, 5)
    p = tmp_path / "r.png"
    Image.fromarray(stored_for_orientation_6(disp)).save(p, exif=exif_bytes(6))
    assert np.array_equal(read_rgb(p), disp)
    assert image_size(p) == (30, 20) and image_size(p, orient=False) == (20, 30)
    assert np.array_equal(read_rgb(p, orient=False), stored_for_orientation_6(disp))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_rotated_triplet_scores_like_its_upright_twin(tmp_path, fmt):
    real = rgb_array(24, 40, 7)
    m = box_mask(24, 40, 4, 10, 12, 14)
    comp = real.copy()
    comp[m] = np.clip(comp[m].astype(int) + 60, 0, 255).astype(np.uint8)
    _rotated_folder(tmp_path / "rot", comp, real, m, fmt)
    # the upright twin holds exactly the displayed pixels (lossless), the mask is the same file
    shown = {
        s: np.asarray(
            Image.open(tmp_path / "rot" / f"{s}.{'png' if fmt == 'PNG' else 'jpg'}").transpose(
                Image.Transpose.ROTATE_270
            )
        )
        for s in ("1", "1-gt")
    }
    write_flat_triplet(tmp_path / "up", "1", shown["1"], shown["1-gt"], m)
    rot = _score(tmp_path / "rot", resize="none")
    up = _score(tmp_path / "up", resize="none")
    assert rot.n == up.n == 1 and not rot.skipped
    assert _values(rot) == _values(up)
    ref = reference_metrics(shown["1"], shown["1-gt"], m)
    assert rot.per_sample[0]["fmse"] == pytest.approx(ref["fmse"], rel=1e-12)
    # fixed256 too: the same pixels, the same numbers
    assert _values(_score(tmp_path / "rot")) == _values(_score(tmp_path / "up"))


def test_public_profile_reading_as_stored_skips_with_sizes(tmp_path):
    real = rgb_array(24, 40, 7)
    m = box_mask(24, 40, 4, 10, 12, 14)
    _rotated_folder(tmp_path / "rot", real, real, m, "PNG")
    res = _score(tmp_path / "rot", profile="dovenet", resize="none")
    assert res.n == 0 and len(res.skipped) == 1
    s = res.skipped[0]
    assert s.path.endswith("1.png")
    assert "size mismatch: composite 24x40 (EXIF orientation 6 not applied)" in s.reason
    assert "mask 40x24" in s.reason


def test_profiles_record_their_reader():
    from harmbench.metrics import get_profile

    assert get_profile("harmbench").to_dict()["exif_orientation"] is True
    assert get_profile("iharm").exif_orientation is True  # cv2.imread applies the tag
    assert get_profile("dovenet").exif_orientation is False  # PIL Image.open does not
    assert get_profile("zhenglab").exif_orientation is False


# --------------------------------------------------------------------------- pixel limit


def test_header_over_default_limit_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(20000, 20000))  # 4e8 pixels, a few bytes on disk
    with pytest.raises(InputError) as e:
        read_rgb(p)
    assert e.value.path == str(p)
    assert "20000x20000 = 400,000,000 pixels, above the pixel limit of 89,478,485" in e.value.reason
    with pytest.raises(InputError, match="above the pixel limit"):
        image_size(p)


def test_over_limit_image_is_skipped_by_score_and_the_rest_scored(tmp_path, monkeypatch, capsys):
    real = rgb_array(20, 20, 1)
    m = box_mask(20, 20, 5, 5, 6, 6)
    write_flat_triplet(tmp_path / "d", "1", real, real, m)
    big = rgb_array(40, 40, 2)
    write_flat_triplet(tmp_path / "d", "2", big, big, box_mask(40, 40, 5, 5, 6, 6))
    monkeypatch.setenv("HARMBENCH_MAX_PIXELS", "1000")
    rc = main(
        [
            "score",
            str(tmp_path / "d"),
            "--json",
            str(tmp_path / "out.json"),
            "--no-progress",
            "--workers",
            "1",
            "--device",
            "cpu",
            "--resize",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    doc = json.loads((tmp_path / "out.json").read_text())
    assert [r["key"] for r in doc["per_sample"]] == ["1"]
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert set(reasons) == {"2-gt.png"}  # the real image is read first
    assert "40x40 = 1,600 pixels, above the pixel limit of 1,000" in reasons["2-gt.png"]
    assert "2-gt.png" in err


def test_max_pixels_flag_sets_the_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARMBENCH_MAX_PIXELS", "")  # recorded, so the value main() sets is undone
    real = rgb_array(40, 40, 2)
    write_flat_triplet(tmp_path / "d", "1", real, real, box_mask(40, 40, 5, 5, 6, 6))
    rc = main(
        ["--max-pixels", "100", "score", str(tmp_path / "d"), "--no-progress", "--workers", "1", "--device", "cpu"]
    )
    assert rc == 1  # nothing could be scored
    assert "above the pixel limit of 100" in capsys.readouterr().err


# --------------------------------------------------------------------------- file names and keys


def test_keys_are_reversible_and_never_collide(tmp_path):
    from harmbench.sources.base import key_to_name

    real = rgb_array(16, 16, 4)
    m = box_mask(16, 16, 4, 4, 8, 8)
    comp = real.copy()
    comp[m] = 0
    d = tmp_path / "d"
    for stem in ("café photo", "caf-photo", "caf_photo", "a.b"):
        write_flat_triplet(d, stem, comp, real, m)
    res = _score(d, resize="none")
    keys = [r["key"] for r in res.per_sample]
    assert len(keys) == len(set(keys)) == 4 and not res.skipped
    assert sorted(key_to_name(k) for k in keys) == sorted(["café photo", "caf-photo", "caf_photo", "a.b"])
    assert all(k.replace("_", "").replace("-", "").isalnum() for k in keys)


def test_two_files_that_would_share_a_key_are_both_named(tmp_path):
    real = rgb_array(16, 16, 4)
    m = box_mask(16, 16, 4, 4, 8, 8)
    d = tmp_path / "d"
    write_flat_triplet(d, "x", real, real, m)
    Image.fromarray(real).save(d / "x.jpg")  # a second composite "x"
    write_flat_triplet(d, "y", real, real, m)
    res = _score(d, resize="none")
    assert [r["key"] for r in res.per_sample] == ["y"]
    clash = [s for s in res.skipped if "shared by" in s.reason]
    assert {Path(s.path).name for s in clash} == {"x.png", "x.jpg"}
    for s in clash:
        assert str(d / "x.png") in s.reason and str(d / "x.jpg") in s.reason


def test_folder_source_photos_sharing_a_stem(tmp_path):
    from harmbench.sources import get_source

    img = rgb_array(12, 12, 1)
    save(Image.fromarray(img), tmp_path / "im" / "p.jpg")
    save(Image.fromarray(img), tmp_path / "im" / "p.png")
    save(Image.fromarray(img), tmp_path / "im" / "q.png")
    for s in ("p", "q"):
        save(Image.fromarray(box_mask(12, 12, 2, 2, 5, 5).astype(np.uint8) * 255), tmp_path / "m" / f"{s}.png")
    recs = get_source("folder")(images=tmp_path / "im", masks=tmp_path / "m")
    assert [r.image_id for r in recs] == ["q"]
    shared = [s for s in recs.skipped if "shared by" in s["reason"]]
    assert {Path(s["path"]).name for s in shared} == {"p.jpg", "p.png"}


def test_folder_source_reads_palette_masks(tmp_path):
    from harmbench.sources import get_source

    m = box_mask(12, 14, 3, 2, 5, 6)
    save(Image.fromarray(rgb_array(12, 14, 1)), tmp_path / "im" / "p.jpg")
    save(palette_mask(m, 1, border=False), tmp_path / "m" / "p.png")
    recs = get_source("folder")(images=tmp_path / "im", masks=tmp_path / "m")
    assert len(recs) == 1 and not recs.skipped
    assert np.array_equal(recs[0].decode_mask(), m)


# --------------------------------------------------------------------------- broken image files


def test_broken_image_files_are_skipped_with_reasons(tmp_path):
    real = rgb_array(32, 32, 9)
    m = box_mask(32, 32, 4, 4, 20, 20)
    d = tmp_path / "d"
    for stem in ("ok", "cut", "junk", "empty"):
        write_flat_triplet(d, stem, real, real, m, ext="jpg")
    data = (d / "cut.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 2])
    (d / "junk-gt.jpg").write_bytes(b"<html>not an image</html>")
    (d / "empty-mask.png").write_bytes(b"")
    res = _score(d, resize="none")
    assert [r["key"] for r in res.per_sample] == ["ok"]
    why = {Path(s.path).name: s.reason for s in res.skipped}
    assert set(why) == {"cut.jpg", "junk-gt.jpg", "empty-mask.png"}
    assert why["cut.jpg"].startswith("cannot decode image")
    assert why["junk-gt.jpg"] == "not a readable image"
    assert why["empty-mask.png"] == "not a readable image"


# --------------------------------------------------------------------------- shards


def _break_shards(root: Path, rows: list[dict]) -> dict[str, str]:
    """Shard 1 truncated inside a member, shard 2 with a bad header; shard 3 loses a field and gets an
    undecodable member (both rewritten as valid tars). Returns ``{shard name: damage}``."""
    s1 = root / rows[1]["url"]
    with tarfile.open(s1) as t:
        m1 = t.getmembers()[1]
    data = s1.read_bytes()
    s1.write_bytes(data[: m1.offset_data + m1.size // 2])  # inside the second member's data
    s2 = root / rows[2]["url"]
    b = bytearray(s2.read_bytes())
    with tarfile.open(s2) as t:
        m0 = t.getmembers()[0]
    hdr = m0.offset_data + ((m0.size + 511) // 512) * 512  # the second member's header
    b[hdr : hdr + 100] = b"\xff" * 100
    s2.write_bytes(bytes(b))
    s3 = root / rows[3]["url"]
    with tarfile.open(s3) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(s3, "w", format=tarfile.USTAR_FORMAT) as t:
        for m, raw in members:
            if m.name == "s3_0.mask.png":
                continue  # missing field
            if m.name == "s3_1.composite.png":
                raw = raw[: len(raw) // 2]  # undecodable member (cut inside its pixel data)
                m.size = len(raw)
            t.addfile(m, io.BytesIO(raw))
    return {s1.name: "truncated", s2.name: "header", s3.name: "members"}


def test_inspect_verify_checks_every_shard(tmp_path, capsys):
    rows = write_shard_dir(tmp_path / "ds")
    assert main(["inspect", "--verify", str(tmp_path / "ds")]) == 0
    assert "4 of 4 shard(s) intact" in capsys.readouterr().out
    _break_shards(tmp_path / "ds", rows)
    assert main(["inspect", "--verify", str(tmp_path / "ds")]) == 1
    cap = capsys.readouterr()
    assert "1 of 4 shard(s) intact, 3 broken" in cap.out
    lines = cap.err.splitlines()
    s1, s2, s3 = (str(tmp_path / "ds" / rows[i]["url"]) for i in (1, 2, 3))
    size1 = Path(s1).stat().st_size
    assert any(ln == f"broken {s1}: size {size1} bytes, index says {rows[1]['filesize']}" for ln in lines)
    assert any(ln == f"broken {s1}: member s1_0.mask.png: member cut short (truncated shard)" for ln in lines)
    assert any(ln.startswith(f"broken {s2}: md5 ") for ln in lines)
    assert any(ln.startswith(f"broken {s2}: bad tar header after member s2_0.composite.png") for ln in lines)
    assert any(ln.startswith(f"broken {s3}: md5 ") for ln in lines)
    assert not any(ln.startswith(f"broken {tmp_path / 'ds' / rows[0]['url']}") for ln in lines)
    assert "Traceback" not in cap.err


def test_eval_scores_every_other_shard_and_lists_the_broken_ones(tmp_path, capsys):
    rows = write_shard_dir(tmp_path / "ds")
    _break_shards(tmp_path / "ds", rows)
    args = [
        "eval",
        "--model",
        "composite",
        "--data",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
        "--previews",
        "0",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    names = {Path(b["shard"]).name: b for b in run["broken_shards"]}
    assert set(names) == {rows[1]["url"], rows[2]["url"]}
    assert names[rows[1]["url"]]["member"] == "s1_0.mask.png"
    assert names[rows[1]["url"]]["reason"] == "member cut short (truncated shard)"
    assert names[rows[2]["url"]]["reason"].startswith("bad tar header after member s2_0.composite.png")
    assert run["n_samples"] == 3 + 1  # shard 0 whole, shard 3 minus its two bad samples
    skipped = {s["key"]: s for s in run["skipped"]}
    assert set(skipped) == {"s3_0", "s3_1"}
    s3 = str(tmp_path / "ds" / rows[3]["url"])
    assert skipped["s3_0"]["path"] == s3 and "missing field mask.png" in skipped["s3_0"]["reason"]
    assert skipped["s3_1"]["path"] == f"{s3}: s3_1.composite.png"
    assert skipped["s3_1"]["reason"].startswith("cannot decode image")
    assert f"broken shard {tmp_path / 'ds' / rows[1]['url']} member s1_0.mask.png" in err
    assert main([*args, "--strict"]) == 1  # the finished run is reused; --strict turns the damage into status 1


def test_leaderboard_run_refuses_a_missing_checkpoint_before_any_build(tmp_path, capsys):
    lb = tmp_path / "lb" / "leaderboard.toml"
    lb.parent.mkdir()
    lb.write_text(
        '[leaderboard]\nlpips = false\n\n[[datasets]]\nname = "c"\nrecipe = "r.toml"\n\n'
        '[[models]]\nname = "dovenet"\ncheckpoint = "nope.safetensors"\n'
    )
    (lb.parent / "r.toml").write_text("")  # never read: the check comes first
    assert main(["leaderboard", "run", str(lb), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model 'dovenet': checkpoint not found: " in err and "nope.safetensors" in err
    assert not (lb.parent / "runs").exists()


def test_leaderboard_footnotes_name_broken_shards(tmp_path, capsys):
    rows = write_shard_dir(tmp_path / "ds")
    _break_shards(tmp_path / "ds", rows)
    lb = tmp_path / "lb" / "leaderboard.toml"
    lb.parent.mkdir()
    lb.write_text(
        f'[leaderboard]\nlpips = false\nbootstrap = 10\ngrid_samples = 0\n\n[[datasets]]\nname = "c"\n'
        f'path = "{tmp_path / "ds"}"\n\n[[models]]\nname = "composite"\n'
    )
    assert main(["leaderboard", "run", str(lb), "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    assert main(["leaderboard", "run", str(lb), "--device", "cpu", "--workers", "0", "--no-progress", "--strict"]) == 1
    assert main(["leaderboard", "export", str(lb), "--format", "md"]) == 0
    md = (lb.parent / "results.md").read_text()
    assert f"shard {rows[1]['url']} is broken and was left out (member s1_0.mask.png: member cut short" in md
    assert f"2 broken shard(s) left out, their samples not scored: {rows[1]['url']}" in md
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- configs


RECIPE = """
[dataset]
name = "corpus"
seed = 1
shard_size = 10

[output]
max_side = 64

[filters]
fg_ratio_min = 0.01

[sources.photos]
type = "folder"
images = "{images}"
min_area = 10

[[recipes]]
type = "identical"
source = "photos"
"""


@pytest.mark.parametrize(
    ("find", "replace", "field", "message"),
    [
        ("seed = 1", 'seed = "one"', "dataset.seed", "must be an integer"),
        ("seed = 1", "seed = 1\ncolour = 3", "dataset.colour", "unknown field"),
        ("shard_size = 10", "shard_size = -5", "dataset.shard_size", "must be >= 1"),
        ("max_side = 64", "max_side = -64", "output.max_side", "must be >= 16"),
        ("fg_ratio_min = 0.01", "fg_ratio_min = nan", "filters.fg_ratio_min", "must be a finite number"),
        ("fg_ratio_min = 0.01", "fg_ratio_min = inf", "filters.fg_ratio_min", "must be a finite number"),
        ("min_area = 10", "min_area = -10", "sources.photos.min_area", "must be >= 0"),
        ("min_area = 10", "min_area = -inf", "sources.photos.min_area", "must be a finite number"),
        ("min_area = 10", 'min_area = "big"', "sources.photos.min_area", "must be"),
        ("min_area = 10", "max_objects_per_image = 0", "sources.photos.max_objects_per_image", "must be >= 1"),
        ("min_area = 10", "palette_index = -1", "sources.photos.palette_index", "must be >= 0"),
        ("min_area = 10", 'masks = "/nonexistent/masks"', "sources.photos.masks", "path not found"),
        ("min_area = 10", "masks = 3", "sources.photos.masks", "must be a path"),
        ("min_area = 10", 'category = ["a"]', "sources.photos.category", "must be a string"),
    ],
)
def test_recipe_toml_errors_name_file_and_field(tmp_path, find, replace, field, message):
    from harmbench.recipes.config import load_build_config

    (tmp_path / "im").mkdir()
    text = RECIPE.format(images=tmp_path / "im")
    p = tmp_path / "recipe.toml"
    p.write_text(text)
    load_build_config(p)  # the unmutated file is valid
    assert find in text
    p.write_text(text.replace(find, replace))
    with pytest.raises(ConfigError) as e:
        load_build_config(p)
    assert e.value.field == field and e.value.path == str(p)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("find", "replace", "field"),
    [
        ("seed = 0", "seed = true", "leaderboard.seed"),
        ("seed = 0", "seed = -1", "leaderboard.seed"),
        ("seed = 0", "bootstrap = nan", "leaderboard.bootstrap"),
        ("seed = 0", "colour = 1", "leaderboard.colour"),
        ("limit = 5", "limit = 0", "datasets[0].limit"),
        ("limit = 5", "limit = inf", "datasets[0].limit"),
        ('path = "DATA"', 'path = "does/not/exist"', "datasets[0].path"),
        ("[[models]]", "[[models]]\noptions = { k = nan }\n", "models[0].options.k"),
    ],
)
def test_leaderboard_toml_errors_name_file_and_field(tmp_path, find, replace, field):
    from harmbench.leaderboard.definition import load_leaderboard

    (tmp_path / "data").mkdir()
    text = (
        f'[leaderboard]\nseed = 0\n\n[[datasets]]\nname = "d"\npath = "{tmp_path / "data"}"\nlimit = 5\n\n'
        '[[models]]\nname = "composite"\n'
    )
    find = find.replace("DATA", str(tmp_path / "data"))
    p = tmp_path / "lb.toml"
    p.write_text(text)
    load_leaderboard(p)
    assert find in text
    p.write_text(text.replace(find, replace))
    with pytest.raises(ConfigError) as e:
        load_leaderboard(p)
    assert e.value.field == field and e.value.path == str(p)


# --------------------------------------------------------------------------- reduced decoding


def test_draft_decoding_bounds_the_decoded_size():
    from harmbench.imaging import encode_image

    big = rgb_array(480, 640, 3)
    data = encode_image(big, "jpg")
    small = read_rgb(data, draft=(150, 100))
    assert small.shape == (120, 160, 3)  # 1/4: the smallest DCT scale still >= 150x100
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((160, 120), Image.Resampling.BOX))
    assert np.abs(small.astype(int) - full.astype(int)).mean() < 2.0  # the same picture, reduced
    assert read_rgb(encode_image(big, "png"), draft=(150, 100)).shape == (480, 640, 3)  # PNG: full size


def test_a_key_in_two_shards_scores_the_first_copy_once(tmp_path, capsys):
    import pandas as pd
    from _corpus import shard_sample, write_shard

    first = shard_sample("dup", 1)
    second = shard_sample("dup", 2)  # other pixels under the same key
    write_shard(tmp_path / "two" / "x-test-000000.tar", [first, shard_sample("a", 3)])
    write_shard(tmp_path / "two" / "x-test-000001.tar", [second])
    write_shard(tmp_path / "one" / "x-test-000000.tar", [first, shard_sample("a", 3)])
    for name in ("two", "one"):
        assert (
            main(
                [
                    "eval",
                    "--model",
                    "composite",
                    "--data",
                    str(tmp_path / name),
                    "--out",
                    str(tmp_path / f"r{name}"),
                    "--device",
                    "cpu",
                    "--workers",
                    "0",
                    "--no-progress",
                    "--previews",
                    "0",
                    "--split",
                    "all",
                ]
            )
            == 0
        )
    capsys.readouterr()
    two = pd.read_parquet(tmp_path / "rtwo" / "samples.parquet").drop(columns=["seconds"])
    one = pd.read_parquet(tmp_path / "rone" / "samples.parquet").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(two, one)
    run = json.loads((tmp_path / "rtwo" / "run.json").read_text())
    assert [(s["key"], Path(s["path"]).name) for s in run["skipped"]] == [("dup", "x-test-000001.tar")]
    assert "also in" in run["skipped"][0]["reason"] and "x-test-000000.tar" in run["skipped"][0]["reason"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", ".", "--batch-size", "-3"], "argument --batch-size: must be >= 1, got -3"),
        (
            ["eval", "--model", "m", "--data", ".", "--out", "o", "--previews", "-1"],
            "argument --previews: must be >= 0",
        ),
        (["inspect", ".", "--samples", "x"], "argument --samples: must be an integer, got 'x'"),
        (["build", "r.toml", "--out", "o", "--max-samples", "0"], "argument --max-samples: must be >= 1, got 0"),
    ],
)
def test_negative_or_malformed_numbers_on_the_command_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_training_loader_names_the_shard_and_member(tmp_path):
    from harmbench.data.loader import HarmonizationShards
    from harmbench.data.shards import ShardError

    rows = write_shard_dir(tmp_path / "ds")
    _break_shards(tmp_path / "ds", rows)
    items = []
    with pytest.raises(ShardError) as e:
        for item in HarmonizationShards(tmp_path / "ds", "test"):
            items.append(item["key"])
    assert [k for k in items] == ["s0_0", "s0_1", "s0_2"]  # the intact shard came first
    assert e.value.shard == str(tmp_path / "ds" / rows[1]["url"]) and e.value.member == "s1_0.mask.png"
    assert str(e.value).endswith("member s1_0.mask.png: member cut short (truncated shard)")
    ds = HarmonizationShards([tmp_path / "ds" / rows[3]["url"]], None)
    with pytest.raises(ShardError, match=r"member s3_0: missing field mask.png"):
        list(ds)
