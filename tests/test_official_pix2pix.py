"""DoveNet and BargainNet as their authors ship them: the authors' checkpoints, their test protocol, the harmony score.

Every check loads the reference fixtures of ``../shared/official`` (made by running the authors' code) through
``harmbench.models.load_weights`` / the CLI and compares with what the authors' code computed. Float tolerances: the
fixtures are bit-exact in their reference environment; CPU convolution kernels chosen for another instruction set
move the last float bit (measured ≤ 6e-8 for the generators here), so generators are held to 1e-6 and BargainNet's E
(partial-convolution bias order) to 1e-5; uint8 outputs exactly or within one level on ≤ 0.5 % of the values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_path

from harmbench.cli import main
from harmbench.errors import ConfigError, UserError
from harmbench.imaging import encode_image, read_rgb
from harmbench.models import (
    get_model,
    harmony_scores,
    load_extractor,
    load_weights,
    save_converted,
)
from harmbench.models.pix2pix import (
    authors_train_mode,
    resize_cv2,
    resize_pillow,
    tensor2im,
)

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("torch_one_thread")]


def _official(*parts: str):
    return shared_path("official", *parts)


def _load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _norm(u8: torch.Tensor) -> torch.Tensor:
    """pix2pix normalisation of uint8 (N,H,W,3) -> (N,3,H,W) on [-1, 1] (the fixtures' ``derive`` formula)."""
    return ((u8.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5).contiguous()


def _net_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    inp = _load(_official("dovenet_G", "inputs.pt"))
    comp_u8, mask_u8 = inp["comp_uint8"], inp["mask_uint8"]
    return comp_u8, _norm(comp_u8), mask_u8.float()[:, None] / 255


def _png_rgb(path) -> torch.Tensor:
    """(1, 3, H, W) on 0–1 from a fixture PNG (read as the scripts do: uint8 RGB)."""
    return torch.from_numpy(read_rgb(path).copy()).permute(2, 0, 1)[None].float() / 255


def _png_mask(path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy((np.array(Image.open(path)) >= 128).astype(np.float32))[None, None]


def _raw_mask(path) -> np.ndarray:
    """A mask file's pixels, uint8 0–255 (H, W)."""
    from PIL import Image

    return np.array(Image.open(path).convert("L"))


def _u8(y: torch.Tensor) -> np.ndarray:
    """An official-protocol output (uint8/255) back to uint8 HWC."""
    return (y[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _assert_u8_close(got: np.ndarray, ref: np.ndarray, *, exact: bool = False) -> None:
    d = np.abs(got.astype(int) - ref.astype(int))
    assert got.shape == ref.shape
    if exact:
        assert d.max() == 0
    assert d.max() <= 1, f"max difference {d.max()}"
    assert (d > 0).mean() <= 0.005, f"{(d > 0).sum()} values differ"


class _KeepMasks:
    """Replace the generator's dropouts by the fixture's keep-masks (call k: ``x · keep_k · 2``), deepest first."""

    def __init__(self, model: torch.nn.Module, masks: list[torch.Tensor]):
        self.masks, self.calls, self.handles = masks, 0, []
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                self.handles.append(m.register_forward_hook(self._hook))

    def _hook(self, _mod, _inp, out):
        keep = self.masks[self.calls]
        self.calls += 1
        return out * (keep.float() * 2)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# --------------------------------------------------------------------------- network level


def test_dovenet_g_network_outputs():
    model = load_weights("dovenet", _official("dovenet_G", "state_dict.pt"))
    assert model.config.ngf == 8 and model.config.num_downs == 8 and model.config.norm == "batch"
    assert model.discriminator is None and not model.training
    _, x, m = _net_inputs()
    ref = _load(_official("dovenet_G", "outputs.pt"))
    with torch.no_grad():
        assert (model(x, m) - ref["eval"]).abs().max() <= 1e-6
        per_image = []
        for i in range(2):  # the authors' test.py: batch of one, train-mode BatchNorm, here without dropout
            with authors_train_mode(model.generator, dropout=False, seed=0):
                per_image.append(model(x[i : i + 1], m[i : i + 1]))
    assert (torch.cat(per_image) - ref["train_bn_per_sample_nodropout"]).abs().max() <= 1e-6
    # the context restores eval mode and leaves the running statistics alone
    assert not model.training
    state = _load(_official("dovenet_G", "state_dict.pt"))
    assert torch.equal(
        model.state_dict()["generator.model.model.1.model.2.running_var"], state["model.model.1.model.2.running_var"]
    )


def test_dovenet_official_protocol_on_256_inputs_matches_train_mode_outputs():
    model = load_weights("dovenet", _official("dovenet_G", "state_dict.pt"), protocol="official", dropout=False)
    comp_u8, _, m = _net_inputs()
    y = model.harmonize(comp_u8.permute(0, 3, 1, 2).float() / 255, m)  # 256×256 in: the resize is the identity
    ref = tensor2im(_load(_official("dovenet_G", "outputs.pt"))["train_bn_per_sample_nodropout"])
    got = (y * 255).round().to(torch.uint8)
    assert got.shape == ref.shape == (2, 3, 256, 256)
    d = (got.int() - ref.int()).abs()
    assert d.max() <= 1 and (d > 0).float().mean() <= 0.005


def test_bargainnet_e_codes_and_harmony_score():
    ext = load_extractor(str(_official("bargainnet_E", "state_dict.pt")))
    assert ext.authors and "authors' BargainNet E" in ext.label and ext.size == 256
    comp_u8, x, m = _net_inputs()
    ref = _load(_official("bargainnet_E", "outputs.pt"))
    with torch.no_grad():
        zb, zf = ext.encoder(x, 1 - m), ext.encoder(x, m)
    assert (zb - ref["code_bg_eval"]).abs().max() <= 1e-5
    assert (zf - ref["code_fg_eval"]).abs().max() <= 1e-5
    scores = harmony_scores(ext, comp_u8.permute(0, 3, 1, 2).float() / 255, m)
    assert torch.allclose(scores.float(), ref["harmony_score_eval"], atol=1e-5)
    # train-mode (per image) codes, as the authors' test.py computes them
    model = load_weights(
        "bargainnet", [_official("bargainnet_E", "state_dict.pt"), _official("bargainnet_G", "state_dict.pt")]
    )
    codes = []
    with torch.no_grad():
        for i in range(2):
            with authors_train_mode(model, dropout=False, seed=0):
                codes.append(model.encode(x[i : i + 1], 1 - m[i : i + 1]))
    assert (torch.cat(codes) - ref["code_bg_train_bn_per_sample_nodropout"]).abs().max() <= 1e-5


def test_bargainnet_g_network_outputs_any_file_order():
    model = load_weights(
        "bargainnet", f"{_official('bargainnet_G', 'state_dict.pt')},{_official('bargainnet_E', 'state_dict.pt')}"
    )
    assert model.config.ngf == 8 and model.config.code_dim == 16 and model.config.encoder_width == 64
    assert float(model.generator.code_scale.detach()) == pytest.approx(0.37)
    _, x, m = _net_inputs()
    zb = _load(_official("bargainnet_E", "outputs.pt"))["code_bg_eval"]
    ref = _load(_official("bargainnet_G", "outputs.pt"))
    with torch.no_grad():
        assert (model.generate(x, m, zb) - ref["eval"]).abs().max() <= 1e-6
        per_image = []
        for i in range(2):  # E then G, both in train mode (the authors' protocol minus dropout)
            with authors_train_mode(model, dropout=False, seed=0):
                z = model.encode(x[i : i + 1], 1 - m[i : i + 1])
                per_image.append(model.generate(x[i : i + 1], m[i : i + 1], z))
    assert (torch.cat(per_image) - ref["e2e_train_bn_per_sample_nodropout"]).abs().max() <= 1e-5


# --------------------------------------------------------------------------- end to end: DoveNet


def test_dovenet_end_to_end_through_the_cli(tmp_path):
    d = _official("e2e_dovenet")
    weights = str(_official("dovenet_G", "state_dict.pt"))
    ref = _load(d / "outputs.pt")
    inputs = _load(d / "inputs.pt")
    comp_png, mask_png = str(d / "comp.png"), str(d / "mask.png")
    # the authors' resize (Pillow bilinear, mask NEAREST), bit for bit
    comp256, mask256 = resize_pillow(read_rgb(comp_png), _raw_mask(mask_png))
    assert np.array_equal(comp256, inputs["comp_256_uint8"].numpy())
    assert np.array_equal(mask256, inputs["mask_256"].numpy())
    out = tmp_path / "out.png"
    base = [
        "harmonize",
        "--method",
        "dovenet",
        "--weights",
        weights,
        "--protocol",
        "official",
        "--device",
        "cpu",
        comp_png,
        mask_png,
        "-o",
        str(out),
    ]
    assert main([*base[:7], "--seed", "0", *base[7:]]) == 0
    seeded = read_rgb(out)
    assert seeded.shape == (256, 256, 3)  # the authors' output size, raw (no re-compositing)
    _assert_u8_close(seeded, ref["output_seed0_uint8"].numpy())
    assert main([*base, "--option", "dropout=false"]) == 0
    _assert_u8_close(read_rgb(out), ref["output_nodropout_uint8"].numpy())
    assert not np.array_equal(read_rgb(out), seeded)


def test_dovenet_seeded_dropout_matches_the_stored_keep_masks():
    d = _official("e2e_dovenet")
    ref = _load(d / "outputs.pt")
    comp, mask = _png_rgb(d / "comp.png"), _png_mask(d / "mask.png")
    seeded = load_weights("dovenet", _official("dovenet_G", "state_dict.pt"), protocol="official", seed=0)
    y_seed = _u8(seeded.harmonize(comp, mask))
    # the same run with the fixture's keep-masks applied at each dropout call (device- and RNG-independent)
    masked = load_weights(
        "dovenet", _official("dovenet_G", "state_dict.pt"), protocol="official", dropout=True, seed=123
    )
    hooks = _KeepMasks(masked.generator, [ref[f"dropout_keep_c{k}"] for k in range(3)])
    for mod in masked.generator.modules():  # its own draws off: the hooks supply the noise
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    try:
        y_keep = _u8(masked.harmonize(comp, mask))
    finally:
        hooks.remove()
    assert hooks.calls == 3
    assert np.array_equal(y_seed, y_keep)
    _assert_u8_close(y_keep, ref["output_seed0_uint8"].numpy())
    # another seed draws other masks
    other = load_weights("dovenet", _official("dovenet_G", "state_dict.pt"), protocol="official", seed=1)
    assert not np.array_equal(_u8(other.harmonize(comp, mask)), y_seed)


# --------------------------------------------------------------------------- end to end: BargainNet


def _bargainnet(**options):
    return load_weights(
        "bargainnet",
        [_official("bargainnet_E", "state_dict.pt"), _official("bargainnet_G", "state_dict.pt")],
        protocol="official",
        **options,
    )


def test_bargainnet_end_to_end_with_the_real_image():
    d = _official("e2e_bargainnet")
    ref, inputs = _load(d / "outputs.pt"), _load(d / "inputs.pt")
    comp, real, mask = _png_rgb(d / "comp.png"), _png_rgb(d / "real.png"), _png_mask(d / "mask.png")
    # the authors' resize (OpenCV bilinear, no antialiasing) of the image and of the {0, 1} mask
    rgb256, mask256 = resize_cv2(read_rgb(d / "comp.png"), _raw_mask(d / "mask.png"))
    assert np.array_equal(mask256, inputs["mask_256"].numpy())
    assert torch.equal(_norm(torch.from_numpy(rgb256)[None]), inputs["comp"])
    model = _bargainnet(dropout=False)
    assert model.accepts_real
    _assert_u8_close(_u8(model.harmonize(comp, mask, real=real)), ref["harm_nodropout_uint8"].numpy())
    seeded = _bargainnet(seed=0)
    _assert_u8_close(_u8(seeded.harmonize(comp, mask, real=real)), ref["harm_seed0_uint8"].numpy())


def test_bargainnet_cli_without_real_uses_the_composite_background(tmp_path):
    d = _official("e2e_bargainnet")
    ref, inputs = _load(d / "outputs.pt"), _load(d / "inputs.pt")
    weights = f"{_official('bargainnet_E', 'state_dict.pt')},{_official('bargainnet_G', 'state_dict.pt')}"
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "harmonize",
                "--method",
                "bargainnet",
                "--weights",
                weights,
                "--protocol",
                "official",
                "--option",
                "dropout=false",
                "--device",
                "cpu",
                str(d / "comp.png"),
                str(d / "mask.png"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    got = read_rgb(out)
    assert got.shape == (256, 256, 3)
    # the fixture's composite-background variant: G (train mode) fed the stored z_b = E(comp, 1 - M)
    model = _bargainnet(dropout=False)
    m = inputs["mask_256"].float()[None, None]
    with torch.no_grad(), authors_train_mode(model, dropout=False, seed=0):
        z = model.encode(inputs["comp"], 1 - m)
        harm = model.generate(inputs["comp"], m, ref["z_b_compbg_nodropout"])
    assert (z - ref["z_b_compbg_nodropout"]).abs().max() <= 1e-5
    _assert_u8_close(got, tensor2im(harm)[0].permute(1, 2, 0).numpy())
    # and its published metric: MSE against tensor2im(real) (the authors' reference image)
    real_ref = tensor2im(inputs["real"])[0].permute(1, 2, 0).numpy().astype(np.float32)
    mse = float(np.mean((got.astype(np.float32) - real_ref) ** 2, dtype=np.float64))
    assert mse == pytest.approx(
        json.loads((d / "meta.json").read_text())["metrics"]["compbg_nodropout"]["mse"], rel=2e-3
    )
    # it is not the real-background output
    assert not np.array_equal(got, ref["harm_nodropout_uint8"].numpy())


# --------------------------------------------------------------------------- loading errors and conversion


def _copy_state(tmp_path, folder: str, edit) -> str:
    sd = _load(_official(folder, "state_dict.pt"))
    edit(sd)
    p = tmp_path / f"{folder}.pth"
    torch.save(sd, p)
    return str(p)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda sd: sd.pop("model.model.1.model.3.model.1.weight"), "missing: model.model.1.model.3.model.1.weight"),
        (lambda sd: sd.__setitem__("model.model.extra.weight", torch.zeros(3)), "unexpected: model.model.extra.weight"),
        (
            lambda sd: sd.__setitem__("model.model.1.attention.0.bias", torch.zeros(5)),
            "wrong shape: model.model.1.attention.0.bias (5,)",
        ),
    ],
)
def test_dovenet_checkpoint_errors_name_the_tensor(tmp_path, edit, needle):
    path = _copy_state(tmp_path, "dovenet_G", edit)
    with pytest.raises(ConfigError) as err:
        load_weights("dovenet", path)
    assert needle in str(err.value) and "latest_net_G.pth" in str(err.value)


def test_absent_batchnorm_counters_are_tolerated(tmp_path):
    path = _copy_state(
        tmp_path, "dovenet_G", lambda sd: [sd.pop(k) for k in list(sd) if k.endswith("num_batches_tracked")]
    )
    model = load_weights("dovenet", path)
    _, x, m = _net_inputs()
    with torch.no_grad():
        assert (model(x, m) - _load(_official("dovenet_G", "outputs.pt"))["eval"]).abs().max() <= 1e-6


def test_bargainnet_file_errors(tmp_path):
    e, g = str(_official("bargainnet_E", "state_dict.pt")), str(_official("bargainnet_G", "state_dict.pt"))
    with pytest.raises(ConfigError, match="missing E"):
        load_weights("bargainnet", g)
    with pytest.raises(ConfigError, match="both the 'G' file"):
        load_weights("bargainnet", [g, g])
    bad_e = _copy_state(tmp_path, "bargainnet_E", lambda sd: sd.pop("norm3f.running_var"))
    with pytest.raises(ConfigError, match=r"latest_net_E\.pth.*missing: norm3f\.running_var"):
        load_weights("bargainnet", [bad_e, g])
    bad_g = _copy_state(tmp_path, "bargainnet_G", lambda sd: sd.__setitem__("weight", torch.ones(2)))
    with pytest.raises(ConfigError, match=r"wrong shape: weight \(2,\)"):
        load_weights("bargainnet", [e, bad_g])
    with pytest.raises(ConfigError, match="not a dovenet checkpoint"):  # BargainNet's G is not DoveNet's
        load_weights("dovenet", g)
    with pytest.raises(ConfigError, match="ngf"):  # an option that contradicts the file
        load_weights("bargainnet", [e, g], ngf=64)


def test_converted_checkpoint_round_trips(tmp_path):
    model = load_weights("dovenet", _official("dovenet_G", "state_dict.pt"), protocol="official", seed=7, dropout=False)
    sidecar = save_converted(model, tmp_path / "dovenet-authors", source={"file": "latest_net_G.pth"})
    meta = json.loads(sidecar.read_text())
    assert meta["model_config"]["protocol"] == "official" and meta["model_config"]["seed"] == 7
    back = load_weights("dovenet", tmp_path / "dovenet-authors.safetensors")
    assert back.config == model.config
    own, other = model.state_dict(), back.state_dict()
    assert own.keys() == other.keys() and all(torch.equal(own[k], other[k]) for k in own)
    comp, mask = _png_rgb(_official("e2e_dovenet", "comp.png")), _png_mask(_official("e2e_dovenet", "mask.png"))
    assert torch.equal(model.harmonize(comp, mask), back.harmonize(comp, mask))
    # BargainNet's two files become one checkpoint
    bn = _bargainnet(seed=2)
    save_converted(bn, tmp_path / "bargainnet-authors")
    bn_back = load_weights("bargainnet", str(tmp_path / "bargainnet-authors.json"))
    assert bn_back.config == bn.config
    assert all(torch.equal(v, bn_back.state_dict()[k]) for k, v in bn.state_dict().items())
    # run-time options may change on load; the weights' own options may not
    assert (
        load_weights("dovenet", tmp_path / "dovenet-authors.safetensors", protocol="harmbench").protocol == "harmbench"
    )


def test_protocol_and_seed_options():
    assert get_model("dovenet", preset="small", seed=3).config.seed == 3
    with pytest.raises(ConfigError, match="dovenet.protocol"):
        get_model("dovenet", preset="small", protocol="authors")
    with pytest.raises(ConfigError, match="num_downs 8"):
        get_model("bargainnet", preset="small", protocol="official")


# --------------------------------------------------------------------------- no-reference harmony score


def test_score_no_reference_cli(tmp_path, capsys):
    comp_u8, _, m = _net_inputs()
    folder = tmp_path / "composites"
    folder.mkdir()
    for i in range(2):
        (folder / f"img{i}.png").write_bytes(encode_image(comp_u8[i].numpy(), "png"))
        (folder / f"img{i}_mask.png").write_bytes(encode_image((m[i, 0].numpy() * 255).astype(np.uint8), "png"))
    out_json = tmp_path / "scores.json"
    assert (
        main(
            [
                "score",
                "--no-reference",
                str(folder),
                "--weights",
                str(_official("bargainnet_E", "state_dict.pt")),
                "--json",
                str(out_json),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "authors' BargainNet E" in printed and "img0.png" in printed
    doc = json.loads(out_json.read_text())
    ref = _load(_official("bargainnet_E", "outputs.pt"))["harmony_score_eval"]
    assert doc["extractor"]["authors"] is True
    got = [r["score"] for r in doc["images"]]
    assert np.allclose(got, ref.numpy(), atol=1e-5)


# --------------------------------------------------------------------------- evaluation and leaderboards


def _bargainnet_triplet(folder) -> None:
    """The BargainNet end-to-end triplet at the authors' 256×256 (their OpenCV resize), as a flat triplet folder."""
    inputs = _load(_official("e2e_bargainnet", "inputs.pt"))

    def u8(x: torch.Tensor) -> np.ndarray:
        return ((x[0] * 0.5 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()

    folder.mkdir()
    (folder / "1.png").write_bytes(encode_image(u8(inputs["comp"]), "png"))
    (folder / "1-gt.png").write_bytes(encode_image(u8(inputs["real"]), "png"))
    (folder / "1-mask.png").write_bytes(encode_image(inputs["mask_256"].numpy().astype(np.uint8) * 255, "png"))


def test_eval_passes_the_real_image_and_records_the_protocol(tmp_path):
    from harmbench.eval.loop import evaluate

    _bargainnet_triplet(tmp_path / "tri")
    e, g = str(_official("bargainnet_E", "state_dict.pt")), str(_official("bargainnet_G", "state_dict.pt"))
    res = evaluate(
        "bargainnet",
        tmp_path / "tri",
        tmp_path / "run",
        split=None,
        device="cpu",
        previews=1,
        progress=False,
        weights=f"{g},{e}",
        protocol="official",
        model_options={"dropout": False},
        harmony=e,
    )
    assert res.run["protocol"] == "official" and "authors' BargainNet E" in res.run["harmony"]
    out = read_rgb(res.run_dir / "previews" / "1.output.png")
    # z_b from the real image, as the authors' test.py: their real-background output
    _assert_u8_close(out, _load(_official("e2e_bargainnet", "outputs.pt"))["harm_nodropout_uint8"].numpy())
    real = read_rgb(tmp_path / "tri" / "1-gt.png").astype(np.float64)
    row = res.samples.iloc[0]
    assert row["mse"] == pytest.approx(np.mean((out - real) ** 2), rel=1e-9)
    # the harmony column: exp(-0.04212·|z_b - z_f|) of the output with the authors' E (eval mode)
    ext = load_extractor(e)
    x = _norm(torch.from_numpy(out.copy())[None])
    m = torch.from_numpy(read_rgb(tmp_path / "tri" / "1-mask.png")[..., 0] > 127).float()[None, None]
    with torch.no_grad():
        dist = (ext.encoder(x, 1 - m) - ext.encoder(x, m)).flatten().norm()
    assert row["harmony"] == pytest.approx(float(torch.exp(-0.04212 * dist)), abs=1e-5)


def test_eval_official_protocol_needs_the_authors_size(tmp_path):
    from harmbench.eval.loop import evaluate

    d = _official("e2e_dovenet")
    (tmp_path / "tri").mkdir()
    for src, dst in (("comp.png", "1.png"), ("real.png", "1-gt.png"), ("mask.png", "1-mask.png")):
        (tmp_path / "tri" / dst).write_bytes((d / src).read_bytes())
    with pytest.raises(UserError, match="--resize fixed256"):
        evaluate(
            "dovenet",
            tmp_path / "tri",
            tmp_path / "run",
            split=None,
            resize="none",
            device="cpu",
            progress=False,
            weights=str(_official("dovenet_G", "state_dict.pt")),
            protocol="official",
        )


def test_leaderboard_model_entries_take_weights_protocol_and_seed(tmp_path):
    from harmbench.leaderboard import load_leaderboard

    e, g = _official("bargainnet_E", "state_dict.pt"), _official("bargainnet_G", "state_dict.pt")
    models = f"""
[[models]]
name = "bargainnet"
label = "BargainNet (authors)"
weights = ["{e}", "{g}"]
protocol = "official"
seed = 4
options = {{ dropout = false }}

[[models]]
name = "dovenet"
weights = "{tmp_path / "absent.pth"}"
optional = true
"""
    (tmp_path / "leaderboard.toml").write_text(
        f'[leaderboard]\n[[datasets]]\nname = "d"\npath = "{tmp_path}"\n{models}'
    )
    lb = load_leaderboard(tmp_path / "leaderboard.toml")
    authors, absent = lb.models
    assert authors.weights == (e, g) and authors.protocol == "official" and authors.seed == 4 and authors.available()
    assert authors.weights_spec == f"{e},{g}"
    assert not absent.available() and "weights not found" in absent.missing_reason()
    for bad, field in (('protocol = "authors"', "protocol"), ("seed = 1.5", "seed"), ("weights = [1]", "weights")):
        (tmp_path / "leaderboard.toml").write_text(
            f'[leaderboard]\n[[datasets]]\nname = "d"\npath = "{tmp_path}"\n[[models]]\nname = "dovenet"\n{bad}\n'
        )
        with pytest.raises(ConfigError, match=rf"models\[0\]\.{field}"):
            load_leaderboard(tmp_path / "leaderboard.toml")


def test_leaderboard_harmony_option(tmp_path):
    from harmbench.leaderboard import load_leaderboard

    def board(value: str):
        (tmp_path / "leaderboard.toml").write_text(
            f'[leaderboard]\nharmony = "{value}"\n[[datasets]]\nname = "d"\npath = "{tmp_path}"\n[[models]]\nname = "composite"\n'
        )
        return load_leaderboard(tmp_path / "leaderboard.toml")

    assert board("bargainnet-cpu").harmony == "bargainnet-cpu"
    e = _official("bargainnet_E", "state_dict.pt")
    assert board(str(e)).harmony == str(e)


def test_harmony_score_with_harmbench_extractor_and_folder_layouts(tmp_path, capsys):
    """Without the authors' E: harmbench's committed BargainNet, labelled as such (no ../shared needed)."""
    from harmbench.models.harmony import composite_mask_pairs

    rng = np.random.default_rng(0)
    (tmp_path / "composites").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        img = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
        mask = np.zeros((72, 80), np.uint8)
        mask[20:50, 25:60] = 255
        img[mask > 0] = np.clip(img[mask > 0].astype(int) + 70, 0, 255)
        (tmp_path / "composites" / f"{name}.png").write_bytes(encode_image(img, "png"))
        (tmp_path / "masks" / f"{name}.png").write_bytes(encode_image(mask, "png"))
    pairs = composite_mask_pairs(tmp_path)
    assert [(c.name, m.parent.name) for c, m in pairs] == [("a.png", "masks"), ("b.png", "masks")]
    out_json = tmp_path / "h.json"
    assert main(["score", "--no-reference", str(tmp_path), "--json", str(out_json), "--device", "cpu"]) == 0
    assert "not the authors' weights" in capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    assert doc["extractor"]["authors"] is False
    # the same scores as the model's own harmony_score (eval mode, the image's own size)
    model = get_model("bargainnet-cpu")
    for row, (comp, mask) in zip(doc["images"], pairs):
        x = torch.from_numpy(read_rgb(comp).copy()).permute(2, 0, 1)[None].float() / 255
        m = torch.from_numpy((read_rgb(mask)[..., 0] >= 128).astype(np.float32))[None, None]
        assert row["score"] == pytest.approx(float(model.harmony_score(x, m)[0]), abs=1e-6)
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(UserError, match="b.png: no mask found"):
        composite_mask_pairs(tmp_path)


def test_protocol_option_only_for_models_that_have_it(tmp_path, capsys):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = 255
    (tmp_path / "c.png").write_bytes(encode_image(img, "png"))
    (tmp_path / "m.png").write_bytes(encode_image(mask, "png"))
    args = [str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png"), "--device", "cpu"]
    assert main(["harmonize", "--method", "reinhard", "--protocol", "official", *args]) == 2
    assert "has no protocol option" in capsys.readouterr().err
    assert main(["harmonize", "--method", "reinhard", "--protocol", "harmbench", *args]) == 0
    # a committed small model has the option but cannot run the authors' 256-pixel protocol
    assert main(["harmonize", "--method", "dovenet-cpu", "--protocol", "official", *args]) == 2
    assert "needs num_downs 8" in capsys.readouterr().err


def test_predict_uint8_reads_masks_as_the_authors_scripts():
    """``predict_uint8`` takes the mask file's pixels: BargainNet keeps only 255 as foreground (``floor(v/255)``)."""
    d = _official("e2e_bargainnet")
    model = _bargainnet(dropout=False)
    rgb, raw = read_rgb(d / "comp.png"), _raw_mask(d / "mask.png")
    real = read_rgb(d / "real.png")
    ref = _load(d / "outputs.pt")["harm_nodropout_uint8"].numpy()
    _assert_u8_close(model.predict_uint8(rgb, raw, real), ref)
    soft = np.where(raw == 255, 254, raw).astype(np.uint8)  # no pixel at 255: an empty mask for their reader
    assert resize_cv2(rgb, soft)[1].max() == 0
    assert not np.array_equal(model.predict_uint8(rgb, soft, real), ref)


def test_card_names_stand_for_the_cached_authors_files(tmp_path, monkeypatch):
    """``bargainnet-official`` / ``dovenet-official``: the cards' files imported into a weights cache, then named."""
    import shutil

    from harmbench.models.weights_cache import import_files

    monkeypatch.setenv("HARMBENCH_WEIGHTS", str(tmp_path / "cache"))
    files = {}
    for folder, name in (
        ("bargainnet_E", "latest_net_E.pth"),
        ("bargainnet_G", "latest_net_G.pth"),
        ("dovenet_G", "G"),
    ):
        files[folder] = tmp_path / folder / ("latest_net_G.pth" if name == "G" else name)
        files[folder].parent.mkdir()
        shutil.copyfile(_official(folder, "state_dict.pt"), files[folder])
    import_files("bargainnet-official", [files["bargainnet_G"], files["bargainnet_E"]])
    import_files("dovenet-official", [files["dovenet_G"]])
    model = load_weights("bargainnet", "bargainnet-official", protocol="official", dropout=False)
    d = _official("e2e_bargainnet")
    _assert_u8_close(
        model.predict_uint8(read_rgb(d / "comp.png"), _raw_mask(d / "mask.png"), read_rgb(d / "real.png")),
        _load(d / "outputs.pt")["harm_nodropout_uint8"].numpy(),
    )
    ext = load_extractor("bargainnet-official")
    assert ext.authors and "latest_net_E.pth" in ext.label
    with pytest.raises(ConfigError, match="holds weights for model 'dovenet'"):
        load_weights("bargainnet", "dovenet-official")
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "harmonize",
                "--method",
                "dovenet",
                "--weights",
                "dovenet-official",
                "--protocol",
                "official",
                "--option",
                "dropout=false",
                "--device",
                "cpu",
                str(_official("e2e_dovenet", "comp.png")),
                str(_official("e2e_dovenet", "mask.png")),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    _assert_u8_close(read_rgb(out), _load(_official("e2e_dovenet", "outputs.pt"))["output_nodropout_uint8"].numpy())
