"""Reading harmbench checkpoints: a ``.safetensors`` weights file plus its JSON sidecar.

The writing side (training checkpoints with optimiser state, pruning, ``last.json``) is
:mod:`harmbench.train.checkpoint`; loading a model from either a training or an exported
checkpoint belongs to the models, so inference never imports the trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
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
    overrides: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """Build the model recorded in a checkpoint and load its weights (float32, eval mode).

    ``path``: the ``.safetensors`` file, its ``.json`` sidecar, or a run/checkpoint directory
    (its last checkpoint). ``expect_model``/``expect_config`` (a ``config_dict()``) raise
    :class:`ConfigError` naming the first differing field. The weights' sha256 is checked
    against the sidecar when ``verify_hash``. ``overrides``: run-time config fields to change
    (e.g. ``protocol``); the checkpoint's other fields must still match the model.
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
    overrides = dict(overrides or {})
    model = get_model(name, **{**cfg, **overrides})
    saved = {k: v for k, v in meta["model_config"].items() if k not in overrides}
    mine = {**saved, **{k: v for k, v in model.config_dict().items() if k in overrides}}  # type: ignore[attr-defined]
    if expect_config is not None:
        model.check_config({**dict(expect_config), **{k: mine[k] for k in overrides if k in mine}})  # type: ignore[attr-defined]
    model.check_config(mine)  # type: ignore[attr-defined]
    load_weights_into(model, wpath, where=str(jp))
    model.eval()
    return model.to(device)  # type: ignore[return-value]


__all__ = ["FORMAT", "latest_checkpoint", "load_checkpoint", "load_weights_into", "read_sidecar", "sha256_file"]
