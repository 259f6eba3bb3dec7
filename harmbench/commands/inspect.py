"""``harmbench inspect``: summary of a built dataset and a contact sheet of samples."""

from __future__ import annotations

import argparse

NAME = "inspect"
HELP = "print a built dataset's statistics and write a contact sheet (composite | mask | real)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a directory written by `harmbench build`")
    p.add_argument("--samples", type=int, default=8, help="rows of the contact sheet (default 8)")
    p.add_argument("--split", default=None, help="take samples from this split only")
    p.add_argument("--out", default=None, help="contact sheet PNG (default: <name>_contact_sheet.png here)")


def run(args: argparse.Namespace) -> int:
    from harmbench.generate.report import contact_sheet, load_stats, summarize

    stats = load_stats(args.dir)
    print(summarize(stats))
    if args.samples > 0:
        out = args.out or f"{stats.get('name', 'dataset')}_contact_sheet.png"
        path = contact_sheet(args.dir, out, samples=args.samples, split=args.split)
        print(f"contact sheet: {path}")
    return 0
