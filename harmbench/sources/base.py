"""Record types that sources yield: the typed interface between sources and recipes.

Two kinds of inputs exist in harmonization:

* :class:`ObjectRecord` — a real photo and ONE object mask (COCO, LabelMe, FiveK,
  the embedded demo). Recipes synthesise composites from these.
* :class:`TripletRecord` — a ready-made (composite, mask, real) triplet
  (iHarmony4 layout, flat triplet folders). Used as they are by ``score`` and
  by the ``iharmony4`` passthrough recipe.

Records hold paths and compact mask encodings (COCO RLE), never decoded pixels,
so plans stay small and picklable for Ray.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(*parts: object) -> str:
    """Join parts into a WebDataset-safe key: letters, digits, ``_`` and ``-`` only (never a dot)."""
    return "_".join(_KEY_BAD.sub("-", str(p)).strip("-") for p in parts if str(p) != "")


@dataclass(frozen=True)
class ObjectRecord:
    """A real photo with one object mask.

    Attributes:
        key: unique, dot-free key, ``<source>_<image_id>_<object_id>``.
        source: source name (``coco``, ``labelme``, ``fivek``, ``demo`` …).
        image_id: id of the photo inside the source (a FiveK photo id for all its versions).
        object_id: id of the object inside the photo.
        image_path: path of the photo (for FiveK: the version chosen as default).
        category: object category name (lower case).
        mask_rle: COCO compressed RLE ``{"size": [H, W], "counts": str}`` or None.
        mask_path: a mask file (raw 0–255, thresholded at 128) when ``mask_rle`` is None.
        size: ``(height, width)`` of the photo.
        license: licence string if the source states one.
        versions: for multi-version photos (FiveK): ``{version_name: path}``.
        meta: extra source fields (attributes, raw label, iscrowd …).
    """

    key: str
    source: str
    image_id: str
    object_id: str
    image_path: str
    category: str
    size: tuple[int, int]
    mask_rle: Mapping | None = None
    mask_path: str | None = None
    license: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping = field(default_factory=dict)

    def decode_mask(self) -> np.ndarray:
        """The object mask as ``bool (H, W)``."""
        if self.mask_rle is not None:
            from pycocotools import mask as mask_utils

            rle = dict(self.mask_rle)
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
            return c_order_mask(mask_utils.decode(rle))
        if self.mask_path is not None:
            from harmbench.imaging import binarize, read_mask

            return binarize(read_mask(self.mask_path))
        raise ValueError(f"record {self.key} has neither mask_rle nor mask_path")


def c_order_mask(mask: np.ndarray) -> np.ndarray:
    """``bool (H, W)`` in C order from a 0/1 ``uint8`` mask in any order.

    pycocotools decodes RLE column-major (Fortran order); every later step
    (boxes, pastes, PNG encoding) walks rows, and numpy's copy of a transposed
    24 MP array is ~8x slower than OpenCV's blocked transpose.
    """
    if mask.flags.c_contiguous:
        return mask.astype(bool, copy=False)
    if mask.ndim == 2 and mask.flags.f_contiguous and mask.dtype == np.uint8:
        import cv2

        return cv2.transpose(mask.T).view(bool)  # values are 0/1: a bool view is exact
    return np.ascontiguousarray(mask).astype(bool, copy=False)


class SourceRecords(list):
    """What every source returns: its records (a ``list``, sorted by key) plus what it left out.

    Attributes:
        skipped: bad inputs that were left out, one ``{"path": str, "reason": str}``
            each (a missing or unreadable image, a size mismatch, an empty or
            out-of-range mask or polygon …); the source goes on with the rest.
        filtered: ``{reason: count}`` of valid objects dropped on purpose by the
            caller's filters or the source's rules (``iscrowd``, ``category``,
            ``min_area`` …); these are not errors.
    """

    def __init__(
        self,
        records: Iterable[ObjectRecord | TripletRecord] = (),
        skipped: Iterable[dict[str, str]] = (),
        filtered: Mapping[str, int] | None = None,
    ):
        super().__init__(records)
        self.skipped: list[dict[str, str]] = list(skipped)
        self.filtered: dict[str, int] = dict(filtered or {})


def skip_entry(path: object, reason: str) -> dict[str, str]:
    """One entry of :attr:`SourceRecords.skipped`."""
    return {"path": str(path), "reason": str(reason)}


@dataclass(frozen=True)
class TripletRecord:
    """A ready-made harmonization triplet.

    Attributes:
        key: unique dot-free key (iHarmony4: the composite's file stem, e.g. ``a0001_1_1``).
        subset: top-level subset (``HCOCO``, ``HAdobe5k`` … or the folder name).
        composite_path, mask_path, real_path: the three files.
        split: ``train`` / ``test`` when a split file says so, else None.
    """

    key: str
    subset: str
    composite_path: str
    mask_path: str
    real_path: str
    split: str | None = None
