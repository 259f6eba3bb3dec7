"""Recipes: iHarmony4-style composite synthesis, configured by a dataset TOML.

Public API used by the build engine::

    cfg = load_build_config("datasets/demo.toml", overrides={"sources.demo.root": "/x"})
    plan = plan_dataset(cfg, max_samples=None)   # driver: Plan(specs sorted by (split, key), skipped, counts)
    arrays = synthesize(plan.specs[0])            # worker: SampleArrays, or raises InputError (skip)

``cfg.name``, ``cfg.seed``, ``cfg.shard_size``, ``cfg.output`` (``composite_format``,
``jpeg_quality``, ``store_reference``, ``max_side``) and ``cfg.toml_text`` carry what
the engine needs. ``max_side`` is applied inside :func:`synthesize` (arrays come
back at their final size; ``real_bytes`` is set only when the real image is the
unaltered original file).

Registered recipes (``RECIPES``): ``hcoco``, ``hadobe5k``, ``identical``, ``hue``,
``iharmony4``.
"""

from __future__ import annotations

from harmbench.recipes.base import SampleArrays, SampleSpec, sample_rng, sample_seed
from harmbench.recipes.config import (
    BuildConfig,
    DatasetConfig,
    FilterConfig,
    OutputConfig,
    RecipeConfig,
    SourceConfig,
    SplitConfig,
    build_config_from_text,
    load_build_config,
)
from harmbench.recipes.planning import Plan, PlanContext, plan_dataset
from harmbench.recipes.registry import RECIPES, Recipe, get_recipe, recipe_names, register_recipe


def synthesize(spec: SampleSpec) -> SampleArrays:
    """Synthesize one planned sample (worker side); raises :class:`~harmbench.errors.InputError` to skip it."""
    return get_recipe(spec.recipe).synthesize(spec)


def estimate_cost(spec: SampleSpec) -> float:
    """Estimated one-core seconds to build one planned sample (:meth:`Recipe.cost`); orders build tasks."""
    return get_recipe(spec.recipe).cost(spec)


__all__ = [
    "RECIPES",
    "BuildConfig",
    "DatasetConfig",
    "FilterConfig",
    "OutputConfig",
    "Plan",
    "PlanContext",
    "Recipe",
    "RecipeConfig",
    "SampleArrays",
    "SampleSpec",
    "SourceConfig",
    "SplitConfig",
    "build_config_from_text",
    "estimate_cost",
    "get_recipe",
    "load_build_config",
    "plan_dataset",
    "recipe_names",
    "register_recipe",
    "sample_rng",
    "sample_seed",
    "synthesize",
]
