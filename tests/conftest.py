"""Shared fixtures: the ``../shared`` reference data (skipped when absent), a two-node Ray cluster, torch threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ray_cluster import two_node_cluster

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


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-node Ray cluster on 127.0.0.1 (1 CPU per node) for the module; yields its ``host:port`` address."""
    with two_node_cluster(cpus_per_node=1) as address:
        yield address


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one CPU thread for the whole module; the previous count is restored afterwards.

    Opt in with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
