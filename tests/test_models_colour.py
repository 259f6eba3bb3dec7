"""harmbench.models.lab / .histogram: Lab conversion vs skimage, hard and soft histograms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color

from harmbench.models.histogram import hard_ab_histogram, hard_l_histogram, hen_input, soft_ab_histogram
from harmbench.models.lab import lab_to_rgb, nlab_to_rgb, normalize_lab, rgb_to_lab, rgb_to_nlab

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rgb(seed=0, h=17, w=23):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w, 3))
    img[0, :4] = [[0, 0, 0], [1, 1, 1], [0.02, 0.03, 0.01], [1, 0, 0]]  # extremes + linear segment
    return img


def test_rgb_to_lab_matches_skimage():
    img = _rgb()
    ref = color.rgb2lab(img)
    ours = rgb_to_lab(torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_lab_to_rgb_matches_skimage_and_roundtrips():
    img = _rgb(1)
    lab = color.rgb2lab(img)
    lab[1, :3] = [[50, 120, -120], [5, -80, 90], [99, 0, 0]]  # out-of-gamut values get clipped
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = color.lab2rgb(lab)
    ours = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1))[..., :, :].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    x = torch.from_numpy(_rgb(2)).permute(2, 0, 1).unsqueeze(0)
    np.testing.assert_allclose(nlab_to_rgb(rgb_to_nlab(x)).numpy(), x.numpy(), atol=1e-6)


def test_normalised_lab_range_and_gradients():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    n = rgb_to_nlab(x)
    assert n.min() >= -1 - 1e-6 and n.max() <= 1 + 1e-6
    n.sum().backward()
    assert torch.isfinite(x.grad).all()
    # gamut corners map to the documented normalisation bounds
    corners = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    lab = rgb_to_lab(corners.T.reshape(3, 1, 4))
    assert normalize_lab(lab).abs().max() <= 1 + 1e-4


def _nlab_batch(seed=0, n=3, h=20, w=30):
    g = torch.Generator().manual_seed(seed)
    return rgb_to_nlab(torch.rand(n, 3, h, w, generator=g, dtype=torch.float64))


def test_hard_histograms_match_numpy():
    x = _nlab_batch()
    mask = torch.zeros(3, 1, 20, 30, dtype=torch.float64)
    mask[0, :, 2:15, 3:20] = 1
    mask[1] = 1
    mask[2, :, :5] = 1
    for bins in (64, 32):
        ours = hard_ab_histogram(x, mask, bins)
        assert ours.shape == (3, 1, bins, bins)
        for i in range(3):
            sel = mask[i, 0].numpy() > 0
            a = (x[i, 1].numpy()[sel] + 1) / 2
            b = (x[i, 2].numpy()[sel] + 1) / 2
            ref, _ = np.histogramdd([a, b], bins=[bins, bins], range=((0, 1), (0, 1)))
            ref = np.flip(np.rot90(ref), 0)  # as the reference code: rows index b
            np.testing.assert_allclose(ours[i, 0].numpy(), ref / ref.sum(), atol=1e-12)
    lh = hard_l_histogram(x, mask, 8)
    for i in range(3):
        sel = mask[i, 0].numpy() > 0
        ref, _ = np.histogram((x[i, 0].numpy()[sel] + 1) / 2, bins=8, range=(0, 1))
        np.testing.assert_allclose(lh[i].numpy(), ref / ref.sum(), atol=1e-12)


def test_hen_input_layout_and_empty_region():
    x = _nlab_batch(1, n=2)
    mask = torch.ones(2, 1, 20, 30, dtype=torch.float64)
    mask[1] = 0
    h = hen_input(x, mask, ab_bins=64, l_bins=8)
    assert h.shape == (2, 9, 64, 64)
    assert torch.allclose(h[0, 0].sum(), torch.tensor(1.0, dtype=h.dtype))
    lh = hard_l_histogram(x, mask, 8)
    assert torch.equal(h[0, 1:], lh[0].view(8, 1, 1).expand(8, 64, 64))
    assert h[1].abs().sum() == 0  # empty region -> zeros
    # batched == per sample
    single = hen_input(x[:1], mask[:1])
    assert torch.equal(single[0], h[0])


def test_soft_histogram_sums_to_one_and_approximates_hard():
    g = torch.Generator().manual_seed(0)
    # smooth colour field: a and b spread over many bins
    rgb = torch.rand(1, 3, 64, 64, generator=g, dtype=torch.float64) * 0.6 + 0.2
    x = rgb_to_nlab(rgb)
    soft = soft_ab_histogram(x, bins=32)
    assert soft.shape == (1, 32, 32)
    # reference kernel: overlapping triangles -> mass (B/(B-1))^2 for interior values
    assert abs(float(soft.sum()) - (32 / 31) ** 2) < 0.01
    assert abs(float(soft_ab_histogram(x, bins=32, unit_sum=True).sum()) - 1.0) < 1e-9
    hard = hard_ab_histogram(x, None, 32)[:, 0]
    # the kernel centres sit at k/B (left bin edges); compare after the same 3×3 smoothing
    k = torch.ones(1, 1, 3, 3, dtype=torch.float64) / 9
    s_soft = torch.nn.functional.conv2d(soft.unsqueeze(1), k, padding=1)
    s_hard = torch.nn.functional.conv2d(hard.unsqueeze(1), k, padding=1)
    l1 = float((s_soft / s_soft.sum() - s_hard / s_hard.sum()).abs().sum())
    assert l1 < 0.35, l1
    # differentiable
    x.requires_grad_(True)
    soft_ab_histogram(x, bins=32).pow(2).sum().backward()
    assert x.grad.abs().sum() > 0


def test_soft_histogram_masked_average():
    x = _nlab_batch(2, n=2).requires_grad_(False)
    mask = torch.zeros(2, 1, 20, 30, dtype=torch.float64)
    mask[:, :, :10] = 1
    full = soft_ab_histogram(x[:, :, :10], bins=16)
    masked = soft_ab_histogram(x, mask, bins=16)
    assert torch.allclose(full, masked)
