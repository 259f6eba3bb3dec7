"""Metric functions against independent references (skimage, torchmetrics, formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from harmbench.errors import UserError
from harmbench.metrics import METRIC_NAMES, compute_metrics, get_profile, pixel
from harmbench.metrics.ssim import PYTORCH_SSIM, WANG_VALID, gaussian_window, ssim_fssim, ssim_map


def _pair(n=2, h=48, w=40, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    noise = rng.normal(0, 12 + 10 * np.arange(n)[:, None, None, None], t.shape)
    p = np.clip(t + noise, 0, 255).astype(np.uint8)
    m = np.zeros((n, h, w), np.float64)
    m[:, 10:30, 8:25] = 1.0
    return p, t, m


def _t(a):  # (N, H, W, 3) -> (N, 3, H, W) float64
    return torch.from_numpy(a).permute(0, 3, 1, 2).double()


def _tm(m):
    return torch.from_numpy(m)[:, None].double()


def test_mse_and_psnr_255_match_skimage_per_image():
    p, t, _ = _pair(3)
    mse = pixel.mse(_t(p), _t(t))
    psnr = pixel.psnr(_t(p), _t(t), "255")
    for i in range(3):
        assert mse[i].item() == pytest.approx(mean_squared_error(t[i], p[i]), rel=1e-12)
        assert psnr[i].item() == pytest.approx(peak_signal_noise_ratio(t[i], p[i], data_range=255), rel=1e-12)


def test_psnr_matches_torchmetrics_per_image_not_pooled():
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

    p, t, _ = _pair(2)
    ours = pixel.psnr(_t(p), _t(t), "255")
    per_image = tm_psnr(_t(p), _t(t), data_range=255.0, dim=(1, 2, 3), reduction="none")
    torch.testing.assert_close(ours, per_image)
    pooled = tm_psnr(_t(p), _t(t), data_range=255.0)  # torchmetrics default: one PSNR of the pooled MSE
    assert ours[0] != pytest.approx(ours[1].item(), abs=0.5)  # two different images, two values
    assert ours.mean().item() != pytest.approx(pooled.item(), abs=1e-3)


def test_psnr_peak_rules_follow_the_codebases():
    p, t, _ = _pair(2)
    mse = np.array([mean_squared_error(t[i], p[i]) for i in range(2)])
    # SamsungLabs: max(T)^2 / (MSE + 1e-6)
    got = pixel.psnr(_t(p), _t(t), "target_max", eps=1e-6).numpy()
    want = [10 * math.log10(float(t[i].max()) ** 2 / (mse[i] + 1e-6)) for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # DoveNet: skimage with data_range = P.max() - P.min()
    got = pixel.psnr(_t(p), _t(t), "pred_range").numpy()
    pf = p.astype(np.float32)
    want = [
        peak_signal_noise_ratio(t[i].astype(np.float32), pf[i], data_range=pf[i].max() - pf[i].min()) for i in range(2)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_hand_computed_values():
    t = torch.full((1, 3, 8, 8), 100.0, dtype=torch.float64)
    p = t + 2.0
    m = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    m[..., :4, :] = 1.0
    p[..., 4:, :] += 2.0  # background error 4, foreground error 2
    assert pixel.mse(p, t).item() == pytest.approx((4 + 16) / 2)
    assert pixel.fmse(p, t, m).item() == pytest.approx(4.0)
    assert pixel.psnr(p, t, "255").item() == pytest.approx(10 * math.log10(255**2 / 10.0))
    assert pixel.psnr_from_mse(torch.tensor([0.0]), 255.0).item() == math.inf


def test_fmse_formulas_against_numpy():
    p, t, m = _pair(2)
    rng = np.random.default_rng(3)
    soft = np.clip(m + rng.uniform(0, 0.4, m.shape), 0, 1)  # continuous weights
    sq = (p.astype(np.float64) - t) ** 2
    want_soft = [(soft[i][..., None] * sq[i]).sum() / (3 * soft[i].sum() + 1e-6) for i in range(2)]
    got = pixel.fmse(_t(p), _t(t), _tm(soft), "masked_sum", eps=1e-6).numpy()
    np.testing.assert_allclose(got, want_soft, rtol=1e-12)
    # bcmi: skimage mse(P*M, T*M) * H * W / N_fg
    pf, tf = p.astype(np.float32), t.astype(np.float32)
    h, w = m.shape[1:]
    want_bin = [
        mean_squared_error(pf[i] * m[i][..., None], tf[i] * m[i][..., None]) * h * w / m[i].sum() for i in range(2)
    ]
    got_img = pixel.fmse(_t(p), _t(t), _tm(m), "masked_image_mse").numpy()
    got_sum = pixel.fmse(_t(p), _t(t), _tm(m), "masked_sum").numpy()
    np.testing.assert_allclose(got_img, want_bin, rtol=1e-9)
    np.testing.assert_allclose(got_sum, want_bin, rtol=1e-9)  # same for binary masks
    assert got_sum[0] != pytest.approx(got_sum[1], rel=1e-3)


def test_empty_mask_per_profile():
    p, t, m = _pair(1)
    empty = torch.zeros_like(_tm(m))
    hb = compute_metrics(_t(p), _t(t), empty, "harmbench")
    assert math.isnan(hb["fmse"].item()) and math.isnan(hb["fssim"].item())
    assert math.isfinite(hb["mse"].item()) and math.isfinite(hb["ssim"].item())
    assert compute_metrics(_t(p), _t(t), empty, "iharm")["fmse"].item() == 0.0


def _skimage_ssim(t, p, m):
    s, full = structural_similarity(
        t.astype(np.float64),
        p.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=2,
        full=True,
    )
    mc = m[5:-5, 5:-5, None]
    return s, float((full[5:-5, 5:-5] * mc).sum() / (3 * mc.sum()))


def test_ssim_and_fssim_match_skimage():
    p, t, m = _pair(2, 64, 56)
    s, fs = ssim_fssim(_t(p), _t(t), _tm(m), WANG_VALID)
    for i in range(2):
        rs, rfs = _skimage_ssim(t[i], p[i], m[i])
        assert s[i].item() == pytest.approx(rs, abs=2e-6)
        assert fs[i].item() == pytest.approx(rfs, abs=2e-6)
    assert s[0].item() != pytest.approx(s[1].item(), abs=1e-3)
    ident, fident = ssim_fssim(_t(t), _t(t), _tm(m), WANG_VALID)
    torch.testing.assert_close(ident, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(fident, torch.ones(2, dtype=torch.float64))


def _literal_pytorch_ssim(img1, img2, mask, window=11):
    """pytorch_ssim written out: 2-D Gaussian, zero padding, C1=0.01², C2=0.03², float64."""
    c = img1.shape[1]
    g = gaussian_window(window, 1.5)
    w2 = (g[:, None] @ g[None, :]).expand(c, 1, window, window)

    def conv(x):
        return F.conv2d(x, w2, padding=window // 2, groups=c)

    mu1, mu2 = conv(img1), conv(img2)
    s11 = conv(img1 * img1) - mu1**2
    s22 = conv(img2 * img2) - mu2**2
    s12 = conv(img1 * img2) - mu1 * mu2
    smap = ((2 * mu1 * mu2 + 0.01**2) * (2 * s12 + 0.03**2)) / ((mu1**2 + mu2**2 + 0.01**2) * (s11 + s22 + 0.03**2))
    fs = (smap * mask).sum(dim=(1, 2, 3)) / (c * mask.sum(dim=(1, 2, 3)))
    return smap.mean(dim=(1, 2, 3)), fs


def test_zhenglab_pytorch_ssim_convention():
    p, t, m = _pair(2, 40, 40)
    want_s, want_fs = _literal_pytorch_ssim(_t(p), _t(t), _tm(m))
    s, fs = ssim_fssim(_t(p), _t(t), _tm(m), PYTORCH_SSIM)
    torch.testing.assert_close(s, want_s, atol=1e-5, rtol=0)
    torch.testing.assert_close(fs, want_fs, atol=1e-5, rtol=0)
    assert ssim_map(_t(p), _t(t), PYTORCH_SSIM).shape == (2, 3, 40, 40)  # same-size map
    assert ssim_map(_t(p), _t(t), WANG_VALID).shape == (2, 3, 30, 30)  # valid region


def test_ssim_rejects_images_smaller_than_window():
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(UserError, match="SSIM window"):
        ssim_map(x, x, WANG_VALID)


def test_compute_metrics_is_per_image_and_batch_independent():
    p, t, m = _pair(3)
    batch = compute_metrics(_t(p), _t(t), _tm(m), "harmbench")
    assert set(batch) == set(METRIC_NAMES)
    for k in METRIC_NAMES:
        assert batch[k].shape == (3,) and batch[k].dtype == torch.float64
    for i in range(3):
        one = compute_metrics(_t(p[i : i + 1]), _t(t[i : i + 1]), _tm(m[i : i + 1]), "harmbench")
        for k in METRIC_NAMES:
            assert one[k].item() == pytest.approx(batch[k][i].item(), rel=1e-9, abs=1e-12), k
    assert len({round(v, 6) for v in batch["psnr"].tolist()}) == 3


def test_compute_metrics_values_per_profile():
    p, t, m = _pair(2)
    ref_mse = [mean_squared_error(t[i], p[i]) for i in range(2)]
    hb = compute_metrics(_t(p), _t(t), _tm(m), "harmbench")
    np.testing.assert_allclose(hb["mse"].numpy(), ref_mse, rtol=1e-12)
    np.testing.assert_allclose(hb["psnr"].numpy(), [10 * math.log10(255**2 / (e + 1e-6)) for e in ref_mse], rtol=1e-12)
    fm = hb["fmse"].numpy()
    np.testing.assert_allclose(hb["fpsnr"].numpy(), 10 * np.log10(255**2 / (fm + 1e-6)), rtol=1e-12)
    zl = compute_metrics(_t(p), _t(t), _tm(m), "zhenglab")
    np.testing.assert_allclose(zl["fpsnr"].numpy(), 10 * np.log10(255**2 / fm), rtol=1e-9)
    ih = compute_metrics(
        torch.from_numpy(p).permute(0, 3, 1, 2), torch.from_numpy(t).permute(0, 3, 1, 2), _tm(m), "iharm"
    )
    assert ih["mse"].dtype == torch.float32  # uint8 input accepted, float32 profile
    np.testing.assert_allclose(
        ih["psnr"].numpy(), [10 * math.log10(float(t[i].max()) ** 2 / (ref_mse[i] + 1e-6)) for i in range(2)], rtol=1e-5
    )


@pytest.mark.parametrize(
    "shapes, match",
    [
        (((2, 3, 16, 16), (2, 3, 16, 16), (2, 3, 16, 16)), "mask"),
        (((2, 4, 16, 16), (2, 4, 16, 16), (2, 1, 16, 16)), "pred"),
        (((2, 3, 16, 16), (1, 3, 16, 16), (2, 1, 16, 16)), "target"),
    ],
)
def test_compute_metrics_rejects_bad_shapes(shapes, match):
    a, b, c = (torch.zeros(s) for s in shapes)
    with pytest.raises(UserError, match=match):
        compute_metrics(a, b, c, get_profile("harmbench"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["harmbench", "iharm", "dovenet", "zhenglab", "pctnet", "dccf"])
def test_cuda_matches_cpu(name):
    p, t, m = _pair(3, 64, 64)
    cpu = compute_metrics(_t(p), _t(t), _tm(m), name)
    gpu = compute_metrics(_t(p).cuda(), _t(t).cuda(), _tm(m).cuda(), name)
    for k in METRIC_NAMES:
        assert gpu[k].device.type == "cuda"
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], atol=1e-4, rtol=1e-6)


def _smooth_pair(n=2, size=256, seed=3):
    """Smooth images (a coarse random grid upscaled bicubically) and a shifted copy: local variances near 0."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    t = np.stack(
        [
            np.asarray(
                Image.fromarray(rng.integers(30, 220, (7, 8, 3), dtype=np.uint8)).resize(
                    (size, size), Image.Resampling.BICUBIC
                )
            )
            for _ in range(n)
        ]
    )
    p = np.clip(t.astype(np.int16) + np.array([30, -10, 5], np.int16), 0, 255).astype(np.uint8)
    m = np.zeros((n, size, size), np.float64)
    m[:, size // 4 : size // 2, size // 3 : 3 * size // 4] = 1.0
    return p, t, m


def test_stats_dtype_follows_the_convention_constants():
    from harmbench.metrics.ssim import stats_dtype_for

    assert stats_dtype_for(WANG_VALID) == torch.float32  # C2 = (0.03·255)² dwarfs float32 error
    assert stats_dtype_for(PYTORCH_SSIM) == torch.float64  # C2 = 0.03² on 0–255 data does not
    assert stats_dtype_for(PYTORCH_SSIM, "mps") == torch.float32


def test_zhenglab_ssim_keeps_float64_accuracy_on_smooth_images():
    """pytorch_ssim's tiny constants amplify float32 error in flat regions; the statistics are float64 there."""
    p, t, m = _smooth_pair()
    want_s, want_fs = _literal_pytorch_ssim(_t(p), _t(t), _tm(m))
    s, fs = ssim_fssim(_t(p).float(), _t(t).float(), _tm(m).float(), PYTORCH_SSIM)
    torch.testing.assert_close(s, want_s, atol=1e-9, rtol=0)
    torch.testing.assert_close(fs, want_fs, atol=1e-9, rtol=0)


def test_cpu_blur_matches_grouped_convolution(monkeypatch):
    """The OpenCV blur of stacked planes (CPU) and the grouped conv2d (other devices) give the same SSIM."""
    from harmbench.metrics import ssim as ssim_mod

    p, t, m = _pair(3, 64, 56)
    for conv in (WANG_VALID, PYTORCH_SSIM):
        cv = ssim_fssim(_t(p).float(), _t(t).float(), _tm(m).float(), conv)
        with monkeypatch.context() as mp:
            mp.setattr(ssim_mod, "_blur", ssim_mod._blur_torch)
            tc = ssim_fssim(_t(p).float(), _t(t).float(), _tm(m).float(), conv)
        for a, b in zip(cv, tc):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    smap = ssim_map(_t(p).float(), _t(t).float(), WANG_VALID)
    assert smap.shape == (3, 3, 54, 46) and smap.is_contiguous()


def test_cpu_blur_uses_torch_thread_count():
    import cv2

    p, t, m = _pair(1, 32, 32)
    before = cv2.getNumThreads()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ssim_fssim(_t(p).float(), _t(t).float(), _tm(m).float(), WANG_VALID)
    finally:
        torch.set_num_threads(old)
    assert cv2.getNumThreads() == before  # restored


def test_compute_metrics_chunks_do_not_change_values(monkeypatch):
    from harmbench.metrics import compute as compute_mod

    p, t, m = _pair(5, 40, 32)
    whole = compute_metrics(_t(p).float(), _t(t).float(), _tm(m).float(), "harmbench")
    monkeypatch.setattr(compute_mod, "_CHUNK_ELEMENTS", 2 * 3 * 40 * 32)  # two images per chunk
    assert compute_mod.chunk_size(_t(p).float()) == 2
    chunked = compute_metrics(_t(p).float(), _t(t).float(), _tm(m).float(), "harmbench")
    for k in METRIC_NAMES:
        torch.testing.assert_close(chunked[k], whole[k], rtol=1e-12, atol=0)


def test_large_images_go_through_one_channel_at_a_time(monkeypatch):
    from harmbench.metrics import ssim as ssim_mod

    p, t, m = _pair(2, 48, 40)
    whole = ssim_fssim(_t(p).float(), _t(t).float(), _tm(m).float(), WANG_VALID)
    full_map = ssim_map(_t(p).float(), _t(t).float(), WANG_VALID)
    monkeypatch.setattr(ssim_mod, "_SPLIT_BYTES", 1)
    split = ssim_fssim(_t(p).float(), _t(t).float(), _tm(m).float(), WANG_VALID)
    for a, b in zip(split, whole):  # channel sums in float64 instead of float32: float noise only
        torch.testing.assert_close(a, b, rtol=1e-7, atol=0)
    torch.testing.assert_close(ssim_map(_t(p).float(), _t(t).float(), WANG_VALID), full_map, rtol=0, atol=0)


def test_scratch_buffers_are_reused_per_thread_and_slot():
    import threading

    from harmbench.metrics import scratch as sc

    a = sc.scratch("t.a", (2, 3), torch.float32)
    b = sc.scratch("t.a", (3, 2), torch.float32)
    assert a.data_ptr() == b.data_ptr() and b.shape == (3, 2)  # same slot: same memory
    assert sc.scratch("t.b", (2, 3), torch.float32).data_ptr() != a.data_ptr()
    other = []
    th = threading.Thread(target=lambda: other.append(sc.scratch("t.a", (2, 3), torch.float32).data_ptr()))
    th.start()
    th.join()
    assert other[0] != a.data_ptr()  # another thread gets its own buffer
    big = (sc.MAX_BYTES // 4 + 1,)
    first, second = sc.scratch("t.big", big, torch.float32), sc.scratch("t.big", big, torch.float32)
    assert first.data_ptr() != second.data_ptr()  # too large to keep: a fresh tensor each time
    del first, second
    sc.release()
    assert sc.scratch("t.a", (2, 3), torch.float64).dtype == torch.float64
    sc.release()
