"""``hcoco``: iHarmony4 HCOCO/HFlickr-style composites.

For each object, reference objects of the SAME category from OTHER photos are
drawn at plan time (one per attempt); the object's foreground is recoloured
towards the reference region's colour statistics by a colour-transfer method
and pasted back on its own, untouched background. The real image is the
original photo, stored as its original bytes when not resized.

Methods: the ``per_object`` composites of one object take the configured
methods in a per-object random order (so two composites of one object use two
different methods when possible); a redraw (composite too close to the real
image) moves to the next method and the next reference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harmbench.errors import ConfigError, InputError
from harmbench.recipes.base import SampleArrays, SampleSpec, sample_rng, sample_seed
from harmbench.recipes.common import (
    TransferSource,
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
from harmbench.sources.base import ObjectRecord, make_key

IHARMONY4_METHODS = ("reinhard", "xiao", "ychist", "idt")


@dataclass(frozen=True)
class HcocoOptions:
    """Options of ``[[recipes]] type = "hcoco"``."""

    methods: tuple[str, ...] = opt(
        IHARMONY4_METHODS,
        doc="colour-transfer methods to draw from (registered transfer names)",
        nonempty=True,
        unique=True,
    )
    reference_fallback: Literal["any", "skip"] = opt(
        "any", doc="when no other photo has an object of the same category: any category, or skip the object"
    )
    reference_split: Literal["any", "same"] = opt(
        "any", doc="draw references from any split, or only from the object's own split"
    )


def _choose_references(
    rng: np.random.Generator, pool: Sequence[ObjectRecord], same_image: int, n: int, image_id: str
) -> list[ObjectRecord]:
    """Up to ``n`` distinct records of ``pool`` from photos other than ``image_id``.

    ``same_image`` is how many of ``pool`` belong to ``image_id``; drawing
    ``n + same_image`` without replacement then dropping those always yields
    ``min(n, len(pool) - same_image)`` references, in O(n) draws.
    """
    m = min(len(pool), n + same_image)
    if m == 0:
        return []
    idx = rng.choice(len(pool), size=m, replace=False)
    return [pool[int(i)] for i in idx if pool[int(i)].image_id != image_id][:n]


@register_recipe
class HcocoRecipe(Recipe):
    """Same-category colour transfer onto the object (see module docstring)."""

    name = "hcoco"
    Options = HcocoOptions

    def validate(self, rc: Any, path: str | None) -> None:
        from harmbench.transfer import available_transfers

        known = available_transfers()
        for j, m in enumerate(rc.options.methods):
            if m not in known:
                raise ConfigError(
                    f"{rc.where}.methods[{j}]", f"unknown colour transfer {m!r} (known: {', '.join(known)})", path=path
                )

    def plan(self, ctx: Any, rc: Any, records: Sequence[ObjectRecord]) -> list[SampleSpec]:
        opts: HcocoOptions = rc.options
        kept = filter_objects(ctx, rc, records)
        n_refs = rc.filters.max_attempts
        # reference pools: per (split or None, category) and per split overall; counts per photo
        by_cat: dict[tuple[str | None, str], list[ObjectRecord]] = defaultdict(list)
        by_all: dict[str | None, list[ObjectRecord]] = defaultdict(list)
        n_cat_img: dict[tuple[str | None, str, str], int] = defaultdict(int)
        n_img: dict[tuple[str | None, str], int] = defaultdict(int)
        for rec, split, _ in kept:
            scope = split if opts.reference_split == "same" else None
            by_cat[(scope, rec.category)].append(rec)
            by_all[scope].append(rec)
            n_cat_img[(scope, rec.category, rec.image_id)] += 1
            n_img[(scope, rec.image_id)] += 1
        common = ctx.common_inputs(rc)
        specs: list[SampleSpec] = []
        methods = opts.methods
        for rec, split, ratio in kept:
            scope = split if opts.reference_split == "same" else None
            pool = by_cat[(scope, rec.category)]
            same = n_cat_img[(scope, rec.category, rec.image_id)]
            fallback = False
            if len(pool) - same <= 0:
                if opts.reference_fallback == "skip":
                    ctx.skip(
                        rec.image_path,
                        f"{rc.name}: object {rec.key}: no object of category {rec.category!r} in another photo",
                    )
                    continue
                pool, same, fallback = by_all[scope], n_img[(scope, rec.image_id)], True
                if len(pool) - same <= 0:
                    ctx.skip(
                        rec.image_path, f"{rc.name}: object {rec.key}: no object in another photo to take colours from"
                    )
                    continue
            order = sample_rng(ctx.seed, f"{rec.key}:methods").permutation(len(methods))
            for k in range(1, rc.per_object + 1):
                key = sample_key(rc.name, rec.key, k, rc.per_object)
                refs = _choose_references(sample_rng(ctx.seed, f"{key}:references"), pool, same, n_refs, rec.image_id)
                method_order = tuple(methods[int(order[(k - 1 + a) % len(methods)])] for a in range(len(methods)))
                inputs = {
                    **common,
                    "record": rec,
                    "references": tuple(refs),
                    "reference_fallback": fallback,
                    "methods": method_order,
                    "fg_ratio": round(ratio, 6),
                }
                specs.append(
                    SampleSpec(key=key, recipe=self.name, split=split, seed=sample_seed(ctx.seed, key), inputs=inputs)
                )
        return specs

    def cost(self, spec: SampleSpec) -> float:
        """The object's photo and the first reference's decoded, the first method on the foreground."""
        inp = spec.inputs
        rec: ObjectRecord = inp["record"]
        photos = [rec.size, *(r.size for r in inp["references"][:1])]
        return estimate_seconds(photos, inp["max_side"], inp["fg_ratio"], inp["methods"][0])

    def synthesize(self, spec: SampleSpec) -> SampleArrays:
        from harmbench.transfer import crop_mode, sample_params

        inp = spec.inputs
        rec: ObjectRecord = inp["record"]
        refs: tuple[ObjectRecord, ...] = inp["references"]
        methods: tuple[str, ...] = inp["methods"]
        max_side = inp["max_side"]
        if not refs:
            raise InputError(rec.image_path, f"object {rec.key}: no reference object")
        obj = load_object(rec, max_side)
        target = TransferTarget(obj.real, obj.mask)
        rng = np.random.default_rng(spec.seed)
        # reference photos are reduced to their region's box unless the whole photo is stored or read
        keep_full = bool(inp["store_reference"]) or any(crop_mode(m) is None for m in methods)
        loaded: dict[str, TransferSource | InputError] = {}
        errors: list[str] = []

        def draw(attempt: int) -> tuple[Any, dict] | None:
            ref = refs[attempt % len(refs)]
            method = methods[attempt % len(methods)]
            params = sample_params(method, rng)
            if ref.key not in loaded:
                try:
                    ref_obj = load_object(ref, max_side)
                    loaded[ref.key] = TransferSource.of(ref_obj.real, ref_obj.mask, keep_full)
                    del ref_obj
                except InputError as exc:
                    loaded[ref.key] = exc
            source = loaded[ref.key]
            if isinstance(source, InputError):
                errors.append(f"reference {ref.key}: {source.reason}")
                return None
            try:
                out = target.apply(method, source, params)
            except ValueError as exc:
                errors.append(f"{method}: {exc}")
                return None
            return out, {"method": method, "params": params, "reference": ref, "reference_obj": source}

        try:
            comp, info, f, attempt = require_change(
                inp["max_attempts"], inp["min_fmse"], draw, obj.real, target.fg, rec.image_path, f"object {rec.key}"
            )
        except InputError as exc:
            if errors:
                raise InputError(exc.path, f"{exc.reason}; {'; '.join(errors[:3])}") from None
            raise
        ref, ref_obj = info["reference"], info["reference_obj"]
        meta = object_meta(spec, rec, obj.mask)
        meta.update(
            {
                "method": info["method"],
                "params": info["params"],
                "attempt": attempt,
                "fmse": round(f, 3),
                "reference_key": ref.key,
                "reference_image_key": make_key(ref.source, ref.image_id),
                "reference_image_id": ref.image_id,
                "reference_category": ref.category,
                "reference_license": ref.license,
                "reference_fallback": bool(inp["reference_fallback"]),
                "reference_size": [int(ref_obj.size[0]), int(ref_obj.size[1])],
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
            reference=ref_obj.full if inp["store_reference"] else None,
        )
