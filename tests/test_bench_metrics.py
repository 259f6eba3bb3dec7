"""``harmbench bench`` dispatch and the metrics benchmark."""

from __future__ import annotations

import json

import numpy as np

from harmbench.bench import bench_modules, format_table
from harmbench.cli import main


def test_registry_discovers_bench_modules():
    mods = bench_modules()
    assert "metrics" in mods
    for name, mod in mods.items():
        assert name == mod.NAME and callable(mod.run) and mod.HELP


def test_bench_without_name_lists_benchmarks(capsys):
    assert main(["bench"]) == 2
    assert "metrics" in capsys.readouterr().out


def test_bench_metrics_last_line_is_json(capsys):
    assert main(["bench", "metrics", "--n", "4", "--batch", "2", "--repeats", "1", "--no-lpips"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(lines[-1])
    assert rec["bench"] == "metrics" and rec["target"] == 8
    assert rec["ratio"] > 0 and rec["values_match"] is True
    assert rec["lpips_images_per_s"] is None and "skipped" in rec["lpips_note"]
    assert any("images/s" in line for line in lines[:-1])  # the table


def test_reference_loop_agrees_with_ours():
    from harmbench.bench.metrics import make_data, ours, reference_loop

    pred, target, masks = make_data(3, 64, seed=1)
    ref = reference_loop(pred, target, masks)
    mine = ours(pred, target, masks, batch=2, device="cpu")
    for k in ref:
        np.testing.assert_allclose(mine[k], ref[k], rtol=1e-6, atol=1e-6, err_msg=k)
    assert len(set(np.round(ref["psnr"], 6))) == 3


def test_format_table():
    out = format_table([("a", 1.5), ("longer", 2)], ("name", "value"))
    assert out.splitlines()[0].startswith("name  ") and "------" in out.splitlines()[1]


def test_best_times_runs_each_side_once_per_round():
    from harmbench.bench.metrics import best_times

    calls = []
    times, results = best_times({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3)
    assert calls == ["a", "b"] * 3 and results == {"a": 1, "b": 2}
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
