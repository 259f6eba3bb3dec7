"""How build tasks run: per-sample cost estimates, longest-first submission, worker memory reuse."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from harmbench.generate.plan import longest_first, make_shards
from harmbench.recipes import estimate_cost, load_build_config, plan_dataset
from harmbench.recipes.base import SampleSpec
from harmbench.recipes.common import DECODE_S_PER_MP, DRAFT_OVERSAMPLE, ENCODE_S_PER_MP, estimate_seconds
from harmbench.transfer import available_transfers, transfer_cost

REPO = Path(__file__).resolve().parents[1]


def _spec(key: str, cost: float, split: str = "train") -> SampleSpec:
    return SampleSpec(key=key, recipe="synthetic", split=split, seed=0, inputs={"cost": cost})


def _cost(spec: SampleSpec) -> float:
    return spec.inputs["cost"]


def test_longest_first_orders_shards_by_summed_cost_ties_in_plan_order():
    # shards of 2: s0 = a+b = 3, s1 = c+d = 7, s2 = e+f = 3, s3 = g = 5 (test split: t0 = 1)
    costs = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 2, "f": 1, "g": 5}
    specs = [_spec(k, v) for k, v in costs.items()] + [_spec("t", 1.0, "test")]
    tasks = make_shards(specs, "d", 2)
    names = [t.name for t in longest_first(tasks, _cost)]
    assert names == [
        "d-train-000001.tar",
        "d-train-000003.tar",
        "d-train-000000.tar",
        "d-train-000002.tar",
        "d-test-000000.tar",
    ]
    # the shards themselves are the same objects: only the order changes
    assert sorted(longest_first(tasks, _cost), key=tasks.index) == tasks
    # uniform costs keep the plan order
    assert longest_first(tasks, lambda s: 1.0) == [t for t in tasks if len(t.specs) == 2] + [
        t for t in tasks if len(t.specs) == 1
    ]


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_longest_first_rejects_a_bad_estimate_naming_the_sample(bad):
    tasks = make_shards([_spec("a", 1.0), _spec("b", bad)], "d", 1)
    with pytest.raises(ValueError, match=r"shard d-train-000001\.tar, sample b"):
        longest_first(tasks, _cost)


def test_estimate_seconds_is_the_documented_sum():
    # a 4000x6000 photo fitted to 1500: output 1000x1500 (1.5 MP); the draft decode reads at most 4x that
    out_mp = 1.5
    decoded = min(24.0, DRAFT_OVERSAMPLE**2 * out_mp)
    want = DECODE_S_PER_MP * (decoded + 0.3) + ENCODE_S_PER_MP * out_mp + transfer_cost("idt") * 0.25 * out_mp
    got = estimate_seconds([(4000, 6000), (500, 600)], 1500, 0.25, "idt")
    assert got == pytest.approx(want, rel=1e-12)
    # no resize: the whole photo is decoded; no op: decode + encode only
    assert estimate_seconds([(100, 200)], None) == pytest.approx((DECODE_S_PER_MP + ENCODE_S_PER_MP) * 0.02)
    assert estimate_seconds([], 256) == 0.0


def test_every_transfer_has_a_positive_cost_and_idt_is_the_slowest_of_iharmony4():
    costs = {n: transfer_cost(n) for n in available_transfers()}
    assert all(math.isfinite(c) and c > 0 for c in costs.values()), costs
    assert costs["idt"] > 3 * max(costs[m] for m in ("reinhard", "xiao", "ychist"))
    with pytest.raises(KeyError, match="unknown colour transfer"):
        transfer_cost("nope")


def test_recipe_costs_follow_their_inputs():
    plan = plan_dataset(load_build_config(REPO / "datasets" / "demo.toml"))
    by_recipe: dict[str, list[float]] = {}
    for s in plan.specs:
        c = estimate_cost(s)
        assert math.isfinite(c) and c > 0, s.key
        by_recipe.setdefault(s.recipe, []).append(c)
    assert set(by_recipe) == {"hcoco", "hadobe5k", "hue", "identical"}
    spec = next(s for s in plan.specs if s.recipe == "hcoco")
    rec = spec.inputs["record"]

    def with_inputs(**kw) -> float:
        return estimate_cost(dataclasses.replace(spec, inputs={**spec.inputs, **kw}))

    # the first method is the one that runs; idt costs more than reinhard on the same object
    assert with_inputs(methods=("idt", "reinhard")) > with_inputs(methods=("reinhard", "idt"))
    # a larger foreground and a larger photo cost more; the estimate matches the documented formula
    assert with_inputs(fg_ratio=0.5) > with_inputs(fg_ratio=0.1)
    big = dataclasses.replace(rec, size=(rec.size[0] * 4, rec.size[1] * 4))
    assert with_inputs(record=big, max_side=None) > with_inputs(max_side=None)
    ref = spec.inputs["references"][0]
    assert estimate_cost(spec) == pytest.approx(
        estimate_seconds(
            [rec.size, ref.size], spec.inputs["max_side"], spec.inputs["fg_ratio"], spec.inputs["methods"][0]
        )
    )
    # hadobe5k decodes two versions of its photo, identical one
    h = next(s for s in plan.specs if s.recipe == "hadobe5k")
    size, side = h.inputs["record"].size, h.inputs["max_side"]
    assert estimate_cost(h) == pytest.approx(estimate_seconds([size, size], side))


_FAULTS = """
import resource, sys
import numpy as np
from harmbench.generate.runner import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(50_000_000, dtype=np.uint8)  # 50 MB: above glibc's default mmap threshold
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, *faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_workers_reuse_freed_memory_instead_of_faulting_it_in_again():
    def run(mode: str) -> tuple[str, list[int]]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        kept, *faults = out.stdout.split()
        return kept, [int(f) for f in faults]

    kept, faults = run("keep")
    if kept != "True":
        pytest.skip("the C library has no mallopt (not glibc)")
    # the first 50 MB block is faulted in once (4 KB or 2 MB pages); the later ones reuse it
    assert faults[0] > 0 and 10 * max(faults[1:]) <= faults[0], faults
    # without the setting every block is mapped and faulted in anew
    _, default = run("default")
    assert 2 * min(default) >= default[0] > 0 and min(default) > 10 * max(faults[1:]), (default, faults)


def test_a_shard_task_runs_opencv_on_its_one_cpu():
    code = (
        "import cv2\n"
        "from harmbench.generate.runner import one_thread_per_task\n"
        "cv2.setNumThreads(4)\n"
        "one_thread_per_task()\n"
        "print(cv2.getNumThreads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1"]
