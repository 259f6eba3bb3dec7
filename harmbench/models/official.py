"""Loading the authors' checkpoints: format detection, tensor-name maps, precise errors, conversion.

Each ported model registers an :class:`OfficialFormat`: which files it needs (roles such as
``"E"``/``"G"``), how to tell a state dict's role from its tensor names, and how to build the
harmbench model from them (mapping names, inferring widths from shapes). Then

* :func:`load_weights` takes what a user passes to ``--weights`` — one file or several
  (``"E.pth,G.pth"`` in any order), the authors' ``.pth``/``.pt`` files or a harmbench
  ``.safetensors`` checkpoint — and returns the model in eval mode;
* :func:`remap_state_dict` maps names and checks every tensor *before* anything is loaded:
  missing, unexpected and mis-shaped tensors are listed by name in one :class:`ConfigError`;
  only names in ``tolerate`` (e.g. BatchNorm ``num_batches_tracked``, which the authors'
  loaders also drop) may be absent or extra;
* :func:`save_converted` writes the loaded model as a harmbench checkpoint (safetensors +
  JSON sidecar) that :func:`harmbench.models.checkpoints.load_checkpoint` reads back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import ConfigError, UserError
from harmbench.models.checkpoints import (
    BN_COUNTER,
    FORMAT,
    StateDict,
    _short,
    load_checkpoint,
    remap_state_dict,
    sha256_file,
)


@dataclass(frozen=True)
class OfficialFormat:
    """How to load a registry model from the authors' files.

    ``identify(sd)`` returns the role (one of ``roles``) a state dict plays for this model, or
    ``None`` when it is not one of its files. ``build(parts, options)`` gets ``{role: state_dict}``
    (every role present, names as the authors wrote them) and the user's model options, and
    returns the loaded harmbench model (widths inferred from the shapes).
    """

    model: str
    roles: tuple[str, ...]
    identify: Callable[[Mapping[str, torch.Tensor]], str | None]
    build: Callable[[Mapping[str, StateDict], Mapping[str, Any]], torch.nn.Module]


FORMATS: dict[str, OfficialFormat] = {}


def register_official_format(fmt: OfficialFormat) -> OfficialFormat:
    """Register how registry model ``fmt.model`` loads the authors' checkpoints."""
    FORMATS[fmt.model] = fmt
    return fmt


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Tensors of a ``.pth``/``.pt``/``.safetensors`` file, unwrapped from ``{"state_dict": …}``-style
    containers and a DataParallel ``module.`` prefix. Never unpickles code (``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: weights file not found")
    try:
        if p.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise UserError(f"{p}: cannot read weights ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "net", "params"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{p}: not a state dict of tensors")
    sd = {str(k): v for k, v in obj.items()}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def identify_files(model: str, paths: Sequence[str | os.PathLike]) -> dict[str, StateDict]:
    """Read ``paths`` and assign each to a role of ``model``'s format (any order).

    Errors name the file: unreadable, not one of this model's files, two files for one role,
    or a role left without a file.
    """
    fmt = _format(model)
    parts: dict[str, StateDict] = {}
    files: dict[str, Path] = {}
    for p in map(Path, paths):
        sd = read_state_dict(p)
        role = fmt.identify(sd)
        if role is None:
            raise ConfigError(
                "weights",
                f"{p}: not a {model} checkpoint file (expected {'/'.join(fmt.roles)}; "
                f"its first tensors: {_short(list(sd)[:6], 6)})",
            )
        if role in parts:
            raise ConfigError("weights", f"{p} and {files[role]} are both the {role!r} file of {model}")
        parts[role], files[role] = sd, p
    absent = [r for r in fmt.roles if r not in parts]
    if absent:
        raise ConfigError(
            "weights",
            f"{model} needs the files {'/'.join(fmt.roles)}; missing {', '.join(absent)} "
            f"(given: {', '.join(str(p) for p in paths)})",
        )
    return parts


def identify_role(model: str, sd: Mapping[str, torch.Tensor]) -> str | None:
    """The role (``"E"``, ``"G"`` …) state dict ``sd`` plays among ``model``'s authors' files, or ``None``."""
    return _format(model).identify(sd)


def _format(model: str) -> OfficialFormat:
    from harmbench.models.base import _load_all

    _load_all()
    try:
        return FORMATS[model]
    except KeyError:
        raise ConfigError(
            "weights", f"model {model!r} cannot load authors' checkpoints; those that can: {', '.join(sorted(FORMATS))}"
        ) from None


def split_weights_spec(spec: str | os.PathLike | Sequence[str | os.PathLike], model: str | None = None) -> list[Path]:
    """``"a.pth,b.pth"`` or a list -> paths.

    A model card's name (``"dovenet-official"``; not an existing path) stands for the card's
    files in the weights cache (:func:`harmbench.models.weights_cache.resolve_card_weights`):
    an error says how to fetch or import them when they are not all there, or, with ``model``,
    when the card is for another model.
    """
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec).strip()
        if text and "," not in text and not Path(text).expanduser().exists():
            from harmbench.models.weights_cache import resolve_card_weights

            files = resolve_card_weights(text, model)
            if files is not None:
                return files
        return [Path(s.strip()).expanduser() for s in text.split(",") if s.strip()]
    return [Path(s).expanduser() for s in spec]


def is_harmbench_checkpoint(paths: Sequence[Path]) -> bool:
    """One ``.safetensors``/``.json``/directory path, or a ``.safetensors`` + ``.json`` pair of one
    stem in one folder (a card listing both files), = a harmbench checkpoint."""
    if len(paths) == 2:
        a, b = sorted(paths, key=lambda q: q.suffix)  # .json before .safetensors
        return (a.suffix, b.suffix) == (".json", ".safetensors") and a.with_suffix("") == b.with_suffix("")
    return len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix in (".safetensors", ".json"))


def merge_inferred(
    model: str, inferred: Mapping[str, Any], options: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """User ``options`` plus the ``inferred`` width options (read from a checkpoint's shapes).

    An option that contradicts the checkpoint is a :class:`ConfigError` on field ``<model>.<key>``.
    """
    merged = dict(options)
    for key, value in inferred.items():
        if key in merged and merged[key] != value:
            raise ConfigError(
                f"{model}.{key}",
                f"{where}: the checkpoint's shapes give {key} = {value!r}, but the "
                f"options ask for {merged[key]!r} (an option must not contradict them)",
            )
        merged[key] = value
    return merged


def build_from_state_dict(
    cls: type[torch.nn.Module],
    sd: Mapping[str, torch.Tensor],
    inferred: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    rename: Callable[[str], str | None],
    official_name: Callable[[str], str],
    where: str,
    fork_rng: bool = False,
) -> torch.nn.Module:
    """The steps of an :class:`OfficialFormat` ``build`` for one authors' state dict: ``options`` merged
    with the ``inferred`` widths (:func:`merge_inferred`, model name ``cls.name``), ``cls(**merged)``
    (under :func:`torch.random.fork_rng` when ``fork_rng``, leaving the global RNG untouched), every
    tensor mapped and checked (:func:`remap_state_dict`) and loaded strictly."""
    opts = merge_inferred(cls.name, inferred, options, where=where)  # type: ignore[attr-defined]
    if fork_rng:
        with torch.random.fork_rng(devices=[]):
            model = cls(**opts)
    else:
        model = cls(**opts)
    model.load_state_dict(remap_state_dict(sd, rename, model, where=where, official_name=official_name), strict=True)
    return model


def load_official(model: str, paths: Sequence[str | os.PathLike], **options: Any) -> torch.nn.Module:
    """Build registry model ``model`` from the authors' files ``paths`` with ``options``; eval mode."""
    parts = identify_files(model, paths)
    net = _format(model).build(parts, options)
    return net.eval()


def load_weights(model: str, spec: str | os.PathLike | Sequence[str | os.PathLike], **options: Any) -> torch.nn.Module:
    """What ``--weights`` does: a harmbench checkpoint, the authors' file(s) for ``model``, or the
    name of a model card whose files are in the weights cache (see :func:`split_weights_spec`)."""
    paths = split_weights_spec(spec, model)
    if not paths:
        raise ConfigError("weights", "no file given")
    if is_harmbench_checkpoint(paths):
        sidecar = next((p for p in paths if p.suffix == ".json"), paths[0])
        return load_checkpoint(sidecar, expect_model=model, overrides=options)
    return load_official(model, paths, **options)


def save_converted(model: torch.nn.Module, path: str | os.PathLike, *, source: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as ``<path>.safetensors`` + ``<path>.json`` (harmbench checkpoint); returns the sidecar."""
    from safetensors.torch import save_file

    from harmbench.fileio import atomic_path, atomic_write_json

    p = Path(path)
    stem = (
        p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.stem if p.suffix == ".json" else p.name
    )
    wpath, jpath = p.with_name(stem + ".safetensors"), p.with_name(stem + ".json")
    wpath.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(wpath) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "model": getattr(model, "name", "")})
    atomic_write_json(
        jpath,
        {
            "format": FORMAT,
            "model": model.name,  # type: ignore[attr-defined]
            "model_config": model.config_dict(),  # type: ignore[attr-defined]
            "weights": wpath.name,
            "weights_sha256": sha256_file(wpath),
            "dtype": "float32",
            "converted_from": dict(source or {}),
            "torch_version": torch.__version__,
        },
    )
    return jpath


__all__ = [
    "BN_COUNTER",
    "FORMATS",
    "OfficialFormat",
    "build_from_state_dict",
    "identify_files",
    "identify_role",
    "is_harmbench_checkpoint",
    "load_official",
    "load_weights",
    "merge_inferred",
    "read_state_dict",
    "register_official_format",
    "remap_state_dict",
    "save_converted",
    "split_weights_spec",
]
