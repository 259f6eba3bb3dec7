"""``hue``: the foreground's hue rotated and saturation scaled, CIE L kept.

The HEN/CTN colour augmentation (model_specs §1.5) restricted to the object:
``hue_shift`` (turns, 0–1 = 0–360°) ~ U[hue_shift], ``sat_scale`` =
max(U[sat_scale], sat_floor); applied by the ``hue`` colour transfer, which
keeps each pixel's Lab lightness. Amounts are drawn from the sample's RNG and
recorded; a redraw (composite too close to the real image) draws new amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harmbench.errors import ConfigError
from harmbench.recipes.base import SampleArrays, SampleSpec, sample_seed
from harmbench.recipes.common import (
    TransferTarget,
    estimate_seconds,
    filter_objects,
    load_object,
    object_meta,
    require_change,
    sample_key,
    sizes_meta,
)
from harmbench.recipes.registry import Recipe, register_recipe
from harmbench.recipes.schema import opt
from harmbench.sources.base import ObjectRecord


@dataclass(frozen=True)
class HueOptions:
    """Options of ``[[recipes]] type = "hue"``."""

    hue_shift: tuple[float, float] = opt((0.0, 1.0), doc="[low, high] hue rotation in turns (0-1)", ge=0.0, le=1.0)
    sat_scale: tuple[float, float] = opt((0.0, 1.2), doc="[low, high] saturation factor", ge=0.0, le=10.0)
    sat_floor: float = opt(0.3, doc="saturation factors below this are raised to it", ge=0.0, le=10.0)


@register_recipe
class HueRecipe(Recipe):
    """Hue/saturation change of the foreground with lightness kept."""

    name = "hue"
    Options = HueOptions

    def validate(self, rc: Any, path: str | None) -> None:
        o: HueOptions = rc.options
        for fname in ("hue_shift", "sat_scale"):
            lo, hi = getattr(o, fname)
            if lo > hi:
                raise ConfigError(f"{rc.where}.{fname}", f"low {lo} exceeds high {hi}", path=path)

    def plan(self, ctx: Any, rc: Any, records: Sequence[ObjectRecord]) -> list[SampleSpec]:
        common = ctx.common_inputs(rc)
        o: HueOptions = rc.options
        specs = []
        for rec, split, ratio in filter_objects(ctx, rc, records):
            for k in range(1, rc.per_object + 1):
                key = sample_key(rc.name, rec.key, k, rc.per_object)
                inputs = {
                    **common,
                    "record": rec,
                    "fg_ratio": round(ratio, 6),
                    "hue_shift": o.hue_shift,
                    "sat_scale": o.sat_scale,
                    "sat_floor": o.sat_floor,
                }
                specs.append(
                    SampleSpec(key=key, recipe=self.name, split=split, seed=sample_seed(ctx.seed, key), inputs=inputs)
                )
        return specs

    def cost(self, spec: SampleSpec) -> float:
        """One photo decoded, the hue op on the foreground."""
        inp = spec.inputs
        return estimate_seconds([inp["record"].size], inp["max_side"], inp["fg_ratio"], "hue")

    def synthesize(self, spec: SampleSpec) -> SampleArrays:
        inp = spec.inputs
        rec: ObjectRecord = inp["record"]
        obj = load_object(rec, inp["max_side"])
        target = TransferTarget(obj.real, obj.mask)
        rng = np.random.default_rng(spec.seed)

        def draw(attempt: int) -> tuple[Any, dict]:
            params = {
                "hue_shift": float(rng.uniform(*inp["hue_shift"])),
                "sat_scale": float(max(rng.uniform(*inp["sat_scale"]), inp["sat_floor"])),
            }
            return target.apply("hue", None, params), {"method": "hue", "params": params}

        comp, info, f, attempt = require_change(
            inp["max_attempts"], inp["min_fmse"], draw, obj.real, target.fg, rec.image_path, f"object {rec.key}"
        )
        meta = object_meta(spec, rec, obj.mask)
        meta.update(
            {
                "method": "hue",
                "params": info["params"],
                "attempt": attempt,
                "fmse": round(f, 3),
                **sizes_meta(obj.original_size, obj.real),
            }
        )
        return SampleArrays(
            key=spec.key,
            composite=comp,
            mask=obj.mask,
            real=obj.real,
            meta=meta,
            real_bytes=obj.data,
            real_ext=obj.ext,
            reference=obj.real if inp["store_reference"] else None,
        )
