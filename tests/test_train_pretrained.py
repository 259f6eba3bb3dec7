"""The committed CPU baseline weights (baselines/weights/*-cpu.safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harmbench.errors import ConfigError, UserError
from harmbench.train.pretrained import (
    PRETRAINED,
    load_pretrained,
    reference_check,
    reference_samples,
    weights_dir,
)

WEIGHTS = Path(__file__).resolve().parents[1] / "baselines" / "weights"


def _sidecar(name: str) -> dict:
    p = WEIGHTS / f"{name}.json"
    if not p.is_file():
        pytest.skip(f"{p} not committed")
    return json.loads(p.read_text())


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_committed_weights_load_with_their_config(name):
    meta = _sidecar(name)
    f = WEIGHTS / meta["weights"]
    assert f.stat().st_size <= 5 * 1024 * 1024
    model = load_pretrained(name)
    assert model.name == PRETRAINED[name] and not model.training
    # fields that say how to run (e.g. protocol, seed) postdate these checkpoints and take their defaults
    runtime = set(getattr(model.config_class, "RUNTIME_FIELDS", ()))
    assert {k: v for k, v in model.config_dict().items() if k not in runtime or k in meta["model_config"]} == meta[
        "model_config"
    ]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key in ("train_config", "command", "dataset", "step", "evaluation"):
        assert meta.get(key), key
    assert len(meta["dataset"]["index_sha256"]) == 64
    # the registry resolves the same name
    from harmbench.models import get_model

    again = get_model(name)
    x = torch.rand(1, 3, 128, 128)
    m = torch.zeros(1, 1, 128, 128)
    m[..., 40:90, 30:80] = 1
    assert torch.equal(again.harmonize(x, m), model.harmonize(x, m))


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_committed_weights_reproduce_reference_numbers(name, shared):
    root = shared("data", "labelme_outdoor")
    meta = _sidecar(name)
    ref = meta["reference_check"]
    got = reference_check(load_pretrained(name), root, n=len(ref["keys"]), size=ref["size"])
    assert got["keys"] == ref["keys"]
    for field in ("mse", "fmse", "composite_mse", "composite_fmse", "identical_mse"):
        assert got[field] == pytest.approx(ref[field], rel=2e-3, abs=0.05), field


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_learned_baselines_beat_the_composite_on_the_test_split(name):
    ev = _sidecar(name)["evaluation"]
    comp = (
        json.loads((WEIGHTS.parent / "results.json").read_text())["composite"]
        if (WEIGHTS.parent / "results.json").is_file()
        else None
    )
    if comp is None:
        pytest.skip("baselines/results.json not committed")
    assert ev["split"] == "test" and ev["n"] == comp["n"]
    assert ev["mse"] < comp["mse"] and ev["fmse"] < comp["fmse"]


def test_hen_ctn_keeps_identical_pairs(shared):
    root = shared("data", "labelme_outdoor")
    _sidecar("hen-ctn-cpu")
    r = reference_check(load_pretrained("hen-ctn-cpu"), root)
    ident = sum(r["identical_fmse"]) / len(r["identical_fmse"])
    hue = sum(r["composite_fmse"]) / len(r["composite_fmse"])
    # output vs. input on identical pairs: far below the hue composites' foreground error
    assert ident < 0.2 * hue, (ident, hue)


def test_hen_ctn_reproduces_its_input_with_equal_codes(shared):
    """CTN(x, e_x, e_x) ≈ x: the identity term of the HEN/CTN objective, learned (RGB 0–255 MSE)."""
    from harmbench.models.lab import nlab_to_rgb, rgb_to_nlab

    root = shared("data", "labelme_outdoor")
    _sidecar("hen-ctn-cpu")
    model = load_pretrained("hen-ctn-cpu")
    s = reference_samples(root, n=6, size=128)
    with torch.no_grad():
        x = rgb_to_nlab(s["real"])
        e = model.encode(x)
        rec = nlab_to_rgb(model.transfer(x, e, e).output).clamp(0, 1)
    mse = ((rec - s["real"]) * 255).pow(2).mean(dim=(1, 2, 3))
    assert float(mse.max()) < 10.0, mse


def test_missing_weights_and_wrong_model_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMBENCH_WEIGHTS", str(tmp_path))
    assert weights_dir() == tmp_path
    with pytest.raises(UserError, match="HARMBENCH_WEIGHTS"):  # neither in the cache nor committed
        load_pretrained("no-such-cpu")
    src = WEIGHTS / "dovenet-cpu.safetensors"
    if not src.is_file():
        pytest.skip("dovenet-cpu weights not committed")
    # a dovenet file under the bargainnet name: the sidecar's model is checked
    (tmp_path / "bargainnet-cpu.safetensors").write_bytes(src.read_bytes())
    meta = json.loads((WEIGHTS / "dovenet-cpu.json").read_text())
    meta["weights"] = "bargainnet-cpu.safetensors"
    (tmp_path / "bargainnet-cpu.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as info:
        load_pretrained("bargainnet-cpu")
    assert info.value.field == "model"
