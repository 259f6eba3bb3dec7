"""HEN/CTN fast CPU inference: same outputs as the contiguous-layout implementation (the channels-last
batched path and the one-image code-folding path), and its bench line."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from harmbench.cli import main
from harmbench.models import get_model
from harmbench.models.hen_ctn import HENCTN, _inorm_, _InstanceNorm
from harmbench.models.lab import nlab_to_rgb, rgb_to_nlab
from harmbench.models.pretrained import load_pretrained

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def reference_harmonize(model, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``hen-ctn`` harmonize as implemented before the channels-last path: every tensor contiguous,
    torch's instance norm, side outputs computed (and ignored)."""
    from harmbench.models.base import crop_padding, pad_to_multiple

    cfg = model.config
    with torch.no_grad():
        geometry = {"margin": cfg.pad_margin, "min_size": model.min_size}
        xp, pads = pad_to_multiple(composite, model.stride, **geometry)
        mp, _ = pad_to_multiple(mask, model.stride, **geometry)
        valid = torch.zeros_like(mp)
        top, bottom, left, right = pads
        valid[..., top : valid.shape[-2] - bottom, left : valid.shape[-1] - right] = 1
        x = rgb_to_nlab(xp)
        e_f = model.encode(x, mp * valid)
        e_b = model.encode(x, (1 - mp) * valid)
        src_map = torch.where(mp > 0.5, e_f.view(-1, cfg.code_dim, 1, 1), e_b.view(-1, cfg.code_dim, 1, 1))
        out = nlab_to_rgb(model.ctn(x.contiguous(), src_map.contiguous(), e_b).output)
        out = crop_padding(out, pads).clamp(0, 1)
        return out * mask + composite * (1 - mask)


def _batch(n=4, h=256, w=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    x = F.avg_pool2d(x, 5, 1, 2)  # smooth, photo-like statistics
    m = torch.zeros(n, 1, h, w)
    for i in range(n):
        m[i, :, 40 + 10 * i : 180, 60 : 200 - 15 * i] = 1
    return x, m


def test_channels_last_instance_norm_is_the_formula():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 17, 23, generator=g) * 3 + 1
    xc = x.contiguous(memory_format=torch.channels_last)
    got = _InstanceNorm(5)(xc)
    mean = x.mean((2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((2, 3), keepdim=True)
    assert torch.allclose(got, (x - mean) / torch.sqrt(var + 1e-5), atol=1e-6, rtol=0)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(_InstanceNorm(5)(x), F.instance_norm(x))  # contiguous inputs: torch's kernel


def test_in_place_instance_norm_is_the_formula():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 24, 40, 56, generator=g) * 4 - 3
    got = _inorm_(x.contiguous(memory_format=torch.channels_last), 1e-5)
    assert (got - F.instance_norm(x.double()).float()).abs().max().item() <= 2e-6
    assert got.is_contiguous(memory_format=torch.channels_last)


def _agree(fast: torch.Tensor, ref: torch.Tensor, atol: float = 3e-5) -> None:
    """Float outputs within ``atol`` on 0–1; the 8-bit outputs equal but for a few pixels, each off by one."""
    assert fast.shape == ref.shape
    assert (fast - ref).abs().max().item() <= atol
    q_fast, q_ref = (fast * 255).round(), (ref * 255).round()
    assert (q_fast - q_ref).abs().max().item() <= 1
    assert (q_fast != q_ref).float().mean().item() <= 1e-4


def _plain(model: HENCTN, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``harmonize`` through the plain batched contiguous path."""
    model.fast_layout = False
    try:
        return model.harmonize(x, m)
    finally:
        model.fast_layout = True


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (160, 96)])
def test_ctn_infer_equals_forward_random_init(residual, size):
    model = get_model("hen-ctn", preset="small", residual=residual, dropout=True, seed=3).eval()
    ctn = model.ctn
    h, w = size
    g = torch.Generator().manual_seed(h + w)
    x = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, h, w)
    mask[..., : h // 2, w // 3 :] = 1  # touches the top and right borders
    c = model.config.code_dim
    e_fg, e_bg, e_t = (torch.randn(c, generator=g) for _ in range(3))  # mixed signs
    e_s = HENCTN.paint_codes(e_fg.view(1, 1, c), mask, default=e_bg.view(1, c, 1, 1))
    with torch.no_grad():
        ref = ctn(x, e_s, e_t.view(1, c, 1, 1), sides=False).output
        got = ctn.infer(x.contiguous(memory_format=torch.channels_last), mask, e_fg[None], e_bg[None], e_t[None])
    scale = ref.abs().max().item()
    assert (got - ref).abs().max().item() <= 2e-6 * max(1.0, scale)


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_ctn_infer_batch_with_chunks(chunk):
    model = get_model("hen-ctn", preset="small", seed=6).eval()
    g = torch.Generator().manual_seed(6)
    n, h, w, c = 3, 64, 96, model.config.code_dim
    x = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, h, w)
    mask[0, :, 10:40, 20:70] = 1
    mask[1, :, :, :30] = 1  # touches three borders
    mask[2, :, 50:, 60:] = 1
    e_fg, e_bg, e_t = (torch.randn(n, c, generator=g) for _ in range(3))
    e_s = HENCTN.paint_codes(e_fg.view(n, 1, c), mask, default=e_bg.view(n, c, 1, 1))
    with torch.no_grad():
        ref = model.ctn(x, e_s, e_t.view(n, c, 1, 1), sides=False).output
        got = model.ctn.infer(x.contiguous(memory_format=torch.channels_last), mask, e_fg, e_bg, e_t, chunk)
    assert (got - ref).abs().max().item() <= 2e-6 * max(1.0, ref.abs().max().item())


def test_ctn_infer_uniform_codes():
    model = get_model("hen-ctn", preset="small", seed=4).eval()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 64, 96, generator=g) * 2 - 1
    c = model.config.code_dim
    e_fg, e_bg = torch.randn(c, generator=g), torch.randn(c, generator=g)
    with torch.no_grad():
        for mask in (torch.zeros(1, 1, 64, 96), torch.ones(1, 1, 64, 96)):
            code = e_fg if mask.any() else e_bg
            ref = model.ctn(x, code.view(1, c, 1, 1), e_bg.view(1, c, 1, 1), sides=False).output
            got = model.ctn.infer(
                x.contiguous(memory_format=torch.channels_last), mask, e_fg[None], e_bg[None], e_bg[None]
            )
            assert (got - ref).abs().max().item() <= 2e-6 * max(1.0, ref.abs().max().item())


def _hard_batch(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four images: a mask touching two borders, an empty foreground, a full foreground, a small blob."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(4, 3, h, w, generator=g), 5, 1, 2)
    m = torch.zeros(4, 1, h, w)
    m[0, :, : h // 2, w // 2 :] = 1
    m[2] = 1
    m[3, :, h // 3 : h // 3 + 9, w // 4 : w // 4 + 13] = 1
    return x, m


@pytest.mark.parametrize("size", [(256, 256), (200, 312), (150, 97)])
def test_fast_path_committed_weights_hard_cases(size):
    model = load_pretrained("hen-ctn-cpu")
    x, m = _hard_batch(*size)
    ref = _plain(model, x, m)
    with_bg = [0, 1, 3]  # the reference helper has no rule for an image without background
    assert torch.equal(ref[with_bg], reference_harmonize(model, x[with_bg], m[with_bg]))
    fast = model.harmonize(x, m)
    _agree(fast, ref)
    assert torch.equal(fast[1], x[1]) and torch.equal(fast[2], x[2])  # nothing pasted / no background
    for i in range(len(x)):  # batch size 1
        _agree(model.harmonize(x[i : i + 1], m[i : i + 1]), ref[i : i + 1])


@pytest.mark.parametrize("overrides", [{}, {"residual": True}, {"width": 8, "code_dim": 4, "recomposite": False}])
def test_fast_path_random_init(overrides):
    model = get_model("hen-ctn", preset="small", seed=7, **overrides)
    x, m = _hard_batch(96, 130, seed=1)
    ref = _plain(model, x, m)
    _agree(model.harmonize(x, m), ref)


def test_fast_path_is_taken_and_can_be_turned_off(monkeypatch):
    model = load_pretrained("hen-ctn-cpu")
    x, m = _batch(2, 96, 128)
    calls = []
    infer = model.ctn.infer
    monkeypatch.setattr(model.ctn, "infer", lambda *a: calls.append(1) or infer(*a))
    fast = model.harmonize(x, m)
    assert len(calls) == 1
    model.fast_infer = False
    try:
        before = model.harmonize(x, m)  # the batched channels-last path
    finally:
        model.fast_infer = True
    assert len(calls) == 1
    _agree(fast, before)


def test_fast_inference_outputs_equal_the_previous_implementation():
    model = load_pretrained("hen-ctn-cpu")
    x, m = _batch()
    ref = reference_harmonize(model, x, m)
    model.fast_layout = False
    slow = model.harmonize(x, m)
    model.fast_layout = True
    fast = model.harmonize(x, m)
    assert torch.equal(slow, ref)  # same operations, same bits
    # convolutions in another memory layout sum in another order: a few 1e-6 on the 0–1 scale,
    # as between 1 and 2 torch threads of the previous implementation itself
    assert (fast - ref).abs().max().item() <= 1e-5
    assert ((fast * 255).round() != (ref * 255).round()).float().mean().item() <= 1e-3
    # batched = one at a time
    single = torch.cat([model.harmonize(x[i : i + 1], m[i : i + 1]) for i in range(len(x))])
    assert (single - fast).abs().max().item() <= 1e-5


def test_bench_line(capsys):
    assert (
        main(["bench", "hen-ctn", "--n", "4", "--batch", "2", "--size", "96", "--repeats", "1", "--threads", "1"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(lines[-1])
    assert rec["bench"] == "hen-ctn" and rec["target_img_per_s"] == 10.0 and rec["size"] == 96
    assert rec["img_per_s"] > 0 and rec["baseline_img_per_s"] > 0 and rec["max_abs_diff"] <= 1e-5
    assert any(line.startswith("code-folding") for line in lines)
    assert any(line.startswith("channels-last batched (before)") for line in lines)
