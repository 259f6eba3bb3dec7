"""A leaderboard run through a real two-node Ray cluster (``ray start`` on 127.0.0.1)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from harmbench.bench.eval import write_synthetic_shards  # noqa: E402
from harmbench.leaderboard import export_leaderboard, load_leaderboard, run_leaderboard  # noqa: E402

RAY_CLI = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start … --block`` in its own process group, so teardown ends exactly these processes."""
    return subprocess.Popen([RAY_CLI, "start", *args, "--block"], env=env, start_new_session=True,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
            if sig == signal.SIGTERM:
                continue
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def ray_cluster():
    """Head (1 CPU) + one worker node (1 CPU) on 127.0.0.1; yields the address; torn down afterwards."""
    if not Path(RAY_CLI).exists() and shutil.which("ray") is None:
        pytest.skip("ray CLI not found next to the interpreter")
    root = Path(tempfile.mkdtemp(prefix="hblb"))  # short: Ray socket paths have a length limit
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    old_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             "--include-dashboard=false", f"--temp-dir={root / 'h'}"], root / "head.log", env))
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        worker = False
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), (root / "head.log").read_text()[-3000:]
            if not worker:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    time.sleep(0.5)
                    continue
                procs.append(_start([f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                     f"--temp-dir={root / 'w'}"], root / "worker.log", env))
                worker = True
            ray.init(address=address, logging_level=logging.WARNING)
            alive = [n for n in ray.nodes() if n["Alive"]]
            ray.shutdown()
            if len(alive) == 2:
                break
            time.sleep(1)
        else:
            pytest.fail("two-node cluster did not come up: " + (root / "worker.log").read_text()[-3000:])
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for p in reversed(procs):
            _stop(p)
        if old_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_auth
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_leaderboard_cells_run_as_ray_tasks_on_both_nodes(ray_cluster, tmp_path):
    data = tmp_path / "synth"
    write_synthetic_shards(data, 8, width=48, height=32, identity_every=4, shard_size=4)
    models = "".join(f'\n[[models]]\nname = "{m}"\n' for m in ("composite", "reinhard", "histmatch", "xiao"))
    (tmp_path / "board").mkdir()
    toml = tmp_path / "board" / "leaderboard.toml"
    toml.write_text(f"""
[leaderboard]
resize = "none"
lpips = false
bootstrap = 200
batch_size = 4
grid_samples = 2

[[datasets]]
name = "synth"
path = "{data}"
{models}""")
    res = run_leaderboard(toml, ray_address=ray_cluster, report=lambda m: None)
    assert not ray.is_initialized()  # disconnected from the cluster it joined
    assert sorted(res.ran) == sorted(f"synth/{m}" for m in ("composite", "reinhard", "histmatch", "xiao"))
    assert not res.failed
    lb = load_leaderboard(toml)
    nodes = set()
    for m in lb.models:
        run = json.loads((lb.run_dir(lb.datasets[0], m) / "run.json").read_text())
        assert run["n_samples"] == 8
        nodes.add(run["environment"].get("ray_node_id"))
    assert None not in nodes and len(nodes) == 2, nodes  # cells ran on both nodes
    # the cluster's results equal a local run of the same cell
    local = run_leaderboard(toml, report=lambda m: None)
    assert local.ran == [] and len(local.reused) == 4
    from harmbench.eval.runner import evaluate

    ref = evaluate("reinhard", data, tmp_path / "local-reinhard", resize="none", batch_size=4, workers=0,
                   progress=False, previews=0)
    ray_df = pd.read_parquet(lb.run_dir(lb.datasets[0], lb.models[1]) / "samples.parquet")
    pd.testing.assert_frame_equal(ray_df.drop(columns="seconds"), ref.samples.drop(columns="seconds"))
    ctx = export_leaderboard(toml, "csv,md", out=tmp_path / "export")
    assert len(ctx.results[ctx.results["subset"] == "All"]) == 4
