"""``iharmony4``: ready-made triplets ingested as they are (iHarmony4 layout or flat folders).

The composite, mask and real come from files; nothing is synthesized. The
split comes from the source's split files (``TripletRecord.split``); triplets
without one get the configured split by real image. The subset goes to the meta.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harmbench.errors import InputError
from harmbench.imaging import binarize, read_mask
from harmbench.recipes.base import SampleArrays, SampleSpec, sample_seed
from harmbench.recipes.common import fit_size, fmse, image_ext, read_image, resize_mask, resize_rgb, sample_key
from harmbench.recipes.registry import Recipe, register_recipe
from harmbench.recipes.schema import opt
from harmbench.sources.base import TripletRecord, make_key


@dataclass(frozen=True)
class Iharmony4Options:
    """Options of ``[[recipes]] type = "iharmony4"``."""

    subsets: tuple[str, ...] | None = opt(
        None, doc='keep only these subsets (e.g. ["HCOCO"]); default: all', nonempty=True, unique=True
    )


def real_image_id(rec: TripletRecord) -> str:
    """The real photo's id (file stem): all composites of one photo share it (and its split)."""
    return os.path.splitext(os.path.basename(rec.real_path))[0]


@register_recipe
class Iharmony4Recipe(Recipe):
    """Passthrough of existing triplets."""

    name = "iharmony4"
    Options = Iharmony4Options
    record_kind = "triplet"
    filters = frozenset()
    max_per_object = 1

    def plan(self, ctx: Any, rc: Any, records: Sequence[TripletRecord]) -> list[SampleSpec]:
        o: Iharmony4Options = rc.options
        common = ctx.common_inputs(rc)
        specs = []
        for rec in records:
            if o.subsets is not None and rec.subset not in o.subsets:
                continue
            image_id = real_image_id(rec)
            split = rec.split or ctx.split_of(make_key(rc.source, rec.subset), image_id, rec.real_path)
            if split is None:
                ctx.skip(rec.composite_path, f"{rc.name}: triplet {rec.key}: image {image_id} is in no split list")
                continue
            key = sample_key(rc.name, rec.key, 1, 1)
            inputs = {**common, "record": rec, "image_id": image_id}
            specs.append(
                SampleSpec(key=key, recipe=self.name, split=split, seed=sample_seed(ctx.seed, key), inputs=inputs)
            )
        return specs

    def synthesize(self, spec: SampleSpec) -> SampleArrays:
        inp = spec.inputs
        rec: TripletRecord = inp["record"]
        comp, _ = read_image(rec.composite_path)
        real, data = read_image(rec.real_path)
        mask = binarize(read_mask(rec.mask_path))
        if not (comp.shape == real.shape and comp.shape[:2] == mask.shape):
            raise InputError(
                rec.composite_path,
                f"triplet {rec.key}: sizes differ (composite {comp.shape[1]}x{comp.shape[0]}, "
                f"real {real.shape[1]}x{real.shape[0]}, mask {mask.shape[1]}x{mask.shape[0]})",
            )
        if not mask.any():
            raise InputError(rec.mask_path, f"triplet {rec.key}: empty mask")
        original = (int(real.shape[0]), int(real.shape[1]))
        size = fit_size(*original, inp["max_side"])
        if size != original:
            comp, real, mask, data = resize_rgb(comp, size), resize_rgb(real, size), resize_mask(mask, size), None
            if not mask.any():
                raise InputError(rec.mask_path, f"triplet {rec.key}: mask vanishes when resized")
            comp = np.where(mask[..., None], comp, real)
        ext = image_ext(rec.real_path) if data is not None else None
        meta = {
            "key": spec.key,
            "recipe": inp["name"],
            "recipe_type": spec.recipe,
            "split": spec.split,
            "seed": int(inp["global_seed"]),
            "sample_seed": int(spec.seed),
            "source": inp.get("source_name"),
            "source_name": inp.get("source_name"),
            "subset": rec.subset,
            "image_key": make_key(rec.subset, inp["image_id"]),
            "image_id": inp["image_id"],
            "object_key": rec.key,
            "composite_file": os.path.basename(rec.composite_path),
            "mask_file": os.path.basename(rec.mask_path),
            "real_file": os.path.basename(rec.real_path),
            "category": None,
            "license": None,
            "method": "passthrough",
            "params": {},
            "fg_ratio": round(float(np.count_nonzero(mask)) / float(mask.size), 6),
            "fmse": round(fmse(comp, real, mask), 3),
            "original_size": list(original),
            "size": [int(real.shape[0]), int(real.shape[1])],
        }
        return SampleArrays(
            key=spec.key,
            composite=comp,
            mask=mask,
            real=real,
            meta=meta,
            real_bytes=data if ext else None,
            real_ext=ext,
            reference=real if inp["store_reference"] else None,
        )
