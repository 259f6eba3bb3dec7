"""Bring your own method without forking: ``package.module:factory`` specs and the ``harmbench.models`` entry points.

A tiny plugin package is built and installed (with pip, into a folder of its own) at test time, then run
through ``harmbench eval`` and a leaderboard in a subprocess that sees it on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from harmbench.bench.eval import write_synthetic_shards
from harmbench.errors import ConfigError
from harmbench.models import load_factory
from harmbench.models.resolve import ModelLoadError, resolve_model

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A plugin method: brightens the foreground by ``gain`` (0-1 scale), leaves the background as it is."""
import torch


class Brighten:
    name = "brighten"

    def __init__(self, gain=0.1):
        self.gain = float(gain)

    def harmonize(self, composite, mask):
        return (composite + self.gain * mask).clamp(0.0, 1.0)


def make(gain=0.1):
    return Brighten(gain)


def not_a_model():
    return 42
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """``hb_plugin_demo`` installed with pip into its own folder, registering entry point ``brighten``."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    (src / "hb_plugin_demo").mkdir(parents=True)
    (src / "hb_plugin_demo" / "__init__.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "hb-plugin-demo"
        version = "0.0.1"

        [project.entry-points."harmbench.models"]
        brighten = "hb_plugin_demo:make"
        broken = "hb_plugin_demo_missing:make"
    """)
    )
    site = root / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (site / "hb_plugin_demo" / "__init__.py").is_file()
    return site


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plugdata") / "synth"
    write_synthetic_shards(out, 6, width=48, height=32, shard_size=8, seed=5)
    return out


def _run(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "harmbench.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def _expected_fmse_drop(shards: Path, tmp_path: Path) -> pd.Series:
    """The same method computed in this process, for comparison with the plugin's run."""
    from harmbench.eval.loop import evaluate

    class Brighten:
        name = "brighten-here"

        def harmonize(self, composite, mask):
            return (composite + 0.25 * mask).clamp(0.0, 1.0)

    res = evaluate(Brighten(), shards, tmp_path / "here", workers=0, progress=False)
    return res.samples.set_index("key")["fmse"]


def test_entry_point_and_factory_through_eval(plugin_site, shards, tmp_path):
    expected = _expected_fmse_drop(shards, tmp_path)
    for spec, run in (("brighten", "ep"), ("hb_plugin_demo:make", "factory")):
        proc = _run(
            [
                "eval",
                "--model",
                spec,
                "--data",
                str(shards),
                "--out",
                str(tmp_path / run),
                "--option",
                "gain=0.25",
                "--workers",
                "0",
                "--no-progress",
            ],
            plugin_site,
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        samples = pd.read_parquet(tmp_path / run / "samples.parquet").set_index("key")
        pd.testing.assert_series_equal(samples["fmse"].sort_index(), expected.sort_index(), check_names=False)
        run_doc = json.loads((tmp_path / run / "run.json").read_text())
        assert run_doc["model"]["name"] == spec


def test_entry_point_in_a_leaderboard(plugin_site, shards, tmp_path):
    board = tmp_path / "board"
    board.mkdir()
    (board / "leaderboard.toml").write_text(f"""
[leaderboard]
title = "plugins"
profile = "harmbench"
resize = "none"
lpips = false
bootstrap = 50
batch_size = 4
workers = 0
grid_samples = 2

[[datasets]]
name = "synth"
path = "{shards}"

[[models]]
name = "composite"

[[models]]
name = "brighten"
label = "Brighten (plugin)"
options = {{ gain = 0.25 }}

[[models]]
name = "hb_plugin_demo:make"
label = "Brighten (factory)"
options = {{ gain = 0.25 }}
""")
    proc = _run(["leaderboard", "run", str(board / "leaderboard.toml")], plugin_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _run(["leaderboard", "export", str(board / "leaderboard.toml")], plugin_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(board / "results.csv")
    table = table[table["subset"] == "All"]
    rows = table[table["method"].str.startswith("Brighten")]
    assert len(rows) == 2 and rows["fmse"].nunique() == 1  # same method, same numbers, two ways
    comp = table[table["method"] == "composite"]["fmse"]
    assert (rows["fmse"] != comp.iloc[0]).all()


def test_broken_plugin_and_bad_factories_are_named(plugin_site, shards, tmp_path):
    proc = _run(
        ["eval", "--model", "broken", "--data", str(shards), "--out", str(tmp_path / "b"), "--no-progress"],
        plugin_site,
        tmp_path,
    )
    assert proc.returncode == 2 and "hb_plugin_demo_missing:make" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(ConfigError, match="no harmonize"):
        load_factory("tests.test_plugins:_not_a_model_factory")
    with pytest.raises(ConfigError, match="cannot import 'no_such_pkg_xyz'"):
        load_factory("no_such_pkg_xyz:make")
    with pytest.raises(ModelLoadError, match="has no attribute 'nope'"):
        resolve_model("harmbench.models:nope")


def _not_a_model_factory():
    return torch.zeros(1)
