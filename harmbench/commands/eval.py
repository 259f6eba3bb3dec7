"""``harmbench eval``: run a model over a dataset and score it (resumable run directory)."""

from __future__ import annotations

import argparse
import sys

from harmbench.commands._args import add_option_argument, non_negative, parse_options, positive

NAME = "eval"
HELP = "run a model (name or checkpoint) over a dataset and score every output into a run folder"
DESCRIPTION = (
    "Batched inference and metrics (CUDA when present, else CPU). Writes RUN_DIR/samples.parquet (one row per sample: "
    "key, subset, recipe, category, fg_ratio, every metric, seconds) and RUN_DIR/run.json (versions, device, dataset "
    "hash, profile, model and weights hash, timing, summary). An interrupted run resumes; a RUN_DIR holding a run with "
    "another model, dataset or protocol is refused."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="NAME|CHECKPOINT", help="registered model name or checkpoint file")
    p.add_argument(
        "--weights",
        default=None,
        metavar="FILE[,FILE]",
        help="weights for --model NAME: the authors' file(s) (e.g. E.pth,G.pth, any order) or a harmbench checkpoint",
    )
    p.add_argument(
        "--protocol",
        choices=("harmbench", "official"),
        default=None,
        help="harmbench (deterministic, any size) or official (the authors' test script; use --resize fixed256); "
        "models that have the option only (default: the model's own)",
    )
    p.add_argument(
        "--harmony",
        nargs="?",
        const="bargainnet-cpu",
        default=None,
        metavar="EXTRACTOR",
        help="add a 'harmony' column: BargainNet's no-reference score of each output, with the authors' "
        "latest_net_E.pth or a harmbench BargainNet (default bargainnet-cpu, harmbench's own)",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SHARDS|IHARMONY4_ROOT|FOLDER",
        help="built shard directory, iHarmony4 root or flat triplet folder",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created; resumed when it exists)")
    p.add_argument(
        "--profile",
        default="harmbench",
        help="metric profile: harmbench (default), iharm, dovenet, zhenglab, pctnet, dccf",
    )
    p.add_argument("--resize", default="fixed256", help="fixed256 (default), limit1024 or none")
    p.add_argument("--split", default="test", help="split to evaluate (default test; 'all' for every sample)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    p.add_argument("--batch-size", type=positive, default=16, metavar="B", help="samples per batch (default 16)")
    p.add_argument(
        "--workers",
        type=non_negative,
        default=None,
        metavar="N",
        help="DataLoader decoding processes (default: 0 for small runs, else up to 4)",
    )
    p.add_argument("--limit", type=positive, default=None, metavar="K", help="evaluate only the first K samples")
    p.add_argument("--lpips", action="store_true", help="also compute LPIPS and foreground LPIPS")
    p.add_argument("--lpips-weights", metavar="FILE", help="local AlexNet backbone weights for LPIPS (offline use)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation and randomness (default 0)")
    add_option_argument(p, "model option, e.g. --option preset=small (repeatable; values parsed as TOML, else strings)")
    p.add_argument(
        "--previews", type=non_negative, default=8, metavar="K", help="keep K preview images per run (default 8)"
    )
    p.add_argument("--restart", action="store_true", help="discard whatever RUN_DIR holds and start over")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any shard is broken or any sample was skipped (default: only when nothing was scored)",
    )
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")


def run(args: argparse.Namespace) -> int:
    from harmbench.eval.aggregate import breakdown
    from harmbench.eval.loop import EvalOptions, evaluate

    opts = EvalOptions(
        profile=args.profile,
        resize=args.resize,
        split=None if args.split in ("all", "") else args.split,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        limit=args.limit,
        lpips=args.lpips,
        lpips_weights=args.lpips_weights,
        seed=args.seed,
        previews=args.previews,
        progress=False if args.no_progress else None,
        restart=args.restart,
        model_options=parse_options(args.options),
        weights=args.weights,
        protocol=args.protocol,
        harmony=args.harmony,
    )
    res = evaluate(args.model, args.data, args.out, opts)
    run = res.run
    prof = run.get("profile", {})
    edges = tuple(prof.get("bucket_edges", (0.0, 0.05, 0.15, 1.0)))
    table = breakdown(
        res.samples,
        kinds=("all", "subset", "bucket"),
        bucket_edges=edges,
        bucket_inclusive=prof.get("bucket_inclusive", "half-open"),
        n_boot=0,
    )
    mets = [
        m for m in ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim", "lpips", "flpips", "harmony") if m in table.columns
    ]
    head = f"{'':<18}{'N':>6}" + "".join(f"{m:>10}" for m in mets)
    print(
        f"model {run['model']['name']}, protocol {run.get('protocol', 'harmbench')}, profile {prof.get('name')}, "
        f"resize {run.get('resize')} -> {res.run_dir}"
    )
    if run.get("harmony"):
        print(f"harmony: {run['harmony']}")
    print(head)
    print("-" * len(head))
    for _, r in table.iterrows():
        name = r["group"] if r["kind"] != "bucket" else f"fg {r['group']}%"
        cells = "".join(
            f"{r[m]:>10.4f}" if m in ("ssim", "fssim", "lpips", "flpips", "harmony") else f"{r[m]:>10.2f}" for m in mets
        )
        print(f"{name:<18}{int(r['n']):>6}{cells}")
    t = run.get("timing", {})
    state = "reused finished run" if res.reused else f"{res.new_samples} new samples"
    ips = t.get("images_per_s")
    broken = run.get("broken_shards", [])
    print(
        f"{len(res.samples)} samples ({state}); {run.get('n_skipped', 0)} skipped"
        + (f"; {len(broken)} broken shard(s) left out" if broken else "")
        + (f"; {ips:.2f} images/s" if ips else "")
    )
    for s in run.get("skipped", []):
        where = s.get("path") or ""
        key = s.get("key") or ""
        print(f"  skipped {where}{': ' + key if key and key not in where else ''}: {s.get('reason')}", file=sys.stderr)
    for b in broken:
        member = f" member {b['member']}" if b.get("member") else ""
        print(f"  broken shard {b.get('shard')}{member}: {b.get('reason')}", file=sys.stderr)
    if len(res.samples) == 0:
        print(f"harmbench eval: nothing could be scored in {args.data}", file=sys.stderr)
        return 1
    if args.strict and (broken or run.get("skipped")):
        return 1
    return 0
