"""``harmbench eval``: runs, resume, protocol mismatches, bad model outputs, bad data and checkpoints."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harmbench.bench.eval import write_synthetic_shards
from harmbench.errors import UserError
from harmbench.eval.loop import evaluate
from harmbench.eval.outputs import ModelOutputError
from harmbench.eval.records import RunMismatchError, RunStore
from harmbench.models.resolve import ModelLoadError

FAST = {"resize": "none", "batch_size": 4, "workers": 0, "progress": False, "previews": 3}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "synth"
    write_synthetic_shards(out, 18, width=64, height=48, identity_every=6, shard_size=7)
    return out


def _drop_time(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["seconds"]).reset_index(drop=True)


class Flaky:
    """Identity model that raises KeyboardInterrupt on its ``fail_at``-th call."""

    name = "composite"

    def __init__(self, fail_at: int):
        self.calls = 0
        self.fail_at = fail_at

    def harmonize(self, composite, mask):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return composite.clone()


class Broken:
    """Returns a bad output: ``kind`` in shape / nan / range; NaN/range only for the sample at ``index``."""

    def __init__(self, kind: str, index: int = 1):
        self.name = f"broken-{kind}"
        self.kind = kind
        self.index = index

    def harmonize(self, composite, mask):
        out = composite.clone()
        if self.kind == "shape":
            return out[:, :, :-1]
        if self.kind == "nan":
            out[self.index, 0, 0, 0] = float("nan")
        if self.kind == "range":
            out[self.index] = out[self.index] * 255.0 + 1.0
        return out


def test_eval_writes_samples_and_run_json(shards, tmp_path):
    res = evaluate("composite", shards, tmp_path / "run", **FAST)
    df = res.samples
    assert len(df) == 18 and df["key"].is_monotonic_increasing
    for col in (
        "key",
        "subset",
        "recipe",
        "category",
        "fg_ratio",
        "mse",
        "psnr",
        "fmse",
        "fpsnr",
        "ssim",
        "fssim",
        "input_mse",
        "seconds",
    ):
        assert col in df.columns
    assert set(df["subset"]) == {"alpha", "beta", "identical"}
    assert (df.loc[df["identity"], "mse"] == 0).all()  # composite == real on identity pairs
    assert (df["input_mse"] == 0).all()  # the identity model returns its input
    assert (df["height"] == 48).all() and (df["width"] == 64).all()  # resize none
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    for k in ("harmbench_version", "git", "environment", "profile", "model", "data", "seed", "timing", "summary"):
        assert k in run
    assert run["environment"]["torch"] == torch.__version__ and run["environment"]["device_name"]
    assert run["profile"]["name"] == "harmbench" and run["resize"] == "none" and run["pred_8bit"] is True
    assert len(run["data"]["index_sha256"]) == 64 and run["n_samples"] == 18
    assert run["timing"]["images_per_s"] > 0
    assert run["summary"]["n"] == 15  # identity samples are not in All
    assert len(list((tmp_path / "run" / "previews").glob("*.output.png"))) == 3
    assert not (tmp_path / "run" / "parts").exists()
    # a second call reuses the finished run
    again = evaluate("composite", shards, tmp_path / "run", **FAST)
    assert again.reused and again.new_samples == 0
    pd.testing.assert_frame_equal(again.samples, df)


def test_interrupted_run_resumes_to_the_same_parquet(shards, tmp_path):
    ref = evaluate("composite", shards, tmp_path / "ref", **FAST)
    with pytest.raises(KeyboardInterrupt):
        evaluate(Flaky(fail_at=3), shards, tmp_path / "run", chunk_size=4, **FAST)
    store = RunStore(tmp_path / "run")
    assert not store.is_finished()
    done = store.done_keys()
    assert len(done) == 8  # two batches of 4 were scored before the interruption
    res = evaluate(Flaky(fail_at=0), shards, tmp_path / "run", chunk_size=4, **FAST)
    assert res.new_samples == 18 - 8
    pd.testing.assert_frame_equal(_drop_time(res.samples), _drop_time(ref.samples))
    sessions = store.sessions()
    assert [s["samples"] for s in sessions] == [8, 10]


def test_profile_mismatch_is_refused_for_partial_and_finished_runs(shards, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        evaluate(Flaky(fail_at=2), shards, tmp_path / "run", chunk_size=4, **FAST)
    with pytest.raises(RunMismatchError, match="partial run.*profile"):
        evaluate(Flaky(fail_at=0), shards, tmp_path / "run", **{**FAST, "profile": "iharm"})
    assert RunStore(tmp_path / "run").done_keys()  # the partial run is untouched
    evaluate(Flaky(fail_at=0), shards, tmp_path / "run", **FAST)
    with pytest.raises(RunMismatchError, match="finished run.*resize"):
        evaluate("composite", shards, tmp_path / "run", **{**FAST, "resize": "fixed256"})
    with pytest.raises(RunMismatchError, match="model"):
        evaluate("reinhard", shards, tmp_path / "run", **FAST)
    res = evaluate("composite", shards, tmp_path / "run", **{**FAST, "profile": "iharm", "restart": True})
    assert res.run["profile"]["name"] == "iharm" and res.run["pred_8bit"] is False


@pytest.mark.parametrize(
    "kind, pattern",
    [
        ("shape", r"model 'broken-shape' returned shape .* for samples '"),
        ("nan", r"model 'broken-nan' returned NaN or infinite values for sample '"),
        ("range", r"model 'broken-range' returned values in .* for sample '"),
    ],
)
def test_bad_model_outputs_name_model_and_key(shards, tmp_path, kind, pattern):
    keys = list(evaluate("composite", shards, tmp_path / "ok", **FAST).samples["key"])
    with pytest.raises(ModelOutputError, match=pattern) as exc:
        evaluate(Broken(kind, index=1), shards, tmp_path / "bad", **FAST)
    if kind != "shape":
        assert f"'{keys[1]}'" in str(exc.value)  # the second sample of the first batch
    else:
        assert f"'{keys[0]}'" in str(exc.value)
    assert not RunStore(tmp_path / "bad").is_finished()


def test_dataset_without_masks_is_a_clear_error(shards, tmp_path):
    src = sorted(shards.glob("*.tar"))[0]
    out = tmp_path / "nomask"
    out.mkdir()
    with tarfile.open(src) as tin, tarfile.open(out / "x-test-000000.tar", "w") as tout:
        for m in tin.getmembers():
            if not m.name.endswith(".mask.png"):
                tout.addfile(m, tin.extractfile(m))
    with tarfile.open(src) as tar:
        first = sorted(tar.getnames())[0].split(".")[0]
    with pytest.raises(UserError, match=f"no usable sample .* sample {first}: missing field mask.png"):
        evaluate("composite", out, tmp_path / "run", **FAST)


def _harmbench_checkpoint(folder: Path, name: str, model, state) -> Path:
    """A checkpoint in harmbench's format: <name>.safetensors + <name>.json sidecar."""
    from harmbench.train.checkpoint import FORMAT, save_weights, sha256_file

    w = folder / f"{name}.safetensors"
    save_weights(w, {k: v.contiguous() for k, v in state.items()})
    meta = {
        "format": FORMAT,
        "model": model.name,
        "model_config": model.config_dict(),
        "weights": w.name,
        "weights_sha256": sha256_file(w),
    }
    (folder / f"{name}.json").write_text(json.dumps(meta))
    return w


def test_checkpoint_that_does_not_fit(shards, tmp_path):
    from harmbench.models import get_model

    model = get_model("dovenet", preset="small", seed=0)
    state = model.state_dict()
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(tuple(s + 1 for s in state[name].shape))
    ck = tmp_path / "dovenet.pt"
    torch.save({"config": model.config_dict(), "state_dict": state}, ck)
    with pytest.raises(ModelLoadError, match=rf"{ck}.*model 'dovenet'.*do not fit.*{name}"):
        evaluate(str(ck), shards, tmp_path / "run", **FAST)
    st = _harmbench_checkpoint(tmp_path, "dovenet-bad", model, state)
    with pytest.raises(ModelLoadError, match=rf"{st}.*does not fit model 'dovenet'.*{name}"):
        evaluate(str(st), shards, tmp_path / "run", **FAST)
    with pytest.raises(ModelLoadError, match="unknown model 'no-such-model'"):
        evaluate("no-such-model", shards, tmp_path / "run2", **FAST)
    assert not (tmp_path / "run" / "config.json").exists()  # nothing was started


def test_checkpoint_runs_and_records_weights_hash(shards, tmp_path):
    from harmbench.eval.provenance import file_sha256
    from harmbench.models import get_model

    model = get_model("dovenet", preset="small", seed=0)
    ck = tmp_path / "dovenet.pt"
    torch.save({"config": model.config_dict(), "state_dict": model.state_dict()}, ck)
    res = evaluate(str(ck), shards, tmp_path / "run", limit=4, **FAST)
    assert len(res.samples) == 4
    assert res.run["model"]["weights_sha256"] == file_sha256(ck)
    assert res.run["model"]["name"] == "dovenet"
    assert np.isfinite(res.samples["mse"]).all()
    st = _harmbench_checkpoint(tmp_path, "dovenet-ok", model, model.state_dict())
    res2 = evaluate(str(st), shards, tmp_path / "run2", limit=4, **FAST)
    assert res2.run["model"]["weights_sha256"] == file_sha256(st)
    np.testing.assert_allclose(res2.samples["mse"], res.samples["mse"])


def test_quantized_profile_scores_rounded_outputs(shards, tmp_path):
    class Half:
        name = "half"

        def harmonize(self, composite, mask):
            return composite * 0.5 + 0.25

    h8 = evaluate(Half(), shards, tmp_path / "h8", limit=4, **FAST)
    fl = evaluate(Half(), shards, tmp_path / "fl", limit=4, **{**FAST, "profile": "iharm"})
    assert h8.run["pred_8bit"] and not fl.run["pred_8bit"]
    assert (h8.samples["mse"] > 0).all() and (fl.samples["mse"] > 0).all()


def test_triplet_folder(shared, tmp_path):
    root = shared("data", "triplets_256")
    res = evaluate("composite", root, tmp_path / "run", split=None, resize="fixed256", workers=0, progress=False)
    assert len(res.samples) == 3
    assert res.run["data"]["kind"] == "triplets"
    assert (res.samples["input_mse"] == 0).all()


def test_cli_eval(shards, tmp_path, capsys):
    from harmbench.cli import main

    rc = main(
        [
            "eval",
            "--model",
            "composite",
            "--data",
            str(shards),
            "--out",
            str(tmp_path / "run"),
            "--resize",
            "none",
            "--limit",
            "6",
            "--no-progress",
            "--previews",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "All" in out and "6 samples" in out
    rc = main(
        [
            "eval",
            "--model",
            "composite",
            "--data",
            str(shards),
            "--out",
            str(tmp_path / "run"),
            "--profile",
            "iharm",
            "--resize",
            "none",
            "--limit",
            "6",
            "--no-progress",
        ]
    )
    assert rc == 2 and "results are never mixed" in capsys.readouterr().err


def test_workers_and_mixed_sizes_give_the_same_rows(tmp_path):
    data = tmp_path / "mixed"
    write_synthetic_shards(data, 6, width=64, height=48, shard_size=3, prefix="a")
    write_synthetic_shards(data, 6, width=40, height=56, shard_size=3, prefix="b", seed=1)
    serial = evaluate("composite", data, tmp_path / "w0", **FAST)
    parallel = evaluate("composite", data, tmp_path / "w2", **{**FAST, "workers": 2})
    assert sorted(set(zip(serial.samples["height"], serial.samples["width"]))) == [(48, 64), (56, 40)]
    pd.testing.assert_frame_equal(_drop_time(parallel.samples), _drop_time(serial.samples))
    fixed = evaluate("composite", data, tmp_path / "f", **{**FAST, "resize": "fixed256", "limit": 8})
    assert len(fixed.samples) == 8 and set(fixed.samples["height"]) == {256}


def test_pred_8bit_comes_from_the_profile(tmp_path):
    """The 8-bit output rule recorded in run.json is the profile's (iharm scores float outputs)."""
    from harmbench.metrics import PROFILES

    data = tmp_path / "d"
    write_synthetic_shards(data, 4, width=40, height=32, shard_size=4)
    for name in ("iharm", "harmbench"):
        res = evaluate("reinhard", data, tmp_path / name, **{**FAST, "profile": name})
        assert res.run["pred_8bit"] is PROFILES[name].pred_8bit
    assert PROFILES["iharm"].pred_8bit is False and PROFILES["harmbench"].pred_8bit is True


def test_model_input_checks_are_one_pass_and_keep_in_range_inputs():
    from harmbench.models import ModelInputError, validate_inputs

    x = torch.rand(2, 3, 8, 8)
    m = (torch.rand(2, 1, 8, 8) > 0.5).float()
    out, mf = validate_inputs(x, m)
    assert out is x and mf is m  # nothing to clamp or convert: no copy
    slack, _ = validate_inputs(x * 1.00005, m)  # within the 1e-4 tolerance: clamped
    assert float(slack.max()) <= 1.0 and slack is not x
    for bad, match in ((torch.where(x > 0.5, torch.inf, x), "NaN or infinite"), (x - 0.01, "0–1 scale")):
        with pytest.raises(ModelInputError, match=match):
            validate_inputs(bad, m)
    for bad, match in (
        (m * torch.nan, "NaN or infinite"),
        (m * 0.5, "exactly 0 or 1"),
        (m * 2, r"in \[0, 2\]"),
        (m.to(torch.uint8) * 3, "exactly 0 or 1"),
        (m - 1e-7, "exactly 0 or 1"),
    ):
        with pytest.raises(ModelInputError, match=match):
            validate_inputs(x, bad)
    _, mi = validate_inputs(x, m.to(torch.uint8))  # integer {0, 1} masks are fine
    assert mi.dtype == x.dtype
    torch.testing.assert_close(mi, m)


def test_output_check_names_the_first_bad_sample():
    from harmbench.eval.outputs import check_output

    comp = torch.rand(3, 3, 8, 8)
    check_output(comp.clone(), comp, ["a", "b", "c"], "m")  # fine
    bad = comp.clone()
    bad[2, 1, 3, 3] = -torch.inf
    with pytest.raises(ModelOutputError, match="NaN or infinite values for sample 'c'"):
        check_output(bad, comp, ["a", "b", "c"], "m")
    bad = comp.clone()
    bad[1] += 0.5
    with pytest.raises(ModelOutputError, match=r"returned values in \[.*\] for sample 'b'"):
        check_output(bad, comp, ["a", "b", "c"], "m")
