"""``harmbench build``: recipe TOML -> WebDataset shards, indexes, stats and dataset card."""

from __future__ import annotations

import argparse
import sys

from harmbench.commands._args import non_negative, positive

NAME = "build"
HELP = "build a composite dataset (WebDataset shards) from a recipe, in parallel on Ray."
DESCRIPTION = (
    "Plan the recipe, then write one shard per Ray task. Output is byte-identical for any worker count; "
    "finished shards are kept and an interrupted build resumes where it stopped (use --no-resume to rebuild)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe TOML file")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--workers",
        type=non_negative,
        default=0,
        help="shards built in parallel (local Ray CPUs); default: all CPUs of the machine or cluster",
    )
    p.add_argument(
        "--ray-address", default=None, help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray locally)"
    )
    p.add_argument("--max-samples", type=positive, default=None, help="plan at most K samples (quick builds)")
    p.add_argument("--no-resume", action="store_true", help="rebuild every shard, discarding earlier output")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field (repeatable), e.g. --set shard_size=500",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from harmbench.generate import build_dataset

    if args.workers < 0:
        print("harmbench build: error: --workers must be >= 0", file=sys.stderr)
        return 2
    res = build_dataset(
        args.recipe,
        args.out,
        workers=args.workers,
        ray_address=args.ray_address,
        max_samples=args.max_samples,
        resume=not args.no_resume,
        overrides=args.overrides,
        progress=not args.no_progress,
    )
    st = res.stats
    sk = st["skipped"]
    run_ = st["run"]
    print(
        f"{st['samples']} samples in {st['shards']} shards -> {res.out_dir} "
        f"({run_['shards_built']} built, {run_['shards_resumed']} resumed; "
        f"skipped {sk['plan']} at planning, {sk['synth']} at synthesis; "
        f"{run_['throughput_samples_per_s']:.2f} samples/s over {run_['wall_time_s']:.1f} s)"
    )
    for reason, n in list(sk["by_reason"].items())[:10]:
        print(f"  skipped {n}: {reason}")
    return 0
