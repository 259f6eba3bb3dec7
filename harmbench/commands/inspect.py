"""``harmbench inspect``: summary of a built dataset and a contact sheet of samples."""

from __future__ import annotations

import argparse
import sys

from harmbench.commands._args import non_negative

NAME = "inspect"
HELP = "print a built dataset's statistics and write a contact sheet (composite | mask | real)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a directory written by `harmbench build`")
    p.add_argument("--samples", type=non_negative, default=8, help="rows of the contact sheet (default 8)")
    p.add_argument("--split", default=None, help="take samples from this split only")
    p.add_argument("--out", default=None, help="contact sheet PNG (default: <name>_contact_sheet.png here)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every shard against index.json (file, size, md5, sample count); exit 1 if any is broken",
    )


def verify(root: str) -> int:
    """Print one line per broken shard (shard, member, what is wrong) and a summary; 1 when any is broken."""
    from harmbench.data.shards import verify_shards

    checks = verify_shards(root)
    bad = [c for c in checks if not c.ok]
    for c in bad:
        for problem in c.problems:
            print(f"broken {c.shard}: {problem}", file=sys.stderr)
    print(f"{len(checks) - len(bad)} of {len(checks)} shard(s) intact" + (f", {len(bad)} broken" if bad else ""))
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    from harmbench.generate.report import contact_sheet, load_stats, summarize

    if args.verify:
        return verify(args.dir)
    stats = load_stats(args.dir)
    print(summarize(stats))
    if args.samples > 0:
        out = args.out or f"{stats.get('name', 'dataset')}_contact_sheet.png"

        def report(exc) -> None:
            print(f"skipped {exc}", file=sys.stderr)

        path = contact_sheet(args.dir, out, samples=args.samples, split=args.split, on_skip=report)
        print(f"contact sheet: {path}")
    return 0
