"""Build engine: determinism, resume, skips, index/stats/card, WebDataset layout (one local Ray per module)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from _helpers import tar_md5s
from PIL import Image

from harmbench.errors import ConfigError, UserError
from harmbench.generate import BuildMismatchError, OutputOptions, build_from_plan
from harmbench.generate import synthetic as syn
from harmbench.generate.plan import make_shards
from harmbench.recipes.base import SampleSpec

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray (2 CPUs, no dashboard) shared by the module; builds reuse it."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 1024**2,
        logging_level=logging.WARNING,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[dict[str, str]]:
    return syn.make_photos(tmp_path_factory.mktemp("src"), 7, width=80, height=60)


def _specs(photos, **kw) -> list[SampleSpec]:
    return syn.plan_photos(photos, seed=3, test_every=5, fail_keys=("photo0002_obj1",), **kw)


def _build(specs, out, **kw):
    kw.setdefault("shard_size", 4)
    kw.setdefault("synthesize", syn.synthesize)
    return build_from_plan(specs, out, name="demo", seed=3, recipe_text="seed = 3\n", progress=False, **kw)


@pytest.fixture(scope="module")
def built(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("b1")
    res = _build(_specs(photos), out, workers=1)
    return out, res


def test_shard_layout_is_deterministic_plan(photos):
    specs = _specs(photos)
    a = make_shards(specs, "demo", 4)
    b = make_shards(list(reversed(specs)), "demo", 4)
    assert [(t.name, [s.key for s in t.specs]) for t in a] == [(t.name, [s.key for s in t.specs]) for t in b]
    assert [t.name for t in a if t.split == "test"] == ["demo-test-000000.tar", "demo-test-000001.tar"]
    assert all(len(t.specs) <= 4 for t in a)


def test_one_and_two_workers_give_identical_bytes(built, photos, tmp_path):
    out1, res1 = built
    res2 = _build(_specs(photos), tmp_path / "b2", workers=2)
    assert tar_md5s(out1) == tar_md5s(tmp_path / "b2")
    assert len(tar_md5s(out1)) == len(res1.shards) == 6
    # the whole set of outputs other than run timings is identical too
    for name in ("index.json", "index-train.json", "README.md"):
        assert (out1 / name).read_bytes() == (tmp_path / "b2" / name).read_bytes(), name
    assert res2.stats["samples"] == res1.stats["samples"] == 20


def test_tar_members_adjacent_sorted_fixed_headers(built):
    out, _ = built
    with tarfile.open(out / "demo-train-000000.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    keys = [n.split(".", 1)[0] for n in names]
    # each key's members form one contiguous run
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(runs) == len(set(keys))
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (1577836800, 0, 0, "", "", 0o444)
    fields = sorted({n.split(".", 1)[1] for n in names})
    assert fields == ["composite.jpg", "json", "mask.png", "real.jpg"]


def test_members_content(built, photos):
    out, _ = built
    with tarfile.open(out / "demo-train-000000.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    key = sorted(files)[0].split(".", 1)[0]
    mask = np.asarray(Image.open(io.BytesIO(files[f"{key}.mask.png"])))
    assert Image.open(io.BytesIO(files[f"{key}.mask.png"])).mode == "L"
    assert set(np.unique(mask)) <= {0, 255}
    rec = next(r for r in photos if r["key"] == key)
    assert files[f"{key}.real.jpg"] == Path(rec["image"]).read_bytes()  # original bytes, not re-encoded
    meta = json.loads(files[f"{key}.json"])
    assert meta["key"] == key and meta["split"] == "train" and meta["recipe"] == "synthetic"
    assert isinstance(meta["seed"], str)  # 64-bit seeds stored as strings (Arrow-safe)
    assert abs(meta["fg_ratio"] - (mask > 0).mean()) < 1e-6
    comp = np.asarray(Image.open(io.BytesIO(files[f"{key}.composite.jpg"])))
    assert comp.shape == (60, 80, 3)


def test_skips_are_counted_not_fatal(built):
    out, res = built
    sk = res.stats["skipped"]
    assert sk["synth"] == 1 and sk["plan"] == 0
    assert sk["items"][0]["key"] == "photo0002_obj1" and sk["items"][0]["reason"] == "flagged as unusable"
    shard = next(json.loads(p.read_text()) for p in out.glob("*.stats.json") if "photo0002_obj1" in p.read_text())
    assert shard["planned"] == shard["count"] + 1
    assert res.stats["samples"] == 20


def test_stats_index_card(built):
    out, res = built
    st = json.loads((out / "stats.json").read_text())
    assert st["samples"] == 20 and st["shards"] == 6
    assert sum(st["by_fg_ratio"].values()) == 20 and set(st["by_fg_ratio"]) == {"0-5", "5-15", "15-100"}
    assert sum(st["by_method"].values()) == 20 and set(st["by_method"]) == {"gain", "gamma"}
    assert sum(st["by_category"].values()) == 20
    assert st["run"]["throughput_samples_per_s"] > 0 and "wall_time_s" in st["run"]
    for p in out.glob("*.tar"):
        shard = json.loads((out / f"{p.name}.stats.json").read_text())
        assert set(shard) >= {"count", "skipped", "duration_s", "node", "by_recipe", "by_method", "by_category"}

    idx = json.loads((out / "index.json").read_text())
    assert idx["__kind__"] == "wids-shard-index-v1" and idx["wids_version"] == 1 and idx["name"] == "demo"
    assert sum(e["nsamples"] for e in idx["shardlist"]) == 20
    for e in idx["shardlist"]:
        data = (out / e["url"]).read_bytes()
        assert e["md5sum"] == hashlib.md5(data).hexdigest() and e["filesize"] == len(data)
    tidx = json.loads((out / "index-test.json").read_text())
    assert [e["url"] for e in tidx["shardlist"]] == ["demo-test-000000.tar", "demo-test-000001.tar"]

    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["task_categories"] == ["image-to-image"]
    assert {"image-harmonization", "synthetic", "webdataset"} <= set(front["tags"])
    assert front["license"] == "cc0-1.0" and front["size_categories"] == ["n<1K"]
    files = {d["split"]: d["path"] for d in front["configs"][0]["data_files"]}
    assert files == {"train": "demo-train-*.tar", "test": "demo-test-*.tar"}
    feats = {f["name"]: f for f in front["dataset_info"]["features"]}
    for f in ("composite.jpg", "mask.png", "real.jpg"):
        assert feats[f]["dtype"] == "image"
    assert {s["name"] for s in feats["json"]["struct"]} >= {"key", "method", "category", "fg_ratio"}
    assert (
        "```toml\nseed = 3\n```" in card and "Seed: 3" in card and "harmbench 0.1.0" in card.replace("harmbench](", "")
    )
    assert "15-100%" in card


def test_webdataset_reads_fields(built):
    import webdataset as wds

    out, _ = built
    urls = [str(p) for p in sorted(out.glob("demo-train-*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb"))
    assert len(samples) == 15
    s = samples[0]
    assert {"composite.jpg", "mask.png", "real.jpg", "json"} <= set(s)
    assert s["composite.jpg"].shape == (60, 80, 3) and s["json"]["key"] == s["__key__"]


def test_resume_skips_done_shards_and_no_resume_rebuilds(built, photos, tmp_path):
    out = tmp_path / "r"
    specs = _specs(photos)
    first = _build(specs, out, workers=2)
    marker = out / "demo-train-000001.tar.stats.json"
    before = marker.read_bytes()
    # drop one shard's done marker: only that shard is recomputed
    (out / "demo-test-000000.tar.stats.json").unlink()
    again = _build(specs, out, workers=2)
    assert again.built == ["demo-test-000000.tar"] and len(again.resumed) == 5
    assert marker.read_bytes() == before
    assert tar_md5s(out) == tar_md5s(built[0])
    assert again.stats["samples"] == first.stats["samples"]
    rebuilt = _build(specs, out, workers=2, resume=False)
    assert sorted(rebuilt.built) == sorted(first.shards) and not rebuilt.resumed
    assert tar_md5s(out) == tar_md5s(built[0])


def test_mismatch_is_an_error(built, photos, tmp_path):
    out = tmp_path / "m"
    _build(_specs(photos)[:6], out, workers=2)
    with pytest.raises(BuildMismatchError, match="different plan"):
        _build(_specs(photos), out, workers=2)
    with pytest.raises(BuildMismatchError, match="recipe"):
        build_from_plan(
            _specs(photos)[:6],
            out,
            name="demo",
            synthesize=syn.synthesize,
            shard_size=4,
            recipe_text="seed = 4\n",
            progress=False,
        )
    with pytest.raises(BuildMismatchError, match="output options"):
        _build(_specs(photos)[:6], out, options=OutputOptions(composite_format="png"))
    assert issubclass(BuildMismatchError, UserError)


def test_png_output_and_reference_flag(photos, tmp_path):
    res = _build(_specs(photos)[:3], tmp_path / "p", options=OutputOptions(composite_format="png"), shard_size=8)
    with tarfile.open(tmp_path / "p" / res.shards[0]) as tar:
        fields = {m.name.split(".", 1)[1] for m in tar.getmembers()}
    assert fields == {"composite.png", "json", "mask.png", "real.png"}
    with pytest.raises(RuntimeError, match="no reference image"):
        _build(_specs(photos)[:3], tmp_path / "q", options=OutputOptions(store_reference=True))


def test_failing_shard_lets_running_shards_finish_and_resume_completes(built, photos, tmp_path):
    """A shard that fails stops the build with its name; the shards that were running finish whole (none
    is cancelled half-way), nothing half-written stays, and a resumed build makes the same bytes as a clean one."""

    def _synthesize_failing(spec):  # defined here so that Ray's workers receive it by value
        if spec.key == "photo0004_obj0":
            raise RuntimeError("synthetic failure")  # a plain error, not an input error: the shard fails
        return syn.synthesize(spec)

    out = tmp_path / "f"
    specs = _specs(photos)
    with pytest.raises(RuntimeError, match=r"(?s)shard demo-train-\d+\.tar failed: .*synthetic failure"):
        _build(specs, out, workers=2, shard_size=2, synthesize=_synthesize_failing)
    assert not list(out.glob(".*tmp*"))
    for tar in out.glob("*.tar"):  # every shard on disk is finished: its stats exist
        assert (out / f"{tar.name}.stats.json").is_file()
    _build(specs, out, workers=2, shard_size=2)
    clean = _build(specs, tmp_path / "clean", workers=1, shard_size=2)
    for name in clean.shards:
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"shard_size": 0}, "shard_size"),
        ({"name": "bad.name"}, "name"),
        ({"options": OutputOptions(composite_format="gif")}, "composite_format"),
    ],
)
def test_config_errors_before_any_work(photos, tmp_path, kw, field):
    specs = _specs(photos)
    name = kw.pop("name", "demo")
    with pytest.raises(ConfigError, match=field):
        build_from_plan(specs, tmp_path / "c", name=name, synthesize=syn.synthesize, progress=False, **kw)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.tar"))


def test_bad_keys_rejected(tmp_path):
    specs = [SampleSpec("a.b", "r", "train", 1, {})]
    with pytest.raises(ConfigError, match="dots"):
        build_from_plan(specs, tmp_path / "k", name="demo", synthesize=syn.synthesize, progress=False)
    dup = [SampleSpec("a", "r", "train", 1, {}), SampleSpec("a", "r", "train", 2, {})]
    with pytest.raises(ConfigError, match="twice"):
        build_from_plan(dup, tmp_path / "k", name="demo", synthesize=syn.synthesize, progress=False)


DEMO = Path(__file__).resolve().parents[1] / "datasets" / "demo.toml"


@pytest.mark.skipif(not DEMO.exists(), reason="datasets/demo.toml not present")
def test_cli_build_demo_recipe(tmp_path, capsys):
    from harmbench.cli import main

    out = tmp_path / "demo"
    args = [
        "build",
        str(DEMO),
        "--out",
        str(out),
        "--max-samples",
        "10",
        "--workers",
        "2",
        "--no-progress",
        "--set",
        "dataset.shard_size=4",
    ]
    assert main(args) == 0
    assert "samples in" in capsys.readouterr().out
    st = json.loads((out / "stats.json").read_text())
    idx = json.loads((out / "index.json").read_text())
    assert st["samples"] == sum(e["nsamples"] for e in idx["shardlist"]) > 0
    front = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert front["configs"][0]["data_files"]
    assert "[dataset]" in (out / "README.md").read_text()  # the recipe TOML is embedded
    md5 = tar_md5s(out)
    assert main(args) == 0  # resumed: nothing rebuilt, same bytes
    assert json.loads((out / "stats.json").read_text())["run"]["shards_built"] == 0 and tar_md5s(out) == md5
    # a different override = a different config: refused instead of mixed
    assert main(args[:-1] + ["dataset.shard_size=5"]) == 2
    assert "different recipe" in capsys.readouterr().err


@pytest.mark.skipif(not DEMO.exists(), reason="datasets/demo.toml not present")
def test_cli_bad_recipe_field_is_clean_error(tmp_path, capsys):
    from harmbench.cli import main

    rc = main(["build", str(DEMO), "--out", str(tmp_path / "x"), "--set", "dataset.shard_size=0", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "shard_size" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("recipe", ["synthetic", "hue", "hcoco"])
def test_bench_build_small(recipe, capsys, tmp_path):
    """``harmbench bench build`` end to end on small photos (the real bench uses 6000x4000)."""
    from harmbench.bench.build import floor_inputs
    from harmbench.cli import main

    rc = main(
        [
            "bench",
            "build",
            "--photos",
            "2",
            "--objects",
            "2",
            "--width",
            "160",
            "--height",
            "120",
            "--recipe",
            recipe,
            "--repeats",
            "2",
            "--keep",
            str(tmp_path),
        ]
    )
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["bench"] == "build" and last["samples"] == 4
    assert last["target"] == (0.6 if recipe == "hue" else 0.5)
    assert last["ratio"] > 0 and last["speedup_2w"] > 0 and last["peak_rss_mb_per_worker"] > 0
    assert last["identical_bytes_1w_2w"] is True
    rounds = last["builder_rounds_samples_per_s"]  # --repeats 2: two rounds each; the best of each is reported
    assert len(rounds["1w"]) == len(rounds["2w"]) == 2  # the untimed warm-up build is not among them
    assert not (tmp_path / "warmup").exists()
    assert last["builder_1w_samples_per_s"] == pytest.approx(max(rounds["1w"]), abs=1e-3)
    # the floor decodes what each sample read: its photo + mask, and for hcoco the reference's too
    rows = floor_inputs(tmp_path / "out1", tmp_path / "src")
    assert len(rows) == 4 and all(p.is_file() for row in rows for pair in row for p in pair)
    assert [len(r) for r in rows] == [2 if recipe == "hcoco" else 1] * 4
    if recipe == "hcoco":
        assert all(r[0][0] != r[1][0] for r in rows)  # the reference is another photo's object


def test_cost_estimates_start_the_longest_shards_first_and_change_no_byte(built, photos, tmp_path):
    specs = _specs(photos)
    # estimated cost grows with the key: the last shard of each split is the longest
    rank = {s.key: i for i, s in enumerate(sorted(specs, key=lambda s: s.key))}
    res = _build(specs, tmp_path / "o", workers=1, cost=lambda s: float(rank[s.key]))
    plan = make_shards(specs, "demo", 4)
    totals = {t.name: sum(rank[s.key] for s in t.specs) for t in plan}
    # one worker finishes the shards in the order they were started
    assert res.built == sorted(totals, key=lambda n: -totals[n]) != [t.name for t in plan]
    assert tar_md5s(tmp_path / "o") == tar_md5s(built[0])
    for name in ("index.json", "index-train.json", "index-test.json", "README.md"):
        assert (tmp_path / "o" / name).read_bytes() == (built[0] / name).read_bytes(), name
