"""``harmbench demo``: the main job on the embedded demo data, end to end.

Builds the demo dataset from ``datasets/demo.toml`` (photos bundled with
scikit-image, hand-drawn masks), evaluates every baseline of
``leaderboards/demo/leaderboard.toml`` on its test split and exports the
leaderboard (tables, charts, qualitative grid) plus a contact sheet of the
dataset into ``--out`` (default ``runs/demo/export``, git-ignored; pass
``--out leaderboards/demo`` to refresh the committed leaderboard). Finished
steps are reused, so a second run is quick.
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "build the demo dataset, evaluate every baseline and export the demo leaderboard (the README's main job)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leaderboard", default="demo", help="leaderboard to run (default: demo)")
    p.add_argument(
        "--ray-address", default=None, help="run the cells on this Ray cluster (default: $RAY_ADDRESS or local)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda …")
    p.add_argument("--restart", action="store_true", help="recompute every cell")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where the tables and figures go (default: runs/<leaderboard>/export beside the runs, "
        "git-ignored; leaderboards/demo refreshes the committed leaderboard)",
    )


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from harmbench.generate.report import contact_sheet
    from harmbench.leaderboard.definition import load_leaderboard
    from harmbench.leaderboard.export import export_leaderboard
    from harmbench.leaderboard.run import run_leaderboard

    t0 = time.perf_counter()
    lb = load_leaderboard(args.leaderboard)
    print(
        f"[1/3] datasets and runs of leaderboard '{lb.name}' ({len(lb.datasets)} dataset(s) x {len(lb.models)} model(s))"
    )
    res = run_leaderboard(
        lb,
        ray_address=args.ray_address,
        device=args.device,
        restart=args.restart,
        progress=False if args.no_progress else None,
        report=print,
    )
    for note in res.notes:
        print(f"note: {note}")
    print("[2/3] exporting tables and figures")
    out_dir = Path(args.out) if args.out else lb.runs_dir / "export"
    ctx = export_leaderboard(lb, out=out_dir)
    print("[3/3] contact sheets of the datasets")
    sheets = []
    for ds in lb.datasets:
        out = out_dir / "figures" / f"{ds.name}_dataset.png"
        sheets.append(contact_sheet(ds.path, out, samples=10, split=ds.split))
    md = next((p for p in ctx.written if str(p).endswith("results.md")), None)
    if md is not None:
        print()
        print(_first_table(md.read_text(encoding="utf-8")))
    print()
    for p in [*ctx.written, *sheets]:
        print(f"wrote {p}")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0


def _first_table(markdown: str) -> str:
    """The first Markdown table of a document (the overall results)."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return ""
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[max(0, start - 2) : end])
