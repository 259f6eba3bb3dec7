"""``harmbench bench metrics``: batched harmbench metrics vs a per-image numpy/skimage loop.

Both sides get the same 256×256 8-bit images and binary masks. The reference
is the per-image loop of the official scripts (skimage ``mean_squared_error``,
``peak_signal_noise_ratio``, numpy fMSE, skimage ``structural_similarity`` with
the Gaussian window and its full map for fSSIM); ours is one
:func:`harmbench.metrics.compute_metrics` call per batch (``harmbench``
profile, float64). Values are checked equal in the same run before any
speed is reported. Both sides are timed in turns (one run of each per round,
best of ``--repeats`` rounds), so that a change of load on a shared machine
affects them alike. LPIPS throughput is measured separately when AlexNet
weights are available locally.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "metrics"
HELP = "images/s of batched MSE+PSNR+fMSE+SSIM against a per-image skimage loop (target ratio >= 8)"
TARGET = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--batch", type=int, default=16, help="batch size for harmbench (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported (default 3)")
    parser.add_argument("--device", default="cpu", help="torch device for harmbench (default cpu)")
    add_lpips_arguments(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for harmbench (default 1, like the single-threaded reference; 0 = torch default)",
    )
    parser.add_argument("--seed", type=int, default=0)


def add_lpips_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lpips-weights`` / ``--no-lpips``, shared by the benchmarks that time LPIPS."""
    parser.add_argument("--lpips-weights", default=None, help="AlexNet features state dict for the LPIPS timing")
    parser.add_argument("--no-lpips", action="store_true", help="skip the LPIPS timing")


def make_data(n: int, size: int, seed: int = 0):
    """Deterministic smooth images, a perturbed prediction and an elliptic mask per image."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    target = np.empty((n, size, size, 3), np.uint8)
    pred = np.empty_like(target)
    masks = np.empty((n, size, size), np.float64)
    for i in range(n):
        f = rng.uniform(1, 6, size=(3, 2))
        ph = rng.uniform(0, 6.3, size=3)
        base = np.stack([127 + 100 * np.sin(f[c, 0] * 6 * xx + f[c, 1] * 4 * yy + ph[c]) for c in range(3)], -1)
        target[i] = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        cy, cx, ry, rx = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.35), rng.uniform(0.05, 0.35)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        shift = rng.normal(0, 20, 3)
        p = target[i].astype(np.float64) + m[..., None] * shift + rng.normal(0, 3, base.shape)
        pred[i] = np.clip(p, 0, 255).astype(np.uint8)
        masks[i] = m
    return pred, target, masks


def reference_loop(pred, target, masks) -> dict[str, list[float]]:
    """Per-image metrics the way the official scripts compute them (numpy/skimage, float64)."""
    import numpy as np
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    out: dict[str, list[float]] = {"mse": [], "psnr": [], "fmse": [], "ssim": [], "fssim": []}
    r = 5  # border dropped by the 11-tap Gaussian window
    for p8, t8, m in zip(pred, target, masks):
        p = p8.astype(np.float64)
        t = t8.astype(np.float64)
        out["mse"].append(mean_squared_error(t, p))
        out["psnr"].append(peak_signal_noise_ratio(t, p, data_range=255))
        out["fmse"].append(float((m[..., None] * (p - t) ** 2).sum() / (3 * m.sum())))
        s, smap = structural_similarity(
            t,
            p,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=2,
            full=True,
        )
        mc = m[r:-r, r:-r, None]
        out["ssim"].append(float(s))
        out["fssim"].append(float((smap[r:-r, r:-r] * mc).sum() / (3 * mc.sum())))
    return out


def ours(pred, target, masks, batch: int, device: str) -> dict[str, list[float]]:
    import torch

    from harmbench.metrics import compute_metrics, get_profile

    profile = get_profile("harmbench")
    acc: dict[str, list] = {}
    for i in range(0, len(pred), batch):
        p = torch.from_numpy(pred[i : i + batch]).to(device).permute(0, 3, 1, 2)
        t = torch.from_numpy(target[i : i + batch]).to(device).permute(0, 3, 1, 2)
        m = torch.from_numpy(masks[i : i + batch]).to(device)[:, None]
        for k, v in compute_metrics(p, t, m, profile).items():
            acc.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v).tolist() for k, v in acc.items()}


def best_times(fns: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Best wall time (s) and last result of each function, timed in turns: each round runs every
    function once, ``repeats`` rounds, so a change of load on a shared machine hits all sides alike."""
    best = dict.fromkeys(fns, float("inf"))
    results: dict[str, Any] = {}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, results


def find_lpips_weights(explicit: str | None) -> Path | None:
    """A local AlexNet features file: ``explicit``, ``$HARMBENCH_LPIPS_ALEX``, or ``shared/lpips`` beside the checkout."""
    from harmbench.metrics.lpips import ENV_VAR

    candidates = [explicit, os.environ.get(ENV_VAR)]
    shared = os.environ.get("HARMBENCH_SHARED")
    if shared:
        candidates.append(str(Path(shared) / "lpips" / "alexnet_features.pth"))
    candidates.append(str(Path(__file__).resolve().parents[3] / "shared" / "lpips" / "alexnet_features.pth"))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def run(args: argparse.Namespace) -> dict:
    import torch

    saved_threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(saved_threads)


def _run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from harmbench.bench import format_table

    pred, target, masks = make_data(args.n, args.size, args.seed)
    ours(pred[:2], target[:2], masks[:2], args.batch, args.device)  # warm-up (kernels, allocator)
    times, out = best_times(
        {
            "ref": lambda: reference_loop(pred, target, masks),
            "ours": lambda: ours(pred, target, masks, args.batch, args.device),
        },
        args.repeats,
    )
    t_ref, t_ours, ref, mine = times["ref"], times["ours"], out["ref"], out["ours"]
    diffs = {k: float(np.max(np.abs(np.asarray(ref[k]) - np.asarray(mine[k])))) for k in ref}
    tol = {"mse": 1e-9, "psnr": 1e-5, "fmse": 1e-9, "ssim": 1e-6, "fssim": 1e-6}
    match = all(diffs[k] <= tol[k] for k in diffs)
    ref_ips, our_ips = args.n / t_ref, args.n / t_ours
    rows = [
        ("reference: per-image skimage loop", f"{ref_ips:.1f}", f"{t_ref * 1000 / args.n:.2f}"),
        (
            f"harmbench compute_metrics (batch {args.batch}, {args.device})",
            f"{our_ips:.1f}",
            f"{t_ours * 1000 / args.n:.2f}",
        ),
    ]
    lpips_ips, lpips_note = None, ""
    weights = None if args.no_lpips else find_lpips_weights(args.lpips_weights)
    if args.no_lpips:
        lpips_note = "skipped (--no-lpips)"
    elif weights is None:
        lpips_note = "skipped: no local AlexNet weights (--lpips-weights or HARMBENCH_LPIPS_ALEX)"
    else:
        from harmbench.metrics.lpips import load_lpips, lpips_flpips

        model = load_lpips(weights, device=args.device)
        p = torch.from_numpy(pred).permute(0, 3, 1, 2).float()
        t = torch.from_numpy(target).permute(0, 3, 1, 2).float()
        m = torch.from_numpy(masks)[:, None].float()

        def lp():
            for i in range(0, args.n, args.batch):
                lpips_flpips(model, p[i : i + args.batch], t[i : i + args.batch], m[i : i + args.batch])

        lp()  # warm-up
        t_lp = best_times({"lpips": lp}, args.repeats)[0]["lpips"]
        lpips_ips = args.n / t_lp
        lpips_note = f"weights {weights}"
        rows.append(("harmbench LPIPS + fLPIPS (alex v0.1)", f"{lpips_ips:.1f}", f"{t_lp * 1000 / args.n:.2f}"))
    print(f"{args.n} images {args.size}x{args.size}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(format_table(rows, ("implementation", "images/s", "ms/image")))
    print(
        "max |ours - reference|: "
        + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        + ("  (match)" if match else "  (MISMATCH)")
    )
    if lpips_note:
        print(f"LPIPS: {lpips_note}")
    return {
        "bench": NAME,
        "ratio": round(our_ips / ref_ips, 2),
        "target": TARGET,
        "ours_images_per_s": round(our_ips, 2),
        "reference_images_per_s": round(ref_ips, 2),
        "values_match": match,
        "max_abs_diff": diffs,
        "n_images": args.n,
        "size": args.size,
        "batch": args.batch,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "profile": "harmbench",
        "lpips_images_per_s": None if lpips_ips is None else round(lpips_ips, 2),
        "lpips_note": lpips_note,
    }
