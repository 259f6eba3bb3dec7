"""``harmbench leaderboard run|export NAME``: run a leaderboard's missing cells, write its tables and figures."""

from __future__ import annotations

import argparse
import sys

from harmbench.commands._args import non_negative, positive

NAME = "leaderboard"
HELP = "run a leaderboard (leaderboards/NAME/leaderboard.toml) or export its tables and figures"
DESCRIPTION = (
    "run: build missing datasets and evaluate every missing (dataset, model) cell; finished runs are reused, "
    "interrupted ones resume, and a run made under another protocol is an error. With --ray-address (or RAY_ADDRESS) "
    "cells run as Ray tasks on that cluster. export: results.csv plus md/tex/html tables, charts and a qualitative grid."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    r = sub.add_parser("run", help="run the missing cells of a leaderboard")
    r.add_argument("name", help="leaderboard name (leaderboards/NAME/), folder or TOML file")
    r.add_argument("--ray-address", default=None, help="run cells as Ray tasks on this cluster (default: $RAY_ADDRESS)")
    r.add_argument("--device", default="auto", help="device of local cells: auto (CUDA when available), cpu, cuda …")
    r.add_argument("--workers", type=non_negative, default=None, help="DataLoader decoding processes per cell")
    r.add_argument(
        "--model", dest="models", action="append", default=None, metavar="LABEL", help="only this model (repeatable)"
    )
    r.add_argument("--restart", action="store_true", help="discard existing runs of the selected cells")
    r.add_argument("--export", default=None, metavar="FORMATS", help="export afterwards in these formats")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a cell run now met a broken shard or skipped a sample (default: only when "
        "no cell scored anything)",
    )
    e = sub.add_parser("export", help="write tables, charts and the qualitative grid")
    e.add_argument("name", help="leaderboard name, folder or TOML file")
    e.add_argument(
        "--format",
        default=None,
        metavar="FORMATS",
        help="comma-separated: csv,md,tex,html,png,grid (default: all); results.csv is always written",
    )
    e.add_argument("--out", default=None, metavar="DIR", help="output folder (default: the leaderboard's folder)")
    e.add_argument(
        "--bootstrap", type=positive, default=None, metavar="B", help="bootstrap resamples (default: the definition's)"
    )
    e.add_argument("--grid-samples", type=non_negative, default=None, metavar="K", help="rows of the qualitative grid")


def _export(
    name: str, formats: str | None, out: str | None = None, n_boot: int | None = None, grid: int | None = None
) -> None:
    from harmbench.leaderboard.export import export_leaderboard

    ctx = export_leaderboard(name, formats, out=out, n_boot=n_boot, grid_samples=grid)
    for p in ctx.written:
        print(f"wrote {p}")
    for c, why in ctx.collected.missing:
        print(f"  missing {c}: {why}")


def finished_runs(lb, only_models: list[str] | None) -> list[dict]:
    """``run.json`` of every finished cell of ``lb`` (of ``only_models`` when given)."""
    from harmbench.eval.records import RunStore
    from harmbench.leaderboard.store import cells

    out = []
    for c in cells(lb):
        if only_models and c.model.label not in only_models and c.model.name not in only_models:
            continue
        if c.state() == "finished":
            out.append(RunStore(c.run_dir).read_run())
    return out


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action == "run":
        from harmbench.leaderboard.run import run_leaderboard

        res = run_leaderboard(
            args.name,
            ray_address=args.ray_address,
            device=args.device,
            workers=args.workers,
            restart=args.restart,
            progress=False if args.no_progress else None,
            only_models=args.models,
            report=print,
        )
        for n in res.notes:
            print(f"note: {n}")
        for c, why in res.skipped:
            print(f"skipped {c}: {why}")
        docs = finished_runs(res.leaderboard, args.models)
        broken = {
            (b.get("shard"), b.get("member"), b.get("reason")) for d in docs for b in d.get("broken_shards") or []
        }
        for shard, member, reason in sorted(broken, key=str):
            print(f"broken shard {shard}{' member ' + member if member else ''}: {reason} (left out)", file=sys.stderr)
        if args.export:
            _export(args.name, args.export)
        if docs and not any(d.get("n_samples") for d in docs):
            print("harmbench leaderboard: nothing could be scored", file=sys.stderr)
            return 1
        if args.strict and (broken or any(d.get("n_skipped") for d in docs)):
            return 1
        return 0
    if action == "export":
        _export(args.name, args.format, args.out, args.bootstrap, args.grid_samples)
        return 0
    print("usage: harmbench leaderboard {run,export} NAME  (harmbench leaderboard --help)")
    return 2
