"""Turning what a user names into a ready model: a registry name, a checkpoint or an object.

``resolve_model`` is what ``harmbench eval``, ``harmonize`` and leaderboard cells call; it
returns a :class:`ResolvedModel` whose fingerprint (name, weights hash, config) identifies the
model in run records.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmbench.errors import UserError
from harmbench.fileio import json_safe
from harmbench.models.checkpoints import sha256_file as file_sha256

PathLike = str | os.PathLike


class ModelLoadError(UserError):
    """A model name or checkpoint cannot be turned into a model."""


@dataclass
class ResolvedModel:
    """A ready model: ``harmonizer`` plus what identifies it (``name``, ``weights_sha256``, ``config``)."""

    name: str
    harmonizer: Any
    weights_sha256: str | None
    config: dict[str, Any]
    source: str

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "config": self.config}


def _model_config(h: Any) -> dict[str, Any]:
    if hasattr(h, "config_dict"):
        return dict(h.config_dict())
    cfg: dict[str, Any] = {"model": getattr(h, "name", type(h).__name__)}
    for attr in ("op_name", "seed", "params"):
        if hasattr(h, attr):
            cfg[attr] = getattr(h, attr)
    return json_safe(cfg)


def _state_and_config(obj: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(obj, Mapping):
        raise ModelLoadError(
            f"checkpoint {path}: expected a dict with a model config and a state dict, got {type(obj).__name__}"
        )
    cfg = next((obj[k] for k in ("config", "model_config") if isinstance(obj.get(k), Mapping)), None)
    state = next(
        (obj[k] for k in ("state_dict", "model", "model_state", "weights") if isinstance(obj.get(k), Mapping)), None
    )
    if cfg is None or "model" not in cfg:
        raise ModelLoadError(
            f"checkpoint {path}: no model config (a 'config' entry with the model name); cannot tell which model it is"
        )
    if state is None:
        raise ModelLoadError(f"checkpoint {path}: no state dict ('state_dict' / 'model' entry)")
    return dict(cfg), dict(state)


def _sidecar(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """``(sidecar, meta)`` when ``path`` is a harmbench checkpoint (safetensors + JSON sidecar, or its folder)."""
    try:
        from harmbench.models.checkpoints import read_sidecar
    except ImportError:
        return None
    try:
        return read_sidecar(path)
    except (UserError, OSError, ValueError):
        return None


def checkpoint_weights_file(path: PathLike) -> Path:
    """The file holding a checkpoint's tensors (what the weights hash covers)."""
    p = Path(path)
    sc = _sidecar(p)
    if sc is not None and sc[1].get("weights"):
        return sc[0].with_name(sc[1]["weights"])
    return p


def _is_card(name: str) -> bool:
    from harmbench.models.cards import list_cards

    return any(c.name == name for c in list_cards())


def resolve_card(name: str, device: str = "cpu", options: Mapping[str, Any] | None = None) -> ResolvedModel:
    """The model of card ``name`` with the card's files from the weights cache (an error says how to
    fetch or import them when they are missing). The weights hash covers every file (sorted by hash)."""
    from harmbench.models.cards import get_card
    from harmbench.models.official import load_weights, split_weights_spec

    card = get_card(name)
    try:
        paths = split_weights_spec(name, card.model)
        model = load_weights(card.model, paths, **dict(options or {}))
    except UserError as exc:
        raise ModelLoadError(f"model card {name!r}: {exc}") from exc
    model = model.to(device)
    digests = sorted(file_sha256(p) for p in paths if p.suffix != ".json")  # a sidecar is not weights
    digest = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
    return ResolvedModel(name, model, digest, _model_config(model), f"card:{name}")


def load_checkpoint_model(path: PathLike, device: str = "cpu") -> Any:
    """A learned model from a checkpoint: a harmbench checkpoint (``<name>.safetensors`` + ``<name>.json``,
    read with :func:`harmbench.train.load_checkpoint`) or a torch file
    ``{"config": model.config_dict(), "state_dict": model.state_dict()}``.

    A checkpoint whose tensors do not fit its model raises :class:`ModelLoadError` naming the
    file, the model and the first mismatching tensors.
    """
    path = Path(path)
    sc = _sidecar(path)
    if sc is not None:
        from harmbench.models.checkpoints import load_checkpoint

        name = (sc[1].get("model_config") or {}).get("model", sc[1].get("model", "?"))
        try:
            return load_checkpoint(path, device=device)
        except UserError as exc:
            raise ModelLoadError(f"checkpoint {path} does not fit model {name!r}: {exc}") from exc
    if path.is_dir():
        raise ModelLoadError(f"{path}: no checkpoint found in this folder")
    import torch

    from harmbench.models import get_model

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); expected <name>.safetensors with its "
            "<name>.json sidecar, or a torch file with 'config' and 'state_dict'"
        ) from exc
    cfg, state = _state_and_config(raw, path)
    name = str(cfg.pop("model"))
    try:
        model = get_model(name, **cfg)
    except UserError as exc:
        raise ModelLoadError(f"checkpoint {path}: its config does not build model {name!r}: {exc}") from exc
    from harmbench.models.checkpoints import remap_state_dict

    try:
        state = remap_state_dict(
            state, lambda k: k, model, where=f"checkpoint {path} for model {name!r}", tolerate=None
        )
    except UserError as exc:
        raise ModelLoadError(str(exc)) from exc
    model.load_state_dict(state)
    return model.to(device).eval()


#: ``package.module:factory`` (dotted identifiers on both sides of one colon).
FACTORY_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _state_hash(model: Any, prefix: str) -> str | None:
    """``prefix`` + sha256 over the sorted state dict of a torch module (None for other objects)."""
    if not hasattr(model, "state_dict"):
        return None
    import torch

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes() if isinstance(v, torch.Tensor) else b"")
    return prefix + h.hexdigest()


def _has_config_field(name: str, field: str) -> bool:
    """Whether registry model ``name`` has config field ``field``."""
    import dataclasses

    from harmbench.models.base import MODELS

    cls = getattr(MODELS.get(name), "config_class", None)
    return dataclasses.is_dataclass(cls) and field in {f.name for f in dataclasses.fields(cls)}


def _takes_protocol(name: str) -> bool:
    """Registry model ``name`` has a ``protocol`` option (its config, or a committed checkpoint of such a model)."""
    from harmbench.models.pretrained import PRETRAINED

    return _has_config_field(PRETRAINED.get(name, name), "protocol")


def _protocol_models() -> list[str]:
    from harmbench.models import available_models

    return [n for n in available_models() if _has_config_field(n, "protocol")]


def resolve_weights(
    name: str, weights: Any, device: str = "cpu", seed: int = 0, options: Mapping[str, Any] | None = None
) -> ResolvedModel:
    """Registry model ``name`` with ``weights``: the authors' file(s) (``"E.pth,G.pth"``, any order) or a
    harmbench checkpoint, through :func:`harmbench.models.official.load_weights`. ``seed`` becomes
    the model's ``seed`` option when it has one. The weights hash covers every file (sorted by hash)."""
    from harmbench.models import available_models
    from harmbench.models.official import load_weights, split_weights_spec

    if name not in available_models():
        raise ModelLoadError(f"unknown model {name!r} for --weights; known: {', '.join(available_models())}")
    opts = dict(options or {})
    if "seed" not in opts and _has_config_field(name, "seed"):
        opts["seed"] = int(seed)
    try:
        paths = split_weights_spec(weights, name)
        model = load_weights(name, paths, **opts)
    except UserError as exc:
        raise ModelLoadError(f"model {name!r} with weights {', '.join(map(str, paths))}: {exc}") from exc
    model = model.to(device)
    source = "weights:" + ",".join(str(p.resolve()) for p in paths)
    return ResolvedModel(name, model, weights_digest(paths), _model_config(model), source)


def weights_digest(paths: Any) -> str:
    """The weights hash of one or several files: the file's sha256, or the sha256 of the sorted per-file
    digests (so the order the files are given in does not matter)."""
    files = sorted({file_sha256(checkpoint_weights_file(p)) for p in paths})  # a sidecar counts as its weights
    return files[0] if len(files) == 1 else hashlib.sha256("".join(files).encode()).hexdigest()


def resolve_model(
    spec: Any, device: str = "cpu", seed: int = 0, options: Mapping[str, Any] | None = None, *, weights: Any = None
) -> ResolvedModel:
    """``spec``: a registered model name (built-in or from an installed package's ``harmbench.models``
    entry point), ``"package.module:factory"``, a checkpoint path, a model card's name (its files
    from the weights cache, :func:`resolve_card`), or an object with ``harmonize``.

    Names build the model with ``options`` (e.g. ``preset="small"``) and ``seed``; a factory is
    called with ``options``; existing files are loaded as checkpoints (their sha256 is the weights hash).
    With ``weights`` (one file, ``"a.pth,b.pth"`` or a list), ``spec`` names the registry model
    those files are for (:func:`resolve_weights`).
    """
    from harmbench.models import available_models, get_model, load_factory

    if weights is not None:
        return resolve_weights(str(spec), weights, device, seed, options)
    opts = dict(options or {})
    if isinstance(spec, str) and "protocol" in opts and spec in available_models() and not _takes_protocol(spec):
        if opts["protocol"] != "harmbench":
            raise ModelLoadError(
                f"model {spec!r} has no protocol option (it always runs harmbench's); "
                f"models with an 'official' protocol: {', '.join(_protocol_models())}"
            )
        opts.pop("protocol")  # harmbench's protocol is the only one it has
    if hasattr(spec, "harmonize"):
        name = getattr(spec, "name", "") or type(spec).__name__
        return ResolvedModel(str(name), spec, None, _model_config(spec), "object")
    text = str(spec)
    p = Path(text).expanduser()
    if p.is_file() or (p.is_dir() and _sidecar(p) is not None):
        model = load_checkpoint_model(p, device)
        name = getattr(model, "name", "") or p.stem
        return ResolvedModel(
            str(name), model, file_sha256(checkpoint_weights_file(p)), _model_config(model), str(p.resolve())
        )
    if FACTORY_SPEC.match(text):
        try:
            model = load_factory(text, **opts)
        except UserError as exc:
            raise ModelLoadError(str(exc)) from exc
        if hasattr(model, "to"):
            model = model.to(device)
        cfg = {**_model_config(model), "factory": text, "options": json_safe(opts)}
        return ResolvedModel(text, model, _state_hash(model, "factory:"), cfg, f"factory:{text}")
    if text not in available_models() and _is_card(text):
        return resolve_card(text, device, opts)
    if text not in available_models():
        hint = " (no such checkpoint file either)" if any(c in text for c in "/\\.") else ""
        raise ModelLoadError(
            f"unknown model {text!r}{hint}; known: {', '.join(available_models())} "
            "(or give 'package.module:factory' for your own)"
        )
    try:
        model = get_model(text, seed=seed, **opts)
    except UserError as exc:
        raise ModelLoadError(f"model {text!r}: {exc}") from exc
    if hasattr(model, "to"):
        model = model.to(device)
    return ResolvedModel(text, model, _state_hash(model, "init:"), _model_config(model), f"registry:{text}")


__all__ = [
    "ModelLoadError",
    "ResolvedModel",
    "checkpoint_weights_file",
    "load_checkpoint_model",
    "resolve_model",
    "resolve_weights",
    "weights_digest",
]
