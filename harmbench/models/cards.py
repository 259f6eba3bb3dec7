"""Model cards: where a learned model's weights come from, under which licence, and how it is fed.

A card is what timm calls a ``pretrained_cfg``: one frozen record per published (or committed)
set of weights. ``harmbench weights list`` prints them; ``harmbench weights fetch NAME``
downloads the files that have a direct link; the official-checkpoint loader reads the file
roles from here.

Units: ``input_size`` is ``(H, W)`` in pixels (``None`` = any size); ``mean``/``std`` are per
RGB channel on the 0–1 scale, applied as ``(x − mean) / std`` before the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harmbench.errors import ConfigError


@dataclass(frozen=True)
class WeightFile:
    """One file of a checkpoint.

    ``role``: what the file holds for the model (``"G"``, ``"E"``, ``"C"``, ``"model"`` …);
    ``filename``: the name the authors give it; ``url``: a direct download link or ``None``
    (then ``manual`` says how to get it by hand); ``sha256``/``size`` (bytes) when known.
    """

    role: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    manual: str = ""


@dataclass(frozen=True)
class ModelCard:
    """A published or committed set of weights for a registered model.

    ``name``: the card's name (``"dovenet-official"``); ``model``: the registry name it builds
    (``"dovenet"``); ``files``: the checkpoint files; ``published``: the numbers the source
    reports, e.g. ``{"iHarmony4 MSE": 52.36}``, with ``published_source`` naming where.
    """

    name: str
    model: str
    source: str
    commit: str = ""
    code_license: str = ""
    weights_license: str = ""
    files: tuple[WeightFile, ...] = ()
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"
    protocol: str = "official"
    published: Mapping[str, float] = field(default_factory=dict)
    published_source: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["files"] = [dataclasses.asdict(f) for f in self.files]
        d["published"] = dict(self.published)
        d["options"] = dict(self.options)
        return d

    def file(self, role: str) -> WeightFile:
        """The file with ``role`` (``ConfigError`` naming the known roles otherwise)."""
        for f in self.files:
            if f.role == role:
                return f
        raise ConfigError("role", f"card {self.name!r} has no file {role!r}; roles: {[f.role for f in self.files]}")


CARDS: dict[str, ModelCard] = {}


def register_card(card: ModelCard) -> ModelCard:
    """Add ``card`` to the registry (a second card under the same name is an error)."""
    if card.name in CARDS and CARDS[card.name] != card:
        raise ValueError(f"model card {card.name!r} is already registered")
    CARDS[card.name] = card
    return card


def _load_all() -> None:
    from harmbench.models.base import _load_all as load_models

    load_models()


def get_card(name: str) -> ModelCard:
    """The card registered as ``name`` (``ConfigError`` listing the known cards otherwise)."""
    _load_all()
    try:
        return CARDS[name]
    except KeyError:
        raise ConfigError("weights", f"unknown model card {name!r}; known: {', '.join(sorted(CARDS))}") from None


def list_cards(model: str | None = None) -> list[ModelCard]:
    """All cards (of registry model ``model`` when given), sorted by name."""
    _load_all()
    return [c for _, c in sorted(CARDS.items()) if model is None or c.model == model]


__all__ = ["CARDS", "ModelCard", "WeightFile", "get_card", "list_cards", "register_card"]
