"""Train/test split by image: all objects of one photo land in the same split."""

from __future__ import annotations

import os

from harmbench.recipes.base import sample_seed
from harmbench.recipes.config import SplitConfig


def image_ids(source: str, image_id: str, image_path: str | None = None) -> list[str]:
    """The names a split list may use for an image: its id, ``<source>/<id>``, file name, file stem."""
    names = [str(image_id), f"{source}/{image_id}"]
    if image_path:
        base = os.path.basename(image_path)
        names += [base, os.path.splitext(base)[0]]
    return names


def hash_split(seed: int, source: str, image_id: str, test_fraction: float) -> str:
    """``test`` with probability ``test_fraction`` (0–1), drawn from (seed, source, image id) only."""
    u = sample_seed(seed, f"split:{source}:{image_id}") / 2.0**64
    return "test" if u < test_fraction else "train"


def assign_split(cfg: SplitConfig, seed: int, source: str, image_id: str, image_path: str | None = None) -> str | None:
    """The split of one image; None when explicit lists leave it out and ``unlisted = "skip"``."""
    if cfg.uses_lists:
        names = image_ids(source, image_id, image_path)
        if any(n in cfg.test_ids for n in names):
            return "test"
        if any(n in cfg.train_ids for n in names):
            return "train"
        if cfg.unlisted == "skip":
            return None
        if cfg.unlisted in ("train", "test"):
            return cfg.unlisted
    return hash_split(seed, source, image_id, cfg.test_fraction)
