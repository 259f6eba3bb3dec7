"""Micro-benchmarks run by ``harmbench bench NAME``.

Adding a benchmark = adding one module to this package (no registration
elsewhere). A benchmark module defines:

* ``NAME`` — the sub-command name (``harmbench bench NAME``);
* ``HELP`` — one line;
* ``add_arguments(parser)`` — its options (optional);
* ``run(args) -> dict`` — does the work, prints a human-readable table, and
  returns the result record. The command prints that record as ONE JSON line,
  always the last line of output, with at least ``{"bench": NAME, "ratio": R,
  "target": T}`` where ``ratio`` is ours / reference and ``target`` the goal.

Modules must be cheap to import (torch etc. imported inside ``run``), because
the CLI imports every benchmark to build its help.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def bench_modules() -> dict[str, ModuleType]:
    """``{NAME: module}`` for every benchmark module in this package, sorted by name."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            found[mod.NAME] = mod
    return dict(sorted(found.items()))


def format_table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    """A small fixed-width text table."""
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
