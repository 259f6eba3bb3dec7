"""``identical``: identity pairs, composite = real, pixel for pixel.

Models must learn to leave harmonious inputs alone. The real image is NOT
passed as original bytes: the writer then encodes composite and real from the
same array with the same encoder, so the stored files are identical too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harmbench.recipes.base import SampleArrays, SampleSpec, sample_seed
from harmbench.recipes.common import estimate_seconds, filter_objects, load_object, object_meta, sample_key, sizes_meta
from harmbench.recipes.registry import Recipe, register_recipe
from harmbench.sources.base import ObjectRecord


@register_recipe
class IdenticalRecipe(Recipe):
    """Composite = real for each object (one sample per object)."""

    name = "identical"
    filters = frozenset({"fg_ratio"})
    max_per_object = 1

    def plan(self, ctx: Any, rc: Any, records: Sequence[ObjectRecord]) -> list[SampleSpec]:
        common = ctx.common_inputs(rc)
        specs = []
        for rec, split, ratio in filter_objects(ctx, rc, records):
            key = sample_key(rc.name, rec.key, 1, 1)
            inputs = {**common, "record": rec, "fg_ratio": round(ratio, 6)}
            specs.append(
                SampleSpec(key=key, recipe=self.name, split=split, seed=sample_seed(ctx.seed, key), inputs=inputs)
            )
        return specs

    def cost(self, spec: SampleSpec) -> float:
        """One photo decoded and encoded."""
        return estimate_seconds([spec.inputs["record"].size], spec.inputs["max_side"])

    def synthesize(self, spec: SampleSpec) -> SampleArrays:
        rec: ObjectRecord = spec.inputs["record"]
        obj = load_object(rec, spec.inputs["max_side"])
        meta = object_meta(spec, rec, obj.mask)
        meta.update({"method": "identity", "params": {}, "fmse": 0.0, **sizes_meta(obj.original_size, obj.real)})
        return SampleArrays(
            key=spec.key,
            composite=obj.real.copy(),
            mask=obj.mask,
            real=obj.real,
            meta=meta,
            reference=obj.real if spec.inputs["store_reference"] else None,
        )
