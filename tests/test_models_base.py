"""harmbench.models: interface, validation, registry, config bookkeeping, classical wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import image_batch

from harmbench.errors import ConfigError
from harmbench.models import MODELS, ModelInputError, TransferHarmonizer, available_models, get_model
from harmbench.models.base import crop_padding, pad_to_multiple
from harmbench.models.dovenet import DoveNet, DoveNetConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _batch(n=2, h=24, w=32, seed=0):
    x, m = image_batch(n, h, w, seed)
    m[:, :, h // 4 : 3 * h // 4, w // 4 : w // 2 + 3] = 1
    return x, m


# --------------------------------------------------------------------------- registry


def test_registry_names():
    names = available_models()
    for name in ("composite", "reinhard", "histmatch", "xiao", "idt", "hen-ctn", "dovenet", "bargainnet"):
        assert name in names
    assert set(names) == set(MODELS)


def test_unknown_model_error_names_it():
    with pytest.raises(ConfigError, match="no-such-net") as info:
        get_model("no-such-net")
    assert "dovenet" in str(info.value)  # lists the known ones


def test_unknown_option_and_preset_errors():
    with pytest.raises(ConfigError, match="widht"):
        get_model("hen-ctn", preset="small", widht=3)
    with pytest.raises(ConfigError, match="tiny"):
        get_model("dovenet", preset="tiny")
    with pytest.raises(ConfigError, match="norm"):
        get_model("dovenet", preset="small", norm="group")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x, m: (x, m[:, 0]), "mask must have shape"),
        (lambda x, m: (x, m.expand(-1, 3, -1, -1)), "mask must have shape"),
        (lambda x, m: (x, m * 0.5), "exactly 0 or 1"),
        (lambda x, m: (x, m[..., :-1]), "does not match"),
        (lambda x, m: (x[:, :2], m), r"\(N, 3, H, W\)"),
        (lambda x, m: (x * 255, m), "0–1 scale"),
        (lambda x, m: (x * 2 - 1, m), "0–1 scale"),
        (lambda x, m: (torch.where(x > 0.5, torch.nan, x), m), "NaN"),
        (lambda x, m: ((x * 255).to(torch.uint8), m), "float"),
    ],
)
def test_input_validation(make, match):
    x, m = make(*_batch())
    with pytest.raises(ModelInputError, match=match):
        get_model("composite").harmonize(x, m)


def test_composite_returns_input_and_accepts_bool_mask():
    x, m = _batch()
    out = get_model("composite").harmonize(x, m.bool())
    assert torch.equal(out, x)
    x64 = x.double()
    assert get_model("composite").harmonize(x64, m).dtype == torch.float64


def test_pad_crop_roundtrip():
    x = torch.rand(1, 5, 131, 197)
    for mode in ("replicate", "reflect"):
        p, pads = pad_to_multiple(x, 32, margin=3, mode=mode)
        assert p.shape[-2] % 32 == 0 and p.shape[-1] % 32 == 0
        assert min(pads) >= 3
        assert torch.equal(crop_padding(p, pads), x)
    p, pads = pad_to_multiple(x, 1)
    assert p is x and pads == (0, 0, 0, 0)


# --------------------------------------------------------------------------- configs


def test_config_roundtrip_and_check():
    model = get_model("dovenet", preset="small", discriminator=False)
    saved = model.config_dict()
    assert saved["model"] == "dovenet" and saved["ngf"] == 16
    rebuilt = DoveNet.from_config(saved)
    assert rebuilt.config == model.config
    model.check_config(saved)
    with pytest.raises(ConfigError, match="dovenet.ngf"):
        model.check_config({**saved, "ngf": 32})
    with pytest.raises(ConfigError, match="model"):
        model.check_config({**saved, "model": "bargainnet"})
    assert DoveNetConfig.preset("full").ngf == 64


# --------------------------------------------------------------------------- classical wrappers


def _fake_op_factory(calls):
    def op(image, mask, ref_image=None, ref_mask=None, *, rng=None, gain=1.0):
        calls.append((image.copy(), mask.copy(), ref_mask.copy()))
        assert image.dtype == np.float32 and image.ndim == 3 and mask.dtype == bool
        out = image.copy()
        shift = ref_image[ref_mask].mean(0) - image[mask].mean(0) + rng.normal() * 0
        out[mask] = np.clip(image[mask] + gain * shift, 0, 1)
        return out

    return op


def test_transfer_wrapper_uses_background_as_reference(monkeypatch):
    from harmbench import transfer

    calls: list = []
    monkeypatch.setitem(transfer.TRANSFERS, "_test_shift", _fake_op_factory(calls))
    monkeypatch.setattr(transfer, "_load_all", lambda: None)
    x, m = _batch()
    m[1] = 0  # empty mask: returned unchanged, op not called
    h = TransferHarmonizer("_test_shift", gain=0.5)
    out = h.harmonize(x.double(), m)
    assert out.dtype == torch.float64 and out.shape == x.shape
    assert len(calls) == 1
    img, mask, ref_mask = calls[0]
    assert np.array_equal(ref_mask, ~mask)
    expected = _fake_op_factory([])(img, mask, img, ~mask, rng=np.random.default_rng(0), gain=0.5)
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expected, atol=1e-7)
    assert torch.equal(out[1], x[1].double())


@pytest.mark.parametrize("name", ["reinhard", "histmatch", "ychist", "xiao", "idt"])
def test_classical_wrapper_equals_direct_call(name):
    from harmbench.transfer import get_transfer

    try:
        op = get_transfer(name)
    except KeyError:
        pytest.skip(f"transfer op {name!r} not available yet")
    x, m = _batch(n=2, h=40, w=48, seed=3)
    model = get_model(name, seed=7)
    out = model.harmonize(x, m)
    for i in range(2):
        img = x[i].permute(1, 2, 0).contiguous().numpy()
        mask = m[i, 0].numpy() > 0.5
        ref = op(img, mask, img, ~mask, rng=np.random.default_rng(7))
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), np.clip(ref, 0, 1), atol=1e-6)


def test_models_do_not_import_the_trainer():
    """Inference (registry, committed weights, checkpoint loading) never pulls in harmbench.train."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from harmbench.models import available_models, get_model\n"
        "assert 'hen-ctn-cpu' in available_models()\n"
        "from harmbench.models.checkpoints import load_checkpoint, read_sidecar\n"
        "print(sorted(m for m in sys.modules if m.startswith('harmbench.train')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
