"""``harmbench bench NAME``: run one micro-benchmark from :mod:`harmbench.bench`."""

from __future__ import annotations

import argparse
import json

NAME = "bench"
HELP = "run a micro-benchmark (speed of harmbench's code against a reference implementation)"
DESCRIPTION = (
    "Run a micro-benchmark. Each prints a small table; the last line of output is one JSON object "
    '{"bench": NAME, "ratio": ours/reference, "target": goal, ...}.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harmbench.bench import bench_modules

    sub = parser.add_subparsers(dest="bench_name", metavar="NAME")
    for name, mod in bench_modules().items():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from harmbench.bench import bench_modules

    mods = bench_modules()
    name = getattr(args, "bench_name", None)
    if not name:
        print("available benchmarks: " + ", ".join(mods) + "  (harmbench bench NAME --help)")
        return 2
    result = mods[name].run(args)
    result = {"bench": name, **{k: v for k, v in result.items() if k != "bench"}}
    print(json.dumps(result, sort_keys=False, default=str))
    return 0
