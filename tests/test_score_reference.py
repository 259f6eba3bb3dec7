"""Acceptance: every profile agrees with the independent reference (``protocol_reference``) to 1e-4
relative (the DCCF family, ``pctnet`` and ``dccf``: 1e-6), per sample and in the aggregates, through the
real ``harmbench score --json`` path, on the shared ``triplets_256`` folder and on the full-resolution
HAdobe5k triplet (low resolution = ``fixed256``, full resolution = ``none``)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import protocol_reference as ref
import pytest

from harmbench.cli import main

PROFILES = ("iharm", "dovenet", "zhenglab", "harmbench")
DCCF_FAMILY = ("pctnet", "dccf")
RESIZES = ("fixed256", "limit1024", "none")
METRICS = ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim")
REL = 1e-4
#: the DCCF-family profiles are held to the issue's bound
REL_BY_PROFILE = {"pctnet": 1e-6, "dccf": 1e-6}


def _score(dataset: Path, out: Path, profile: str, resize: str, *extra: str) -> dict:
    rc = main(
        ["score", str(dataset), "--profile", profile, "--resize", resize, "--json", str(out), "--no-progress", *extra]
    )
    assert rc == 0
    return json.loads(out.read_text())


def _close(got, want, what: str, rel: float = REL) -> None:
    assert got == pytest.approx(want, rel=rel, abs=1e-9), f"{what}: package {got!r} vs reference {want!r}"


def _check(doc: dict, refs: dict[str, dict], subsets: dict[str, str], profile: str, resize: str) -> None:
    close = functools.partial(_close, rel=REL_BY_PROFILE.get(profile, REL))
    assert doc["resize"] == resize and doc["profile"]["name"] == profile
    assert [r["key"] for r in doc["per_sample"]] == sorted(refs)
    for row in doc["per_sample"]:
        want = refs[row["key"]]
        for m in (*METRICS, "fg_ratio"):
            close(row[m], want[m], f"{profile}/{resize}/{row['key']}/{m}")
    # aggregates: image-weighted means of the reference values, with n
    assert doc["n"] == len(refs)
    for m in METRICS:
        close(doc["metrics"][m], math.fsum(r[m] for r in refs.values()) / len(refs), f"All/{m}")
    for name in set(subsets.values()):
        keys = [k for k, s in subsets.items() if s == name]
        assert doc["subsets"][name]["n"] == len(keys)
        for m in METRICS:
            close(doc["subsets"][name][m], math.fsum(refs[k][m] for k in keys) / len(keys), f"{name}/{m}")
    for bucket, agg in doc["buckets"].items():
        keys = [k for k, r in refs.items() if bucket in ref.fg_buckets(profile, r["fg_ratio"])]
        assert agg["n"] == len(keys), bucket
        for m in METRICS:
            if keys:
                close(agg[m], math.fsum(refs[k][m] for k in keys) / len(keys), f"bucket {bucket}/{m}")
            else:
                assert agg[m] is None


@pytest.mark.parametrize("resize", RESIZES)
@pytest.mark.parametrize("profile", PROFILES + DCCF_FAMILY)
def test_triplets_256_match_reference(shared, tmp_path, profile, resize):
    root = shared("data", "triplets_256")
    doc = _score(root, tmp_path / "s.json", profile, resize)
    refs = {
        k: ref.reference_files(profile, resize, root / f"{k}.png", root / f"{k}-gt.png", root / f"{k}-mask.png")
        for k in ("1", "2", "3")
    }
    _check(doc, refs, {k: "triplets_256" for k in refs}, profile, resize)
    assert doc["skipped"] == []


@functools.lru_cache(maxsize=1)
def _hadobe_arrays(sub: Path):
    """The reference's own decode of the 4256×2832 triplet, done once for all tests."""
    return (
        ref.read_rgb(sub / "composite_images" / "a0002_1_4.jpg"),
        ref.read_rgb(sub / "real_images" / "a0002.jpg"),
        ref.read_mask(sub / "masks" / "a0002_1.png"),
    )


def _hadobe(shared, tmp_path: Path, profile: str, resize: str) -> None:
    root = shared("data", "iharmony4_sample")
    doc = _score(root, tmp_path / "s.json", profile, resize, "--split", "test")
    refs = {"a0002_1_4": ref.reference_sample(profile, resize, *_hadobe_arrays(root / "HAdobe5k"))}
    _check(doc, refs, {"a0002_1_4": "HAdobe5k"}, profile, resize)


@pytest.mark.parametrize("resize", ("fixed256", "limit1024"))
@pytest.mark.parametrize("profile", PROFILES + DCCF_FAMILY)
def test_hadobe5k_full_resolution_match_reference(shared, tmp_path, profile, resize):
    _hadobe(shared, tmp_path, profile, resize)


def test_hadobe5k_native_resolution_match_reference(shared, tmp_path):
    """4256×2832 scored as is (default profile)."""
    _hadobe(shared, tmp_path, "harmbench", "none")


@pytest.mark.parametrize("profile", DCCF_FAMILY)
def test_hadobe5k_native_resolution_dccf_family(shared, tmp_path, profile):
    """The DCCF family's full-resolution protocol: the 4256×2832 photo, raw mask / 255, no resize."""
    _hadobe(shared, tmp_path, profile, "none")


@pytest.mark.slow
@pytest.mark.parametrize("profile", ("iharm", "dovenet", "zhenglab"))
def test_hadobe5k_native_resolution_other_profiles(shared, tmp_path, profile):
    _hadobe(shared, tmp_path, profile, "none")


@pytest.mark.parametrize("profile", PROFILES + DCCF_FAMILY)
def test_jpeg_mask_thresholding_matches_reference(shared, tmp_path, profile):
    """HCOCO pair with a grayscale-JPEG mask (grey levels at the edge): each profile's mask rule."""
    import numpy as np
    from PIL import Image

    src = shared("data", "hcoco_real_mask_pairs")
    d = tmp_path / "hcoco"
    d.mkdir()
    (d / "c35030.jpg").symlink_to(src / "c35030.jpg")
    (d / "c35030_434421.jpg").symlink_to(src / "c35030_434421.jpg")
    real = ref.read_rgb(src / "c35030.jpg")
    raw = ref.read_mask(src / "c35030_434421.jpg")
    assert len(np.unique(raw)) > 2  # JPEG: intermediate grey levels exist
    comp = real.astype(np.int16)
    comp[raw >= 128] += np.array([40, -20, 10], np.int16)
    Image.fromarray(np.clip(comp, 0, 255).astype(np.uint8)).save(d / "c35030_434421_1.png")
    for resize in ("fixed256", "none"):
        doc = _score(d, tmp_path / f"{resize}.json", profile, resize)
        refs = {
            "c35030_434421_1": ref.reference_files(
                profile, resize, d / "c35030_434421_1.png", d / "c35030.jpg", d / "c35030_434421.jpg"
            )
        }
        _check(doc, refs, {"c35030_434421_1": "hcoco"}, profile, resize)
