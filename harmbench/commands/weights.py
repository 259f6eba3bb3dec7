"""``harmbench weights``: list model cards, fetch their files into the weights cache, import files by hand."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "weights"
HELP = "list model cards and their weight files; fetch them into the weights cache or import them by hand."
DESCRIPTION = (
    "The weights cache is $HARMBENCH_WEIGHTS (default ~/.cache/harmbench/weights), one folder per model card; "
    "weights committed with the repository (baselines/weights) are found too. A cached card's name works as "
    "--weights NAME."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    ls = sub.add_parser("list", help="table of model cards: files, size, sha256, licence, source, cached or not")
    ls.add_argument("--model", default=None, help="only the cards of this registry model")
    ls.add_argument("--json", action="store_true", help="print the rows as JSON (full sha256, paths, URLs)")
    ls.add_argument("--wide", action="store_true", help="full sha256 digests in the table")
    fe = sub.add_parser("fetch", help="download a card's files that have a direct link (resumable, verified)")
    fe.add_argument("names", nargs="+", metavar="NAME", help="model card name(s)")
    fe.add_argument("--retries", type=int, default=3, help="retries after a cut connection, each resuming (default 3)")
    fe.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    fe.add_argument("--no-progress", action="store_true", help="no progress bar")
    im = sub.add_parser("import", help="verify hand-downloaded files against a card and copy them into the cache")
    im.add_argument("name", metavar="NAME", help="model card name")
    im.add_argument("files", nargs="+", metavar="FILE", help="the downloaded file(s)")


def _list(args: argparse.Namespace) -> int:
    from harmbench.models.cards import list_cards
    from harmbench.models.weights_cache import cache_dir, card_rows, format_table

    cards = list_cards(args.model)
    rows = card_rows(cards)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not cards:
        print("no model cards registered" + (f" for model {args.model!r}" if args.model else ""))
        return 0
    print(format_table(rows, wide=args.wide))
    print(f"\nweights cache: {cache_dir()}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from harmbench.models.cards import get_card
    from harmbench.models.weights_cache import fetch

    cards = [get_card(n) for n in args.names]  # every name checked before any download
    incomplete = 0
    for card in cards:
        report = fetch(card, retries=args.retries, timeout=args.timeout, progress=False if args.no_progress else None)
        for f in report.files:
            if f.status == "manual":
                print(f"{card.name}: {f.filename}: no direct link", file=sys.stderr)
                print(f"  {f.instructions}", file=sys.stderr)
                continue
            if f.status == "cached":
                print(f"{card.name}: {f.filename}: already in the cache: {f.path}")
                continue
            check = "size and sha256 verified" if f.sha256_known else f"sha256 {f.sha256}; the card publishes none"
            print(f"{card.name}: {f.filename}: fetched -> {f.path} ({check})")
        incomplete += not report.complete
    return 1 if incomplete else 0


def _import(args: argparse.Namespace) -> int:
    from harmbench.models.weights_cache import import_files, missing_files

    for f in import_files(args.name, args.files):
        check = "size and sha256 verified" if f.sha256_known else f"sha256 {f.sha256}; the card publishes none"
        print(f"{args.name}: {f.filename}: imported -> {f.path} ({check})")
    left = missing_files(args.name)
    if left:
        print(f"{args.name}: still missing {', '.join(f.filename for f in left)}", file=sys.stderr)
        return 1
    return 0


ACTIONS = {"list": _list, "fetch": _fetch, "import": _import}


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "weights_command", None)
    if action is None:  # plain `harmbench weights`: the list
        return _list(argparse.Namespace(model=None, json=False, wide=False))
    return ACTIONS[action](args)
