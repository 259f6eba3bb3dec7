"""The harmonization-model interface, input validation, padding and the model registry.

Every method, classical or learned, implements :meth:`Harmonizer.harmonize`:

* ``composite``: ``float (N, 3, H, W)`` RGB on the **0–1** scale, any device.
* ``mask``: ``(N, 1, H, W)`` foreground, values exactly 0 or 1 (float or bool).
* returns ``(N, 3, H, W)`` RGB on 0–1, same device and dtype as ``composite``.

Any ``H, W`` is accepted: networks pad to their stride (replicate) and crop back.

Two optional parts of the contract, for models ported from the authors' code:

* ``protocol`` (attribute): ``"harmbench"`` (default: deterministic, eval mode, any size, output
  the input's size) or ``"official"`` (exactly the authors' test script: their resize, run mode,
  seeded dropout and uint8 rounding). Under ``"official"``, ``harmonize`` returns what each model
  documents: the script's size (DoveNet, BargainNet: 256×256, uint8 values / 255) or the input's
  size (iDIH/iSSAM: the prediction resized back); ``predict_uint8(image_u8 (H,W,3), mask (H,W)
  0–255)`` returns exactly what the script writes (``harmbench harmonize`` writes that).
* ``accepts_real`` (class attribute): when ``True``, ``harmonize(composite, mask, real=…)`` also
  takes the ground-truth image ``(N, 3, H, W)`` on 0–1, because the authors' test script reads
  it (BargainNet takes the background code from it). Evaluation passes it when available;
  without it the model falls back to the composite. Models that leave it ``False`` never get it.

Learned models derive from :class:`LearnedHarmonizer` (an ``nn.Module``). Each has a
frozen config dataclass with a ``full`` (as published) and a ``small`` (CPU) preset;
``model.config_dict()`` records it in checkpoints and ``model.check_config(saved)``
verifies a checkpoint against the model.

The registry maps names to builders: ``get_model("dovenet", preset="small", seed=0)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harmbench.errors import ConfigError, HarmbenchError

# --------------------------------------------------------------------------- errors


class ModelInputError(HarmbenchError, ValueError):
    """A tensor passed to ``harmonize`` has the wrong shape, range or values."""


# --------------------------------------------------------------------------- validation


def validate_inputs(composite: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``composite`` (N,3,H,W) on 0–1 and ``mask`` (N,1,H,W) in {0,1}.

    Returns ``(composite, mask)`` with the mask as a float tensor of the composite's
    dtype on the composite's device; the composite is returned as is when it lies in
    [0, 1], else clamped to it (a copy). Raises :class:`ModelInputError` with a message
    naming the problem. Cost: one min/max pass over each tensor (plus ``m·m == m`` for a
    float mask) and one device sync each.
    """
    if not isinstance(composite, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise ModelInputError("composite and mask must be torch tensors")
    if composite.dim() != 4 or composite.shape[1] != 3:
        raise ModelInputError(f"composite must have shape (N, 3, H, W), got {tuple(composite.shape)}")
    if not composite.is_floating_point():
        raise ModelInputError(f"composite must be a float tensor on the 0–1 scale, got dtype {composite.dtype}")
    n, _, h, w = composite.shape
    if n == 0 or h == 0 or w == 0:
        raise ModelInputError(f"composite is empty: shape {tuple(composite.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ModelInputError(f"mask must have shape (N, 1, H, W), got {tuple(mask.shape)}")
    if mask.shape[0] != n or mask.shape[2:] != composite.shape[2:]:
        raise ModelInputError(f"mask shape {tuple(mask.shape)} does not match composite shape {tuple(composite.shape)}")
    # min/max propagate NaN, so finite bounds mean finite values: one pass and one sync per tensor
    lo, hi = _bounds(composite)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ModelInputError("composite contains NaN or infinite values")
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ModelInputError(
            f"composite values must lie on the 0–1 scale, got range [{lo:.4g}, {hi:.4g}]"
            " (0–255 or [-1, 1] inputs must be rescaled)"
        )
    if mask.dtype != torch.bool:
        mlo, mhi = _bounds(mask)
        if not (math.isfinite(mlo) and math.isfinite(mhi)):
            raise ModelInputError("mask contains NaN or infinite values")
        # within [0, 1], m·m == m holds exactly for 0 and 1 only (m² < m rounds below m otherwise)
        binary = mlo >= 0 and mhi <= 1 and (not mask.is_floating_point() or torch.equal(mask * mask, mask))
        if not binary:
            raise ModelInputError(
                f"mask values must be exactly 0 or 1, got values in [{mlo:.4g}, {mhi:.4g}] (binarise it first)"
            )
    mask_f = mask.to(device=composite.device, dtype=composite.dtype)
    if lo < 0.0 or hi > 1.0:  # within the tolerance: clamp the rounding slack away
        composite = composite.clamp(0.0, 1.0)
    return composite, mask_f


def _bounds(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of ``x`` as Python floats (nan when ``x`` holds a NaN)."""
    lo, hi = torch.stack(torch.aminmax(x.detach())).double().cpu().tolist()
    return lo, hi


# --------------------------------------------------------------------------- padding


def pad_to_multiple(
    x: torch.Tensor, multiple: int, *, margin: int = 0, min_size: int = 1, mode: str = "replicate"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``x`` (N,C,H,W) by at least ``margin`` on each side so that H and W become multiples of
    ``multiple`` and at least ``min_size``.

    Returns the padded tensor and ``(top, bottom, left, right)`` for :func:`crop_padding`.
    ``mode`` is ``replicate`` or ``reflect`` (``reflect`` falls back to replicate where the
    pad is larger than the image).
    """
    h, w = x.shape[-2:]
    th = -(-max(h + 2 * margin, min_size) // multiple) * multiple
    tw = -(-max(w + 2 * margin, min_size) // multiple) * multiple
    top, left = (th - h) // 2, (tw - w) // 2
    bottom, right = th - h - top, tw - w - left
    pads = (top, bottom, left, right)
    if th == h and tw == w:
        return x, pads
    if mode == "reflect" and max(top, bottom) < h and max(left, right) < w:
        out = F.pad(x, (left, right, top, bottom), mode="reflect")
    elif mode in ("reflect", "replicate"):
        out = F.pad(x, (left, right, top, bottom), mode="replicate")
    else:
        raise ValueError(f"unknown pad mode {mode!r}; use 'replicate' or 'reflect'")
    return out, pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` (works for any channel count)."""
    top, bottom, left, right = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


# --------------------------------------------------------------------------- interface


class Harmonizer(ABC):
    """A harmonization method. See the module docstring for the tensor contract."""

    name: ClassVar[str] = ""
    #: ``harmonize`` takes ``real=`` (the ground truth, (N,3,H,W) on 0–1); see the module docstring.
    accepts_real: ClassVar[bool] = False

    @property
    def protocol(self) -> str:
        """``"harmbench"`` (deterministic, output at the input's size) or ``"official"`` (the authors' test script)."""
        return "harmbench"

    @abstractmethod
    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Harmonize ``composite`` (N,3,H,W, 0–1) given ``mask`` (N,1,H,W, {0,1}); returns (N,3,H,W) on 0–1."""


class LearnedHarmonizer(nn.Module, Harmonizer):
    """Base of the learned models: config bookkeeping and the pad/validate/eval wrapper.

    Subclasses set ``name``, ``config_class``, ``stride`` (and optionally ``pad_margin``,
    ``min_size``: the smallest padded side the network accepts) and implement
    :meth:`_harmonize` on validated, padded tensors (RGB 0–1, mask float {0,1}).
    ``recomposite`` pastes the prediction into the composite's background
    (``out·M + comp·(1−M)``); DoveNet/BargainNet default to the raw output, as in
    their evaluation protocol.

    A config class may list ``RUNTIME_FIELDS`` (e.g. ``("protocol", "seed")``): fields that say
    how to run the network, not what its weights are. :meth:`check_config` accepts checkpoints
    that do not record them (they take the defaults), and loaders let them be overridden.
    """

    config_class: ClassVar[type]
    stride: ClassVar[int] = 1
    pad_margin: ClassVar[int] = 0
    min_size: ClassVar[int] = 1

    def __init__(self, config: Any = None, **overrides: Any):
        """``config``: a config dataclass, a mapping, a preset name or ``None`` (full size); ``overrides``: fields."""
        super().__init__()
        self._config = make_config(self.config_class, config, **overrides)

    # -- config ---------------------------------------------------------------------
    @property
    def config(self) -> Any:
        """The frozen config dataclass this model was built from."""
        return self._config

    @property
    def protocol(self) -> str:  # type: ignore[override]
        """The config's ``protocol`` field (``"harmbench"`` for models without one)."""
        return str(getattr(self._config, "protocol", "harmbench"))

    def config_dict(self) -> dict[str, Any]:
        """``{"model": name, **fields}``: what a checkpoint records."""
        return {"model": self.name, **config_to_dict(self._config)}

    @classmethod
    def from_config(cls, config: Any = None, **overrides: Any) -> LearnedHarmonizer:
        """Build from a config dataclass, a mapping (e.g. a checkpoint's ``config_dict()``) or a preset name."""
        return cls(make_config(cls.config_class, config, **overrides))

    def check_config(self, saved: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` naming the first field where ``saved`` differs from this model's config."""
        saved = dict(saved)
        model = saved.pop("model", self.name)
        if model != self.name:
            raise ConfigError("model", f"checkpoint is for {model!r}, this model is {self.name!r}")
        mine = config_to_dict(self._config)
        runtime = set(getattr(self.config_class, "RUNTIME_FIELDS", ()))
        for key in sorted(set(mine) | set(saved)):
            if key not in saved and key in runtime:
                continue  # how to run, not what the weights are: older checkpoints do not record it
            if key not in saved:
                raise ConfigError(f"{self.name}.{key}", "missing from the checkpoint's config")
            if key not in mine:
                raise ConfigError(f"{self.name}.{key}", "unknown field in the checkpoint's config")
            if _normalise(saved[key]) != _normalise(mine[key]):
                raise ConfigError(f"{self.name}.{key}", f"checkpoint has {saved[key]!r}, model has {mine[key]!r}")

    # -- inference ------------------------------------------------------------------
    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """See :class:`Harmonizer`. Runs in eval mode without gradients; restores the training flag."""
        composite, mask = validate_inputs(composite, mask)
        param = next(self.parameters())
        out_dtype = composite.dtype
        x = composite.to(device=param.device, dtype=param.dtype)
        m = mask.to(device=param.device, dtype=param.dtype)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                geometry = {"margin": self.pad_margin, "min_size": self.min_size}
                xp, pads = pad_to_multiple(x, self.stride, **geometry)
                mp, _ = pad_to_multiple(m, self.stride, **geometry)
                valid = torch.zeros_like(mp)
                top, bottom, left, right = pads
                valid[..., top : valid.shape[-2] - bottom, left : valid.shape[-1] - right] = 1
                out = crop_padding(self._harmonize(xp, mp, valid), pads).clamp(0.0, 1.0)
                if getattr(self._config, "recomposite", False):
                    out = out * m + x * (1 - m)
        finally:
            self.train(was_training)
        return out.to(device=composite.device, dtype=out_dtype)

    @abstractmethod
    def _harmonize(self, composite: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Padded RGB 0–1 (N,3,H,W), mask and ``valid`` (1 inside the unpadded image) -> RGB 0–1."""


# --------------------------------------------------------------------------- config helpers


def config_to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists, JSON/TOML friendly)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    return value


def make_config(config_class: type, config: Any = None, **overrides: Any) -> Any:
    """Build a config dataclass from ``None`` (full size), a preset name (``full``/``small``),
    a mapping, or an instance, then apply ``overrides``. Unknown keys raise :class:`ConfigError`.
    """
    preset = overrides.pop("preset", None)
    if isinstance(config, str):
        preset, config = config, None
    if config is None:
        base = config_class.preset(preset or "full")
    elif isinstance(config, config_class):
        base = config
    elif isinstance(config, Mapping):
        config = dict(config)
        config.pop("model", None)
        base = config_class.preset(config.pop("preset", None) or preset or "full")
        overrides = {**config, **overrides}
    else:
        raise TypeError(f"cannot build {config_class.__name__} from {type(config).__name__}")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(key, f"unknown option for {config_class.__name__}; known: {', '.join(sorted(fields))}")
        if isinstance(getattr(base, key), tuple) and isinstance(value, list):
            overrides[key] = tuple(value)
    try:
        cfg = dataclasses.replace(base, **overrides)
    except TypeError as exc:  # pragma: no cover - dataclass arg errors
        raise ConfigError(config_class.__name__, str(exc)) from exc
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


class PresetMixin:
    """Adds ``preset(name)`` to a config dataclass from its ``PRESETS`` mapping of overrides."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"full": {}}

    @classmethod
    def preset(cls, name: str):
        try:
            overrides = cls.PRESETS[name]
        except KeyError:
            raise ConfigError("preset", f"unknown preset {name!r}; known: {', '.join(sorted(cls.PRESETS))}") from None
        return cls(**overrides)


# --------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., Harmonizer]] = {}

_MODULES = (
    "classical",
    "hen_ctn",
    "hen_ctn_official",
    "dovenet",
    "bargainnet",
    "iharm",
    "pctnet",
    "pctnet_official",
    "pretrained",
)


def register_model(name: str) -> Callable[[Callable[..., Harmonizer]], Callable[..., Harmonizer]]:
    """Decorator registering a builder (a class or a function returning a :class:`Harmonizer`) under ``name``."""

    def deco(builder: Callable[..., Harmonizer]) -> Callable[..., Harmonizer]:
        if name in MODELS and MODELS[name] is not builder:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = builder
        return builder

    return deco


#: Entry-point group through which installed packages register models: ``name = "pkg.mod:factory"``.
ENTRY_POINT_GROUP = "harmbench.models"


def _load_all() -> None:
    for mod in _MODULES:
        importlib.import_module(f"harmbench.models.{mod}")
    _load_entry_points()


def _load_entry_points() -> None:
    """Register the models of installed packages (group :data:`ENTRY_POINT_GROUP`); loaded on first use."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in MODELS:
            MODELS[ep.name] = _lazy_entry_point(ep)


def _lazy_entry_point(ep: Any) -> Callable[..., Harmonizer]:
    def build(**config: Any) -> Harmonizer:
        try:
            factory = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin names itself
            raise ConfigError("model", f"plugin model {ep.name!r} ({ep.value}) cannot be imported: {exc}") from exc
        return check_harmonizer(factory(**config), ep.value)

    build.__name__ = f"plugin_{ep.name}"
    return build


def check_harmonizer(obj: Any, where: str) -> Any:
    """``obj`` if it has a callable ``harmonize``, else :class:`ConfigError` naming ``where``."""
    if not callable(getattr(obj, "harmonize", None)):
        raise ConfigError("model", f"{where} returned {type(obj).__name__}, which has no harmonize() method")
    return obj


def load_factory(spec: str, **options: Any) -> Any:
    """Build a model from ``"package.module:factory"``: import the module, call ``factory(**options)``.

    The result must have ``harmonize(composite, mask)`` (see :class:`Harmonizer`). Errors name the spec.
    """
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ConfigError("model", f"{spec!r}: expected 'package.module:factory'")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError("model", f"{spec!r}: cannot import {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError("model", f"{spec!r}: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError("model", f"{spec!r} is not callable")
    try:
        built = obj(**options)
    except TypeError as exc:
        raise ConfigError("model", f"{spec!r} does not accept the options {sorted(options)}: {exc}") from None
    return check_harmonizer(built, spec)


def available_models() -> list[str]:
    """Sorted registered model names."""
    _load_all()
    return sorted(MODELS)


def get_model(name: str, *, seed: int | None = None, **config: Any) -> Harmonizer:
    """Build the model registered as ``name`` with ``config`` options.

    Learned models take their config fields and ``preset`` (``full``/``small``); for them
    ``seed`` makes weight initialisation reproducible without touching the global RNG, and
    is also stored in the config when it has a ``seed`` field (e.g. the dropout seed of the
    authors' test protocol).
    Builders marked ``takes_seed`` (randomised classical ops) receive ``seed`` themselves.
    Unknown names or options raise :class:`ConfigError`.
    """
    _load_all()
    try:
        builder = MODELS[name]
    except KeyError:
        raise ConfigError("model", f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    if getattr(builder, "takes_seed", False):
        return builder(**config) if seed is None else builder(seed=seed, **config)
    config_class = getattr(builder, "config_class", None)
    if (
        seed is not None
        and dataclasses.is_dataclass(config_class)
        and "seed" in {f.name for f in dataclasses.fields(config_class)}
    ):
        config.setdefault("seed", seed)
    if seed is None:
        return builder(**config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(**config)


__all__ = [
    "ENTRY_POINT_GROUP",
    "MODELS",
    "Harmonizer",
    "LearnedHarmonizer",
    "ModelInputError",
    "PresetMixin",
    "available_models",
    "config_to_dict",
    "crop_padding",
    "check_harmonizer",
    "get_model",
    "load_factory",
    "make_config",
    "pad_to_multiple",
    "register_model",
    "validate_inputs",
]
