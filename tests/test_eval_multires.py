"""``harmbench eval --resize none`` with a profile that reports two resolutions (``pctnet``): every row has the
full-resolution metrics and the same metrics at 256 px (``<metric>_low``), checked against the authors' own
PCT-Net outputs (``../shared/official/e2e_pctnet``) scored with the formulas written out here."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import shared_path
from test_models_pctnet import load_fixture

from harmbench.eval.loop import evaluate
from harmbench.eval.multires import extra_columns, extra_resolutions
from harmbench.imaging import encode_image
from harmbench.metrics import get_profile
from harmbench.models.official import load_weights

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def pct_metrics(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """PCT-Net's definitions: MSE = mean(M·(P−T)²) over all pixels and channels, PSNR peak 255 with ε 1e-6,
    fMSE = Σ M·(P−T)² / (3ΣM + 1e-6) (float64)."""
    se = mask[..., None].astype(np.float64) * (pred.astype(np.float64) - real.astype(np.float64)) ** 2
    mse = se.mean()
    return {"mse": mse, "psnr": 10 * math.log10(255.0**2 / (mse + 1e-6)), "fmse": se.sum() / (3 * mask.sum() + 1e-6)}


def test_extra_resolutions_only_for_full_resolution_runs():
    pct = get_profile("pctnet")
    assert extra_resolutions(pct, "none") == [("low", "fixed256")]
    assert extra_resolutions(pct, "fixed256") == []
    assert extra_resolutions(get_profile("harmbench"), "none") == []
    assert "mse_low" in extra_columns([("low", "fixed256")]) and "fssim_low" in extra_columns([("low", "fixed256")])


def test_full_and_low_resolution_metrics_in_the_run(tmp_path):
    _, inp, out = load_fixture("e2e_pctnet")
    folder = tmp_path / "data"
    folder.mkdir()
    reals = []
    for i in range(2):
        comp = inp["comp_uint8"][i].numpy()
        raw = inp["mask_uint8"][i].numpy()
        real = np.where(raw[..., None] > 0, np.clip(comp.astype(int) * 0.8 + 25, 0, 255), comp).astype(np.uint8)
        reals.append(real)
        (folder / f"{i}.png").write_bytes(encode_image(comp, "png"))
        (folder / f"{i}-gt.png").write_bytes(encode_image(real, "png"))
        (folder / f"{i}-mask.png").write_bytes(encode_image(raw, "png"))
    model = load_weights("pctnet-cnn", shared_path("official", "pctnet_cnn", "state_dict.pt"), protocol="official")
    res = evaluate(
        model,
        folder,
        tmp_path / "run",
        profile="pctnet",
        resize="none",
        split="all",
        device="cpu",
        batch_size=2,
        workers=0,
        progress=False,
        previews=0,
    )
    df = res.samples.set_index("key")
    assert set(extra_columns([("low", "fixed256")])) <= set(df.columns)
    for i in range(2):
        raw = inp["mask_uint8"][i].numpy()
        m_full = raw.astype(np.float32) / 255
        full = pct_metrics(out["pctnet_cnn.eval_fixed256.pred_fullres_float"][i].numpy(), reals[i], m_full)
        real_low = cv2.resize(reals[i], (256, 256), interpolation=cv2.INTER_LINEAR)
        m_low = cv2.resize(m_full, (256, 256), interpolation=cv2.INTER_LINEAR)
        low = pct_metrics(out["pctnet_cnn.eval_fixed256.pred_lowres_float"][i].numpy(), real_low, m_low)
        row = df.loc[str(i)]
        assert (row["height"], row["width"]) == (480, 640)
        for name in ("mse", "psnr", "fmse"):
            assert row[name] == pytest.approx(full[name], rel=1e-3), name
            assert row[f"{name}_low"] == pytest.approx(low[name], rel=1e-3), f"{name}_low"
        assert row["mse_low"] != pytest.approx(row["mse"], rel=1e-3)  # really a different resolution
    summary = res.run["summary"]["metrics"]
    assert summary["mse_low"] == pytest.approx(df["mse_low"].mean())
    assert "mse_low" in res.run["metrics"]


def test_models_without_a_low_resolution_output(tmp_path):
    """Any other model is scored at 256 px on its full-resolution output resized with the profile's filter."""
    g = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    comp = g.integers(0, 256, (300, 410, 3), dtype=np.uint8)
    real = np.clip(comp.astype(int) + g.integers(-40, 40, comp.shape), 0, 255).astype(np.uint8)
    raw = np.zeros((300, 410), np.uint8)
    raw[60:220, 90:300] = 255
    (folder / "0.png").write_bytes(encode_image(comp, "png"))
    (folder / "0-gt.png").write_bytes(encode_image(real, "png"))
    (folder / "0-mask.png").write_bytes(encode_image(raw, "png"))
    res = evaluate(
        "composite",
        folder,
        tmp_path / "run",
        profile="dccf",
        resize="none",
        split="all",
        device="cpu",
        workers=0,
        progress=False,
        previews=0,
    )
    row = res.samples.iloc[0]
    lo = (256, 256)
    ref = pct_metrics(
        cv2.resize(comp, lo, interpolation=cv2.INTER_LINEAR),
        cv2.resize(real, lo, interpolation=cv2.INTER_LINEAR),
        cv2.resize(raw.astype(np.float32) / 255, lo, interpolation=cv2.INTER_LINEAR),
    )
    assert row["mse_low"] == pytest.approx(ref["mse"], rel=1e-6)
    assert row["fmse_low"] == pytest.approx(ref["fmse"], rel=1e-6)
    full = pct_metrics(comp, real, raw.astype(np.float32) / 255)
    assert row["mse"] == pytest.approx(full["mse"], rel=1e-6)
