"""The DCCF-family profiles (``pctnet``, ``dccf``): hand-computed values, the scripts' own float32
computation transcribed literally, preparation at low and full resolution, and the recorded choices."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmbench.metrics import METRIC_NAMES, compute_metrics, get_profile, stack_samples
from harmbench.metrics.pixel import mse_fmse_from_sq, paste

FAMILY = ("pctnet", "dccf")


def _chw(a: np.ndarray) -> torch.Tensor:  # (H, W, 3) -> (1, 3, H, W) float32
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()


def _m(a: np.ndarray) -> torch.Tensor:  # (H, W) -> (1, 1, H, W) float32
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


def _values(name, p, t, m) -> dict[str, float]:
    return {k: v.item() for k, v in compute_metrics(_chw(p), _chw(t), _m(m), name).items()}


def _block_sample():
    """20×20 grey target 100; the prediction is +10 on a 4×5 foreground block and +50 on a background
    block; the mask is a 5×6 rectangle holding the +10 block."""
    t = np.full((20, 20, 3), 100, np.uint8)
    p = t.copy()
    p[3:7, 4:9] += 10  # 20 foreground pixels, error 10 on each channel
    p[14:18, 12:16] += 50  # background error: ignored by the DCCF family's MSE and SSIM
    m = np.zeros((20, 20), np.float32)
    m[2:7, 3:9] = 1.0  # 30 foreground pixels
    return p, t, m


def test_hand_computed_values():
    p, t, m = _block_sample()
    pct, dccf = _values("pctnet", p, t, m), _values("dccf", p, t, m)
    se = 20 * 3 * 10.0**2  # Σ M·(P−T)² = 6000
    assert pct["mse"] == pytest.approx(se / (3 * 20 * 20), rel=1e-12)  # 5.0: divided by the full image size
    assert pct["psnr"] == pytest.approx(10 * math.log10(255.0**2 / (5.0 + 1e-6)), rel=1e-12)
    assert dccf["psnr"] == pytest.approx(10 * math.log10(100.0**2 / (5.0 + 1e-6)), rel=1e-12)  # peak max(T) = 100
    assert pct["fmse"] == dccf["fmse"] == pytest.approx(se / (3 * 30 + 1e-6), rel=1e-12)
    assert pct["fpsnr"] == pytest.approx(10 * math.log10(255.0**2 / (se / (90 + 1e-6) + 1e-6)), rel=1e-12)
    # the plain-MSE profiles see the background error too
    iharm = _values("iharm", p, t, m)
    assert iharm["mse"] == pytest.approx((se + 16 * 3 * 50.0**2) / 1200, rel=1e-6)
    assert iharm["fmse"] == pytest.approx(pct["fmse"], rel=1e-6)  # iharm sums in float32


def test_background_error_changes_nothing():
    """MSE, PSNR and SSIM of the DCCF family ignore the background: the prediction is pasted onto T for SSIM."""
    p, t, m = _block_sample()
    fg_only = p.copy()
    fg_only[m == 0] = t[m == 0]
    for name in FAMILY:
        a, b = _values(name, p, t, m), _values(name, fg_only, t, m)
        for k in METRIC_NAMES:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), (name, k)
    hb_a, hb_b = _values("harmbench", p, t, m), _values("harmbench", fg_only, t, m)
    assert hb_a["ssim"] < hb_b["ssim"] - 1e-3  # an unpasted SSIM does see it


def test_soft_mask_weights_and_empty_mask():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    p = np.clip(t.astype(int) + rng.integers(-20, 21, t.shape), 0, 255).astype(np.uint8)
    m = np.zeros((16, 16), np.float32)
    m[4:12, 4:12] = 0.25
    err = m[..., None].astype(np.float64) * (p.astype(np.float64) - t) ** 2
    v = _values("pctnet", p, t, m)
    assert v["mse"] == pytest.approx(err.mean(), rel=1e-9)
    assert v["fmse"] == pytest.approx(err.sum() / (3 * float(m.sum()) + 1e-6), rel=1e-9)
    empty = _values("pctnet", p, t, np.zeros((16, 16), np.float32))
    assert empty["mse"] == 0.0 and empty["fmse"] == 0.0
    assert empty["psnr"] == pytest.approx(10 * math.log10(255.0**2 / 1e-6), rel=1e-12)  # ≈ 108.13 dB
    assert math.isnan(empty["fssim"])  # foreground mean of nothing


# ---- the scripts' computation transcribed literally (float32 torch, as their metrics.py runs it) ----


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _msssim_default(x: torch.Tensor, y: torch.Tensor) -> float:
    """SSIM with pytorch_msssim's defaults: data range 255, Gaussian 11 / 1.5, K (0.01, 0.03), valid windows,
    mean over the map then over channels."""
    g = _gauss()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _blur_valid(x, g), _blur_valid(y, g)
    vx, vy = _blur_valid(x * x, g) - mx * mx, _blur_valid(y * y, g) - my * my
    cxy = _blur_valid(x * y, g) - mx * my
    smap = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * ((2 * cxy + c2) / (vx + vy + c2))
    return smap.flatten(2).mean(-1).mean().item()


def _script_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, peak: str) -> dict[str, float]:
    """``pred``/``target`` (H, W, 3) float32 0–255, ``mask`` (H, W) float32 — the scripts' tensors."""
    mse = (mask.unsqueeze(2) * (pred - target) ** 2).mean().item()
    diff = mask.unsqueeze(2) * (pred - target) ** 2
    fmse = (diff.sum() / (diff.size(2) * mask.sum() + 1e-6)).item()
    squared_max = 255**2 if peak == "255" else target.max().item() ** 2
    pasted = pred * mask.unsqueeze(2) + target * (1 - mask.unsqueeze(2))
    ssim = _msssim_default(pasted.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None])
    return {"mse": mse, "psnr": 10 * math.log10(squared_max / (mse + 1e-6)), "fmse": fmse, "ssim": ssim}


@pytest.mark.parametrize(("name", "peak"), [("pctnet", "255"), ("dccf", "target_max")])
def test_matches_the_scripts_float32_computation(name, peak):
    """A float prediction (not rounded, as the scripts score it) and a soft mask resized like theirs."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:96, 0:120]
    t = np.stack([xx * 2, yy * 2, (xx + yy) % 200], -1).astype(np.float32) + rng.uniform(0, 40, (96, 120, 3))
    t = np.clip(t, 0, 250).astype(np.uint8)
    raw = (((yy - 48) / 30.0) ** 2 + ((xx - 60) / 40.0) ** 2 <= 1).astype(np.uint8) * 255
    m = cv2.resize(raw.astype(np.float32) / 255.0, (64, 64), interpolation=cv2.INTER_LINEAR)
    t64 = cv2.resize(t, (64, 64), interpolation=cv2.INTER_LINEAR)
    pred = np.clip(t64 + rng.normal(0, 6, t64.shape) + 15 * m[..., None], 0, 255).astype(np.float32)
    want = _script_metrics(torch.from_numpy(pred), torch.from_numpy(t64).float(), torch.from_numpy(m), peak)
    got = compute_metrics(torch.from_numpy(pred).permute(2, 0, 1)[None], _chw(t64), _m(m), name)
    assert ((m > 0) & (m < 1)).any()
    for k, v in want.items():
        assert got[k].item() == pytest.approx(v, rel=2e-6), k  # float32 script vs float64 sums


def test_mse_fmse_formulas_reject_unknown_names():
    sq = torch.ones(1, 3, 4, 4)
    with pytest.raises(ValueError, match="MSE formula"):
        mse_fmse_from_sq(sq, torch.ones(1, 1, 4, 4), "masked")
    mse, fmse = mse_fmse_from_sq(sq.clone(), torch.full((1, 1, 4, 4), 0.5), "masked_mean", "masked_image_mse")
    # mean(M·1) = 0.5; bcmi's fMSE on a soft mask: Σ M²·1 / (C·H·W) · H·W / ΣM = 12 / 48 · 16 / 8 = 0.5
    assert mse.item() == pytest.approx(0.5) and fmse.item() == pytest.approx(0.5)
    t = torch.zeros(1, 3, 2, 2)
    p = torch.full((1, 3, 2, 2), 200.0)
    assert paste(p, t, torch.tensor([[[[1.0, 0.0], [0.25, 0.0]]]]))[0, 0].tolist() == [[200.0, 0.0], [50.0, 0.0]]


# ---- preparation and records ----------------------------------------------------------------------


def _photo(h=300, w=420):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    real = np.clip(
        np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1) + rng.integers(-9, 9, (h, w, 3)), 0, 255
    ).astype(np.uint8)
    pred = np.clip(real.astype(int) + rng.integers(-30, 30, real.shape), 0, 255).astype(np.uint8)
    mask = cv2.GaussianBlur(
        ((((yy - h / 2) / 90) ** 2 + ((xx - w / 2) / 100) ** 2) <= 1).astype(np.uint8) * 255, (7, 7), 0
    )  # soft edges, as JPEG or antialiased masks have
    return pred, real, mask


@pytest.mark.parametrize("name", FAMILY)
def test_prepare_low_and_full_resolution(name):
    pred, real, mask = _photo()
    prof = get_profile(name)
    low = prof.prepare(pred, real, mask, "fixed256")  # albumentations Resize(256, 256): cv2 INTER_LINEAR
    np.testing.assert_array_equal(
        low.target.transpose(1, 2, 0), cv2.resize(real, (256, 256), interpolation=cv2.INTER_LINEAR)
    )
    np.testing.assert_array_equal(
        low.mask[0], cv2.resize(mask.astype(np.float32) / 255.0, (256, 256), interpolation=cv2.INTER_LINEAR)
    )
    full = prof.prepare(pred, real, mask, "none")  # the raw photo and raw / 255 mask, nothing resized
    np.testing.assert_array_equal(full.target.transpose(1, 2, 0), real)
    np.testing.assert_array_equal(full.mask[0], mask.astype(np.float32) / 255.0)
    assert ((full.mask > 0) & (full.mask < 1)).any()  # kept continuous
    vals = compute_metrics(*stack_samples([full]), prof)
    assert vals["mse"].item() < compute_metrics(*stack_samples([full]), "iharm")["mse"].item()


@pytest.mark.parametrize("name", FAMILY)
def test_records_every_choice(name):
    d = get_profile(name).to_dict()
    assert d["mse_formula"] == "masked_mean" and d["ssim_input"] == "pasted"
    assert d["resolutions"] == {"low": "fixed256", "full": "none"}
    assert d["pred_8bit"] is False and d["mask_binary"] is False
    assert d["psnr_peak"] == {"pctnet": "255", "dccf": "target_max"}[name]
    assert d["fmse_formula"] == "masked_sum" and d["fmse_eps"] == d["psnr_eps"] == 1e-6
    assert d["image_filter"] == "cv2_linear" and d["mask_rule"] == "cv2_linear_float"
    assert (d["ssim"]["window"], d["ssim"]["sigma"], d["ssim"]["data_range"], d["ssim"]["padding"]) == (
        11,
        1.5,
        255.0,
        "valid",
    )
    for other in ("harmbench", "iharm", "dovenet", "zhenglab"):
        o = get_profile(other).to_dict()
        assert o["mse_formula"] == "mean" and o["ssim_input"] == "prediction"
        assert o["resolutions"] == {"low": "fixed256"}


def test_profile_rejects_unknown_choices():
    import dataclasses

    base = get_profile("pctnet")
    for field, bad in (
        ("mse_formula", "foreground"),
        ("ssim_input", "composite"),
        ("psnr_peak", "256"),
        ("resolutions", (("full", "native"),)),
    ):
        with pytest.raises(ValueError, match=field if field != "resolutions" else "resolutions"):
            dataclasses.replace(base, **{field: bad})
