"""The embedded demo source: hand-drawn object polygons for photos bundled with scikit-image.

``demo_assets/demo_instances.json`` is a COCO instances file (polygons) for 7
photos that ship inside the scikit-image wheel (``skimage.data``), so the demo
runs on a fresh machine without any dataset or network:

=================  ==========================================
photo              objects
=================  ==========================================
astronaut          person, helmet, flag, rocket (shuttle model)
camera             person, camera (grayscale photo, read as RGB)
chelsea            cat
coffee             cup, spoon, saucer
motorcycle_left    motorcycle
motorcycle_right   motorcycle (the other view of the stereo pair)
rocket             rocket
=================  ==========================================

13 objects over 10 categories; ``person``, ``rocket`` and ``motorcycle`` occur
in two photos each, so same-category references exist. Each photo keeps its own
licence (the JSON ``licenses`` table; all public domain or CC0 except the
Middlebury motorcycle pair).

Photos are read from ``skimage.data.data_dir`` directly; a photo missing there
is materialised once from ``skimage.data.<name>()`` into a cache folder.

Call: ``get_source("demo")()``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from harmbench.errors import InputError
from harmbench.fileio import atomic_write_bytes
from harmbench.sources import register_source
from harmbench.sources.base import SourceRecords
from harmbench.sources.coco import load_coco_dict, split_filter_options
from harmbench.sources.labelme import default_cache_dir

PathLike = str | os.PathLike

ANNOTATIONS_NAME = "demo_instances.json"


def demo_annotations_path() -> Path:
    """Path of the embedded COCO JSON."""
    return Path(str(resources.files("harmbench.sources").joinpath("demo_assets", ANNOTATIONS_NAME)))


def load_demo_annotations() -> dict:
    """The embedded COCO JSON, parsed."""
    return json.loads(demo_annotations_path().read_text(encoding="utf-8"))


def _skimage_array(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(skimage.data, name)()


def demo_photo_path(file_name: str, skimage_name: str | None = None, *, cache_dir: PathLike | None = None) -> Path:
    """The real file of a demo photo: the bundled file in ``skimage.data.data_dir``, else a cached copy.

    The cached copy (``<cache>/demo/<file_name>``, PNG) is written once from
    ``skimage.data.<skimage_name>()``. Raises ``InputError`` when neither works.
    """
    import skimage.data

    bundled = Path(skimage.data.data_dir) / file_name
    if bundled.is_file():
        return bundled
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / "demo" / (Path(file_name).stem + ".png")
    if out.is_file():
        return out
    name = skimage_name or Path(file_name).stem
    try:
        arr = _skimage_array(name)
    except Exception as exc:  # skimage raises various errors when it cannot fetch a file
        raise InputError(str(bundled), f"demo photo not bundled with scikit-image and not loadable ({exc})") from exc
    from harmbench.imaging import encode_image

    atomic_write_bytes(out, encode_image(np.asarray(arr, dtype=np.uint8), "png"))
    return out


def materialise_demo_photos(cache_dir: PathLike | None = None) -> dict[str, Path]:
    """``{file_name: path}`` for every demo photo (bundled file or cached copy)."""
    data = load_demo_annotations()
    return {
        im["file_name"]: demo_photo_path(im["file_name"], im.get("skimage_name"), cache_dir=cache_dir)
        for im in data["images"]
    }


def demo_versions(photo: Path, *, cache_dir: PathLike | None = None) -> dict[str, str]:
    """``{version: path}`` for a demo photo: ``original`` plus one retouched copy per preset.

    The retouched copies (:data:`harmbench.transfer.retouch.RETOUCHES`) are
    written once as PNG to ``<cache>/demo/versions/`` (temp file + rename) and
    play the role of FiveK's expert versions for the ``hadobe5k`` recipe.
    """
    from harmbench.imaging import encode_image, read_rgb
    from harmbench.transfer.retouch import RETOUCHES, retouch

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out_dir = cache / "demo" / "versions"
    versions = {"original": str(photo)}
    rgb = None
    for name in sorted(RETOUCHES):
        out = out_dir / f"{photo.stem}_{name}.png"
        if not out.is_file():
            rgb = read_rgb(photo) if rgb is None else rgb
            atomic_write_bytes(out, encode_image(retouch(rgb, name), "png"))
        versions[name] = str(out)
    return versions


@register_source("demo")
def demo_source(
    *, cache_dir: PathLike | None = None, source_name: str = "demo", versions: bool = False, **filters: Any
) -> SourceRecords:
    """The demo objects as :class:`ObjectRecord` s (keys ``demo_<image id>_<annotation id>``).

    ``meta["skimage_name"]`` names the ``skimage.data`` photo; ``filters`` as in
    :func:`harmbench.sources.coco.apply_object_filters`. With ``versions=True``
    each record also carries retouched versions of its photo
    (:func:`demo_versions`), for the ``hadobe5k`` recipe.
    """
    filters = split_filter_options(filters, "demo")
    data = load_demo_annotations()

    def resolve(img: dict) -> Path:
        try:
            return demo_photo_path(img["file_name"], img.get("skimage_name"), cache_dir=cache_dir)
        except InputError as exc:
            return Path(exc.path)  # missing: the COCO loader skips it with its reason

    records = load_coco_dict(
        data,
        json_path=demo_annotations_path(),
        resolve_image=resolve,
        source_name=source_name,
        filters=filters,
    )
    names = {str(im["id"]): im.get("skimage_name", Path(im["file_name"]).stem) for im in data["images"]}
    vers: dict[str, dict[str, str]] = {}
    if versions:
        for r in records:
            if r.image_path not in vers:
                vers[r.image_path] = demo_versions(Path(r.image_path), cache_dir=cache_dir)
    return SourceRecords(
        [
            replace(
                r, meta={**dict(r.meta), "skimage_name": names[r.image_id]}, versions=vers.get(r.image_path, r.versions)
            )
            for r in records
        ],
        records.skipped,
        records.filtered,
    )


__all__ = [
    "demo_annotations_path",
    "demo_photo_path",
    "demo_source",
    "demo_versions",
    "load_demo_annotations",
    "materialise_demo_photos",
]
