"""``harmbench score``: score a triplet dataset folder offline (composites or a predictions folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harmbench.commands._args import non_negative, positive

NAME = "score"
HELP = "score a dataset folder (iHarmony4 layout or flat triplets) under a metric profile"
DESCRIPTION = (
    "Score the composites of DATASET (the 'composite' baseline row) or, with --predictions, a folder of "
    "harmonized images matched by composite key. Prints All / per-subset / per-fg-bucket means with N. "
    "Bad samples are skipped with a reason; the exit status is 1 when nothing could be scored "
    "(or, with --strict, when anything was skipped)."
)

EXIT_OK = 0
EXIT_SKIPPED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        metavar="DATASET",
        help="iHarmony4-layout root, one subset folder, or a flat triplet folder; with --no-reference "
        "a folder of composites and masks (composites/ + masks/, or X.png + X_mask.png)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="no real images: print BargainNet's harmony score exp(-0.04212*|z_b - z_f|) per composite",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE[,FILE]",
        default=None,
        help="--no-reference extractor: the authors' latest_net_E.pth (or their E.pth,G.pth), a harmbench "
        "BargainNet checkpoint or a committed name (default bargainnet-cpu, harmbench's own E)",
    )
    parser.add_argument(
        "--predictions", metavar="DIR", help="folder of predictions named by composite stem (flat or per subset)"
    )
    parser.add_argument(
        "--profile",
        default="harmbench",
        help="metric profile: iharm, dovenet, zhenglab, pctnet, dccf, harmbench (default)",
    )
    parser.add_argument("--resize", default="fixed256", help="fixed256 (default), limit1024 or none")
    parser.add_argument(
        "--split",
        default="test",
        help="split whose split files select composites (default test); 'all' ignores split files",
    )
    parser.add_argument("--lpips", action="store_true", help="also compute LPIPS and foreground LPIPS")
    parser.add_argument(
        "--lpips-weights", metavar="FILE", help="local AlexNet backbone weights for LPIPS (offline use)"
    )
    parser.add_argument("--json", metavar="OUT", help="write aggregates, per-sample values and skips to this JSON file")
    parser.add_argument("--strict", action="store_true", help="exit non-zero when any sample was skipped")
    parser.add_argument(
        "--batch-size", type=positive, default=16, metavar="B", help="samples per metric batch (default 16)"
    )
    parser.add_argument("--workers", type=positive, default=4, metavar="N", help="decoding threads (default 4)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    parser.add_argument(
        "--palette-index",
        type=non_negative,
        default=None,
        metavar="K",
        help="palette (mode P) masks: only index K is foreground (default: every index but 0)",
    )
    parser.add_argument("--no-progress", action="store_true", help="never show the progress bar")


def run_no_reference(args: argparse.Namespace) -> int:
    """Harmony score of every composite + mask pair of ``args.dataset`` (no real image needed)."""
    from harmbench.eval.report import write_json
    from harmbench.eval.score import resolve_device
    from harmbench.models.harmony import load_extractor, score_folder

    device = resolve_device(args.device)
    ext = load_extractor(args.weights, device=device)
    skipped: list[dict[str, str]] = []

    def on_skip(exc) -> None:
        skipped.append({"path": exc.path, "reason": exc.reason})
        print(f"skipped {exc.path}: {exc.reason}", file=sys.stderr)

    rows = score_folder(args.dataset, ext, on_skip=on_skip)
    print(f"harmony score exp(-0.04212*|z_b - z_f|), higher = more harmonious; extractor: {ext.label}")
    width = max([len("composite"), *(len(Path(r.composite).name) for r in rows)])
    print(f"{'composite':<{width}}  {'score':>8}")
    for r in rows:
        print(f"{Path(r.composite).name:<{width}}  {r.score:>8.4f}")
    mean = sum(r.score for r in rows) / len(rows) if rows else float("nan")
    print(f"{'mean':<{width}}  {mean:>8.4f}  (N={len(rows)})")
    if args.json:
        write_json(
            {
                "metric": "harmony",
                "formula": "exp(-0.04212*||z_b - z_f||_2)",
                "extractor": {"label": ext.label, "authors": ext.authors, "size": ext.size},
                "images": [{"composite": r.composite, "mask": r.mask, "score": r.score} for r in rows],
                "mean": mean if rows else None,
                "n": len(rows),
                "skipped": skipped,
            },
            args.json,
        )
    if not rows:
        return EXIT_SKIPPED
    return EXIT_SKIPPED if args.strict and skipped else EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.no_reference:
        return run_no_reference(args)
    from tqdm import tqdm

    from harmbench.eval.report import write_json
    from harmbench.eval.score import ScoreOptions, score_dataset

    def report_skip(s) -> None:
        tqdm.write(f"skipped {s.path}: {s.reason}", file=sys.stderr)  # does not break a running progress bar

    opts = ScoreOptions(
        profile=args.profile,
        resize=args.resize,
        split=None if args.split in ("all", "") else args.split,
        predictions=args.predictions,
        lpips=args.lpips,
        lpips_weights=args.lpips_weights,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=False if args.no_progress else None,
        palette_index=args.palette_index,
    )
    result = score_dataset(args.dataset, opts, on_skip=report_skip)
    print(result.format_table())
    if result.skipped:
        print(f"{len(result.skipped)} input(s) skipped (see messages above)", file=sys.stderr)
    if args.json:
        write_json(result.to_dict(), args.json)
    if result.n == 0:
        why = (
            ""
            if result.skipped
            else (
                " (no triplet found: expected an iHarmony4 layout, SUBSET/{composite_images,masks,real_images}, or a flat "
                "folder of N + N-gt + N-mask or <real>_<mask>_<k> + <real>_<mask> + <real> images)"
            )
        )
        print(f"harmbench score: nothing could be scored in {args.dataset}{why}", file=sys.stderr)
        return EXIT_SKIPPED
    if args.strict and result.skipped:
        return EXIT_SKIPPED
    return EXIT_OK
