"""The LPIPS feature cache: scores with cached real-image features equal scores without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmbench.metrics import compute_metrics
from harmbench.metrics import lpips as hl
from harmbench.metrics.lpips_cache import LPIPSFeatureCache, weights_identity


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory):
    """A randomly initialised AlexNet ``features.*`` state dict (LPIPS is defined for any weights)."""
    import torchvision

    torch.manual_seed(0)
    feats = torchvision.models.alexnet(weights=None).features.state_dict()
    path = tmp_path_factory.mktemp("alex") / "alex.pth"
    torch.save({f"features.{k}": v for k, v in feats.items()}, path)
    return path


@pytest.fixture(scope="module")
def model(alex_file):
    return hl.load_lpips(alex_file)


def _batch(n: int, seed: int, size: int = 64):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 256, (n, 3, size, size), generator=g).float()
    pred = (target + torch.randn(n, 3, size, size, generator=g) * 20).clamp(0, 255).round()
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 4 : size // 2, size // 8 : size // 2 + 5] = 1.0
    return pred, target, mask


def test_features_reused_give_the_same_lpips(model):
    pred, target, mask = _batch(3, 0)
    plain = compute_metrics(pred, target, mask, "harmbench", lpips_model=model)
    feats = hl.target_features(model, target)
    assert [tuple(f.shape[:2]) for f in feats] == [(3, 64), (3, 192), (3, 384), (3, 256), (3, 256)]
    reused = compute_metrics(pred, target, mask, "harmbench", lpips_model=model, lpips_target_features=feats)
    for k in ("lpips", "flpips"):
        assert torch.equal(plain[k], reused[k])
    # the package's own forward agrees
    direct = model(target / 127.5 - 1, pred / 127.5 - 1).flatten()
    torch.testing.assert_close(plain["lpips"].float(), direct, atol=1e-6, rtol=0)


def test_cache_round_trip_and_identity(model, tmp_path, alex_file):
    _, target, _ = _batch(4, 1)
    feats = hl.target_features(model, target)
    keys = ["a", "b/c", "d", "e"]
    ident = {
        "dataset_hash": "abc",
        "profile": "harmbench",
        "resize": "fixed256",
        "weights": weights_identity(alex_file),
    }
    cache = LPIPSFeatureCache(tmp_path, **ident)
    assert cache.get(keys) is None
    cache.put(keys, feats)
    back = cache.get(keys)
    assert all(torch.equal(a, b) for a, b in zip(back, feats, strict=True))
    sub = cache.get(["d", "a"])
    assert torch.equal(sub[2], feats[2][[2, 0]])
    assert cache.get(["a", "zzz"]) is None
    assert (cache.hits, cache.misses) == (6, 6)
    # another profile, resize, dataset or weights file: another folder, nothing shared
    for field, value in (("profile", "iharm"), ("resize", "none"), ("dataset_hash", "abd"), ("weights", "x")):
        other = LPIPSFeatureCache(tmp_path, **{**ident, field: value})
        assert other.dir != cache.dir and other.get(["a"]) is None
    assert weights_identity(alex_file).startswith("sha256:") and weights_identity(None) == "None"
    # a damaged file is a miss (recomputed by the caller), not an error
    next(cache.dir.glob("*.safetensors")).write_bytes(b"junk")
    assert cache.get(keys) is None


def test_eval_with_the_cache_scores_like_without(tmp_path, alex_file):
    from harmbench.bench.eval import write_synthetic_shards
    from harmbench.eval.loop import evaluate

    data = tmp_path / "data"
    write_synthetic_shards(data, 10, width=96, height=64, seed=3)
    kw = dict(
        device="cpu", lpips=True, lpips_weights=str(alex_file), previews=0, progress=False, workers=0, batch_size=4
    )
    cache = tmp_path / "cache"
    runs = {}
    for method in ("composite", "reinhard"):
        runs[method, "plain"] = evaluate(method, data, tmp_path / f"{method}-plain", **kw)
        runs[method, "cached"] = evaluate(method, data, tmp_path / f"{method}-cached", lpips_cache=str(cache), **kw)
    hits = [
        s.get("lpips_cache") for m in ("composite", "reinhard") for s in runs[m, "cached"].run["timing"]["sessions"]
    ]
    assert hits == [{"hits": 0, "misses": 10}, {"hits": 10, "misses": 0}]  # the second method reads the first's
    assert len(list(cache.glob("*/*.safetensors"))) == 10
    for method in ("composite", "reinhard"):
        a, b = runs[method, "plain"].samples, runs[method, "cached"].samples
        assert list(a["key"]) == list(b["key"])
        for col in ("lpips", "flpips", "mse", "ssim"):
            np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=f"{method} {col}")
    assert not np.allclose(runs["composite", "plain"].samples["flpips"], runs["reinhard", "plain"].samples["flpips"])


def test_leaderboard_cells_share_the_cache_folder(tmp_path):
    from pathlib import Path

    from harmbench.leaderboard.definition import load_leaderboard
    from harmbench.leaderboard.run import LPIPS_CACHE, _spec
    from harmbench.leaderboard.store import cells

    lb = load_leaderboard(Path(__file__).resolve().parents[1] / "leaderboards" / "demo")
    specs = [_spec(lb, c, (True, None), None, False, False, "cpu") for c in cells(lb)]
    assert {s["options"]["lpips_cache"] for s in specs} == {str(lb.runs_dir / LPIPS_CACHE)}
    assert _spec(lb, cells(lb)[0], (False, None), None, False, False, "cpu")["options"]["lpips_cache"] is None
