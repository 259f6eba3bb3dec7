"""harmbench.models: the learned architectures (shapes, parameter counts, partial conv, training steps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _helpers import image_batch

from harmbench.models import HENCTN, BargainNet, DoveNet, get_model
from harmbench.models.bargainnet import DomainEncoder, harmony_score
from harmbench.models.dovenet import DoveNetDiscriminator
from harmbench.models.layers import PartialConv2d, count_parameters
from harmbench.models.losses import (
    bargainnet_loss,
    dovenet_d_loss,
    dovenet_g_loss,
    gradient_penalty,
    hen_ctn_loss,
    triplet_loss,
)
from harmbench.models.unet import AttentionUNet

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _batch(n=2, h=64, w=64, seed=0):
    x, m = image_batch(n, h, w, seed)
    m[0, :, h // 4 : 3 * h // 4, w // 5 : w // 2] = 1
    m[-1, :, h // 3 :, w // 2 :] = 1
    return x, m


# --------------------------------------------------------------------------- parameter counts


def _within(count: int, spec_millions: float, tol: float = 0.02) -> bool:
    return abs(count / 1e6 - spec_millions) / spec_millions <= tol


def test_full_size_parameter_counts_match_spec():
    with torch.device("meta"):  # no memory, no init cost
        hc = HENCTN()
        dn = DoveNet(norm="instance")  # the training script's norm
        dn_bn = DoveNet(norm="batch", discriminator=False)
        bn = BargainNet()
    counts = {
        "HEN": (count_parameters(hc.hen), 1.63),
        "CTN": (count_parameters(hc.ctn), 39.41),
        "DoveNet G": (count_parameters(dn.generator), 54.76),
        "DoveNet G (BN)": (count_parameters(dn_bn.generator), 54.76),
        "DoveNet D": (count_parameters(dn.discriminator), 17.79),
        "BargainNet G": (count_parameters(bn.generator), 54.78),
        "BargainNet E": (count_parameters(bn.encoder), 3.92),
    }
    bad = {k: (c, s) for k, (c, s) in counts.items() if not _within(c, s)}
    assert not bad, bad
    assert _within(count_parameters(hc), 41.0)
    with torch.device("meta"):
        plain = AttentionUNet(3, 3, attention=False)
    assert _within(count_parameters(plain), 54.41, 0.001)


# --------------------------------------------------------------------------- partial convolution


def test_partial_conv_matches_loop():
    torch.manual_seed(0)
    conv = PartialConv2d(2, 3, kernel_size=3, stride=2, padding=1, bias=True)
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64)
    m = (torch.rand(1, 1, 7, 6) > 0.6).double()
    m[..., :3, :3] = 0  # an all-hole window
    conv = conv.double()
    with torch.no_grad():
        out, new_mask = conv(x, m)
    w, b = conv.weight.detach(), conv.bias.detach()
    xp = F.pad(x * m, (1, 1, 1, 1))
    mp = F.pad(m, (1, 1, 1, 1))
    oh, ow = out.shape[-2:]
    for i in range(oh):
        for j in range(ow):
            win = xp[0, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            cnt = float(mp[0, 0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].sum())
            for o in range(3):
                if cnt == 0:
                    ref = 0.0
                else:
                    ref = float((w[o] * win).sum()) * 9.0 / cnt + float(b[o])
                assert abs(float(out[0, o, i, j]) - ref) < 1e-10
            assert float(new_mask[0, 0, i, j]) == (1.0 if cnt > 0 else 0.0)
    assert float(new_mask.min()) == 0.0  # the hole window exists
    plain, none_mask = conv(x)
    assert none_mask is None
    assert torch.allclose(plain, F.conv2d(x, w, b, stride=2, padding=1))
    # a full mask is an ordinary convolution
    full, _ = conv(x, torch.ones_like(m))
    assert torch.allclose(full[..., 1:-1, 1:-1], plain[..., 1:-1, 1:-1])


# --------------------------------------------------------------------------- shapes / harmonize


@pytest.mark.parametrize("name", ["hen-ctn", "dovenet", "bargainnet"])
@pytest.mark.parametrize("size", [(131, 197), (5, 7)])
def test_harmonize_odd_size(name, size):
    x, m = _batch(2, *size)
    model = get_model(name, preset="small", seed=0, **({"discriminator": False} if name == "dovenet" else {}))
    model.train()
    out = model.harmonize(x, m)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1 and torch.isfinite(out).all()
    assert model.training  # flag restored
    if model.config.recomposite:
        assert torch.equal(out * (1 - m), x * (1 - m))


def test_ctn_outputs_and_side_sizes():
    model = get_model("hen-ctn", preset="small", seed=0)
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    hist = model.histogram(x)
    assert hist.shape == (2, 9, 32, 32)
    out = model(x, hist, hist.flip(0))
    assert out.output.shape == (2, 3, 64, 96)
    assert [tuple(s.shape[-2:]) for s in out.sides] == [(4, 6), (8, 12), (16, 24), (32, 48)]
    assert all(s.shape[:2] == (2, 3) for s in out.sides)
    codes = model.hen(hist)
    assert codes.shape == (2, 16, 1, 1)
    # code maps and codes are interchangeable for a uniform map
    model.eval()
    with torch.no_grad():
        a = model.transfer(x, codes, codes.flip(0)).output
        b = model.transfer(x, codes.expand(-1, -1, 64, 96), codes.flip(0).expand(-1, -1, 64, 96)).output
    assert torch.allclose(a, b, atol=1e-5)


def test_ctn_residual_output_adds_the_input():
    """``residual = true``: same weights, output = the direct-output CTN's output + x (nLab)."""
    plain = get_model("hen-ctn", preset="small", seed=0).eval()
    res = get_model("hen-ctn", preset="small", residual=True, seed=0).eval()
    assert res.config_dict()["residual"] is True and plain.config_dict()["residual"] is False
    res.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    hist = plain.histogram(x)
    with torch.no_grad():
        a, b = plain(x, hist, hist.flip(0)), res(x, hist, hist.flip(0))
    torch.testing.assert_close(b.output, a.output + x)
    for sa, sb in zip(a.sides, b.sides):  # side outputs stay direct predictions
        torch.testing.assert_close(sa, sb)


def test_hen_ctn_region_codes():
    model = get_model("hen-ctn", preset="small", seed=0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    regions = torch.zeros(2, 2, 32, 32)
    regions[:, 0, :16] = 1
    regions[:, 1, 16:] = 1
    codes = model.encode_regions(x, regions)
    assert codes.shape == (2, 2, 16)
    assert torch.allclose(codes[:, 0], model.encode(x, regions[:, :1]).flatten(1))
    default = torch.zeros(2, 16, 1, 1)
    cmap = model.paint_codes(codes[:, :1], regions[:, :1], default=default)
    assert torch.allclose(cmap[:, :, 0, 0], codes[:, 0]) and torch.equal(cmap[:, :, 31, 0], default[:, :, 0, 0])


def test_dovenet_discriminator_outputs():
    disc = DoveNetDiscriminator(3, ndf=8, n_layers=5, norm="instance")
    x, m = _batch(2, 128, 128)
    out = disc(x * 2 - 1, m)
    assert out.global_score.shape == (2, 1, 1, 1)
    assert out.verification_score.shape == (2, 1, 1, 1)
    assert out.fg_code.shape == out.bg_code.shape == (2, 64, 1, 1)


def test_bargainnet_batched_and_codes():
    model = get_model("bargainnet", preset="small", seed=0).eval()
    x, m = _batch(3, 128, 128)
    x = x * 2 - 1
    with torch.no_grad():
        z = model.encode(x, 1 - m)
        assert z.shape == (3, 8, 1, 1)
        batched = model.generate(x, m, z)
        single = torch.cat([model.generate(x[i : i + 1], m[i : i + 1], z[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)
    s = model.harmony_score((x + 1) / 2, m)
    assert s.shape == (3,) and bool(((s > 0) & (s <= 1)).all())
    assert torch.allclose(harmony_score(z, z), torch.ones(3))
    assert model.generator.code_scale.item() == pytest.approx(0.1)


def test_domain_encoder_ignores_masked_out_pixels():
    enc = DomainEncoder(4, width=8, norm="instance").eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    m = torch.zeros(1, 1, 64, 64)
    m[..., :32, :] = 1
    y = x.clone()
    y[..., 40:, :] = 5.0  # far outside the region (beyond the receptive field overlap)
    with torch.no_grad():
        assert torch.allclose(enc(x, m), enc(y, m), atol=1e-5)


# --------------------------------------------------------------------------- determinism


def test_seeded_builds_are_deterministic_and_leave_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = get_model("dovenet", preset="small", seed=5, discriminator=False)
    b = get_model("dovenet", preset="small", seed=5, discriminator=False)
    after = torch.rand(1)
    assert torch.equal(before, after)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    x, m = _batch(1, 40, 50)
    assert torch.equal(a.harmonize(x, m), b.harmonize(x, m))
    c = get_model("dovenet", preset="small", seed=6, discriminator=False)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


# --------------------------------------------------------------------------- one optimiser step


def _step_lowers(params, loss_fn, lr=1e-4):
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    torch.manual_seed(0)
    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    torch.manual_seed(0)
    after = loss_fn()  # with grad enabled: the gradient penalty differentiates
    return before.item(), after.item()


def test_hen_ctn_step_lowers_loss():
    model = get_model("hen-ctn", preset="small", seed=0, dropout=False)
    a = torch.rand(1, 3, 64, 64) * 2 - 1
    b = (a * 0.5 + 0.3).clamp(-1, 1)
    ha, hb = model.histogram(a), model.histogram(b)

    def loss():
        total, _ = hen_ctn_loss(model(a, ha, hb), b, model(b, hb, ha), a, model(a, ha, ha), model(b, hb, hb))
        return total

    before, after = _step_lowers(model.parameters(), loss)
    assert after < before


def test_dovenet_steps_lower_losses():
    model = get_model("dovenet", preset="small", seed=0, dropout=False, ndf=8)
    x, m = _batch(2, 128, 128)
    comp = x * 2 - 1
    real = (comp + 0.2 * m).clamp(-1, 1)
    fake = model(comp, m).detach()

    d_before, d_after = _step_lowers(
        model.discriminator.parameters(), lambda: dovenet_d_loss(model.discriminator, real, fake, m, gp_weight=10.0)[0]
    )
    assert d_after < d_before

    def g_loss():
        return dovenet_g_loss(model.discriminator, model(comp, m), real, m)[0]

    g_before, g_after = _step_lowers(model.generator.parameters(), g_loss)
    assert g_after < g_before


def test_gradient_penalty_zero_for_unit_gradient():
    # score = <w, x> with |w| = 1 has unit gradient norm everywhere -> zero penalty
    w = torch.randn(1, 3, 4, 4)
    w = w / w.norm()
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
    assert float(gp) < 1e-10


def test_bargainnet_step_lowers_loss():
    model = get_model("bargainnet", preset="small", seed=0, dropout=False)
    x, m = _batch(2, 128, 128)
    comp = x * 2 - 1
    real = (comp + 0.2 * m).clamp(-1, 1)
    before, after = _step_lowers(model.parameters(), lambda: bargainnet_loss(model(comp, m, real), real)[0])
    assert after < before


def test_triplet_loss_matches_torch():
    a, p, n = torch.randn(3, 4, 16, 1, 1).unbind(0)
    ref = torch.nn.TripletMarginLoss(margin=0.1, p=2)(a, p, n)  # the released code's call on (N, L, 1, 1)
    assert torch.allclose(triplet_loss(a, p, n, per_dim=True), ref, atol=1e-6)
    ref_vec = torch.nn.TripletMarginLoss(margin=0.1, p=2)(a.flatten(1), p.flatten(1), n.flatten(1))
    assert torch.allclose(triplet_loss(a, p, n, per_dim=False), ref_vec, atol=1e-6)


def test_hen_ctn_without_reference_region_returns_composite():
    model = get_model("hen-ctn", preset="small", seed=0)
    x = torch.rand(2, 3, 9, 11)
    m = torch.ones(2, 1, 9, 11)
    m[1] = 0
    assert torch.equal(model.harmonize(x, m), x)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["hen-ctn", "dovenet", "bargainnet", "reinhard"])
def test_harmonize_on_cuda(name):
    x, m = _batch(2, 70, 90)
    model = get_model(name, preset="small", seed=0) if name != "reinhard" else get_model(name)
    if hasattr(model, "to"):
        model = model.to("cuda")
    out = model.harmonize(x.cuda(), m.cuda())
    assert out.device.type == "cuda" and out.shape == x.shape
    if hasattr(model, "cpu"):
        ref = model.cpu().harmonize(x, m)
        assert torch.allclose(out.cpu(), ref, atol=1e-3)
