"""A small self-contained recipe over generated photos, for tests and ``bench build``.

:func:`make_photos` writes synthetic photos (smooth gradients with a few
shapes) and one mask per shape; :func:`plan_photos` turns them into
:class:`SampleSpec` s; :func:`synthesize` decodes a photo and its mask and
shifts the foreground colours (per-sample gains from the spec's seed).
Inputs flagged ``fail`` raise :class:`InputError`, so skip accounting can be
exercised; ``sleep`` slows a sample down (kill/resume tests).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harmbench.errors import InputError
from harmbench.imaging import binarize, read_mask, read_rgb
from harmbench.recipes.base import SampleArrays, SampleSpec, sample_rng, sample_seed

CATEGORIES = ("disc", "box", "blob")


def make_photo(
    width: int, height: int, seed: int, n_objects: int = 3
) -> tuple[Image.Image, list[tuple[str, Image.Image]]]:
    """A photo-like RGB image and ``n_objects`` (category, L mask) pairs."""
    rng = np.random.default_rng(seed)
    # smooth background from a small random field, upsampled (cheap even at 6000x4000)
    small = (rng.random((6, 8, 3)) * 200 + 30).astype(np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    masks = []
    for i in range(n_objects):
        cat = CATEGORIES[i % len(CATEGORIES)]
        w = int(width * rng.uniform(0.08, 0.45))
        h = int(height * rng.uniform(0.08, 0.45))
        x0 = int(rng.integers(0, max(1, width - w)))
        y0 = int(rng.integers(0, max(1, height - h)))
        box = (x0, y0, x0 + w, y0 + h)
        colour = tuple(int(c) for c in rng.integers(20, 235, size=3))
        m = Image.new("L", (width, height), 0)
        md = ImageDraw.Draw(m)
        if cat == "box":
            draw.rectangle(box, fill=colour)
            md.rectangle(box, fill=255)
        else:
            draw.ellipse(box, fill=colour)
            md.ellipse(box, fill=255)
        masks.append((cat, m))
    return img, masks


def make_photos(
    root: str | Path,
    n_photos: int,
    *,
    width: int = 96,
    height: int = 64,
    n_objects: int = 3,
    seed: int = 0,
    folder_layout: bool = False,
) -> list[dict[str, str]]:
    """Write ``n_photos`` JPEG photos and PNG masks under ``root``; returns one record per object.

    ``folder_layout``: photos in ``root/images``, masks in ``root/masks`` named
    ``<photo stem>_<n>.png`` (what the ``folder`` source reads).
    """
    root = Path(root)
    img_dir, mask_dir = (root / "images", root / "masks") if folder_layout else (root, root)
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for p in range(n_photos):
        img, masks = make_photo(width, height, seed * 100003 + p, n_objects)
        ip = img_dir / f"photo{p:04d}.jpg"
        img.save(ip, format="JPEG", quality=92)
        del img
        for o, (cat, m) in enumerate(masks):
            mp = mask_dir / (f"photo{p:04d}_{o}.png" if folder_layout else f"photo{p:04d}_obj{o}.png")
            m.save(mp, format="PNG")
            records.append({"image": str(ip), "mask": str(mp), "category": cat, "key": f"photo{p:04d}_obj{o}"})
    return records


def plan_photos(
    records: list[dict[str, str]],
    *,
    seed: int = 0,
    test_every: int = 0,
    recipe: str = "synthetic",
    fail_keys: tuple[str, ...] = (),
    sleep: float = 0.0,
) -> list[SampleSpec]:
    """Specs for :func:`synthesize`; every ``test_every``-th record goes to ``test`` (0: all ``train``)."""
    specs = []
    for i, r in enumerate(records):
        split = "test" if test_every and i % test_every == 0 else "train"
        method = ("gain", "gamma")[i % 2]
        inputs = {**r, "method": method, "fail": r["key"] in fail_keys, "sleep": float(sleep)}
        specs.append(SampleSpec(r["key"], recipe, split, sample_seed(seed, r["key"]), inputs))
    return specs


def synthesize(spec: SampleSpec) -> SampleArrays:
    """Decode the photo and mask, shift the foreground colours; ``InputError`` for flagged or bad inputs."""
    inp = spec.inputs
    if inp.get("sleep"):
        time.sleep(float(inp["sleep"]))
    if inp.get("fail"):
        raise InputError(inp["image"], "flagged as unusable")
    data = Path(inp["image"]).read_bytes() if Path(inp["image"]).exists() else None
    if data is None:
        raise InputError(inp["image"], "file not found")
    real = read_rgb(data, inp["image"])
    mask = binarize(read_mask(inp["mask"]))
    if mask.shape != real.shape[:2]:
        raise InputError(inp["mask"], f"mask size {mask.shape} != image size {real.shape[:2]}")
    if not mask.any():
        raise InputError(inp["mask"], "empty mask")
    rng = sample_rng(spec.seed, spec.key)
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    composite = real.copy()
    region = composite[y0:y1, x0:x1].astype(np.float32)
    m = mask[y0:y1, x0:x1]
    method = inp.get("method", "gain")
    if method == "gamma":
        g = rng.uniform(0.6, 1.6, size=3).astype(np.float32)
        shifted = 255.0 * np.power(region / 255.0, g)
    else:
        gain = rng.uniform(0.6, 1.4, size=3).astype(np.float32)
        shifted = region * gain + rng.uniform(-20, 20, size=3).astype(np.float32)
    region[m] = shifted[m]
    composite[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    del region, shifted
    meta = {
        "method": method,
        "category": inp.get("category", "unknown"),
        "image": Path(inp["image"]).name,
        "seed": int(spec.seed),
        "license": "cc0-1.0",
    }
    return SampleArrays(spec.key, composite, mask, real, meta, real_bytes=data, real_ext="jpg")
