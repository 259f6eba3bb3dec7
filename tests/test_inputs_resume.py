"""Killing ``score --json`` or ``eval`` at any moment and rerunning gives the same final outputs.

Kill points are reproducible: :data:`harmbench.fileio.CRASH_ENV` ends the process just before or
just after its N-th atomic rename (a kill in the middle of writing a file, or right after it);
one more kill is a SIGKILL once the run has visibly started. The rerun must give the bytes of an
uninterrupted run (``score --json``) or its values (``eval``: ``samples.parquet``, ``run.json``
without timing). ``build`` has its own kill test (``test_build_resume.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _corpus import box_mask, rgb_array, write_flat_triplet, write_shard_dir

from harmbench.cli import main
from harmbench.fileio import CRASH_ENV

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], crash: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.Popen(
        [sys.executable, "-m", "harmbench.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _finish(p: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err.decode()


def _kill_when(p: subprocess.Popen, started) -> None:
    """SIGKILL ``p`` once ``started()`` holds (or it ended by itself)."""
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline and not started():
        time.sleep(0.02)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("score") / "d"
    for i in range(24):
        real = rgb_array(48, 64, i)
        m = box_mask(48, 64, 8, 10, 20, 30)
        comp = real.copy()
        comp[m] = 255 - comp[m]
        write_flat_triplet(d, f"{i:02d}", comp, real, m)
    (d / "05.png").write_bytes(b"broken")  # one skipped input in the middle
    return d


def _rerun(args: list[str], capsys) -> None:
    """The rerun, in this process (the killed runs are subprocesses)."""
    assert main(args) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_score_json_killed_and_rerun_gives_the_same_bytes(folder, tmp_path, capsys):
    args = ["score", str(folder), "--no-progress", "--workers", "1", "--device", "cpu", "--json"]
    _rerun([*args, str(tmp_path / "ref.json")], capsys)
    ref = (tmp_path / "ref.json").read_bytes()
    for n, crash in enumerate(("before:1", "after:1", "sigkill")):
        out = tmp_path / f"k{n}.json"
        if crash == "sigkill":
            p = _cli([*args, str(out)])
            t0 = time.monotonic()
            _kill_when(p, lambda t0=t0: time.monotonic() - t0 > 1.0)  # somewhere in imports or scoring
        else:
            rc, _ = _finish(_cli([*args, str(out)], crash))
            assert rc == 99
            assert out.exists() == (crash == "after:1")
        _rerun([*args, str(out)], capsys)
        assert out.read_bytes() == ref


def _eval_args(data: Path, run: Path) -> list[str]:
    return [
        "eval",
        "--model",
        "composite",
        "--data",
        str(data),
        "--out",
        str(run),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
        "--resize",
        "none",
        "--previews",
        "3",
    ]


def _final(run: Path) -> tuple[pd.DataFrame, dict]:
    df = pd.read_parquet(run / "samples.parquet").drop(columns=["seconds"])
    doc = json.loads((run / "run.json").read_text())
    keep = ("n_samples", "n_skipped", "skipped", "broken_shards", "summary", "metrics", "profile", "data")
    return df, {k: doc.get(k) for k in keep}


@pytest.mark.slow
def test_eval_killed_at_several_points_and_rerun_gives_the_same_values(tmp_path, capsys):
    data = tmp_path / "ds"
    write_shard_dir(data, n_shards=3, per_shard=30)  # 90 samples: parts of 64 rows, previews, merge, run.json
    ref = tmp_path / "ref"
    _rerun(_eval_args(data, ref), capsys)
    want_df, want_doc = _final(ref)
    assert len(want_df) == 90
    # config.json is rename 1, then previews and parts, samples.parquet and run.json last
    for crash in ("after:1", "before:3", "after:6", "sigkill"):
        run = tmp_path / crash.replace(":", "_")
        if crash == "sigkill":  # once the first part is on disk
            p = _cli(_eval_args(data, run))
            _kill_when(p, lambda r=run: any((r / "parts").glob("part-*.parquet")))
        else:
            rc, _ = _finish(_cli(_eval_args(data, run), crash))
            assert rc == 99
            assert not (run / "run.json").exists()
        _rerun(_eval_args(data, run), capsys)
        df, doc = _final(run)
        pd.testing.assert_frame_equal(df, want_df)
        assert doc == want_doc
