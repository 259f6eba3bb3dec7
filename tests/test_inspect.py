"""``harmbench inspect``: stats summary and contact sheet of a built directory."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from harmbench.cli import main
from harmbench.fileio import atomic_write_json
from harmbench.generate import synthetic as syn
from harmbench.generate.index import dataset_index
from harmbench.generate.plan import make_shards
from harmbench.generate.runner import write_shard
from harmbench.generate.stats import aggregate, reason_class
from harmbench.generate.writer import OutputOptions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("insp")
    recs = syn.make_photos(root / "src", 3, width=64, height=40)
    specs = syn.plan_photos(recs, seed=1, test_every=3, fail_keys=("photo0001_obj0",))
    out = root / "out"
    out.mkdir()
    stats = [write_shard(t, str(out), OutputOptions(), syn.synthesize) for t in make_shards(specs, "ins", 4)]
    atomic_write_json(out / "index.json", dataset_index("ins", stats))
    agg = aggregate(
        stats,
        [{"path": "x.jpg", "reason": "obj x_1: foreground ratio 0.5% outside [1%, 80%]"}],
        wall_time_s=1.0,
        built_now=[s["shard"] for s in stats],
    )
    atomic_write_json(out / "stats.json", {"name": "ins", "generator": "harmbench test", "seed": 1, **agg})
    return out


def test_inspect_prints_stats_and_writes_sheet(built, tmp_path, capsys):
    png = tmp_path / "sheet.png"
    assert main(["inspect", str(built), "--samples", "4", "--out", str(png)]) == 0
    text = capsys.readouterr().out
    assert "samples 8 in" in text and "methods:" in text and "gain" in text and "15-100" in text
    assert "foreground ratio N% outside [N%, N%]" in text and "flagged as unusable" in text
    img = Image.open(png)
    assert img.mode == "RGB" and img.height > 4 * 64 and img.width >= 3 * 64


def test_inspect_rejects_unbuilt_dir(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "no stats.json" in capsys.readouterr().err


def test_reason_class():
    assert (
        reason_class("hue: object demo_2_6: foreground ratio 0.90% outside [1%, 80%]")
        == "foreground ratio N% outside [N%, N%]"
    )
    assert json.dumps(reason_class(""))


def test_contact_sheet_takes_turns_over_recipe_and_method():
    from pathlib import Path

    from harmbench.generate.report import _pick_round_robin

    metas = [(Path("a.tar"), f"k{i}", {"recipe": "hcoco", "method": "reinhard"}) for i in range(5)]
    metas += [
        (Path("a.tar"), "h0", {"recipe": "hue", "method": "hue"}),
        (Path("b.tar"), "i0", {"recipe": "identical", "method": "identity"}),
    ]
    picked = [k for _, k, _ in _pick_round_robin(metas, 4)]
    assert picked == ["k0", "h0", "i0", "k1"]
    assert len(_pick_round_robin(metas, 100)) == len(metas)


def test_iter_tar_samples_reads_only_requested_fields(tmp_path):
    import io
    import tarfile

    from harmbench.data.shards import iter_tar_samples

    p = tmp_path / "x.tar"
    with tarfile.open(p, "w") as tar:
        for name, data in [("a.json", b"{}"), ("a.mask.png", b"M"), ("b.json", b"[]")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = list(iter_tar_samples(p, suffixes=("json",)))
    assert [s["__key__"] for s in got] == ["a", "b"]
    assert "mask.png" not in got[0] and got[0]["json"] == b"{}"
    assert list(iter_tar_samples(p))[0]["mask.png"] == b"M"
