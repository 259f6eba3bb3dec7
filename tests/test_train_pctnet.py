"""PCT-Net training: its pixel and smoothness losses against formulas, and the training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from harmbench.models.losses import mask_weighted_mse, param_smoothness, sobel_magnitude


def test_mask_weighted_mse_matches_the_formula_by_hand():
    pred = torch.zeros(2, 3, 4, 5)
    target = torch.zeros(2, 3, 4, 5)
    pred[0, 0, 0, 0] = 3.0          # one error of 3 (background or not: every pixel counts)
    pred[1, :, 1, 1] = 2.0          # three errors of 2
    mask = torch.zeros(2, 1, 4, 5)
    mask[0, :, :2, :] = 1           # 10 foreground pixels
    mask[1, :, 0, 0] = 1            # 1 pixel: the floor applies
    got = mask_weighted_mse(pred, target, mask, min_area=4.0)
    assert got.tolist() == pytest.approx([9.0 / (3 * 10), 12.0 / (3 * 4)])
    # a large floor turns it into a plain sum / (C * floor)
    assert mask_weighted_mse(pred, target, mask, min_area=1000.0).tolist() == pytest.approx([9 / 3000, 12 / 3000])


def test_sobel_magnitude_matches_scipy_with_replicated_borders():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 9))
    got = sobel_magnitude(torch.from_numpy(x), eps=1e-6).numpy()
    for n in range(2):
        for c in range(3):  # scipy smooths along every other axis: one 2-D image at a time
            gx = ndimage.sobel(x[n, c], axis=1, mode="nearest") / 8.0
            gy = ndimage.sobel(x[n, c], axis=0, mode="nearest") / 8.0
            np.testing.assert_allclose(got[n, c], np.sqrt(gx**2 + gy**2 + 1e-6), rtol=1e-10, atol=1e-12)


def test_param_smoothness_is_sqrt_eps_for_constant_maps_and_grows_with_edges():
    flat = torch.full((1, 12, 8, 8), 0.7)
    assert float(param_smoothness(flat)) == pytest.approx(1e-3, rel=1e-5)
    step = flat.clone()
    step[..., 4:] += 1.0
    # a unit step: |gx| = (1 + 2 + 1)/8 = 0.5 on the two columns beside it, 2 of 8 columns
    assert float(param_smoothness(step)) == pytest.approx((2 * np.sqrt(0.25 + 1e-6) + 6 * 1e-3) / 8, rel=1e-5)
