"""``harmbench harmonize``: apply any method to one photo and mask, or to folders of them."""

from __future__ import annotations

import argparse
import sys

from harmbench.commands._args import add_option_argument, parse_options

NAME = "harmonize"
HELP = "apply a harmonization method (classical, learned or a checkpoint) to a photo and its mask, or to folders"
DESCRIPTION = (
    "Pulls the masked region's colours toward the rest of the photo. IMAGE and MASK are files (OUT a file or folder) "
    "or folders (masks matched by file stem; OUT a folder). Example: harmbench harmonize --method histmatch face.png "
    "inpainted_mask.png -o fixed.png. With folders, an unusable pair is skipped with its reason and the exit "
    "status is 1."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="composite photo, or a folder of them")
    p.add_argument("mask", help="mask of the region to harmonize (white = change), or a folder of masks")
    p.add_argument("-o", "--out", required=True, help="output file (png/jpg) or folder")
    p.add_argument("--method", default=None, help="registered model name or checkpoint (default: reinhard)")
    p.add_argument(
        "--weights",
        default=None,
        metavar="FILE[,FILE]",
        help="weights for --method: the authors' file(s) (comma-separated, any order, e.g. E.pth,G.pth) or a "
        "harmbench checkpoint (without --method: any harmbench checkpoint)",
    )
    p.add_argument(
        "--protocol",
        choices=("harmbench", "official"),
        default=None,
        help="official: the authors' test/inference chain exactly (resize, run mode, seeded dropout, rounding) "
        "for models that define one; the output is then written as their script writes it",
    )
    add_option_argument(
        p, "model option, e.g. --option dropout=false (repeatable; values parsed as TOML, else strings)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the model's randomness: initialisation, the official protocol's dropout (default 0)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda …")
    p.add_argument(
        "--keep-all",
        action="store_true",
        help="keep the model's output outside the mask too (always so under --protocol official)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harmbench.errors import UserError
    from harmbench.eval.apply import harmonize_files, plan_jobs
    from harmbench.eval.score import resolve_device

    device = resolve_device(args.device)
    out = Path(args.out)
    folder = Path(args.image).is_dir()
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    skipped = []

    def report(exc) -> None:  # folders: a bad pair is reported and left out, the others are written
        skipped.append(exc)
        print(f"skipped {exc.path}: {exc.reason}", file=sys.stderr)

    on_skip = report if folder else None
    jobs = plan_jobs(args.image, args.mask, out, on_skip=on_skip)
    options = parse_options(args.options)
    if args.protocol is not None:
        options["protocol"] = args.protocol
    method, weights = args.method or "reinhard", None
    if args.weights:
        from harmbench.models.official import (
            is_harmbench_checkpoint,
            split_weights_spec,
        )

        if args.method is None and is_harmbench_checkpoint(split_weights_spec(args.weights)):
            method = args.weights  # a harmbench checkpoint names its own model
        elif args.method is None:
            raise UserError("--weights with the authors' files needs --method (the model they belong to)")
        else:
            weights = args.weights
    written = harmonize_files(
        method,
        jobs,
        device=device,
        keep_background=not args.keep_all,
        options=options,
        seed=args.seed,
        weights=weights,
        on_skip=on_skip,
    )
    for p in written:
        print(f"wrote {p}")
    if skipped:
        print(f"{len(skipped)} input(s) skipped, {len(written)} written", file=sys.stderr)
        return 1
    return 0
