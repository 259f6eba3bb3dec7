"""Shared fixtures: the ``../shared`` reference data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HARMBENCH_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips the calling test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data not found: {p} (set HARMBENCH_SHARED or place shared/ beside the checkout)")
    return p


@pytest.fixture
def shared():
    """Callable fixture: ``shared('data', 'triplets_256')`` -> Path, skipping when absent."""
    return shared_path
