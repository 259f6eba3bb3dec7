"""A build killed (SIGKILL) halfway and resumed gives the same bytes as an uninterrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from _helpers import tar_md5s

pytest.importorskip("ray")

SCRIPT = r"""
import sys
from pathlib import Path
from harmbench.generate import build_from_plan
from harmbench.generate import synthetic as syn

src, sleep = Path(sys.argv[1]), float(sys.argv[2])
records = syn.make_photos(src, 6, width=64, height=48)  # deterministic: same files every call
specs = syn.plan_photos(records, seed=1, test_every=4, fail_keys=("photo0003_obj0",), sleep=sleep)
for out in sys.argv[3:]:
    build_from_plan(specs, out, name="kill", synthesize=syn.synthesize, seed=1, shard_size=2, workers=2,
                    recipe_text="seed = 1\n", progress=True)
"""


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )


@pytest.mark.slow
def test_kill_and_resume_is_byte_identical(tmp_path):
    killed = tmp_path / "killed"
    proc = _run([str(tmp_path / "src"), "0.25", str(killed)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(killed.glob("*.stats.json"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the build's own process group: driver and its local Ray
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # Ray workers run in their own process groups and notice the dead raylet shortly; a shard they
    # were writing may still complete (atomically). Wait until the output settles.
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.0:
        n = len(list(killed.glob("*.stats.json")))
        if n != seen:
            seen, stable_since = n, time.monotonic()
        time.sleep(0.1)
    done_before = {p.name for p in killed.glob("*.stats.json")}
    manifest = json.loads((killed / "build_manifest.json").read_text())
    assert 2 <= len(done_before) < len(manifest["shards"]), "the kill should land mid-way"
    assert not (killed / "index.json").exists()

    clean = tmp_path / "clean"
    proc = _run([str(tmp_path / "src"), "0", str(killed), str(clean)])
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert tar_md5s(killed) == tar_md5s(clean) and len(tar_md5s(clean)) == len(manifest["shards"])
    assert not list(killed.glob(".*.tmp-*"))
    ik, ic = (json.loads((d / "index.json").read_text()) for d in (killed, clean))
    assert ik == ic
    stats = json.loads((killed / "stats.json").read_text())
    assert stats["run"]["shards_resumed"] == len(done_before)
    assert stats["run"]["shards_built"] == len(manifest["shards"]) - len(done_before)
    assert stats["skipped"]["synth"] == 1
