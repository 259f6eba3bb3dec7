"""The ``harmbench`` command line: a thin dispatcher over :mod:`harmbench.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from harmbench import __version__
from harmbench.errors import UserError


def _command_modules():
    import harmbench.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            yield mod


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harmbench",
        description="Image-harmonization datasets, baselines, metrics and leaderboards.",
    )
    parser.add_argument("--version", action="version", version=f"harmbench {__version__}")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="skip images with more than N pixels (default: Pillow's 89478485; 0: no limit)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


#: Exit status when an unexpected exception reached the command line (a harmbench bug).
EXIT_INTERNAL = 3
DEBUG_ENV = "HARMBENCH_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit status 0 (done), 1 (the command's own "nothing/partly done" status),
    2 (bad input: a :class:`UserError` naming the file or field), 3 (internal error), 130 (interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args.max_pixels is not None:
        if args.max_pixels < 0:
            parser.error("--max-pixels must be >= 0")
        from harmbench.imaging import MAX_PIXELS_ENV

        os.environ[MAX_PIXELS_ENV] = str(args.max_pixels)  # Ray workers and subprocesses inherit it
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"harmbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and the next run resumes from it", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            f"harmbench {args.command}: error: out of memory (lower --workers/--batch-size or --max-pixels)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - last resort: one line, the traceback only on request
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"harmbench {args.command}: internal error: {type(exc).__name__}: {exc} "
            f"(a harmbench bug; set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
