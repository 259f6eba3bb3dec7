"""HEN/CTN from the authors' checkpoint files, through ``harmbench.models`` loading, against ``../shared/official``.

The CTN fixture weights are not stored: they are regenerated with ``official/fixture_weights.py`` as the
fixture README describes and saved as an authors'-style ``latest_net_G_A.pth``. Tests that run the
full-width CTN on whole images take tens of seconds on a shared 2-core machine and are marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from harmbench.cli import main
from harmbench.errors import ConfigError
from harmbench.models import get_model
from harmbench.models.cards import get_card
from harmbench.models.hen_ctn_protocol import histogram_official, nlab_official
from harmbench.models.official import load_weights
from harmbench.transfer import transfer

pytestmark = pytest.mark.shared


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _png(path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def _within_one_level(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 0.005  # the fixture README: at most ~0.5 % of values at a rounding boundary


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """``(C path, G path)``: the HEN fixture state dict and the regenerated CTN, authors' names."""
    root = shared_path("official")
    spec = importlib.util.spec_from_file_location("fixture_weights", root / "fixture_weights.py")
    fw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fw)
    meta = json.loads((root / "CTN" / "meta.json").read_text())
    sd = {k: torch.from_numpy(v) for k, v in fw.regenerate_plain("CTN", meta["keys_shapes"]).items()}
    g = tmp_path_factory.mktemp("hen_ctn_official") / "latest_net_G_A.pth"
    torch.save(sd, g)
    return root / "HEN" / "state_dict.pt", g


@pytest.fixture(scope="module")
def official_model(official_files):
    c, g = official_files
    return load_weights("hen-ctn", [g, c])  # the CTN file first: roles come from the tensors, not the order


# --------------------------------------------------------------------------- loading


def test_authors_files_load_in_any_order_with_widths_from_shapes(official_files, official_model):
    c, g = official_files
    cfg = official_model.config
    assert (cfg.width, cfg.hen_width, cfg.code_dim, cfg.hist_bins, cfg.l_bins) == (64, 128, 64, 64, 8)
    assert (cfg.dropout, cfg.pad_margin, cfg.residual, cfg.protocol) == (False, 30, False, "harmbench")
    hen, ctn = _load(c), _load(g)
    own = official_model.state_dict()
    # the key map of official_models.md §6.2, spelled out on a few tensors
    assert torch.equal(own["hen.features.0.weight"], hen["model.0.weight"])
    assert torch.equal(own["hen.features.14.bias"], hen["model.14.bias"])
    assert torch.equal(own["hen.fc.weight"], hen["model2.0.weight"])
    assert torch.equal(own["ctn.encoder.4.block.7.weight"], ctn["HistUnetEnc.netEnc5.block.7.weight"])
    assert torch.equal(own["ctn.decoder.0.block.2.weight"], ctn["HistUnetDec1.block.2.weight"])
    assert torch.equal(own["ctn.refine.2.block.3.weight"], ctn["ENC_Block3.conv_block.3.weight"])
    assert torch.equal(own["ctn.side_outputs.3.4.bias"], ctn["InterOut4.4.bias"])
    assert torch.equal(own["ctn.last_block.6.weight"], ctn["block_last.6.weight"])
    assert len(own) == len(hen) - 2 + len(ctn)  # everything but the unused model3 Linear
    other = load_weights("hen-ctn", f"{c},{g}", protocol="official")
    assert other.config.protocol == "official"
    assert all(torch.equal(v, own[k]) for k, v in other.state_dict().items())


def test_hen_histograms_and_codes_reproduce_the_fixture(official_model):
    root = shared_path("official")
    nlab = _load(root / "HEN" / "inputs.pt")["nlab"]
    outs = _load(root / "HEN" / "outputs.pt")
    masks = _load(root / "dovenet_G" / "inputs.pt")["mask_uint8"].numpy() >= 128
    for i in range(2):
        for name, region in (("whole", None), ("fg", masks[i]), ("bg", ~masks[i])):
            hist = histogram_official(nlab[i : i + 1], region)
            assert torch.equal(hist, outs[f"hist_{name}"][i : i + 1]), (i, name)  # exact counts
            with torch.no_grad():
                code = official_model.hen(hist)
            # bit-exact in the fixture's environment; other CPU kernels reorder the sums (observed 2e-6 on |code| ~ 10)
            assert torch.allclose(code, outs[f"code_{name}"][i : i + 1], rtol=0, atol=1e-5), (i, name)


def test_dataset_conversion_is_the_authors(official_files):
    root = shared_path("official")
    src = _png(root / "e2e_hen_ctn" / "src.png")
    assert torch.equal(nlab_official(src), _load(root / "e2e_hen_ctn" / "inputs.pt")["nlab_src_float64"])
    comp = _png(root / "e2e_dovenet" / "comp.png")
    assert torch.equal(nlab_official(comp), _load(root / "e2e_hen_ctn" / "adapt" / "inputs.pt")["nlab_comp_float64"])


@pytest.mark.slow
def test_ctn_reproduces_the_network_fixture(official_model):
    root = shared_path("official")
    nlab = _load(root / "HEN" / "inputs.pt")["nlab"]
    codes = _load(root / "HEN" / "outputs.pt")
    want = _load(root / "CTN" / "outputs.pt")
    mask = torch.from_numpy(_load(root / "dovenet_G" / "inputs.pt")["mask_uint8"].numpy() >= 128)
    pad = torch.nn.ReplicationPad2d(30)
    i = 0  # case 'global': whole-image code / background code, tiled maps padded like the image
    tile = lambda c: pad(c[i : i + 1].repeat(1, 1, 256, 256))  # noqa: E731
    with torch.no_grad():
        out = official_model.ctn(pad(nlab[i : i + 1]), tile(codes["code_whole"]), tile(codes["code_bg"]))
    assert torch.allclose(out.output, want["global_out"][i : i + 1], rtol=0, atol=1e-5)
    for k in range(3):
        assert torch.allclose(out.sides[k], want[f"global_side{k + 1}"][i : i + 1], rtol=0, atol=1e-5)
    i = 1  # case 'painted': foreground code on foreground pixels, background code elsewhere
    painted = torch.where(mask[i], codes["code_fg"][i].view(-1, 1, 1), codes["code_bg"][i].view(-1, 1, 1))[None]
    with torch.no_grad():
        out = official_model.ctn(pad(nlab[i : i + 1]), pad(painted), tile(codes["code_bg"]))
    assert torch.allclose(out.output, want["painted_out"][i : i + 1], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_cli_writes_the_authors_colour_transfer_output(official_files, tmp_path, capsys):
    root = shared_path("official", "e2e_hen_ctn")
    c, g = official_files
    out = tmp_path / "OUT.png"
    assert (
        main(
            [
                "transfer",
                str(root / "src.png"),
                str(root / "ref.png"),
                "--method",
                "hen-ctn",
                "--weights",
                f"{c},{g}",
                "--protocol",
                "official",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    _within_one_level(_png(out), _png(root / "out_03_output.png"))  # 370x270: their resize, padding and crop
    # the histograms that drove it are the authors' (the reference went through their 700 px rule: 560x800 -> 489x700)
    from harmbench.models.hen_ctn_protocol import resize_official

    outs = _load(root / "outputs.pt")
    ref = resize_official(nlab_official(_png(root / "ref.png"))).float()
    assert tuple(ref.shape[-2:]) == (489, 700)
    assert torch.equal(histogram_official(ref), outs["hist_tar"])
    assert torch.equal(histogram_official(nlab_official(_png(root / "src.png")).float()), outs["hist_inp"])


@pytest.mark.slow
def test_adaptation_variants_whole_and_painted(official_model):
    """e2e_hen_ctn/adapt: e_t = background code; e_s = whole-image code ('whole') or painted ('painted')."""
    root = shared_path("official")
    comp = _png(root / "e2e_dovenet" / "comp.png")
    mask = np.array(Image.open(root / "e2e_dovenet" / "mask.png")) >= 128
    adapt = root / "e2e_hen_ctn" / "adapt"
    kw = {"method": "hen-ctn", "model": official_model, "protocol": "official", "keep_all": True}
    whole = transfer(comp, reference_mask=~mask, **kw)
    _within_one_level(whole, _png(adapt / "adapt_whole_03_output.png"))
    painted = transfer(comp, source_mask=mask, reference_mask=~mask, **kw)
    want = _png(adapt / "adapt_painted_03_output.png")
    _within_one_level(painted, want)
    # without keep_all only the region changes: the network's output there, the composite elsewhere (same crop)
    pasted = transfer(comp, comp, source_mask=mask, reference_mask=~mask, **{**kw, "keep_all": False})
    m = mask[: want.shape[0], : want.shape[1]]
    assert np.array_equal(pasted[~m], comp[: want.shape[0], : want.shape[1]][~m])
    assert np.abs(pasted[m].astype(int) - painted[m]).max() == 0


@pytest.mark.slow
def test_harmonize_official_protocol_is_the_painted_adaptation(official_files):
    root = shared_path("official")
    c, g = official_files
    model = load_weights("hen-ctn", [c, g], protocol="official")
    comp = _png(root / "e2e_dovenet" / "comp.png")
    mask = np.array(Image.open(root / "e2e_dovenet" / "mask.png")) >= 128
    x = torch.from_numpy(comp).permute(2, 0, 1)[None].float() / 255.0
    out = model.harmonize(x, torch.from_numpy(mask)[None, None].float())
    u8 = (out[0] * 255).round().byte().permute(1, 2, 0).numpy()
    assert u8.shape == comp.shape  # the correct crop, no lost rows
    assert np.array_equal(u8[~mask], comp[~mask])
    want = _png(root / "e2e_hen_ctn" / "adapt" / "adapt_painted_03_output.png")  # its crop is our top-left part
    h, w = want.shape[:2]
    got, m = u8[:h, :w], mask[:h, :w]
    assert np.abs(got[m].astype(int) - want[m]).max() <= 1


# --------------------------------------------------------------------------- errors and narrow files


_TO_OFFICIAL = (
    (r"^hen\.features\.(\d+)\.", r"model.\1."),
    (r"^hen\.fc\.", "model2.0."),
    (r"^ctn\.init_block\.", "block_init."),
    (r"^ctn\.encoder\.(\d)\.", lambda m: f"HistUnetEnc.netEnc{int(m.group(1)) + 1}."),
    (r"^ctn\.decoder\.(\d)\.", lambda m: f"HistUnetDec{int(m.group(1)) + 1}."),
    (r"^ctn\.refine\.(\d)\.block\.", lambda m: f"ENC_Block{int(m.group(1)) + 1}.conv_block."),
    (r"^ctn\.side_outputs\.(\d)\.", lambda m: f"InterOut{int(m.group(1)) + 1}."),
    (r"^ctn\.last_block\.", "block_last."),
)


def _official_names(model) -> tuple[dict, dict]:
    """A harmbench hen-ctn's tensors under the authors' names (official_models.md §6.2, inverted): (HEN, CTN)."""
    hen, ctn = {}, {}
    for k, v in model.state_dict().items():
        name = k
        for pat, rep in _TO_OFFICIAL:
            name = re.sub(pat, rep, name)
        assert name != k, k
        (hen if k.startswith("hen.") else ctn)[name] = v.clone()
    return hen, ctn


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    """A narrow hen-ctn (the fixtures are narrower than the released models) saved as the authors' two files."""
    model = get_model(
        "hen-ctn", preset="small", width=8, code_dim=8, hen_width=16, dropout=False, pad_margin=30, seed=3
    ).eval()
    hen, ctn = _official_names(model)
    hen["model3.0.weight"] = torch.zeros(324, 8)  # saved by the authors, never used: dropped
    hen["model3.0.bias"] = torch.zeros(324)
    d = tmp_path_factory.mktemp("narrow")
    torch.save(hen, d / "latest_net_C_A.pth")
    torch.save(ctn, d / "latest_net_G_A.pth")
    return model, hen, ctn, d


def test_narrow_files_load_with_their_widths(narrow):
    model, _, _, d = narrow
    loaded = load_weights("hen-ctn", [d / "latest_net_G_A.pth", d / "latest_net_C_A.pth"])
    assert (loaded.config.width, loaded.config.code_dim, loaded.config.hen_width, loaded.config.hist_bins) == (
        8,
        8,
        16,
        32,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 80, generator=g)
    m = torch.zeros(1, 1, 64, 80)
    m[..., 10:40, 20:50] = 1
    assert torch.equal(loaded.harmonize(x, m), model.harmonize(x, m))


def _expect_error(tmp_path, hen, ctn, *needles, **options):
    torch.save(hen, tmp_path / "C.pth")
    torch.save(ctn, tmp_path / "G.pth")
    with pytest.raises(ConfigError) as info:
        load_weights("hen-ctn", f"{tmp_path / 'C.pth'},{tmp_path / 'G.pth'}", **options)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    return str(info.value)


def test_missing_unexpected_and_misshaped_tensors_are_named(narrow, tmp_path):
    _, hen, ctn, _ = narrow
    _expect_error(
        tmp_path,
        hen,
        {k: v for k, v in ctn.items() if k != "InterOut2.1.weight"},
        "CTN file",
        "missing: InterOut2.1.weight",
    )
    _expect_error(tmp_path, {**hen, "model2.1.weight": torch.zeros(1)}, ctn, "HEN file", "unexpected: model2.1.weight")
    _expect_error(tmp_path, {**hen, "model.16.weight": torch.zeros(1)}, ctn, "HEN file", "model.16.weight (1,)")
    _expect_error(tmp_path, hen, {**ctn, "block_last.6.bias": torch.zeros(5)}, "wrong shape: block_last.6.bias (5,)")
    _expect_error(
        tmp_path,
        hen,
        {**ctn, "HistUnetDec2.block.99.weight": torch.zeros(1)},
        "unexpected: HistUnetDec2.block.99.weight",
    )
    # a counter the authors' strict loader would refuse too (no BatchNorm here): not tolerated
    _expect_error(
        tmp_path,
        hen,
        {**ctn, "block_init.1.num_batches_tracked": torch.tensor(0)},
        "unexpected: block_init.1.num_batches_tracked",
    )
    # the HEN code length must fit the CTN
    bad = {**hen, "model2.0.weight": torch.zeros(8, 8)}
    bad["model.14.weight"] = torch.zeros(4, 16, 1, 1)
    _expect_error(tmp_path, bad, ctn, "code length (4, model.14.weight)")
    # a width option that contradicts the files
    _expect_error(tmp_path, hen, ctn, "hen-ctn.width", "give width = 8", width=64)


def test_model3_is_optional_and_file_roles_are_checked(narrow, tmp_path):
    _, hen, ctn, d = narrow
    plain = {k: v for k, v in hen.items() if not k.startswith("model3.")}
    torch.save(plain, tmp_path / "C.pth")
    assert load_weights("hen-ctn", [tmp_path / "C.pth", d / "latest_net_G_A.pth"]).config.code_dim == 8
    with pytest.raises(ConfigError, match="both the 'C' file"):
        load_weights("hen-ctn", [tmp_path / "C.pth", d / "latest_net_C_A.pth"])
    with pytest.raises(ConfigError, match="missing C"):
        load_weights("hen-ctn", [d / "latest_net_G_A.pth"])
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not a hen-ctn checkpoint file"):
        load_weights("hen-ctn", [tmp_path / "other.pth", d / "latest_net_G_A.pth"])


# --------------------------------------------------------------------------- card and protocol option


def test_model_card():
    card = get_card("hen-ctn-official")
    assert card.model == "hen-ctn" and card.protocol == "official"
    assert card.commit == "680165a7c7d7c231896b963917c7ed32b8f10dea"
    assert "AGPL-3.0" in card.code_license and "not stated" in card.weights_license
    assert {f.role: f.filename for f in card.files} == {"C": "latest_net_C_A.pth", "G": "latest_net_G_A.pth"}
    assert all(f.url is None and "checkpoints.zip" in f.manual for f in card.files)
    assert card.source.endswith("codeslake/Color_Transfer_Histogram_Analogy")


def test_protocol_option_is_validated_and_committed_weights_still_load():
    from harmbench.models.pretrained import load_pretrained, pretrained_path

    with pytest.raises(ConfigError, match="hen-ctn.protocol"):
        get_model("hen-ctn", preset="small", protocol="authors")
    assert load_pretrained("hen-ctn-cpu").config.protocol == "harmbench"  # sidecar written before the field
    assert load_weights("hen-ctn", pretrained_path("hen-ctn-cpu"), protocol="official").config.protocol == "official"


def test_card_files_from_the_weights_cache(narrow, tmp_path, monkeypatch, capsys):
    _, _, _, d = narrow
    monkeypatch.setenv("HARMBENCH_WEIGHTS", str(tmp_path / "cache"))
    assert main(["weights", "fetch", "hen-ctn-official"]) != 0  # no direct link: says how to get the files
    assert "checkpoints.zip" in capsys.readouterr().err
    assert (
        main(["weights", "import", "hen-ctn-official", str(d / "latest_net_G_A.pth"), str(d / "latest_net_C_A.pth")])
        == 0
    )
    model = load_weights("hen-ctn", "hen-ctn-official")
    assert (model.config.width, model.config.code_dim) == (8, 8)
