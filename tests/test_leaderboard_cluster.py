"""A leaderboard run through a real two-node Ray cluster (``ray start`` on 127.0.0.1).

The driver is this test process (the ``ray_cluster`` fixture sets ``RAY_AUTH_MODE=disabled`` here while the
cluster is up).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from harmbench.bench.eval import write_synthetic_shards  # noqa: E402
from harmbench.leaderboard import export_leaderboard, load_leaderboard, run_leaderboard  # noqa: E402


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
    from harmbench.eval.loop import evaluate

    ref = evaluate(
        "reinhard",
        data,
        tmp_path / "local-reinhard",
        resize="none",
        batch_size=4,
        workers=0,
        progress=False,
        previews=0,
    )
    ray_df = pd.read_parquet(lb.run_dir(lb.datasets[0], lb.models[1]) / "samples.parquet")
    pd.testing.assert_frame_equal(ray_df.drop(columns="seconds"), ref.samples.drop(columns="seconds"))
    ctx = export_leaderboard(toml, "csv,md", out=tmp_path / "export")
    assert len(ctx.results[ctx.results["subset"] == "All"]) == 4
