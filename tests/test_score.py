"""``harmbench score``: JSON document, predictions folder, bad inputs, exit codes, RGBA inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import protocol_reference as ref
import pytest
from PIL import Image

from harmbench.cli import main
from harmbench.eval.score import ScoreOptions, score_dataset

METRICS = ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim")
H, W = 40, 48


def _rng_image(seed: int, size=(H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3)).astype(np.uint8)
    return np.array(Image.fromarray(base).resize((size[1], size[0]), Image.BILINEAR))


def _mask(size=(H, W), box=(8, 30, 10, 36)) -> np.ndarray:
    m = np.zeros(size, np.uint8)
    m[box[0] : box[1], box[2] : box[3]] = 255
    return m


def _triplet(folder: Path, stem: str, seed: int, *, shift=(30, -10, 5), size=(H, W), box=(8, 30, 10, 36)) -> None:
    """Flat iHarmony4 names: <stem>_1_1.png composite, <stem>_1.png mask, <stem>.png real."""
    folder.mkdir(parents=True, exist_ok=True)
    real = _rng_image(seed, size)
    mask = _mask(size, box)
    comp = real.astype(np.int16)
    comp[mask > 0] += np.array(shift, np.int16)
    Image.fromarray(real).save(folder / f"{stem}.png")
    Image.fromarray(mask).save(folder / f"{stem}_1.png")
    Image.fromarray(np.clip(comp, 0, 255).astype(np.uint8)).save(folder / f"{stem}_1_1.png")


def _run(*argv: str) -> int:
    return main(["score", *argv, "--no-progress"])


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    d = tmp_path / "flat"
    for i, stem in enumerate(("a1", "b2", "c3")):
        _triplet(d, stem, seed=i)
    return d


def test_json_document_shape(flat, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert _run(str(flat), "--profile", "harmbench", "--resize", "fixed256", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert list(doc) == ["profile", "resize", "n", "metrics", "subsets", "buckets", "per_sample", "skipped"]
    assert doc["profile"]["name"] == "harmbench" and "ssim" in doc["profile"]
    assert doc["n"] == 3 and set(doc["metrics"]) == set(METRICS)
    assert doc["subsets"]["flat"]["n"] == 3
    assert list(doc["buckets"]) == ["0-5", "5-15", "15-100"]
    assert sum(b["n"] for b in doc["buckets"].values()) == 3
    row = doc["per_sample"][0]
    assert set(row) == {"key", "subset", "fg_ratio", *METRICS} and row["key"] == "a1_1_1"
    assert doc["skipped"] == []
    for m in METRICS:
        assert doc["metrics"][m] == pytest.approx(sum(r[m] for r in doc["per_sample"]) / 3, rel=1e-12)
    printed = capsys.readouterr().out
    assert "All" in printed and "flat" in printed and "fg 15-100%" in printed and "fMSE" in printed


def test_batches_do_not_pool(flat, tmp_path):
    """Per-image values do not depend on the batch size or on how many decode threads run."""
    a = score_dataset(flat, ScoreOptions(batch_size=1, workers=1, progress=False)).to_dict()
    b = score_dataset(flat, ScoreOptions(batch_size=16, workers=3, progress=False)).to_dict()
    assert a["per_sample"] == b["per_sample"]


def test_mixed_sizes_are_grouped(tmp_path):
    d = tmp_path / "mixed"
    _triplet(d, "a1", 1)
    _triplet(d, "b2", 2, size=(64, 40), box=(5, 50, 5, 30))
    res = score_dataset(d, ScoreOptions(resize="none", batch_size=4, progress=False))
    assert res.n == 2
    for row, (stem, _size) in zip(res.per_sample, (("a1", (H, W)), ("b2", (64, 40)))):
        want = ref.reference_files("harmbench", "none", d / f"{stem}_1_1.png", d / f"{stem}.png", d / f"{stem}_1.png")
        for m in METRICS:
            assert row[m] == pytest.approx(want[m], rel=1e-4), (stem, m)


# --------------------------------------------------------------------------- predictions


def test_predictions_flat_and_mirrored(flat, tmp_path):
    preds = tmp_path / "preds"
    (preds / "flat").mkdir(parents=True)
    for stem in ("a1", "b2"):  # a perfect prediction: the real image, saved under the composite key
        Image.open(flat / f"{stem}.png").save(preds / "flat" / f"{stem}_1_1.tif")
    # c3: prediction equals the composite, flat in the predictions root, another extension
    Image.open(flat / "c3_1_1.png").save(preds / "c3_1_1.bmp")
    out = tmp_path / "p.json"
    assert _run(str(flat), "--predictions", str(preds), "--profile", "zhenglab", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    rows = {r["key"]: r for r in doc["per_sample"]}
    assert rows["a1_1_1"]["mse"] == 0.0 and rows["b2_1_1"]["fmse"] == 0.0
    comp = ref.reference_files("zhenglab", "fixed256", flat / "c3_1_1.png", flat / "c3.png", flat / "c3_1.png")
    for m in METRICS:
        assert rows["c3_1_1"][m] == pytest.approx(comp[m], rel=1e-4)


def test_prediction_identical_to_real_has_finite_json(flat, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem in ("a1", "b2", "c3"):
        (preds / f"{stem}_1_1.png").symlink_to(flat / f"{stem}.png")
    out = tmp_path / "p.json"
    assert _run(str(flat), "--predictions", str(preds), "--profile", "dovenet", "--json", str(out)) == 0
    doc = json.loads(out.read_text())  # strict JSON: an infinite PSNR (dovenet has no epsilon) is null
    assert doc["metrics"]["mse"] == 0.0 and doc["metrics"]["psnr"] is None and doc["metrics"]["n_undefined"] == 3
    assert all(r["psnr"] is None for r in doc["per_sample"])


def test_missing_and_wrong_size_predictions_are_skipped(flat, tmp_path, capsys):
    preds = tmp_path / "preds"
    preds.mkdir()
    Image.open(flat / "a1.png").save(preds / "a1_1_1.png")
    Image.fromarray(_rng_image(9, (20, 20))).save(preds / "b2_1_1.png")  # neither real size nor 256x256
    Image.fromarray(_rng_image(9, (256, 256))).save(preds / "c3_1_1.png")  # the fixed256 size: accepted
    out = tmp_path / "p.json"
    assert _run(str(flat), "--predictions", str(preds), "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert [r["key"] for r in doc["per_sample"]] == ["a1_1_1", "c3_1_1"]
    (skip,) = doc["skipped"]
    assert skip["path"].endswith("b2_1_1.png") and "size" in skip["reason"]
    assert "b2_1_1.png" in capsys.readouterr().err
    (preds / "a1_1_1.png").unlink()
    assert _run(str(flat), "--predictions", str(preds), "--json", str(out), "--strict") == 1
    doc = json.loads(out.read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert "no prediction" in reasons["a1_1_1.*"] and "a1_1_1.png" in reasons["a1_1_1.*"]


# --------------------------------------------------------------------------- bad inputs


BAD_CASES = {
    "missing_mask": lambda d: (d / "bad_1.png").unlink(),
    "missing_real": lambda d: (d / "bad.png").unlink(),
    "size_mismatch": lambda d: Image.fromarray(_rng_image(5, (H + 2, W))).save(d / "bad.png"),
    "unreadable": lambda d: (d / "bad_1_1.png").write_bytes(b"this is not an image"),
    "truncated": lambda d: (d / "bad_1_1.png").write_bytes((d / "bad_1_1.png").read_bytes()[:300]),
    "empty_mask": lambda d: Image.fromarray(np.zeros((H, W), np.uint8)).save(d / "bad_1.png"),
}
BAD_FILE = {  # which file the message must name, and a word of the reason
    "missing_mask": ("bad_1_1.png", "mask"),
    "missing_real": ("bad_1_1.png", "real image"),
    "size_mismatch": ("bad_1_1.png", "size mismatch"),
    "unreadable": ("bad_1_1.png", "image"),
    "truncated": ("bad_1_1.png", "decode"),
    "empty_mask": ("bad_1.png", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_skipped_with_the_file_named(flat, tmp_path, capsys, case):
    _triplet(flat, "bad", 7)
    BAD_CASES[case](flat)
    out = tmp_path / "r.json"
    assert _run(str(flat), "--json", str(out)) == 0  # the others are still scored
    doc = json.loads(out.read_text())
    assert [r["key"] for r in doc["per_sample"]] == ["a1_1_1", "b2_1_1", "c3_1_1"]
    name, word = BAD_FILE[case]
    (skip,) = [s for s in doc["skipped"] if Path(s["path"]).name == name]
    assert word in skip["reason"], skip
    err = capsys.readouterr().err
    assert name in err and word in err
    assert _run(str(flat), "--json", str(out), "--strict") == 1


def test_nothing_scored_exits_nonzero(tmp_path, capsys):
    d = tmp_path / "allbad"
    _triplet(d, "x", 1)
    (d / "x_1.png").unlink()
    assert _run(str(d)) == 1
    assert "nothing could be scored" in capsys.readouterr().err
    assert _run(str(tmp_path / "missing")) == 2  # not a folder: a user error


def test_unknown_profile_and_resize_are_user_errors(flat, capsys):
    assert _run(str(flat), "--profile", "nope") == 2
    assert "nope" in capsys.readouterr().err
    assert _run(str(flat), "--resize", "512") == 2


def test_split_file_line_without_files(tmp_path):
    root = tmp_path / "IHD"
    sub = root / "HFlickr"
    for folder in ("composite_images", "masks", "real_images"):
        (sub / folder).mkdir(parents=True)
    real, mask = _rng_image(3), _mask()
    Image.fromarray(real).save(sub / "real_images" / "f1.jpg", quality=95)
    Image.fromarray(mask).save(sub / "masks" / "f1_1.png")
    Image.fromarray(np.clip(real.astype(int) + 20, 0, 255).astype(np.uint8)).save(
        sub / "composite_images" / "f1_1_1.jpg"
    )
    Image.fromarray(real).save(sub / "composite_images" / "f1_1_2.jpg")  # not in the split: ignored
    (root / "IHD_test.txt").write_text("HFlickr/composite_images/f1_1_1.jpg\nHFlickr/composite_images/f9_1_1.jpg\n")
    res = score_dataset(root, ScoreOptions(progress=False))
    assert [r["key"] for r in res.per_sample] == ["f1_1_1"] and res.per_sample[0]["subset"] == "HFlickr"
    (skip,) = res.skipped
    assert skip.path.endswith("f9_1_1.jpg") and "IHD_test.txt" in skip.reason
    assert len(score_dataset(root, ScoreOptions(progress=False, split=None)).per_sample) == 2


# --------------------------------------------------------------------------- RGBA and shared data


def test_rgba_alpha_is_dropped(tmp_path):
    """An RGBA composite/real scores exactly like its RGB channels (alpha dropped, not composited)."""
    rgb, rgba = tmp_path / "rgb", tmp_path / "rgba"
    _triplet(rgb, "a1", 4)
    rgba.mkdir()
    alpha = np.full((H, W, 1), 255, np.uint8)
    alpha[:10] = 0  # transparent rows keep their colour values
    for name in ("a1.png", "a1_1_1.png"):
        arr = np.asarray(Image.open(rgb / name))
        Image.fromarray(np.concatenate([arr, alpha], 2), "RGBA").save(rgba / name)
    (rgba / "a1_1.png").write_bytes((rgb / "a1_1.png").read_bytes())
    a = score_dataset(rgb, ScoreOptions(resize="none", progress=False)).per_sample
    b = score_dataset(rgba, ScoreOptions(resize="none", progress=False)).per_sample
    assert [{k: v for k, v in r.items() if k != "subset"} for r in a] == [
        {k: v for k, v in r.items() if k != "subset"} for r in b
    ]


def test_shared_triplets_rgba_composite_row(shared, tmp_path):
    """triplets_256 mixes RGBA and RGB files; the composite row is finite for every metric."""
    root = shared("data", "triplets_256")
    out = tmp_path / "c.json"
    assert _run(str(root), "--json", str(out), "--device", "auto", "--workers", "2", "--batch-size", "2") == 0
    doc = json.loads(out.read_text())
    assert doc["n"] == 3 and not doc["skipped"]
    assert all(math.isfinite(doc["metrics"][m]) for m in METRICS)


def test_lpips_columns(shared, tmp_path):
    weights = shared("lpips", "alexnet_features.pth")
    root = shared("data", "triplets_256")
    out = tmp_path / "l.json"
    assert _run(str(root), "--lpips", "--lpips-weights", str(weights), "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert set(doc["metrics"]) == {*METRICS, "lpips", "flpips"}
    for r in doc["per_sample"]:
        assert 0.0 < r["lpips"] < 1.0 and 0.0 < r["flpips"] < 2.0


def test_undefined_values_are_left_out_and_counted(flat, tmp_path):
    """A foreground only inside SSIM's ignored 5-px border has no fSSIM: null per sample, counted in n_undefined."""
    _triplet(flat, "edge", 11, box=(0, 3, 0, W))
    out = tmp_path / "u.json"
    assert _run(str(flat), "--resize", "none", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    rows = {r["key"]: r for r in doc["per_sample"]}
    assert rows["edge_1_1"]["fssim"] is None and rows["edge_1_1"]["fmse"] > 0
    assert doc["n"] == 4 and doc["metrics"]["n_undefined"] == 1
    others = [r["fssim"] for k, r in rows.items() if k != "edge_1_1"]
    assert doc["metrics"]["fssim"] == pytest.approx(sum(others) / 3, rel=1e-12)


def test_size_batcher_groups_by_size_and_caps_pixels():
    from harmbench.eval.score import SizeBatcher

    b = SizeBatcher(batch_size=3, max_pixels=10 * 10 * 2)
    assert b.add((4, 4), "a") is None and b.add((10, 10), "x") is None and b.add((4, 4), "b") is None
    assert b.add((10, 10), "y") == ["x", "y"]  # 2·10·10 pixels reach the cap
    assert b.add((4, 4), "c") == ["a", "b", "c"]  # batch size reached
    assert b.add((4, 4), "d") is None
    assert b.drain() == [["d"]] and b.drain() == []


def test_table_and_json_share_the_aggregation(flat, tmp_path, capsys):
    """The text table and the JSON come from harmbench.eval.aggregate (undefined means shown as '-')."""
    import pandas as pd

    from harmbench.eval.aggregate import summary_dict
    from harmbench.eval.report import format_value

    res = score_dataset(flat, ScoreOptions(progress=False))
    doc = res.to_dict()
    want = summary_dict(
        pd.DataFrame(res.per_sample),
        METRICS,
        bucket_edges=(0.0, 0.05, 0.15, 1.0),
        bucket_inclusive="half-open",
        exclude_identity=False,
    )
    assert {k: doc[k] for k in ("n", "metrics", "subsets", "buckets")} == want
    lines = res.format_table().splitlines()
    assert lines[0] == "profile harmbench, resize fixed256" and lines[3].startswith("All")
    assert any(line.startswith("fg 0-5%") and line.split()[2] == "0" and line.endswith("-") for line in lines)
    assert format_value("ssim", float("nan")) == "-" and format_value("ssim", None) == "-"
    assert format_value("psnr", 30.123) == "30.12" and format_value("ssim", 0.98765) == "0.9877"
