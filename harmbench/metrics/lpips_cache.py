"""On-disk cache of the real images' LPIPS features, shared by every method scored on a dataset.

LPIPS compares the AlexNet features of a prediction with those of the real image;
the real image's features depend only on (dataset, sample, profile, resize) and
the AlexNet weights, not on the method. A leaderboard scores many methods on the
same samples, so the first cell computes them and the others read them back.

Layout: ``<root>/<identity digest>/`` holds ``identity.json`` (dataset index hash,
profile, resize, weights) and one ``<sha1(sample key)>.safetensors`` per sample with
its unit-normalised features ``l0 … l4`` (float32, ``(C_k, h_k, w_k)``; about
2.5 MB per 256×256 image). Files are written atomically (renamed into place); a file that cannot be
read is recomputed. Values read back are the very tensors that were computed, so
scores are the same with and without the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from harmbench.fileio import atomic_path, atomic_write_bytes


def weights_identity(source: str | os.PathLike | None) -> str:
    """What identifies LPIPS weights: a file's size and SHA-256, or the source's name."""
    if source is not None and Path(source).is_file():
        h = hashlib.sha256()
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return f"sha256:{h.hexdigest()}"
    return str(source)


class LPIPSFeatureCache:
    """Features of one dataset under one (profile, resize, weights) identity, in ``root``."""

    def __init__(self, root: str | os.PathLike, *, dataset_hash: str, profile: str, resize: str, weights: str):
        self.identity = {
            "dataset_index_sha256": dataset_hash,
            "profile": profile,
            "resize": resize,
            "lpips_weights": weights,
            "layout": 1,
        }
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = Path(root) / digest
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def get(self, keys: Sequence[str], device: torch.device | str = "cpu") -> list[Tensor] | None:
        """The stacked features ``[(N, C_k, h_k, w_k)]`` of ``keys`` when every one is cached, else None."""
        from safetensors.torch import load_file

        per_key = []
        for key in keys:
            p = self._path(key)
            if not p.is_file():
                self.misses += len(keys)
                return None
            try:
                t = load_file(str(p))
            except Exception:  # noqa: BLE001 - a damaged file is recomputed
                self.misses += len(keys)
                return None
            per_key.append([t[f"l{k}"] for k in range(len(t))])
        self.hits += len(keys)
        return [torch.stack([f[k] for f in per_key]).to(device) for k in range(len(per_key[0]))]

    def put(self, keys: Sequence[str], feats: Sequence[Tensor]) -> None:
        """Store the features ``[(N, C_k, h_k, w_k)]`` of ``keys`` (one file per key)."""
        from safetensors.torch import save

        self.dir.mkdir(parents=True, exist_ok=True)
        ident = self.dir / "identity.json"
        if not ident.exists():
            atomic_write_bytes(ident, json.dumps(self.identity, indent=2, sort_keys=True).encode())
        cpu = [f.detach().to("cpu", torch.float32) for f in feats]
        for i, key in enumerate(keys):
            data = save({f"l{k}": f[i].contiguous() for k, f in enumerate(cpu)}, metadata={"key": key})
            with atomic_path(self._path(key), fsync=False) as tmp:  # a cache: no fsync
                tmp.write_bytes(data)
