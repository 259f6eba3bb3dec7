"""Seeded, time-bounded fuzzing: damaged images, shards and TOML never make a traceback escape.

Each test mutates real files (truncations, byte flips, junk) with a fixed seed for at most a
few seconds and runs the CLI's ``main()`` in-process: the exit status must be a documented
one, stderr must hold no traceback and no "internal error" (the CLI's last resort), and every
input must be accounted for (scored, or skipped with a reason).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _corpus import box_mask, rgb_array, write_flat_triplet, write_shard_dir

from harmbench.cli import main
from harmbench.errors import InputError, UserError

SEED = int(os.environ.get("HARMBENCH_FUZZ_SEED", "20261206"))  # a deeper run: another seed, more seconds
BUDGET_S = float(os.environ.get("HARMBENCH_FUZZ_SECONDS", "3"))


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage: a truncation, 1–8 byte flips, a junk insertion, or two of them."""
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.choice(("truncate", "flip", "insert"))
        if kind == "truncate" and len(b) > 1:
            del b[rng.randrange(len(b)) :]
        elif kind == "flip" and b:
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            pos = rng.randrange(len(b) + 1)
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(b)


def _clean(err: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    assert "internal error" not in err, err[-3000:]


def _base_folder(root: Path) -> list[str]:
    stems = ["a", "b", "c"]
    for i, s in enumerate(stems):
        real = rgb_array(32, 40, i)
        m = box_mask(32, 40, 6, 8, 14, 20)
        comp = real.copy()
        comp[m] = 255 - comp[m]
        write_flat_triplet(root, s, comp, real, m, ext="jpg" if i % 2 == 0 else "png")
    return stems


def test_reader_raises_only_input_errors():
    from harmbench.imaging import image_size, read_mask, read_rgb

    rng = random.Random(SEED)
    seeds = [io.BytesIO() for _ in range(3)]
    from PIL import Image

    Image.fromarray(rgb_array(24, 24, 1)).save(seeds[0], format="JPEG", quality=90, exif=b"Exif\x00\x00II*\x00")
    Image.fromarray(rgb_array(24, 24, 2)).save(seeds[1], format="PNG")
    Image.fromarray(box_mask(24, 24, 3, 3, 9, 9).astype(np.uint8) * 255).save(seeds[2], format="PNG")
    originals = [s.getvalue() for s in seeds]
    t0, n = time.monotonic(), 0
    while time.monotonic() - t0 < BUDGET_S and n < 1000 * BUDGET_S:
        data = mutate(rng.choice(originals), rng)
        for fn in (read_rgb, read_mask, image_size):
            try:
                out = fn(data, "fuzz")
            except InputError as exc:
                assert exc.path == "fuzz" and exc.reason
                continue
            if fn is read_rgb:
                assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            elif fn is read_mask:
                assert out.dtype == np.uint8 and out.ndim == 2
        n += 1
    assert n > 50


def test_score_on_damaged_files_accounts_for_every_triplet(tmp_path, capsys):
    base = tmp_path / "base"
    stems = _base_folder(base)
    files = sorted(p.name for p in base.iterdir())
    rng = random.Random(SEED + 1)
    assert main(["score", str(base), "--no-progress", "--workers", "1", "--device", "cpu"]) == 0  # imports, warm-up
    capsys.readouterr()
    t0, n = time.monotonic(), 0
    while n < 5 or (time.monotonic() - t0 < BUDGET_S and n < 40 * max(1, int(BUDGET_S / 3))):
        d = tmp_path / f"case{n}"
        shutil.copytree(base, d)
        for name in rng.sample(files, rng.randint(1, 2)):
            (d / name).write_bytes(mutate((base / name).read_bytes(), rng))
        out = tmp_path / f"case{n}.json"
        rc = main(
            [
                "score",
                str(d),
                "--json",
                str(out),
                "--no-progress",
                "--workers",
                "1",
                "--device",
                "cpu",
                "--resize",
                rng.choice(("fixed256", "none")),
                "--profile",
                rng.choice(("harmbench", "dovenet")),
            ]
        )
        cap = capsys.readouterr()
        _clean(cap.err)
        assert rc in (0, 1)
        doc = json.loads(out.read_text())
        assert (rc == 1) == (doc["n"] == 0)
        scored = {r["key"] for r in doc["per_sample"]}
        for s in stems:  # scored, or a skip naming one of its files
            named = any(Path(k["path"]).name.startswith(s) for k in doc["skipped"])
            assert s in scored or named, (s, doc["skipped"])
        for k in doc["skipped"]:
            assert k["reason"] and f"skipped {k['path']}: {k['reason']}" in cap.err
        shutil.rmtree(d)
        n += 1
    assert n >= 5


def test_damaged_shards_inspect_and_eval(tmp_path, capsys):
    base = tmp_path / "base"
    rows = write_shard_dir(base, n_shards=2, per_shard=2)
    rng = random.Random(SEED + 2)
    t0, n = time.monotonic(), 0
    while n < 3 or (time.monotonic() - t0 < 2 * BUDGET_S and n < 12 * max(1, int(BUDGET_S / 3))):
        d = tmp_path / f"ds{n}"
        shutil.copytree(base, d)
        victim = d / rows[rng.randrange(len(rows))]["url"]
        victim.write_bytes(mutate(victim.read_bytes(), rng))
        rc = main(["inspect", "--verify", str(d)])
        cap = capsys.readouterr()
        _clean(cap.err)
        assert rc in (0, 1)
        if victim.read_bytes() != (base / victim.name).read_bytes():
            assert rc == 1 and f"broken {victim}:" in cap.err
        rc = main(
            [
                "eval",
                "--model",
                "composite",
                "--data",
                str(d),
                "--out",
                str(tmp_path / f"run{n}"),
                "--device",
                "cpu",
                "--workers",
                "0",
                "--no-progress",
                "--previews",
                "0",
            ]
        )
        cap = capsys.readouterr()
        _clean(cap.err)
        assert rc in (0, 1, 2)
        if rc != 2:
            run = json.loads((tmp_path / f"run{n}" / "run.json").read_text())
            broken = {Path(b["shard"]).name for b in run["broken_shards"]}
            keys = set()
            for r in rows:  # every sample: scored, skipped by key, or in a shard listed as broken
                for j in range(r["nsamples"]):
                    keys.add((r["url"], f"s{rows.index(r)}_{j}"))
            import pandas as pd

            scored = (
                set(pd.read_parquet(tmp_path / f"run{n}" / "samples.parquet")["key"]) if run["n_samples"] else set()
            )
            skipped = {s.get("key") for s in run["skipped"]}
            for url, key in keys:
                assert key in scored or key in skipped or url in broken, (key, run["skipped"], broken)
        else:
            assert "no usable sample" in cap.err
        n += 1
    assert n >= 3


RECIPE = """[dataset]
name = "fuzz"
seed = 1
shard_size = 10

[output]
max_side = 64
jpeg_quality = 95

[split]
test_fraction = 0.5

[filters]
fg_ratio_min = 0.01
fg_ratio_max = 0.8

[sources.photos]
type = "folder"
images = "{images}"
min_area = 10
category = "thing"

[[recipes]]
type = "identical"
source = "photos"
per_object = 1
"""

LEADERBOARD = """[leaderboard]
seed = 0
bootstrap = 10
lpips = false

[[datasets]]
name = "d"
path = "{data}"
limit = 5

[[models]]
name = "composite"
label = "Composite"
"""

VALUES = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e309",
    '"x"',
    "true",
    "[]",
    "{}",
    '""',
    "[1, nan]",
    "{ a = nan }",
    "-9223372036854775808",
    "3.5",
]


def mutate_toml(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        kind = rng.choice(("value", "value", "value", "drop", "dup", "char"))
        if kind == "value" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {rng.choice(VALUES)}"
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        else:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice('[]{}="#.\\x\n') + lines[i][pos:]
        if not lines:
            break
    return "\n".join(lines) + "\n"


def test_mutated_configs_give_config_errors(tmp_path, capsys):
    from harmbench.leaderboard.definition import load_leaderboard
    from harmbench.recipes.config import load_build_config

    (tmp_path / "im").mkdir()
    (tmp_path / "data").mkdir()
    recipe = RECIPE.format(images=tmp_path / "im")
    board = LEADERBOARD.format(data=tmp_path / "data")
    rng = random.Random(SEED + 3)
    t0, n = time.monotonic(), 0
    while time.monotonic() - t0 < BUDGET_S and n < 150 * BUDGET_S:
        p = tmp_path / "r.toml"
        p.write_text(mutate_toml(recipe, rng))
        try:
            load_build_config(p)
        except UserError as exc:
            assert str(p) in str(exc)
        q = tmp_path / "lb" / "leaderboard.toml"
        q.parent.mkdir(exist_ok=True)
        q.write_text(mutate_toml(board, rng))
        try:
            load_leaderboard(q)
        except UserError as exc:
            assert "leaderboard" in str(exc)
        if n % 20 == 0:  # through the command line too (no finished runs: status 2 with a message)
            assert main(["leaderboard", "export", str(q), "--format", "md"]) == 2
            _clean(capsys.readouterr().err)
        n += 1
    assert n > 50


@pytest.mark.parametrize("what", ["build"])
def test_build_rejects_mutated_recipes_before_any_work(tmp_path, capsys, what):
    (tmp_path / "im").mkdir()
    rng = random.Random(SEED + 4)
    text = RECIPE.format(images=tmp_path / "im")
    done = 0
    for _ in range(200):
        bad = mutate_toml(text, rng)
        p = tmp_path / "r.toml"
        p.write_text(bad)
        from harmbench.recipes.config import load_build_config

        try:
            load_build_config(p)
            continue  # still valid: building it would be real work
        except UserError:
            pass
        rc = main([what, str(p), "--out", str(tmp_path / "out"), "--no-progress"])
        assert rc == 2
        _clean(capsys.readouterr().err)
        assert not (tmp_path / "out").exists()  # nothing started
        done += 1
        if done >= 5:
            break
    assert done >= 5
