"""Leaderboards: definitions (``leaderboards/<name>/leaderboard.toml``), runs and exports.

Public API::

    from harmbench.leaderboard import run_leaderboard, export_leaderboard, load_leaderboard

    run_leaderboard("demo")                        # builds missing datasets, runs missing cells (Ray with ray_address=)
    export_leaderboard("demo", "csv,md,tex,html,png,grid")   # tables, charts and the qualitative grid

Modules: :mod:`.definition` (TOML schema), :mod:`.store` (cells and their run
folders), :mod:`.run` (local / Ray execution), :mod:`.export` (format registry),
:mod:`.plots`, :mod:`.grid`, :mod:`.published` (quoted paper numbers).
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_leaderboard", "load_leaderboard", "run_leaderboard"]


def __getattr__(name: str) -> Any:
    if name == "run_leaderboard":
        from harmbench.leaderboard.run import run_leaderboard

        return run_leaderboard
    if name == "export_leaderboard":
        from harmbench.leaderboard.export import export_leaderboard

        return export_leaderboard
    if name == "load_leaderboard":
        from harmbench.leaderboard.definition import load_leaderboard

        return load_leaderboard
    raise AttributeError(name)
