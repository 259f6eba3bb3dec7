"""Training configuration: a TOML file validated into frozen dataclasses.

Layout (every table optional except ``[model]`` and ``train.steps``)::

    [model]
    name = "hen-ctn"            # a learned model of harmbench.models
    preset = "small"            # "full" | "small"
    [model.options]             # overrides of the model's config fields
    width = 8

    [data]
    split = "train"             # shards the model learns from
    validation = "test"         # split scored during training ("" = none)
    image_size = 128            # every image resized to image_size × image_size (aspect not kept)
    crop = 0                    # random training crop after resizing (0 = none)
    flip = false                # mirror half of the training samples left-right
    batch_size = 4
    workers = 1                 # DataLoader worker processes (0 = main process)
    shuffle = 256               # shuffle buffer (samples)
    val_samples = 64            # validation samples (0 = the whole split)
    val_batch_size = 8

    [optim]                     # defaults: each model's paper (see harmbench.train.steps)
    lr = 5e-5
    betas = [0.5, 0.999]
    weight_decay = 0.0
    schedule = "linear"         # "constant" | "linear" (constant, then linear decay to 0)
    decay_start = 0.5           # fraction of the steps after which the linear decay starts
    grad_clip = 0.0             # max global grad norm (0 = off)

    [loss]                      # the model's loss options (harmbench.train.steps: <Model>Loss)

    [train]
    steps = 2000
    seed = 0
    checkpoint_every = 500
    validate_every = 500
    log_every = 10
    keep_checkpoints = 2
    amp = "auto"                # CUDA only: "auto" (bf16 if supported, else fp16) | "bf16" | "fp16" | "off"
    final_validation = "full"   # after the last step: "full" split, "sample" (val_samples) or "none"

Unknown keys, wrong types and out-of-range values raise :class:`~harmbench.errors.ConfigError`
naming the dotted field (``data.batch_size``) and the file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from harmbench.errors import ConfigError

SCHEDULES = ("constant", "linear")
AMP_MODES = ("auto", "bf16", "fp16", "off")
FINAL_VALIDATION = ("full", "sample", "none")

#: Train-config fields that may differ when resuming (they do not change the optimisation).
RESUMABLE_CHANGES = frozenset(
    {
        "train.steps",
        "train.checkpoint_every",
        "train.validate_every",
        "train.log_every",
        "train.keep_checkpoints",
        "train.final_validation",
        "data.val_samples",
        "data.val_batch_size",
        "data.validation",
    }
)


@dataclass(frozen=True)
class ModelSection:
    """Which model and how big: ``get_model(name, preset=preset, **options)``."""

    name: str
    preset: str = "full"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """Shards and batches. Images are RGB 0–1 resized to ``image_size`` (square), masks {0, 1}."""

    split: str = "train"
    validation: str = "test"
    image_size: int = 256
    crop: int = 0
    flip: bool = False
    batch_size: int = 1
    workers: int = 2
    shuffle: int = 256
    val_samples: int = 64
    val_batch_size: int = 8


@dataclass(frozen=True)
class OptimSection:
    """Adam settings and the learning-rate schedule (``None`` = the model's paper default)."""

    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float = 0.0
    schedule: str = "linear"
    decay_start: float = 0.5
    grad_clip: float = 0.0


@dataclass(frozen=True)
class TrainSection:
    """Loop settings: step budget, seed, checkpoint/validation cadence, mixed precision."""

    steps: int = 0
    seed: int = 0
    checkpoint_every: int = 500
    validate_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 2
    amp: str = "auto"
    final_validation: str = "full"


@dataclass(frozen=True)
class TrainConfig:
    """A complete, validated training config (see the module docstring for the TOML layout)."""

    model: ModelSection
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: dict[str, Any] = field(default_factory=dict)
    train: TrainSection = field(default_factory=TrainSection)
    path: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict (the checkpoint records it; ``from_dict`` reads it back)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "path":
                continue
            v = getattr(self, f.name)
            if f.name == "loss":
                from harmbench.train.steps import get_step

                v = get_step(self.model.name).loss_config(v)
            out[f.name] = _plain(dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with dotted-field changes, e.g. ``cfg.replace(**{"train.steps": 10})``."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.partition(".")
            if section not in d or not name:
                raise ConfigError(key, "unknown config field")
            d[section] = {**d[section], name: value}
        return TrainConfig.from_dict(d, path=self.path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | None = None) -> TrainConfig:
        """Validate a parsed TOML/JSON mapping. Raises :class:`ConfigError` naming the field."""
        data = dict(data)
        known = {"model", "data", "optim", "loss", "train"}
        for key in data:
            if key not in known:
                raise ConfigError(key, f"unknown section; known: {', '.join(sorted(known))}", path=path)
        if "model" not in data:
            raise ConfigError("model", "missing [model] table (name = ...)", path=path)
        model = _section(ModelSection, "model", data["model"], path)
        trainable = learned_models()
        if model.name not in trainable:
            raise ConfigError("model.name", f"must be one of {', '.join(trainable)}, got {model.name!r}", path=path)
        if not isinstance(model.options, Mapping):
            raise ConfigError("model.options", "must be a table of model config fields", path=path)
        model = dataclasses.replace(model, options=dict(model.options))
        dsec = _section(DataSection, "data", data.get("data", {}), path)
        osec = _section(OptimSection, "optim", data.get("optim", {}), path)
        tsec = _section(TrainSection, "train", data.get("train", {}), path)
        loss = data.get("loss", {})
        if not isinstance(loss, Mapping):
            raise ConfigError("loss", "must be a table", path=path)
        cfg = cls(model, dsec, osec, dict(loss), tsec, path)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Range checks; also builds the model config and loss options to catch unknown fields early."""
        p = self.path
        d, o, t = self.data, self.optim, self.train
        _positive("data.image_size", d.image_size, p)
        _positive("data.batch_size", d.batch_size, p)
        _positive("data.val_batch_size", d.val_batch_size, p)
        for name in ("crop", "workers", "shuffle", "val_samples"):
            if getattr(d, name) < 0:
                raise ConfigError(f"data.{name}", f"must be >= 0, got {getattr(d, name)}", path=p)
        if d.crop > d.image_size:
            raise ConfigError("data.crop", f"must be <= data.image_size ({d.image_size}), got {d.crop}", path=p)
        if not d.split:
            raise ConfigError("data.split", "must name a split", path=p)
        if o.lr is not None and not (o.lr > 0 and math.isfinite(o.lr)):
            raise ConfigError("optim.lr", f"must be a positive number, got {o.lr}", path=p)
        if o.betas is not None and (len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas)):
            raise ConfigError("optim.betas", f"must be two numbers in [0, 1), got {list(o.betas)}", path=p)
        if o.schedule not in SCHEDULES:
            raise ConfigError("optim.schedule", f"must be one of {SCHEDULES}, got {o.schedule!r}", path=p)
        if not 0 <= o.decay_start <= 1:
            raise ConfigError("optim.decay_start", f"must be in [0, 1], got {o.decay_start}", path=p)
        if o.weight_decay < 0 or o.grad_clip < 0:
            raise ConfigError("optim.weight_decay" if o.weight_decay < 0 else "optim.grad_clip", "must be >= 0", path=p)
        _positive("train.steps", t.steps, p)
        for name in ("checkpoint_every", "validate_every", "log_every", "keep_checkpoints"):
            _positive(f"train.{name}", getattr(t, name), p)
        if t.amp not in AMP_MODES:
            raise ConfigError("train.amp", f"must be one of {AMP_MODES}, got {t.amp!r}", path=p)
        if t.final_validation not in FINAL_VALIDATION:
            raise ConfigError(
                "train.final_validation", f"must be one of {FINAL_VALIDATION}, got {t.final_validation!r}", path=p
            )
        from harmbench.train.steps import get_step

        spec = get_step(self.model.name)
        try:
            spec.loss_config(self.loss)
        except ConfigError as exc:
            raise ConfigError(f"loss.{exc.field}", str(exc).split(": ", 1)[-1], path=p) from None
        self.model_config()

    def model_config(self) -> Any:
        """The model's config dataclass (preset + options); ``ConfigError`` names a bad field."""
        from harmbench.models.base import make_config
        from harmbench.train.steps import model_class

        try:
            return make_config(model_class(self.model.name).config_class, self.model.preset, **self.model.options)
        except ConfigError as exc:
            field_name = exc.field if exc.field.startswith(("model", self.model.name)) else f"model.options.{exc.field}"
            raise ConfigError(field_name, str(exc).split(": ", 1)[-1], path=self.path) from None


def learned_models() -> tuple[str, ...]:
    """Names ``harmbench train`` can train: every model with a registered training step."""
    from harmbench.train.steps import STEPS

    return tuple(sorted(STEPS))


def diff_configs(
    saved: Mapping[str, Any], current: Mapping[str, Any], *, ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Dotted fields (``optim.lr``) whose values differ between two ``to_dict()`` dicts."""
    out = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section, {}), current.get(section, {})
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            if _plain(a) != _plain(b):
                out.append(section)
            continue
        for key in sorted(set(a) | set(b)):
            name = f"{section}.{key}"
            if name in ignore:
                continue
            if _plain(a.get(key)) != _plain(b.get(key)):
                out.append(name)
    return out


def load_train_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read and validate a training TOML; ``overrides`` are dotted fields (``{"train.steps": 100}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config", "file not found", path=str(path))
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"not valid TOML: {exc}", path=str(path)) from None
    cfg = TrainConfig.from_dict(data, path=str(path))
    if overrides:
        cfg = cfg.replace(**dict(overrides))
    return cfg


# --------------------------------------------------------------------------- helpers


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _positive(name: str, value: int, path: str | None) -> None:
    if value <= 0:
        raise ConfigError(name, f"must be > 0, got {value}", path=path)


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_type(name: str, annotation: str, value: Any, path: str | None) -> Any:
    ann = annotation.replace(" ", "")
    if value is None and "None" in ann:
        return None
    base = ann.replace("|None", "")
    if base.startswith("tuple"):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(name, f"must be a list of numbers, got {value!r}", path=path)
        return tuple(float(v) for v in value)
    if base.startswith("dict"):
        if not isinstance(value, Mapping):
            raise ConfigError(name, f"must be a table, got {value!r}", path=path)
        return dict(value)
    types = _TYPES.get(base)
    if types is None:
        return value
    if isinstance(value, bool) and base != "bool":
        raise ConfigError(name, f"must be {base}, got {value!r}", path=path)
    if not isinstance(value, types):
        raise ConfigError(name, f"must be {base}, got {value!r}", path=path)
    return float(value) if base == "float" else value


def _section(cls: type, name: str, data: Any, path: str | None) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(name, "must be a table", path=path)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown field; known: {', '.join(sorted(known))}", path=path)
        kwargs[key] = _check_type(f"{name}.{key}", str(known[key].type), value, path)
    missing = [
        f.name
        for f in fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs
    ]  # type: ignore[misc]
    if missing:
        raise ConfigError(f"{name}.{missing[0]}", "required field is missing", path=path)
    return cls(**kwargs)


__all__ = [
    "AMP_MODES",
    "RESUMABLE_CHANGES",
    "DataSection",
    "ModelSection",
    "OptimSection",
    "TrainConfig",
    "TrainSection",
    "diff_configs",
    "learned_models",
    "load_train_config",
]
