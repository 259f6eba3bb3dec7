"""The recipe registry: recipe type name -> :class:`Recipe` instance.

A recipe declares its own TOML options (a frozen dataclass of
:func:`harmbench.recipes.schema.opt` fields), which record kind it consumes,
which filters apply to it, and implements ``plan`` (driver) and
``synthesize`` (worker). :func:`harmbench.recipes.synthesize` dispatches on
``spec.recipe`` through :data:`RECIPES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harmbench.recipes.base import SampleArrays, SampleSpec

# The registry sits below the config and planning modules (they look recipes up here), so it
# names their types only in docstrings: ``rc`` is a :class:`harmbench.recipes.config.RecipeConfig`,
# ``ctx`` a :class:`harmbench.recipes.planning.PlanContext`.


@dataclass(frozen=True)
class NoOptions:
    """A recipe without options of its own."""


class Recipe:
    """Base class of recipes.

    Class attributes:
        name: the registered type name (``type = "..."`` in TOML, ``SampleSpec.recipe``).
        Options: frozen dataclass of the recipe's own TOML fields.
        record_kind: ``"object"`` (:class:`ObjectRecord`) or ``"triplet"`` (:class:`TripletRecord`).
        filters: which shared filters apply: ``"fg_ratio"`` (plan time), ``"min_fmse"`` (synthesis).
        max_per_object: upper bound of ``per_object`` (None: no bound beyond the global one).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    record_kind: ClassVar[str] = "object"
    filters: ClassVar[frozenset[str]] = frozenset({"fg_ratio", "min_fmse"})
    max_per_object: ClassVar[int | None] = None

    def validate(self, rc: Any, path: str | None) -> None:
        """Cross-field checks beyond types and ranges; raise ConfigError naming the field."""

    def plan(self, ctx: Any, rc: Any, records: Sequence[Any]) -> list[SampleSpec]:
        """Records -> specs (cheap, deterministic); report rejected inputs with ``ctx.skip``."""
        raise NotImplementedError

    def synthesize(self, spec: SampleSpec) -> SampleArrays:
        """One spec -> pixels + meta; raise InputError to skip."""
        raise NotImplementedError

    def cost(self, spec: SampleSpec) -> float:
        """Estimated one-core seconds to synthesize and encode ``spec`` (driver side, cheap).

        The build engine starts the shards with the largest estimated total first, so
        that the last tasks of a build are short; it never changes an output. Default
        1.0: every sample alike (the plan's order).
        """
        return 1.0


RECIPES: dict[str, Recipe] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"recipe class {cls.__name__} has no name")
    RECIPES[cls.name] = cls()
    return cls


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in (
            "base",
            "registry",
            "schema",
            "config",
            "planning",
            "common",
            "splits",
        ) and not info.name.startswith("_"):
            importlib.import_module(f"harmbench.recipes.{info.name}")


def get_recipe(name: str) -> Recipe:
    """The registered recipe ``name`` (KeyError listing the known ones otherwise)."""
    _load_all()
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}") from None


def recipe_names() -> list[str]:
    _load_all()
    return sorted(RECIPES)
