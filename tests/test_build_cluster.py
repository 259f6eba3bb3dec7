"""Building through a real two-node Ray cluster started with ``ray start`` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from harmbench.build import synthetic as syn  # noqa: E402
from harmbench.build.plan import make_shards  # noqa: E402
from harmbench.build.runner import write_shard  # noqa: E402
from harmbench.build.writer import OutputOptions  # noqa: E402

RAY_CLI = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start … --block`` in its own process group, so teardown can end exactly these processes."""
    return subprocess.Popen([RAY_CLI, "start", *args, "--block"], env=env, start_new_session=True,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group of this `ray start`: gcs, raylet, agents
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


WAIT_NODES = r"""
import logging, sys, time
import ray
deadline = time.monotonic() + float(sys.argv[2])
while True:
    ray.init(address=sys.argv[1], logging_level=logging.WARNING)
    n = len([x for x in ray.nodes() if x["Alive"]])
    ray.shutdown()
    if n == 2 or time.monotonic() > deadline:
        print(n)
        break
    time.sleep(1)
"""

BUILD = r"""
import json, sys
from pathlib import Path
from harmbench.build import build_from_plan
from harmbench.build import synthetic as syn

src, out, address = sys.argv[1:4]
specs = syn.plan_photos(syn.make_photos(src, 4, width=64, height=48), seed=5, sleep=0.2)
res = build_from_plan(specs, out, name="cl", synthesize=syn.synthesize, seed=5, shard_size=2, workers=0,
                      ray_address=None if address == "-" else address, recipe_text="seed = 5\n", progress=False)
import ray
print(json.dumps({"stats": res.stats, "built": res.built, "shards": res.shards, "ray_left_up": ray.is_initialized()}))
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) + one worker node (1 CPU) on 127.0.0.1, each with its own temp dir.

    Drivers run in subprocesses so their Ray settings (auth mode) are independent of other test modules.
    """
    root = Path(tempfile.mkdtemp(prefix="hbray"))  # short: Ray socket paths have a length limit
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = _env()
    procs = []
    try:
        procs.append(_start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             "--include-dashboard=false", f"--temp-dir={root / 'h'}"], root / "head.log", env))
        deadline = time.monotonic() + 60
        while True:
            assert procs[0].poll() is None, (root / "head.log").read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "head did not open its port"
                time.sleep(0.5)
        procs.append(_start([f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             f"--temp-dir={root / 'w'}"], root / "worker.log", env))
        out = subprocess.run([sys.executable, "-c", WAIT_NODES, address, "60"], env=env, capture_output=True,
                             text=True, timeout=120)
        if out.stdout.strip().splitlines()[-1:] != ["2"]:
            pytest.fail("two-node cluster did not come up: " + out.stderr[-2000:]
                        + (root / "worker.log").read_text()[-2000:])
        yield address
    finally:
        for p in reversed(procs):
            _stop(p)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_build_on_two_node_cluster(cluster, tmp_path):
    proc = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / "src"), str(tmp_path / "out"), cluster],
                          env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not res["ray_left_up"]  # the build disconnected from the cluster it joined
    assert res["stats"]["samples"] == 12 and len(res["built"]) == 6
    nodes = res["stats"]["run"]["shards_by_node"]
    assert len(nodes) == 2, nodes  # both nodes' workers wrote shards
    # same bytes as the worker function run directly, without Ray
    specs = syn.plan_photos(syn.make_photos(tmp_path / "src", 4, width=64, height=48), seed=5, sleep=0.2)
    ref = tmp_path / "ref"
    ref.mkdir()
    for t in make_shards(specs, "cl", 2):
        write_shard(t, str(ref), OutputOptions(), syn.synthesize)
    for name in res["shards"]:
        a = hashlib.md5((tmp_path / "out" / name).read_bytes()).hexdigest()
        assert a == hashlib.md5((ref / name).read_bytes()).hexdigest(), name


@pytest.mark.slow
def test_ray_address_env_var_joins_the_cluster(cluster, tmp_path):
    env = {**_env(), "RAY_ADDRESS": cluster}
    proc = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / "src"), str(tmp_path / "out"), "-"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(res["stats"]["run"]["shards_by_node"]) == 2
