"""PCT-Net (``pctnet-vit``, ``pctnet-cnn``) against the authors' code: the ``pctnet_vit``, ``pctnet_cnn``
and ``e2e_pctnet`` fixtures in ``../shared/official`` reproduced through ``harmbench.models`` loading,
the colour transform against its formula, the banded bicubic against ``F.interpolate``, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from harmbench.errors import ConfigError, UserError
from harmbench.models import ModelInputError, get_model
from harmbench.models.cards import get_card
from harmbench.models.official import load_weights
from harmbench.models.pct import BicubicRows, identity_params, pct_transform

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# the fixtures' stated tolerances (../shared/official/README.md): normalised outputs and PCT params
# within 1e-3, 0–255 floats within 0.05, uint8 within ±1 on at most ~0.5 % of values
TOL_NORM, TOL_255, U8_FRACTION = 1e-3, 0.05, 0.005


def load_fixture(folder: str) -> tuple[dict, dict, dict]:
    """``(meta, inputs, outputs)`` of an official fixture folder (tensors by their meta names)."""
    d = shared_path("official", folder)
    meta = json.loads((d / "meta.json").read_text())
    cache: dict[Path, dict] = {}

    def get(entry: dict) -> torch.Tensor:
        f = (d / entry["stored_in"]["file"]).resolve()
        if f not in cache:
            cache[f] = torch.load(f, map_location="cpu", weights_only=True)
        return cache[f][entry["stored_in"]["key"]]

    return meta, {k: get(v) for k, v in meta["inputs"].items()}, {k: get(v) for k, v in meta["outputs"].items()}


def weights_file(net: str) -> Path:
    return shared_path("official", net, "state_dict.pt")


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    """Both variants built from the fixture checkpoints through the public loading path (official protocol)."""
    return {
        net: load_weights(net.replace("_", "-"), weights_file(net), protocol="official")
        for net in ("pctnet_vit", "pctnet_cnn")
    }


def normalise(model, u8_nhwc: torch.Tensor) -> torch.Tensor:
    """The authors' predictor input: ``(u8 / 255 − mean) / std`` (N,3,H,W)."""
    return (u8_nhwc.permute(0, 3, 1, 2).float() / 255.0 - model.mean) / model.std


# --------------------------------------------------------------------------- formulas


def test_pct_transform_matches_the_formula():
    """y = clamp(T·x + b, 0, 1), renormalised; T row-major in channels 0–8, b in 9–11 (numpy reference)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 7, generator=g)
    p = torch.randn(2, 12, 5, 7, generator=g) * 0.5
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    got = pct_transform(x, p, mean, std).numpy()
    xn, pn = x.double().numpy(), p.double().numpy()
    t = pn[:, :9].reshape(2, 3, 3, 5, 7)
    y = np.einsum("nrchw,nchw->nrhw", t, xn) + pn[:, 9:12]
    ref = (np.clip(y, 0, 1) - mean.double().numpy()) / std.double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert (np.clip(y, 0, 1) != y).any()  # the clamp was exercised


@pytest.mark.parametrize(
    "mean,std", [((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
)
def test_identity_parameters_reproduce_the_image(mean, std):
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    rgb = torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    x = (rgb - m) / s
    p = identity_params(mean, std).view(1, 12, 1, 1).expand(1, 12, 4, 6)
    torch.testing.assert_close(pct_transform(x, p, m, s), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "src,dst,band",
    [((256, 256), (288, 384), 64), ((256, 256), (2832, 4256), 500), ((16, 20), (7, 9), 3), ((9, 11), (40, 23), 1)],
)
def test_banded_bicubic_equals_interpolate(src, dst, band):
    x = torch.randn(1, 12 if dst[0] < 1000 else 2, *src, generator=torch.Generator().manual_seed(1))
    ref = F.interpolate(x, size=dst, mode="bicubic", align_corners=False)
    rows = BicubicRows(x, dst)
    got = torch.cat([rows.rows(y, min(dst[0], y + band)).clone() for y in range(0, dst[0], band)], dim=2)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- network fixtures


@pytest.mark.parametrize("net", ["pctnet_vit", "pctnet_cnn"])
def test_network_fixture(models, net):
    """Low- and full-resolution outputs, params (and the CNN's attention) as the authors' modules give them."""
    meta, inp, out = load_fixture(net)
    model = models[net]
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]
    x = normalise(model, inp["comp_lr_uint8"])
    xf = normalise(model, inp["comp_uint8"])
    mf = inp["mask_uint8"].float()[:, None] / 255
    with torch.no_grad():
        got = model(x, inp["mask_lr"], xf, mf)
    for key in ("images", "params", "images_fullres") + (("attention",) if "attention" in out else ()):
        diff = (getattr(got, key) - out[key]).abs().max().item()
        assert diff <= TOL_NORM, f"{net} {key}: max |diff| {diff}"
    # the banded application equals the one-piece forward (the fixture's 288×384 photo, several bands)
    res = torch.empty_like(xf)

    def read(y0, y1):
        return xf[:, :, y0:y1], mf[:, :, y0:y1]

    def write(y0, y1, y):
        res[:, :, y0:y1] = y

    from harmbench.models.pct import apply_fullres

    with torch.no_grad():
        apply_fullres(
            got.params,
            got.attention if model.learned_attention else None,
            tuple(xf.shape[-2:]),
            read,
            write,
            mean=model.mean,
            std=model.std,
            tile_rows=37,
        )
    assert (res - out["images_fullres"]).abs().max().item() <= TOL_NORM
    # uint8 result of the authors' predictor: rounding of the clamped 0–255 float
    u8 = model.denormalize_255(res).permute(0, 2, 3, 1).round().to(torch.uint8)
    d = (u8.int() - out["pred_fullres_uint8"].int()).abs()
    assert d.max() <= 1 and (d > 0).float().mean() <= U8_FRACTION


def test_cnn_full_resolution_attention_is_not_clamped(models):
    """The authors upsample the CNN's blend map bicubically without clamping (the fixture's unclamped result
    leaves [0, 255]); the official protocol keeps that, the harmbench protocol clamps it to [0, 1]."""
    _, inp, out = load_fixture("pctnet_cnn")
    model = models["pctnet_cnn"]
    xf = normalise(model, inp["comp_uint8"])
    with torch.no_grad():
        y = out["images_fullres"] * model.std + model.mean
    assert (y * 255).min() < -1  # the fixture: −3.79 before the final clamp
    a = F.interpolate(out["attention"], size=xf.shape[-2:], mode="bicubic", align_corners=False)
    assert a.min() < 0 or a.max() > 1


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def e2e():
    return load_fixture("e2e_pctnet")


@pytest.mark.parametrize("net", ["pctnet_vit", "pctnet_cnn"])
def test_e2e_predictor(models, e2e, net):
    """``scripts/evaluate_iHarmony4.py`` (Fixed256, --res FR) on 640×480 photos: low-res inputs bit-exact,
    0–255 floats within 0.05, the written uint8 within one level."""
    _, inp, out = e2e
    model = models[net]
    for i in range(inp["comp_uint8"].shape[0]):
        comp = inp["comp_uint8"][i].numpy()
        raw = inp["mask_uint8"][i].numpy()
        # the low-resolution inputs the authors' script builds (cv2 INTER_LINEAR, soft mask)
        x_lr, m_lr = model._lowres_official(comp, raw.astype(np.float32) / 255)
        ref_img = inp["pctnet_cnn.eval_fixed256.image_lr_in"][i]
        assert torch.equal(normalise(model, ref_img[None]), x_lr)
        assert torch.equal(m_lr[0, 0], inp["pctnet_cnn.eval_fixed256.mask_lr_in"][i])
        pred = model.predict(comp, raw.astype(np.float32) / 255, out_dtype="float32")
        ref_full = out[f"{net}.eval_fixed256.pred_fullres_float"][i].numpy()
        ref_low = out[f"{net}.eval_fixed256.pred_lowres_float"][i].numpy()
        assert pred.fullres.shape == (480, 640, 3) and pred.lowres.shape == (256, 256, 3)
        assert np.abs(pred.fullres - ref_full).max() <= TOL_255
        assert np.abs(pred.lowres - ref_low).max() <= TOL_255
        ref_u8 = np.clip(np.rint(ref_full), 0, 255).astype(np.uint8)  # cv2.imwrite's conversion
        d = np.abs(np.rint(pred.fullres).astype(int) - ref_u8)
        assert d.max() <= 1 and (d > 0).mean() <= U8_FRACTION
        if net == "pctnet_cnn" and i == 0:  # the uint8 path rounds the same floats half to even
            np.testing.assert_array_equal(model.predict_uint8(comp, raw), np.rint(pred.fullres).astype(np.uint8))


def test_e2e_harmonize_contract(models, e2e):
    """``harmonize`` (0–1 tensors, official protocol) gives the authors' result at the photo's own size."""
    _, inp, out = e2e
    model = models["pctnet_cnn"]
    comp = inp["comp_uint8"].permute(0, 3, 1, 2).float() / 255
    mask = (inp["mask_uint8"][:, None] > 127).float()
    y = model.harmonize(comp, mask)
    assert y.shape == comp.shape
    got = (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ref = np.clip(np.rint(out["pctnet_cnn.eval_fixed256.pred_fullres_float"].numpy()), 0, 255)
    d = np.abs(got.astype(int) - ref)
    assert d.max() <= 1 and (d > 0).mean() <= U8_FRACTION
    # background pixels change (learned blend, nothing re-composited) ...
    bg = (inp["mask_uint8"] == 0).numpy()
    assert (got[bg] != inp["comp_uint8"].numpy()[bg]).any()
    # ... unless asked to paste the result into the composite's background
    pasted = get_model("pctnet-cnn", protocol="official", recomposite=True)
    pasted.load_state_dict(model.state_dict())
    y2 = pasted.harmonize(comp[:1], mask[:1])
    torch.testing.assert_close(y2 * (1 - mask[:1]), comp[:1] * (1 - mask[:1]))


def test_bands_do_not_change_the_result(models, e2e):
    _, inp, _ = e2e
    comp = inp["comp_uint8"][1].numpy()[:, :333]  # odd, non-square crop
    mask = inp["mask_uint8"][1].numpy()[:, :333]
    model = models["pctnet_cnn"]
    one = model.predict(comp, mask / 255.0, out_dtype="float32").fullres
    small = get_model("pctnet-cnn", protocol="official", tile_rows=7)
    small.load_state_dict(model.state_dict())
    banded = small.predict(comp, mask / 255.0, out_dtype="float32").fullres
    np.testing.assert_allclose(banded, one, atol=1e-4)


def test_harmbench_protocol_low_resolution_input(models, e2e):
    """``harmbench`` feeds the network an antialiased float resize (no 8-bit rounding) and needs a binary mask."""
    _, inp, _ = e2e
    ref = models["pctnet_vit"]
    model = get_model("pctnet-vit", protocol="harmbench")
    model.load_state_dict(ref.state_dict())
    comp = inp["comp_uint8"][:1].permute(0, 3, 1, 2).float() / 255
    mask = (inp["mask_uint8"][:1, None] > 127).float()
    x_lr, m_lr = model._lowres_harmbench(comp, mask)
    torch.testing.assert_close(x_lr, F.interpolate(comp, size=(256, 256), mode="bilinear", antialias=True))
    torch.testing.assert_close(m_lr, F.interpolate(mask, size=(256, 256), mode="bilinear", antialias=True))
    assert ((m_lr > 0) & (m_lr < 1)).any()  # soft edges
    with pytest.raises(ModelInputError, match="exactly 0 or 1"):
        model.harmonize(comp, mask * 0.5)


# --------------------------------------------------------------------------- loading, widths, errors


@pytest.mark.parametrize(
    "net,preset,expect",
    [("pctnet-vit", "small", {"dim": 64, "depth": 2, "ffn": 128}), ("pctnet-cnn", "small", {"ch": 8})],
)
def test_widths_are_inferred_from_shapes(tmp_path, net, preset, expect):
    """A reduced-width model saved under the authors' names loads back with the same widths and weights."""
    from harmbench.models import pctnet_official as po

    folder = "pctnet_vit" if net == "pctnet-vit" else "pctnet_cnn"
    official_keys = json.loads((shared_path("official", folder) / "meta.json").read_text())["files"]["state_dict.pt"][
        "keys"
    ]
    rename = po.vit_rename if net == "pctnet-vit" else po.cnn_rename
    small = get_model(net, preset=preset, seed=4)
    own = small.state_dict()
    # the authors' names of the small model: every official name whose harmbench name the small model has
    layer_names = {}
    for k in official_keys:
        if net == "pctnet-vit" and ".layers.0." in k:
            for d in range(small.config.depth):
                layer_names[k.replace(".layers.0.", f".layers.{d}.")] = None
        else:
            layer_names[k] = None
    sd = {k: own[rename(k)] for k in layer_names if rename(k) in own}
    assert {rename(k) for k in sd} == set(own)  # every tensor of the small model, under the authors' names
    path = tmp_path / "small.pth"
    torch.save(sd, path)
    loaded = load_weights(net, path)
    for key, value in expect.items():
        assert getattr(loaded.config, key) == value
    for k, v in own.items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_converted_checkpoint_round_trip(tmp_path, models):
    """The authors' file converted to a harmbench checkpoint loads back identically (protocol as an override)."""
    from harmbench.models.official import save_converted

    src = models["pctnet_cnn"]
    sidecar = save_converted(src, tmp_path / "pctnet-cnn", source={"file": "PCTNet_CNN.pth"})
    back = load_weights("pctnet-cnn", sidecar, protocol="official")
    assert back.config == src.config
    for k, v in src.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_errors_name_the_problem(tmp_path):
    sd = torch.load(weights_file("pctnet_vit"), map_location="cpu", weights_only=True)
    # a ViT file given for the CNN
    with pytest.raises(ConfigError, match="not a pctnet-cnn checkpoint"):
        load_weights("pctnet-cnn", weights_file("pctnet_vit"))
    # a missing tensor is named by its official name
    broken = dict(sd)
    del broken["encoder.transformer_enc.layers.3.norm2.bias"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match=r"missing: encoder\.transformer_enc\.layers\.3\.norm2\.bias"):
        load_weights("pctnet-vit", tmp_path / "missing.pth")
    cnn = torch.load(weights_file("pctnet_cnn"), map_location="cpu", weights_only=True)
    del cnn["decoder.up_blocks.2.attention.mask_blurring.weight"]  # a buffer: never regenerated, must be loaded
    torch.save(cnn, tmp_path / "cnn_missing.pth")
    with pytest.raises(ConfigError, match=r"missing: decoder\.up_blocks\.2\.attention\.mask_blurring\.weight"):
        load_weights("pctnet-cnn", tmp_path / "cnn_missing.pth")
    # an extra tensor and a mis-shaped one
    extra = dict(sd)
    extra["encoder.pos_embedding"] = torch.zeros(1, 4096, 256)
    extra["get_params.bias"] = torch.zeros(13)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ConfigError) as err:
        load_weights("pctnet-vit", tmp_path / "extra.pth")
    assert "unexpected: encoder.pos_embedding" in str(err.value) and "get_params.bias (13,) (expected (12,))" in str(
        err.value
    )
    # options that contradict the shapes
    with pytest.raises(ConfigError, match="contradict"):
        load_weights("pctnet-vit", weights_file("pctnet_vit"), dim=128)
    # a patch embedding that is not patch²·4 wide
    odd = dict(sd)
    odd["encoder.patch_to_embedding.1.weight"] = torch.zeros(256, 60)
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(ConfigError, match="not patch²·4"):
        load_weights("pctnet-vit", tmp_path / "odd.pth")
    with pytest.raises(UserError, match="not found"):
        load_weights("pctnet-vit", tmp_path / "absent.pth")
    with pytest.raises(ConfigError, match="protocol"):
        get_model("pctnet-vit", protocol="authors")
    with pytest.raises(ConfigError, match="lowres"):
        get_model("pctnet-cnn", lowres=250)
    with pytest.raises(ConfigError, match="heads"):
        get_model("pctnet-vit", heads=3)


def test_cards():
    for name, model, filename in (
        ("pctnet-vit-official", "pctnet-vit", "PCTNet_ViT.pth"),
        ("pctnet-cnn-official", "pctnet-cnn", "PCTNet_CNN.pth"),
    ):
        card = get_card(name)
        assert card.model == model and card.code_license == "MPL-2.0"
        assert card.commit == "1572176ed1a72217dad7395391615329b98d30c7"
        assert card.file("model").filename == filename and card.file("model").url.endswith(filename)
        assert card.input_size == (256, 256) and card.published["iHarmony4 MSE"] > 0
        assert card.options["protocol"] == "official"
    assert get_card("pctnet-vit-official").mean == (0.0, 0.0, 0.0)
    assert get_card("pctnet-cnn-official").std == (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("net", ["pctnet-cnn", "pctnet-vit"])
def test_small_preset_trains(net):
    """Gradients reach every used parameter; a few steps fit a global colour shift of the foreground."""
    torch.manual_seed(0)
    model = get_model(net, preset="small", seed=0, lowres=32)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(2, 3, 32, 32, generator=g) * 0.6 + 0.2
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    comp = real * (1 - mask) + (real * 0.7 + 0.1) * mask
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        pred = model.forward_rgb(comp, mask)
        loss = F.mse_loss(pred, real)
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    unused = {"head.to_rgb.weight", "head.to_rgb.bias"}
    for name, p in model.named_parameters():
        if name not in unused:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert losses[-1] < 0.5 * losses[0]
    # starts near the identity: the untrained model barely changes the composite
    fresh = get_model(net, preset="small", seed=0, lowres=32)
    assert (fresh.harmonize(comp, mask) - comp).abs().max() < 0.1


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("net", [pytest.param("pctnet_vit", marks=pytest.mark.slow), "pctnet_cnn"])
def test_cli_harmonize_official(tmp_path, e2e, net):
    """``harmbench harmonize --method pctnet-… --weights FILE --protocol official IN.png MASK.png -o OUT.png`` writes
    the authors' result at the photo's own size (640×480) within one level."""
    from harmbench.cli import main
    from harmbench.imaging import encode_image, read_rgb

    _, inp, out = e2e
    img, msk, dst = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    img.write_bytes(encode_image(inp["comp_uint8"][0].numpy(), "png"))
    msk.write_bytes(encode_image(inp["mask_uint8"][0].numpy(), "png"))
    argv = [
        "harmonize",
        "--method",
        net.replace("_", "-"),
        "--weights",
        str(weights_file(net)),
        "--protocol",
        "official",
        "--device",
        "cpu",
        str(img),
        str(msk),
        "-o",
        str(dst),
    ]
    assert main(argv) == 0
    got = read_rgb(dst).astype(int)
    ref = np.clip(np.rint(out[f"{net}.eval_fixed256.pred_fullres_float"][0].numpy()), 0, 255)
    assert got.shape == ref.shape == (480, 640, 3)
    d = np.abs(got - ref)
    assert d.max() <= 1 and (d > 0).mean() <= U8_FRACTION
