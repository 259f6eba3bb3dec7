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
    pred[0, 0, 0, 0] = 3.0  # one error of 3 (background or not: every pixel counts)
    pred[1, :, 1, 1] = 2.0  # three errors of 2
    mask = torch.zeros(2, 1, 4, 5)
    mask[0, :, :2, :] = 1  # 10 foreground pixels
    mask[1, :, 0, 0] = 1  # 1 pixel: the floor applies
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


# --------------------------------------------------------------------------- the training step


def _batch(n: int = 3, size: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, size, size, generator=g) * 0.8 + 0.1
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, 4:20, 6:30] = 1
    mask[1, :, 10:12, 10:12] = 1  # 4 pixels: below min_area
    mask[2, :, 8:24, 8:24] = 1
    comp = real * (1 - mask) + (real * 0.6 + 0.3) * mask
    return {"composite": comp, "real": real, "mask": mask, "key": [f"k{i}" for i in range(n)]}


def test_objective_of_the_identity_transform_is_the_composite_error_by_formula():
    """With the parameter head at the identity (T = diag(std), b = mean) the output is the composite,
    so the objective is the composite's foreground-normalised error in ImageNet-normalised space
    plus 0.1 × the smoothness of a constant map (sqrt(1e-6))."""
    from harmbench.models import get_model
    from harmbench.train.steps import StepContext, get_step

    model = get_model("pctnet-cnn", preset="small", seed=0, ch=4, lowres=16)
    with torch.no_grad():
        model.params_head.weight.zero_()
    spec = get_step("pctnet-cnn")
    min_area = 100.0
    ctx = StepContext(spec.loss_config({"min_area": min_area}))
    b = _batch()
    with torch.no_grad():
        got = float(spec.objective(model, b, ctx))
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    d = (b["composite"].double().numpy() - b["real"].double().numpy()) / std
    area = np.maximum(b["mask"].double().numpy().sum(axis=(1, 2, 3)), min_area)
    want = float(np.mean((d**2).sum(axis=(1, 2, 3)) / (3 * area))) + 0.1 * 1e-3
    assert got == pytest.approx(want, rel=1e-4)


def test_identity_pairs_replace_composites_with_their_real_images():
    from harmbench.train.steps import identity_pairs

    b = _batch(n=3)
    assert identity_pairs(b, 0.0, None) is b["composite"]
    assert torch.equal(identity_pairs(b, 1.0, torch.Generator().manual_seed(0)), b["real"])
    big = {"composite": torch.zeros(4000, 3, 1, 1), "real": torch.ones(4000, 3, 1, 1)}
    out = identity_pairs(big, 0.1, torch.Generator().manual_seed(1))
    frac = float(out[:, 0].mean())
    assert set(out.unique().tolist()) == {0.0, 1.0} and 0.08 < frac < 0.12
    again = identity_pairs(big, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
