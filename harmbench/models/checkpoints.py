"""Reading harmbench checkpoints: a ``.safetensors`` weights file plus its JSON sidecar.

The writing side (training checkpoints with optimiser state, pruning, ``last.json``) is
:mod:`harmbench.train.checkpoint`; loading a model from either a training or an exported
checkpoint belongs to the models, so inference never imports the trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import ConfigError, UserError

FORMAT = "harmbench-checkpoint-v1"

StateDict = dict[str, torch.Tensor]

#: Tensor names the authors' own loaders skip when absent (pix2pix's ``patch_instance_norm_state_dict``).
BN_COUNTER = re.compile(r"(^|\.)num_batches_tracked$")


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


def _short(names: Iterable[str], n: int = 6) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (f" … (+{len(names) - n} more)" if len(names) > n else "")


def remap_state_dict(
    sd: Mapping[str, torch.Tensor],
    rename: Callable[[str], str | None],
    target: Mapping[str, torch.Tensor] | torch.nn.Module,
    *,
    where: str,
    tolerate: re.Pattern[str] | None = BN_COUNTER,
    official_name: Callable[[str], str] | None = None,
) -> StateDict:
    """Map the authors' names onto ``target``'s (a module or its ``state_dict()``) and check everything.

    ``rename(official_name)`` returns the harmbench name, or ``None`` for a tensor the authors'
    model holds but never uses (it is dropped). Raises :class:`ConfigError` (field ``weights``,
    message starting with ``where``) listing every missing, unexpected or mis-shaped tensor by
    its official name (missing ones through ``official_name(harmbench_name)`` when given, else
    by their harmbench name); nothing is loaded in that case. Returns the mapped dict, cast to
    the target's dtypes, with tolerated absent tensors filled from the target.
    """
    own = target.state_dict() if isinstance(target, torch.nn.Module) else dict(target)
    mapped: StateDict = {}
    origin: dict[str, str] = {}
    unexpected: list[str] = []
    for k, v in sd.items():
        new = rename(k)
        if new is None:
            continue
        if new not in own:
            if not (tolerate is not None and tolerate.search(k)):
                unexpected.append(k)
            continue
        mapped[new] = v
        origin[new] = k
    missing = [k for k in own if k not in mapped and not (tolerate is not None and tolerate.search(k))]
    shapes = [
        f"{origin[k]} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing: {_short(official_name(k) for k in missing) if official_name else _short(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_short(unexpected)}")
    if shapes:
        problems.append(f"wrong shape: {_short(shapes, 4)}")
    if problems:
        raise ConfigError("weights", f"{where}: tensors do not fit ({'; '.join(problems)})")
    for k, v in own.items():
        if k not in mapped:
            mapped[k] = v
    return {k: mapped[k].to(own[k].dtype) for k in own}


def load_weights_into(model: torch.nn.Module, weights: str | os.PathLike, *, where: str = "") -> None:
    """Load a safetensors state dict into ``model`` (cast to the model's dtypes); names every missing/extra/misshaped tensor."""
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    model.load_state_dict(remap_state_dict(tensors, lambda k: k, model, where=where or str(weights), tolerate=None))


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
    from harmbench.models.base import get_model

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


__all__ = [
    "BN_COUNTER",
    "FORMAT",
    "StateDict",
    "remap_state_dict",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights_into",
    "read_sidecar",
    "sha256_file",
]
