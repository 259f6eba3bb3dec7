"""``scripts/gpu-check.sh``: what can be checked without a GPU (syntax, arguments, the dry-run plan)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHON": sys.executable, **(env_extra or {})}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_script_parses_and_documents_itself():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    help_ = _run("--help")
    assert help_.returncode == 0
    for opt in ("--fetch", "--dry-run", "--out", "--train-steps", "pip download", ".gpu-wheels"):
        assert opt in help_.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--bogus",), "unknown argument: --bogus"),
        (("--train-steps", "many"), "--train-steps must be a positive integer"),
        (("--out",), "--out needs a directory"),
    ],
)
def test_bad_arguments_are_clean_errors(args, message):
    r = _run(*args)
    assert r.returncode != 0 and message in r.stderr
    assert "Traceback" not in r.stderr


def test_dry_run_plans_every_step_and_checks_the_inputs(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "lpips-0.1.4-py3-none-any.whl").write_bytes(b"")
    (wheels / "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"")
    alex = wheels / "alexnet_features.pth"
    alex.write_bytes(b"x")
    out = tmp_path / "out"
    r = _run("--dry-run", "--out", str(out), "--wheels", str(wheels), "--train-steps", "50", "--eval-models", "")
    assert r.returncode == 0, r.stderr
    for line in ("install:", "tests:", "eval:", "train:", "--steps 50", "bench eval --device cuda", "-m cuda"):
        assert line in r.stdout
    doc = json.loads((out / "gpu-check.json").read_text())
    assert doc["dry_run"] is True and doc["steps"] == ["install", "tests", "eval", "train"]
    assert set(doc["missing_wheels"]) == {"webdataset", "braceexpand", "pycocotools", "pytest-timeout"}
    assert doc["lpips_backbone"] == str(alex)
    # the CUDA tests it runs are exactly the test files with a cuda mark
    marked = sorted(
        str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "pytest.mark.cuda" in p.read_text()
    )
    assert sorted(doc["cuda_test_files"]) == marked and marked


def test_gpu_wheel_folder_is_ignored_by_git():
    r = subprocess.run(["git", "check-ignore", "-q", ".gpu-wheels/x.whl"], cwd=REPO)
    assert r.returncode == 0


def test_bench_train_full_configs_exist_for_every_model():
    from harmbench.bench.train import MODELS, config_path
    from harmbench.train.config import load_train_config

    for name in MODELS:
        full, cpu = config_path(REPO, name, True), config_path(REPO, name, False)
        assert full.name == f"{name}.toml" and cpu.name == f"{name}-cpu.toml"
        assert load_train_config(full).model.name == load_train_config(cpu).model.name
