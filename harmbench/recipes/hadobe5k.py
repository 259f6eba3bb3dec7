"""``hadobe5k``: iHarmony4 HAdobe5k-style composites from multi-version photos (MIT-Adobe FiveK).

Real = one version of a photo; the composite's foreground comes from ANOTHER
version of the same photo, its background from the real version. All
versions are brought to the record's (mask's) size by
:func:`harmbench.sources.fivek.load_versions`, then to ``max_side``.

Plan time: the real version is drawn per object (or fixed by
``real_version``); the other versions are put in a random order and sample
``k`` of an object starts at the k-th of them (the ``per_object`` composites
of one photo use different foreground versions, as in iHarmony4's 5 per
photo); a redraw (composite too close to the real image) takes the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harmbench.arrays import take_masked
from harmbench.errors import ConfigError, InputError
from harmbench.recipes.base import SampleArrays, SampleSpec, sample_rng, sample_seed
from harmbench.recipes.common import (
    Foreground,
    decode_object_mask,
    estimate_seconds,
    filter_objects,
    fit_size,
    image_ext,
    object_meta,
    read_image,
    require_change,
    resize_mask,
    resize_rgb,
    sample_key,
    sizes_meta,
)
from harmbench.recipes.registry import Recipe, register_recipe
from harmbench.recipes.schema import opt
from harmbench.sources.base import ObjectRecord


@dataclass(frozen=True)
class Hadobe5kOptions:
    """Options of ``[[recipes]] type = "hadobe5k"``."""

    versions: tuple[str, ...] | None = opt(
        None, doc='versions to use (e.g. ["A", "C"]); default: all of each photo', nonempty=True, unique=True
    )
    real_version: str | None = opt(None, doc="version used as the real image; default: drawn per object", nonempty=True)


@register_recipe
class Hadobe5kRecipe(Recipe):
    """Foreground of one version over the background of another (see module docstring)."""

    name = "hadobe5k"
    Options = Hadobe5kOptions

    def validate(self, rc: Any, path: str | None) -> None:
        o: Hadobe5kOptions = rc.options
        if o.real_version is not None and o.versions is not None and o.real_version not in o.versions:
            raise ConfigError(
                f"{rc.where}.real_version", f"{o.real_version!r} is not among versions {list(o.versions)}", path=path
            )
        if o.versions is not None and len(o.versions) < 2:
            raise ConfigError(
                f"{rc.where}.versions", "needs at least 2 versions (one real, one for the foreground)", path=path
            )

    def plan(self, ctx: Any, rc: Any, records: Sequence[ObjectRecord]) -> list[SampleSpec]:
        o: Hadobe5kOptions = rc.options
        common = ctx.common_inputs(rc)
        specs = []
        for rec, split, ratio in filter_objects(ctx, rc, records):
            avail = sorted(rec.versions) if rec.versions else []
            if o.versions is not None:
                avail = [v for v in avail if v in o.versions]
            if o.real_version is not None:
                if o.real_version not in avail:
                    ctx.skip(
                        rec.image_path,
                        f"{rc.name}: object {rec.key}: no version {o.real_version!r} (has {', '.join(avail) or 'none'})",
                    )
                    continue
                real_v = o.real_version
            elif avail:
                real_v = avail[int(sample_rng(ctx.seed, f"{rec.key}:real").integers(len(avail)))]
            else:
                real_v = None
            others = [v for v in avail if v != real_v]
            if real_v is None or not others:
                ctx.skip(
                    rec.image_path,
                    f"{rc.name}: object {rec.key}: needs 2 versions of the photo, has {', '.join(avail) or 'none'}",
                )
                continue
            perm = [others[int(i)] for i in sample_rng(ctx.seed, f"{rec.key}:versions").permutation(len(others))]
            n = min(rc.per_object, len(perm))
            for k in range(1, n + 1):
                key = sample_key(rc.name, rec.key, k, rc.per_object)
                order = tuple(perm[(k - 1 + a) % len(perm)] for a in range(len(perm)))
                inputs = {
                    **common,
                    "record": rec,
                    "fg_ratio": round(ratio, 6),
                    "real_version": real_v,
                    "fg_versions": order,
                }
                specs.append(
                    SampleSpec(key=key, recipe=self.name, split=split, seed=sample_seed(ctx.seed, key), inputs=inputs)
                )
        return specs

    def cost(self, spec: SampleSpec) -> float:
        """Two versions of the photo decoded (the real one and the foreground's)."""
        size = spec.inputs["record"].size
        return estimate_seconds([size, size], spec.inputs["max_side"])

    def synthesize(self, spec: SampleSpec) -> SampleArrays:
        inp = spec.inputs
        rec: ObjectRecord = inp["record"]
        real_v: str = inp["real_version"]
        fg_versions: tuple[str, ...] = inp["fg_versions"]
        base = (int(rec.size[0]), int(rec.size[1]))
        out_size = fit_size(*base, inp["max_side"])
        mask = resize_mask(decode_object_mask(rec), out_size)
        if mask.shape != base and not mask.any():
            raise InputError(
                rec.image_path, f"object {rec.key}: mask vanishes when resized to {out_size[1]}x{out_size[0]}"
            )
        real_path = rec.versions[real_v]
        real, data = read_image(real_path)
        native = real.shape[:2]
        real = resize_rgb(resize_rgb(real, base), out_size)
        keep_bytes = data is not None and tuple(native) == out_size and image_ext(real_path) is not None
        if not keep_bytes:
            data = None
        region = Foreground.of(real, mask)

        def draw(attempt: int) -> tuple[np.ndarray, dict]:
            v = fg_versions[attempt % len(fg_versions)]
            version, _ = read_image(rec.versions[v])
            version = resize_rgb(resize_rgb(version, base), out_size)
            info = {"method": "version_swap", "params": {"real_version": real_v, "foreground_version": v}}
            if inp["store_reference"]:
                info["fg"] = version
            return take_masked(version[region.box], region.mask), info

        comp, info, f, attempt = require_change(
            min(inp["max_attempts"], len(fg_versions)),
            inp["min_fmse"],
            draw,
            real,
            region,
            real_path,
            f"object {rec.key}",
        )
        meta = object_meta(spec, rec, mask)
        meta.update(
            {
                "method": "version_swap",
                "params": info["params"],
                "real_version": real_v,
                "foreground_version": info["params"]["foreground_version"],
                "attempt": attempt,
                "fmse": round(f, 3),
                **sizes_meta(base, real),
                "native_size": [int(native[0]), int(native[1])],
            }
        )
        return SampleArrays(
            key=spec.key,
            composite=comp,
            mask=mask,
            real=real,
            meta=meta,
            real_bytes=data if keep_bytes else None,
            real_ext=image_ext(real_path) if keep_bytes else None,
            reference=info.get("fg"),
        )
