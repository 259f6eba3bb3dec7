"""The contract between recipes (composite synthesis) and the build engine.

A recipe has two pure steps:

1. **plan** (driver side, cheap, deterministic): records -> a sorted list of
   :class:`SampleSpec`. Nothing is decoded except what filters need (mask areas
   come from RLE). Specs are small and picklable: they travel to Ray workers.
2. **synthesize** (worker side): one spec -> one :class:`SampleArrays` (pixels
   + metadata). It raises :class:`harmbench.errors.InputError` to skip an input
   (unreadable image, empty mask, composite too close to the real image …);
   the builder records the skip with its reason and goes on.

The build engine owns everything after that: grouping specs into shards,
running one Ray task per shard, encoding (JPEG/PNG), writing tars, stats,
index and card. Recipes never write files; the engine never looks inside a
recipe's ``inputs``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


def sample_seed(seed: int, key: str) -> int:
    """Per-sample RNG seed from (global seed, key): stable across runs, worker counts and machines."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_rng(seed: int, key: str) -> np.random.Generator:
    """``numpy`` Generator seeded by :func:`sample_seed`."""
    return np.random.default_rng(sample_seed(seed, key))


@dataclass(frozen=True)
class SampleSpec:
    """What to synthesize for one sample.

    Attributes:
        key: dot-free WebDataset key, unique within the dataset.
        recipe: registered recipe name (``hcoco``, ``hadobe5k``, ``identical``, ``hue`` …).
        split: ``train`` / ``test`` (any string; one shard series per split).
        seed: the per-sample seed (:func:`sample_seed`); all randomness of ``synthesize`` derives from it.
        inputs: recipe-specific, picklable (records, chosen reference, method name …).
    """

    key: str
    recipe: str
    split: str
    seed: int
    inputs: Mapping = field(default_factory=dict)


@dataclass
class SampleArrays:
    """One synthesized sample, before encoding.

    Attributes:
        key: the spec's key.
        composite: ``uint8 (H, W, 3)`` RGB, 0–255.
        mask: ``bool (H, W)`` foreground.
        real: ``uint8 (H, W, 3)`` ground truth, 0–255.
        real_bytes: the real image's original encoded bytes when it was not
            resized/altered (the writer then stores them verbatim), with
            ``real_ext`` (``jpg``/``png``).
        reference: optional ``uint8 (h, w, 3)`` reference image (stored when asked).
        meta: JSON-serialisable metadata (keys of image/object/reference,
            category, method and parameters, seed, fg_ratio, sizes, licence …).
    """

    key: str
    composite: np.ndarray
    mask: np.ndarray
    real: np.ndarray
    meta: dict
    real_bytes: bytes | None = None
    real_ext: str | None = None
    reference: np.ndarray | None = None
