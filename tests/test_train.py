"""Training: step functions, determinism, resume, checkpoints, bad inputs, committed weights."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from harmbench.errors import ConfigError, UserError
from harmbench.train import checkpoint as ckpt_mod
from harmbench.train import steps as steps_mod
from harmbench.train.config import TrainConfig, load_train_config
from harmbench.train.steps import (
    BadBatchError,
    NonFiniteLossError,
    StepContext,
    check_batch,
    get_step,
    make_optimizers,
)
from harmbench.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

TINY_MODELS = {
    "dovenet": {"preset": "small", "options": {"ngf": 4, "num_downs": 5, "ndf": 4, "d_layers": 3}},
    "bargainnet": {"preset": "small", "options": {"ngf": 4, "num_downs": 5, "encoder_width": 4, "code_dim": 4}},
    "hen-ctn": {
        "preset": "small",
        "options": {"width": 4, "code_dim": 4, "hen_width": 8, "hist_bins": 8, "pad_margin": 0},
    },
    "pctnet-cnn": {"preset": "small", "options": {"ch": 4, "lowres": 32}},
}


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------------- tiny shards


def _photo(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    grad = rng.uniform(-0.6, 0.6, (2, 3)).astype(np.float32)
    img = base + yy[..., None] * grad[0] + xx[..., None] * grad[1]
    mask = np.zeros((h, w), bool)
    y0, x0 = rng.integers(4, h // 2), rng.integers(4, w // 2)
    mask[y0 : y0 + h // 3, x0 : x0 + w // 3] = True
    img[mask] = rng.uniform(30, 220, 3)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_shards(
    root: Path,
    *,
    n_train: int = 8,
    n_test: int = 4,
    size: tuple[int, int] = (72, 80),
    drop_real: bool = False,
    soft_mask: bool = False,
    seed: int = 0,
) -> Path:
    """A tiny built dataset (index.json + one shard per split) written with the build writer."""
    from harmbench.generate.index import dataset_index
    from harmbench.generate.writer import (
        DeterministicTarWriter,
        OutputOptions,
        encode_sample,
    )
    from harmbench.imaging import encode_image
    from harmbench.recipes.base import SampleArrays

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stats = []
    for split, n in (("train", n_train), ("test", n_test)):
        name = f"tiny-{split}-000000.tar"
        with open(root / name, "wb") as f:
            w = DeterministicTarWriter(f)
            for i in range(n):
                real, mask = _photo(rng, *size)
                comp = real.copy()
                gain = rng.uniform(0.5, 1.5, 3)
                comp[mask] = np.clip(real[mask] * gain, 0, 255).astype(np.uint8)
                recipe = ("hcoco", "hue", "identical")[i % 3]
                if recipe == "identical":
                    comp = real.copy()
                key = f"s{split}{i:03d}"
                fields = encode_sample(
                    SampleArrays(key, comp, mask, real, {"recipe": recipe}), split, recipe, OutputOptions("png")
                )
                if drop_real:
                    fields.pop("real.png")
                if soft_mask:
                    m = mask.astype(np.uint8) * 255
                    m[0, :4] = 77
                    fields["mask.png"] = encode_image(m, "png")
                w.write(key, fields)
            w.close()
        stats.append(
            {
                "shard": name,
                "split": split,
                "index": 0,
                "count": n,
                "md5sum": hashlib.md5((root / name).read_bytes()).hexdigest(),
                "filesize": (root / name).stat().st_size,
            }
        )
    (root / "index.json").write_text(json.dumps(dataset_index("tiny", stats)))
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards") / "tiny")


def tiny_config(name: str, **train) -> TrainConfig:
    m = TINY_MODELS[name]
    return TrainConfig.from_dict(
        {
            "model": {"name": name, "preset": m["preset"], "options": m["options"]},
            "data": {
                "image_size": 64,
                "batch_size": 2,
                "workers": 0,
                "shuffle": 4,
                "val_samples": 2,
                "val_batch_size": 2,
            },
            "loss": {"symmetric": False} if name == "hen-ctn" else {},
            "train": {
                "steps": 4,
                "checkpoint_every": 2,
                "validate_every": 100,
                "log_every": 1,
                "final_validation": "none",
                **train,
            },
        }
    )


def fixed_batch(n: int = 2, size: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.2 + torch.rand(n, 3, size, size, generator=g) * 0.1
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 16:40, 20:44] = 1
    comp = real * (1 - mask) + (real * torch.tensor([1.4, 0.7, 0.9]).view(1, 3, 1, 1)).clamp(0, 1) * mask
    return {"composite": comp, "real": real, "mask": mask, "key": [f"k{i}" for i in range(n)]}


def _model(name: str, seed: int = 0):
    from harmbench.models import get_model

    return get_model(name, seed=seed, preset=TINY_MODELS[name]["preset"], **TINY_MODELS[name]["options"])


# --------------------------------------------------------------------------- step functions


@pytest.mark.parametrize("name", ["dovenet", "bargainnet", "hen-ctn", "pctnet-cnn"])
def test_one_step_lowers_the_objective(name):
    spec = get_step(name)
    model = _model(name)
    model.train()
    opts = make_optimizers(model, spec, lr=1e-3)
    loss_cfg = spec.loss_config({"hue_prob": 0.0, "identity_prob": 0.0} if name == "hen-ctn" else {})
    ctx = StepContext(loss_cfg, generator=torch.Generator().manual_seed(0))
    batch = fixed_batch()

    def objective() -> float:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            with torch.no_grad():
                return float(spec.objective(model, batch, ctx))

    before = objective()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        terms = spec.step(model, batch, opts, ctx)
    after = objective()
    assert math.isfinite(terms["loss"])
    assert after < before, (name, before, after)


def test_dovenet_step_updates_g_and_d_separately():
    spec = get_step("dovenet")
    model = _model("dovenet")
    opts = make_optimizers(model, spec)
    assert set(opts) == {"g", "d"}
    assert opts["g"].param_groups[0]["lr"] == 2e-4 and opts["g"].param_groups[0]["betas"] == (0.5, 0.999)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    terms = spec.step(model, fixed_batch(), opts, StepContext(spec.loss_config()))
    assert {"d_global", "d_verify", "d_gp", "g_global", "g_verify", "g_l1"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_paper_optimiser_defaults():
    assert (get_step("bargainnet").lr, get_step("bargainnet").betas) == (1e-4, (0.9, 0.999))
    assert (get_step("hen-ctn").lr, get_step("hen-ctn").betas) == (5e-5, (0.5, 0.999))
    assert get_step("dovenet").loss_config().l1_weight == 100.0
    assert get_step("hen-ctn").loss_config().hist_weight == 1.5
    # PCT-Net's released Adam (lr 1e-3 / 1e-4 at batch 16) and loss weights
    assert (get_step("pctnet-cnn").lr, get_step("pctnet-cnn").betas) == (1e-3, (0.9, 0.999))
    assert get_step("pctnet-vit").lr == 1e-4
    pct = get_step("pctnet-cnn").loss_config()
    assert (pct.pixel_weight, pct.min_area, pct.smooth_weight, pct.identity_prob) == (1.0, 1000.0, 0.1, 0.0)


def test_hue_augmentation_keeps_lightness_and_changes_colour():
    from harmbench.models.lab import rgb_to_nlab

    batch = fixed_batch()
    aug = steps_mod.hue_augment_nlab(batch["real"], torch.tensor([0.5, 0.25]), torch.tensor([1.0, 1.0]))
    ref = rgb_to_nlab(batch["real"])
    assert torch.allclose(aug[:, 0], ref[:, 0], atol=1e-5)
    assert (aug[:, 1:] - ref[:, 1:]).abs().mean() > 0.05
    hsv = steps_mod.rgb_to_hsv(batch["real"])
    assert torch.allclose(steps_mod.hsv_to_rgb(hsv), batch["real"], atol=1e-5)


# --------------------------------------------------------------------------- trainer: determinism and resume


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["bargainnet", "hen-ctn", "dovenet", "pctnet-cnn"])
def test_resume_equals_straight_training(name, shards, tmp_path):
    cfg = tiny_config(name)
    straight = Trainer(cfg, shards, tmp_path / "a", device="cpu", progress=False).run()
    Trainer(cfg.replace(**{"train.steps": 2}), shards, tmp_path / "b", device="cpu", progress=False).run()
    resumed = Trainer(cfg, shards, tmp_path / "b", device="cpu", resume=True, progress=False).run()
    ws = _weights(straight.checkpoint.with_name("step-0000004.safetensors"))
    wr = _weights(resumed.checkpoint.with_name("step-0000004.safetensors"))
    assert _same(ws, wr)
    st_a = torch.load(straight.checkpoint.with_name("step-0000004.state.pt"), weights_only=True)
    st_b = torch.load(resumed.checkpoint.with_name("step-0000004.state.pt"), weights_only=True)
    assert torch.equal(st_a["rng"]["torch"], st_b["rng"]["torch"])


def test_same_seed_same_weights_other_seed_differs(shards, tmp_path):
    cfg = tiny_config("bargainnet", steps=2)
    a = Trainer(cfg, shards, tmp_path / "a", device="cpu", progress=False).run()
    b = Trainer(cfg, shards, tmp_path / "b", device="cpu", progress=False).run()
    c = Trainer(cfg.replace(**{"train.seed": 1}), shards, tmp_path / "c", device="cpu", progress=False).run()
    wa, wb, wc = (_weights(r.checkpoint.with_name("step-0000002.safetensors")) for r in (a, b, c))
    assert _same(wa, wb)
    assert not _same(wa, wc)


def test_checkpoint_sidecar_and_round_trip(shards, tmp_path):
    cfg = tiny_config("hen-ctn", steps=2, final_validation="sample")
    res = Trainer(cfg, shards, tmp_path / "run", device="cpu", progress=False, command="harmbench train x").run()
    _, meta = ckpt_mod.read_sidecar(res.checkpoint)
    assert meta["dataset"]["index_sha256"] == ckpt_mod.sha256_file(shards / "index.json")
    assert meta["step"] == 2 and meta["model"] == "hen-ctn" and meta["command"] == "harmbench train x"
    assert meta["train_config"]["optim"]["lr"] is None and meta["train_config"]["loss"]["hist_weight"] == 1.5
    assert set(meta["validation"]) >= {"mse", "fmse", "psnr", "n"}
    state = torch.load(res.checkpoint.with_name(meta["state"]), weights_only=True)
    assert {"optimizers", "rng", "scaler"} <= set(state)
    model = ckpt_mod.load_checkpoint(res.checkpoint)
    assert not model.training
    saved = _weights(res.checkpoint.with_name(meta["weights"]))
    assert _same(saved, {k: v for k, v in model.state_dict().items()})
    # config mismatch names the field
    with pytest.raises(ConfigError) as info:
        ckpt_mod.load_checkpoint(res.checkpoint, expect_config={**model.config_dict(), "width": 5})
    assert info.value.field == "hen-ctn.width"
    with pytest.raises(ConfigError) as info:
        ckpt_mod.load_checkpoint(res.checkpoint, expect_model="dovenet")
    assert info.value.field == "model"


def test_resume_rejects_other_model_config_and_data(shards, tmp_path):
    cfg = tiny_config("bargainnet", steps=2)
    Trainer(cfg, shards, tmp_path / "run", device="cpu", progress=False).run()
    longer = cfg.replace(**{"train.steps": 4})
    other_model = TrainConfig.from_dict(
        {
            **longer.to_dict(),
            "model": {**longer.to_dict()["model"], "options": {**TINY_MODELS["bargainnet"]["options"], "ngf": 6}},
        }
    )
    with pytest.raises(ConfigError) as info:
        Trainer(other_model, shards, tmp_path / "run", device="cpu", resume=True, progress=False).run()
    assert info.value.field == "bargainnet.ngf"
    with pytest.raises(ConfigError) as info:
        Trainer(
            longer.replace(**{"optim.lr": 3e-4}), shards, tmp_path / "run", device="cpu", resume=True, progress=False
        ).run()
    assert info.value.field == "optim.lr"
    with pytest.raises(ConfigError) as info:
        Trainer(
            tiny_config("hen-ctn", steps=4), shards, tmp_path / "run", device="cpu", resume=True, progress=False
        ).run()
    assert info.value.field == "model.name"
    other = write_shards(tmp_path / "other", seed=5)
    with pytest.raises(ConfigError) as info:
        Trainer(longer, other, tmp_path / "run", device="cpu", resume=True, progress=False).run()
    assert info.value.field == "data.index_sha256"
    # a fresh run never overwrites existing checkpoints
    with pytest.raises(UserError, match="--resume"):
        Trainer(longer, shards, tmp_path / "run", device="cpu", progress=False).run()


# --------------------------------------------------------------------------- bad input


def test_nan_loss_names_step_and_keys_and_keeps_last_checkpoint(shards, tmp_path, monkeypatch):
    cfg = tiny_config("bargainnet", steps=6, checkpoint_every=2)
    real_loss = steps_mod.losses.bargainnet_loss
    calls = {"n": 0}

    def poisoned(out, real, **kw):
        calls["n"] += 1
        total, terms = real_loss(out, real, **kw)
        return (total * float("nan") if calls["n"] == 4 else total), terms

    monkeypatch.setattr(steps_mod.losses, "bargainnet_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(cfg, shards, run, device="cpu", progress=False).run()
    err = info.value
    assert err.step == 3 and len(err.keys) == 2 and all(k.startswith("strain") for k in err.keys)
    assert "step 3" in str(err) and err.keys[0] in str(err) and "step-0000002" in str(err)
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert files == ["last.json", "step-0000002.json", "step-0000002.safetensors", "step-0000002.state.pt"]


def test_missing_field_and_bad_mask_fail_before_training(tmp_path):
    no_real = write_shards(tmp_path / "noreal", drop_real=True)
    with pytest.raises(UserError, match="'real'"):
        Trainer(tiny_config("dovenet"), no_real, tmp_path / "r1", device="cpu", progress=False).run()
    soft = write_shards(tmp_path / "soft", soft_mask=True)
    with pytest.raises(UserError, match="mask values"):
        Trainer(tiny_config("dovenet"), soft, tmp_path / "r2", device="cpu", progress=False).run()
    assert not (tmp_path / "r1" / "checkpoints").exists() and not (tmp_path / "r2" / "checkpoints").exists()
    with pytest.raises(ConfigError) as info:
        Trainer(
            tiny_config("dovenet").replace(**{"data.validation": "val"}),
            write_shards(tmp_path / "ok"),
            tmp_path / "r3",
            device="cpu",
            progress=False,
        ).run()
    assert info.value.field == "data.validation"


def test_check_batch_rejects_bad_masks_and_ranges():
    b = fixed_batch()
    check_batch(b)
    with pytest.raises(BadBatchError, match="k1"):
        check_batch({**b, "mask": torch.cat([b["mask"][:1], b["mask"][1:] * 0.5])})
    with pytest.raises(BadBatchError, match="mask must be"):
        check_batch({**b, "mask": b["mask"][:, :, :32]})
    with pytest.raises(BadBatchError, match="composite"):
        check_batch({**b, "composite": b["composite"] * 255})


def test_config_errors_name_the_field(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nname = "dovenet"\n[train]\nsteps = 10\n[data]\nbatchsize = 2\n')
    with pytest.raises(ConfigError) as info:
        load_train_config(p)
    assert info.value.field == "data.batchsize" and str(p) in str(info.value)
    p.write_text('[model]\nname = "dovenet"\n[model.options]\nwidht = 3\n[train]\nsteps = 10\n')
    with pytest.raises(ConfigError, match="widht"):
        load_train_config(p)
    p.write_text('[model]\nname = "hen-ctn"\n[train]\nsteps = 10\n[loss]\nhist_wieght = 1\n')
    with pytest.raises(ConfigError) as info:
        load_train_config(p)
    assert info.value.field == "loss.hist_wieght"
    p.write_text('[model]\nname = "reinhard"\n[train]\nsteps = 10\n')
    with pytest.raises(ConfigError) as info:
        load_train_config(p)
    assert info.value.field == "model.name"


@pytest.mark.parametrize("path", sorted((REPO / "baselines").glob("*.toml")), ids=lambda p: p.name)
def test_committed_configs_are_valid(path):
    cfg = load_train_config(path)
    assert cfg.model.name in path.name
    if path.stem.endswith("-cpu"):
        assert cfg.data.image_size <= 128 and cfg.model.preset == "small"
    else:
        assert cfg.data.image_size == 256 and cfg.model.preset == "full"
