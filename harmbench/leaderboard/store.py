"""Where a leaderboard's runs live and what state each cell is in.

Runs are ``<runs>/<dataset>/<model label>/`` run directories
(:mod:`harmbench.eval.records`). A cell is ``finished`` (``run.json`` present),
``partial`` (interrupted: resumes) or ``missing``. An existing run made under
another protocol (profile, resize, 8-bit rule, LPIPS, seed) or on other data is
an error: runs are never silently mixed into one table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmbench.eval.records import CONFIG, RunMismatchError, RunStore, json_safe
from harmbench.leaderboard.definition import DatasetDef, Leaderboard, ModelDef

#: Run-config fields compared before a cell is reused or resumed, with how to name them in errors.
PROTOCOL_FIELDS = {
    "profile": "profile",
    "resize": "resize",
    "pred_8bit": "8-bit output rule",
    "lpips": "LPIPS",
    "seed": "seed",
}


@dataclass
class Cell:
    """One (dataset, model) pair of a leaderboard and its run directory."""

    dataset: DatasetDef
    model: ModelDef
    run_dir: Path

    @property
    def id(self) -> str:
        return f"{self.dataset.name}/{self.model.id}"

    def state(self) -> str:
        store = RunStore(self.run_dir)
        if store.is_finished():
            return "finished"
        if store.config_path.exists():
            return "partial"
        return "missing"

    def existing_config(self) -> dict[str, Any] | None:
        p = self.run_dir / CONFIG
        return json.loads(p.read_text()) if p.exists() else None


def cells(lb: Leaderboard) -> list[Cell]:
    return [Cell(d, m, lb.run_dir(d, m)) for d, m in lb.cells()]


def check_cell(cell: Cell, expected: dict[str, Any]) -> None:
    """Raise :class:`RunMismatchError` when the cell's existing run differs from ``expected``.

    ``expected`` holds the protocol fields of :data:`PROTOCOL_FIELDS` and optionally
    ``data`` (``index_sha256``, ``split``, ``limit``) and ``weights_sha256``.
    """
    old = cell.existing_config()
    if old is None:
        return
    old, exp = json_safe(old), json_safe(expected)
    for k, label in PROTOCOL_FIELDS.items():
        if k in exp and old.get(k) != exp[k]:
            a, b = old.get(k), exp[k]
            if k == "profile":
                a, b = (a or {}).get("name", a), b.get("name", b)
                if a == b:
                    a, b = "an older definition of the same name", "the current one"
            raise RunMismatchError(
                f"leaderboard cell {cell.id}: the existing run in {cell.run_dir} used {label} {a!r}, this leaderboard "
                f"asks for {b!r}; remove that folder (or run with --restart) to re-run it"
            )
    if "data" in exp:
        od = old.get("data") or {}
        for k in ("index_sha256", "split", "limit"):
            if k in exp["data"] and od.get(k) != exp["data"][k]:
                raise RunMismatchError(
                    f"leaderboard cell {cell.id}: the existing run in {cell.run_dir} was made on other data "
                    f"({k} {str(od.get(k))[:16]!r} vs {str(exp['data'][k])[:16]!r}); remove it (or --restart) to re-run"
                )
    if exp.get("weights_sha256") and (old.get("model") or {}).get("weights_sha256") != exp["weights_sha256"]:
        raise RunMismatchError(
            f"leaderboard cell {cell.id}: the checkpoint changed since the existing run in {cell.run_dir}; "
            "remove it (or --restart) to re-run"
        )


@dataclass
class CellResult:
    """A finished cell's run document and per-sample table."""

    cell: Cell
    run: dict[str, Any]
    samples: pd.DataFrame


@dataclass
class Collected:
    """Finished runs of a leaderboard, and cells that have none (with why)."""

    lb: Leaderboard
    results: list[CellResult] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def by_dataset(self) -> dict[str, list[CellResult]]:
        out: dict[str, list[CellResult]] = {d.name: [] for d in self.lb.datasets}
        for r in self.results:
            out.setdefault(r.cell.dataset.name, []).append(r)
        return out


def collect(lb: Leaderboard) -> Collected:
    """Read every finished run of ``lb`` (in definition order); others are listed in ``missing``."""
    out = Collected(lb)
    protocol: tuple[Any, ...] | None = None
    for cell in cells(lb):
        state = cell.state()
        if state != "finished":
            why = (
                "not run yet"
                if state == "missing"
                else "unfinished (interrupted, or still running elsewhere; run the leaderboard again to resume)"
            )
            if not cell.model.available():
                why = cell.model.missing_reason()
            out.missing.append((cell.id, why))
            continue
        store = RunStore(cell.run_dir)
        run = store.read_run()
        this = (json.dumps(run.get("profile"), sort_keys=True), run.get("resize"), run.get("pred_8bit"))
        if protocol is None:
            protocol = this
        elif this != protocol:
            raise RunMismatchError(
                f"leaderboard {lb.name}: run {cell.run_dir} was made under another protocol "
                f"(profile {run.get('profile', {}).get('name')!r}, resize {run.get('resize')!r}) than the other cells"
            )
        out.results.append(CellResult(cell, run, store.read_samples()))
    return out


__all__ = ["Cell", "CellResult", "Collected", "PROTOCOL_FIELDS", "cells", "check_cell", "collect"]
