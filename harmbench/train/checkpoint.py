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
:func:`load_checkpoint` reads either kind and verifies the weights against the recorded config.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import ConfigError, UserError

FORMAT = "harmbench-checkpoint-v1"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """Sidecar path of the last complete checkpoint in ``ckpt_dir`` (via ``last.json``), or ``None``."""
    d = Path(ckpt_dir)
    ptr = d / "last.json"
    if ptr.is_file():
        p = d / json.loads(ptr.read_text())["checkpoint"]
        if p.is_file():
            return p
    sidecars = sorted(d.glob("step-*.json"))
    return sidecars[-1] if sidecars else None


def _sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        found = latest_checkpoint(p) or latest_checkpoint(p / "checkpoints")
        if found is None:
            raise UserError(f"{p}: no checkpoint found")
        return found
    if p.suffix == ".json":
        return p
    if p.name.endswith(".safetensors"):
        return p.with_name(p.name[: -len(".safetensors")] + ".json")
    if p.name.endswith(".state.pt"):
        return p.with_name(p.name[: -len(".state.pt")] + ".json")
    return p.with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """``(sidecar path, sidecar dict)`` for a checkpoint given as its weights, sidecar or directory."""
    jp = _sidecar_path(path)
    if not jp.is_file():
        raise UserError(f"{jp}: checkpoint sidecar not found (a checkpoint is <name>.safetensors + <name>.json)")
    meta = json.loads(jp.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{jp}: not a harmbench checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    return jp, meta


def load_weights_into(model: torch.nn.Module, weights: str | os.PathLike, *, where: str = "") -> None:
    """Load a safetensors state dict into ``model`` (cast to the model's dtypes); names every missing/extra/misshaped tensor."""
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise ConfigError(
            "weights", f"{where or weights}: tensors do not match the model "
            f"(missing: {missing[:5]}{' …' if len(missing) > 5 else ''}; unexpected: {extra[:5]}{' …' if len(extra) > 5 else ''})",
        )
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ConfigError(f"weights.{k}", f"{where or weights}: shape {tuple(v.shape)} != model's {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


def load_checkpoint(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    expect_model: str | None = None,
    expect_config: Mapping[str, Any] | None = None,
    verify_hash: bool = True,
) -> torch.nn.Module:
    """Build the model recorded in a checkpoint and load its weights (float32, eval mode).

    ``path``: the ``.safetensors`` file, its ``.json`` sidecar, or a run/checkpoint directory
    (its last checkpoint). ``expect_model``/``expect_config`` (a ``config_dict()``) raise
    :class:`ConfigError` naming the first differing field. The weights' sha256 is checked
    against the sidecar when ``verify_hash``.
    """
    from harmbench.models import get_model

    jp, meta = read_sidecar(path)
    wpath = jp.with_name(meta["weights"])
    if not wpath.is_file():
        raise UserError(f"{jp}: weights file {wpath.name} is missing")
    if verify_hash and meta.get("weights_sha256") and sha256_file(wpath) != meta["weights_sha256"]:
        raise UserError(f"{wpath}: sha256 does not match the sidecar (file changed or corrupted)")
    cfg = dict(meta["model_config"])
    name = cfg.pop("model", meta.get("model"))
    if expect_model is not None and name != expect_model:
        raise ConfigError("model", f"{jp}: checkpoint is for {name!r}, expected {expect_model!r}")
    model = get_model(name, **cfg)
    if expect_config is not None:
        model.check_config(expect_config)  # type: ignore[attr-defined]
    model.check_config(meta["model_config"])  # type: ignore[attr-defined]
    load_weights_into(model, wpath, where=str(jp))
    model.eval()
    return model.to(device)  # type: ignore[return-value]


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
