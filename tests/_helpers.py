"""Small helpers shared by several test modules (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def tar_md5s(out: Path) -> dict[str, str]:
    """``{shard name: md5}`` of every ``*.tar`` in ``out``, to compare two builds byte for byte."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tar"))}


def coco_api(path: Path):
    """pycocotools' ``COCO`` index of an annotation file, without its progress prints."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def image_batch(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded image batch ``(n, 3, h, w)`` in [0, 1) and an all-zero mask ``(n, 1, h, w)`` to mark regions in."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    m = torch.zeros(n, 1, h, w)
    return x, m
