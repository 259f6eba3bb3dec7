"""LPIPS (alex, v0.1): offline loading, reference distances, masked LPIPS."""

from __future__ import annotations

import pytest
import torch

from harmbench.errors import InputError, UserError
from harmbench.metrics import compute_metrics
from harmbench.metrics import lpips as hl


@pytest.fixture(scope="module")
def weights():
    from conftest import shared_path

    return shared_path("lpips", "alexnet_features.pth")


@pytest.fixture(scope="module")
def model(weights):
    return hl.load_lpips(weights)


def _img(shared, name):
    from harmbench.imaging import read_rgb

    return torch.tensor(read_rgb(shared("lpips", f"{name}.png"))).permute(2, 0, 1)[None].float()


def test_reference_distances(model, shared):
    ref = _img(shared, "ex_ref")
    x = torch.cat([_img(shared, "ex_p0"), _img(shared, "ex_p1")])
    ones = torch.ones(2, 1, *x.shape[2:])
    out = compute_metrics(x, ref.expand_as(x), ones, "harmbench", lpips_model=model)
    assert round(out["lpips"][0].item(), 3) == 0.722
    assert round(out["lpips"][1].item(), 3) == 0.138
    direct = model(ref.expand_as(x) / 127.5 - 1, x / 127.5 - 1).flatten()  # the package's own forward
    torch.testing.assert_close(out["lpips"].float(), direct, atol=1e-6, rtol=0)


def test_masked_lpips_is_mean_of_spatial_map(model, shared):
    import lpips

    ref = _img(shared, "ex_ref")
    x = _img(shared, "ex_p0")
    spatial = lpips.LPIPS(net="alex", version="0.1", spatial=True, pnet_rand=True, verbose=False).eval()
    spatial.load_state_dict(model.state_dict())
    smap = spatial(x / 127.5 - 1, ref / 127.5 - 1)  # (1, 1, H, W)
    mask = torch.zeros(1, 1, *x.shape[2:])
    mask[..., 8:40, 16:56] = 1.0
    _, flp = hl.lpips_flpips(model, x, ref, mask)
    assert flp.item() == pytest.approx((smap * mask).sum().item() / mask.sum().item(), abs=1e-6)
    soft = torch.rand(1, 1, *x.shape[2:], generator=torch.Generator().manual_seed(0))
    _, flp_soft = hl.lpips_flpips(model, x, ref, soft)
    assert flp_soft.item() == pytest.approx((smap * soft).sum().item() / soft.sum().item(), abs=1e-6)
    assert flp.item() != pytest.approx(flp_soft.item(), abs=1e-4)


def test_env_variable_is_used(weights, monkeypatch):
    monkeypatch.setenv(hl.ENV_VAR, str(weights))
    monkeypatch.setattr(hl, "_torchvision_alexnet_features", lambda: pytest.fail("must not download"))
    m = hl.load_lpips()
    assert m.harmbench_weights == str(weights)


def test_clear_error_without_weights(monkeypatch):
    def offline():
        raise OSError("network unreachable")

    monkeypatch.delenv(hl.ENV_VAR, raising=False)
    monkeypatch.setattr(hl, "_torchvision_alexnet_features", offline)
    with pytest.raises(UserError) as exc:
        hl.load_lpips()
    msg = str(exc.value)
    assert hl.ENV_VAR in msg and "weights=" in msg and "network unreachable" in msg


def test_bad_weight_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        hl.load_lpips(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"classifier.1.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match=r"features\.0\.weight"):
        hl.load_lpips(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth"):
        hl.load_lpips(junk)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lpips_cuda_matches_cpu(weights, model):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 255
    y = torch.rand(2, 3, 64, 64, generator=g) * 255
    m = (torch.rand(2, 1, 64, 64, generator=g) > 0.5).float()
    cpu = hl.lpips_flpips(model, x, y, m)
    gm = hl.load_lpips(weights, device="cuda")
    gpu = hl.lpips_flpips(gm, x.cuda(), y.cuda(), m.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)
