"""``harmbench bench hen-ctn``: HEN/CTN harmonization images/s at 256 px on CPU (committed CPU weights).

Times :meth:`HENCTN.harmonize` of ``hen-ctn-cpu`` (``baselines/weights/hen-ctn-cpu.*``) on batches of
256×256 images with elliptic masks (:func:`harmbench.bench.metrics.make_data`) along two paths:

* ``code-folding`` (the default inference, ``fast_infer = True``): one image at a time through
  :meth:`ColorTransferNet.infer`, code channels folded into per-image kernels, instance norm in place;
* ``channels-last batched (before)`` (``fast_infer = False``): the whole batch in channels-last layout,
  the implementation before the code-folding path.

Both are timed in turns (one run of each per round, best of ``--repeats``) after checking that their
outputs agree: ``max_abs_diff`` is the largest difference on the 0–1 scale (≥ 0; a few 1e-6 expected)
and ``u8_diff_frac`` the fraction (0–1) of channel values whose 8-bit rounding (×255) differs.
``img_per_s`` is the code-folding path's images/s (wall clock); ``ratio`` = ``img_per_s`` / target
(10 img/s). The CPU time per image (ms, all threads) is printed too: on a machine shared with other
jobs it moves less than wall time.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

NAME = "hen-ctn"
HELP = "HEN/CTN (committed CPU weights) harmonization images/s at 256 px on CPU (target >= 10 img/s)"
TARGET = 10.0
FAST, BEFORE = "code-folding", "channels-last batched (before)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=32, help="images per timed run (default 32)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the best is reported (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; 0 = torch default)")
    parser.add_argument("--weights", default="hen-ctn-cpu", help="committed weights name (default hen-ctn-cpu)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the channels-last batched baseline")
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
        model.fast_infer = fast
        try:
            return torch.cat([model.harmonize(xb, mb) for xb, mb in batches])
        finally:
            model.fast_infer = True

    sides = {FAST: True} if args.no_baseline else {FAST: True, BEFORE: False}
    outs = {name: run_all(fast) for name, fast in sides.items()}  # warm-up, and the outputs to compare
    diff = frac = None
    if not args.no_baseline:
        diff = float((outs[FAST] - outs[BEFORE]).abs().max())
        frac = float(((outs[FAST] * 255).round() != (outs[BEFORE] * 255).round()).float().mean())
    best = {name: float("inf") for name in sides}
    cpu = {name: float("inf") for name in sides}
    for _ in range(max(1, args.repeats)):
        for name, fast in sides.items():
            t, c = time.perf_counter(), time.process_time()
            run_all(fast)
            best[name] = min(best[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
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
        print(f"max |code-folding - before| = {diff:.2e} (0-1 scale); 8-bit values differing: {frac:.2e}")
        print(f"speed-up vs before: {rates[FAST] / rates[BEFORE]:.2f}x wall, {cpu[BEFORE] / cpu[FAST]:.2f}x CPU time")
    img_s = rates[FAST]
    return {
        "ratio": round(img_s / TARGET, 3),
        "target": 1.0,
        "img_per_s": round(img_s, 2),
        "target_img_per_s": TARGET,
        "baseline_img_per_s": None if args.no_baseline else round(rates[BEFORE], 2),
        "cpu_ms_per_img": round(1000 * cpu[FAST] / args.n, 1),
        "baseline_cpu_ms_per_img": None if args.no_baseline else round(1000 * cpu[BEFORE] / args.n, 1),
        "max_abs_diff": diff,
        "u8_diff_frac": frac,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "n": args.n,
    }
