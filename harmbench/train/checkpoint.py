"""Checkpoints: safetensors weights + a JSON sidecar (+ a torch file with optimiser/RNG state).

A training checkpoint ``<dir>/step-000500`` is three files:

* ``step-000500.safetensors``: the model's ``state_dict`` (weights and buffers, float32);
* ``step-000500.state.pt``: optimiser states, GradScaler state, RNG states (torch CPU/CUDA
  and the augmentation generator) — read with ``torch.load(weights_only=True)``;
* ``step-000500.json`` (the sidecar): format, model name and config (``model.config_dict()``),
  the train config, the step, the data position (epoch, batches into it), the dataset index hash
  (sha256 of the shards' ``index.json``), file names with their sha256, last validation numbers.

The sidecar is written last (atomically), then ``<dir>/last.json`` is pointed at it, so an
interrupted save never replaces the last good checkpoint.

An exported (inference) checkpoint, e.g. ``baselines/weights/hen-ctn-cpu.safetensors``, is the
weights file (any float dtype; loaded as float32) plus ``hen-ctn-cpu.json`` without a state file.
:func:`load_checkpoint` (in :mod:`harmbench.models.checkpoints`) reads either kind and verifies the
weights against the recorded config.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import UserError
from harmbench.models.checkpoints import (  # noqa: F401  (re-exported: the reading side lives with the models)
    FORMAT,
    latest_checkpoint,
    load_checkpoint,
    load_weights_into,
    read_sidecar,
    sha256_file,
)


def dataset_index_hash(data_dir: str | os.PathLike) -> str:
    """sha256 of ``<data_dir>/index.json`` (identifies the exact shard set)."""
    p = Path(data_dir) / "index.json"
    if not p.is_file():
        raise UserError(f"{data_dir}: no index.json (not a built harmbench dataset; run `harmbench build` first)")
    return sha256_file(p)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:10]}")


def _atomic(path: Path, write) -> None:
    tmp = _tmp(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (sorted keys, indented)."""
    _atomic(Path(path), lambda t: Path(t).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))


def state_dict_for_save(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the model's state (floating tensors cast to ``dtype`` if given)."""
    out = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[k] = t.contiguous().clone()
    return out


def save_weights(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Atomic safetensors write."""
    from safetensors.torch import save_file

    _atomic(Path(path), lambda t: save_file(dict(tensors), str(t), metadata=dict(metadata or {})))
    os.chmod(path, 0o644)


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Torch CPU (+ CUDA) RNG states and the augmentation generator's state."""
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        st["generator"] = generator.get_state()
    return st


def set_rng_state(st: Mapping[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
    if generator is not None and "generator" in st:
        generator.set_state(st["generator"])


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    *,
    step: int,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    scaler: Any,
    generator: torch.Generator | None,
    sidecar: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``step-XXXXXX.{safetensors,state.pt,json}`` and point ``last.json`` at it; prune old ones.

    ``sidecar`` holds the run's metadata (train config, dataset hash, data position, metrics);
    the model config, step and file hashes are added here. Returns the sidecar path.
    """
    d = Path(ckpt_dir)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:07d}"
    wpath, spath, jpath = d / f"{stem}.safetensors", d / f"{stem}.state.pt", d / f"{stem}.json"
    save_weights(wpath, state_dict_for_save(model), {"format": FORMAT, "model": getattr(model, "name", "")})
    state = {
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(generator),
    }
    _atomic(spath, lambda t: torch.save(state, t))
    meta = {
        **dict(sidecar),
        "format": FORMAT,
        "model": model.name,  # type: ignore[attr-defined]
        "model_config": model.config_dict(),  # type: ignore[attr-defined]
        "step": int(step),
        "weights": wpath.name,
        "weights_sha256": sha256_file(wpath),
        "state": spath.name,
        "state_sha256": sha256_file(spath),
        "dtype": "float32",
        "torch_version": torch.__version__,
    }
    write_json(jpath, meta)
    write_json(d / "last.json", {"checkpoint": jpath.name, "step": int(step)})
    _prune(d, keep, keep_name=stem)
    return jpath


def _prune(d: Path, keep: int, keep_name: str) -> None:
    sidecars = sorted(p for p in d.glob("step-*.json"))
    old = [p for p in sidecars if p.stem != keep_name][: max(0, len(sidecars) - keep)]
    for p in old:
        for suffix in (".json", ".safetensors", ".state.pt"):
            q = p.with_name(p.stem + suffix)
            if q.exists():
                q.unlink()


__all__ = [
    "FORMAT",
    "dataset_index_hash",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights_into",
    "read_sidecar",
    "save_checkpoint",
    "save_weights",
    "sha256_file",
    "state_dict_for_save",
    "write_json",
]
