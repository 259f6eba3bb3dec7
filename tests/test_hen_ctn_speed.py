"""HEN/CTN fast CPU inference: same outputs as the contiguous-layout implementation, and its bench line."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from harmbench.cli import main
from harmbench.models.hen_ctn import _InstanceNorm
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
    assert any(line.startswith("channels-last") for line in lines)
