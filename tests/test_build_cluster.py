"""Building through a real two-node Ray cluster started with ``ray start`` on 127.0.0.1.

The drivers run in subprocesses (environment from ``ray_env``), so their Ray settings (auth mode) are
independent of other test modules.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from ray_cluster import ray_env

ray = pytest.importorskip("ray")

from harmbench.generate import synthetic as syn  # noqa: E402
from harmbench.generate.plan import make_shards  # noqa: E402
from harmbench.generate.runner import write_shard  # noqa: E402
from harmbench.generate.writer import OutputOptions  # noqa: E402

BUILD = r"""
import json, sys
from pathlib import Path
from harmbench.generate import build_from_plan
from harmbench.generate import synthetic as syn

src, out, address = sys.argv[1:4]
specs = syn.plan_photos(syn.make_photos(src, 4, width=64, height=48), seed=5, sleep=0.2)
res = build_from_plan(specs, out, name="cl", synthesize=syn.synthesize, seed=5, shard_size=2, workers=0,
                      ray_address=None if address == "-" else address, recipe_text="seed = 5\n", progress=False)
import ray
print(json.dumps({"stats": res.stats, "built": res.built, "shards": res.shards, "ray_left_up": ray.is_initialized()}))
"""


@pytest.mark.slow
def test_build_on_two_node_cluster(ray_cluster, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path / "src"), str(tmp_path / "out"), ray_cluster],
        env=ray_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
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
def test_ray_address_env_var_joins_the_cluster(ray_cluster, tmp_path):
    env = {**ray_env(), "RAY_ADDRESS": ray_cluster}
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path / "src"), str(tmp_path / "out"), "-"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(res["stats"]["run"]["shards_by_node"]) == 2
