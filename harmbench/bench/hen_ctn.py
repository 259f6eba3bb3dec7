"""``harmbench bench hen-ctn``: HEN/CTN harmonization images/s at 256 px on CPU (committed CPU weights).

Times :meth:`HENCTN.harmonize` of ``hen-ctn-cpu`` (``baselines/weights/hen-ctn-cpu.*``) on batches of
256×256 images with elliptic masks (:func:`harmbench.bench.metrics.make_data`), and the same model
with the contiguous-layout inference (``fast_layout = False``, the implementation before the
channels-last path) as the baseline. Both are timed in turns (one run of each per round, best of
``--repeats``), after checking that their outputs agree (max difference printed; float 0–1).
``img_per_s`` is the fast path's images/s; ``ratio`` = ``img_per_s`` / target (10 img/s). The CPU time
per image (all threads) is printed too: on a machine shared with other jobs it moves less than wall time.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

NAME = "hen-ctn"
HELP = "HEN/CTN (committed CPU weights) harmonization images/s at 256 px on CPU (target >= 10 img/s)"
TARGET = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=32, help="images per timed run (default 32)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the best is reported (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; 0 = torch default)")
    parser.add_argument("--weights", default="hen-ctn-cpu", help="committed weights name (default hen-ctn-cpu)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the contiguous-layout baseline")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from harmbench.bench import format_table
    from harmbench.bench.metrics import make_data
    from harmbench.models.pretrained import load_pretrained

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = load_pretrained(args.weights)
    comp, _, masks = make_data(args.n, args.size, args.seed)
    x = torch.from_numpy(comp).permute(0, 3, 1, 2).float().div(255.0)
    m = torch.from_numpy((masks > 0.5).astype(np.float32))[:, None]
    batches = [(x[i : i + args.batch], m[i : i + args.batch]) for i in range(0, args.n, args.batch)]

    def run_all(fast: bool) -> torch.Tensor:
        model.fast_layout = fast
        return torch.cat([model.harmonize(xb, mb) for xb, mb in batches])

    sides = {"channels-last": True} if args.no_baseline else {"channels-last": True, "contiguous (before)": False}
    outs = {name: run_all(fast) for name, fast in sides.items()}  # warm-up, and the outputs to compare
    diff = None if args.no_baseline else float((outs["channels-last"] - outs["contiguous (before)"]).abs().max())
    best = {name: float("inf") for name in sides}
    cpu = {name: float("inf") for name in sides}
    for _ in range(max(1, args.repeats)):
        for name, fast in sides.items():
            t, c = time.perf_counter(), time.process_time()
            run_all(fast)
            best[name] = min(best[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
    model.fast_layout = True
    rates = {name: args.n / s for name, s in best.items()}
    rows = [
        (name, f"{rates[name]:.2f}", f"{1000 * best[name] / args.n:.1f}", f"{1000 * cpu[name] / args.n:.1f}")
        for name in sides
    ]
    print(
        f"hen-ctn ({args.weights}) harmonize at {args.size}x{args.size}, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(format_table(rows, ("inference", "img/s", "ms/img (wall)", "CPU ms/img (all threads)")))
    if diff is not None:
        print(f"max |channels-last - contiguous| = {diff:.2e} (0-1 scale)")
    img_s = rates["channels-last"]
    return {
        "ratio": round(img_s / TARGET, 3),
        "target": 1.0,
        "img_per_s": round(img_s, 2),
        "target_img_per_s": TARGET,
        "baseline_img_per_s": None if args.no_baseline else round(rates["contiguous (before)"], 2),
        "cpu_ms_per_img": round(1000 * cpu["channels-last"] / args.n, 1),
        "baseline_cpu_ms_per_img": None if args.no_baseline else round(1000 * cpu["contiguous (before)"] / args.n, 1),
        "max_abs_diff": diff,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "n": args.n,
    }
