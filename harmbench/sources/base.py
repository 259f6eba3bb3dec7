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

_KEY_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ESCAPE = "--"
_ESCAPED = re.compile(r"--([0-9a-f]{2})")


def name_to_key(name: str) -> str:
    """A file name (stem) -> a WebDataset-safe key part: letters, digits, ``_`` and ``-`` only.

    Reversible and collision-free (:func:`key_to_name` inverts it): letters,
    digits and ``_`` stay; every other character becomes ``--`` plus the hex of
    each of its UTF-8 bytes (``café photo`` -> ``caf--c3--a9--20photo``, a dot
    ``--2e``); a ``-`` stays unless another ``-`` or an escape follows it (then
    ``--2d``), so ``--`` always starts an escape. Names made of letters, digits,
    ``_`` and single ``-`` keep their spelling (``a0001_1_1``, ``img-7``).
    Undecodable bytes of a file name (``surrogateescape``) are escaped as bytes.
    """
    out: list[str] = []
    text = str(name)
    for i, ch in enumerate(text):
        if ch in _KEY_LITERAL:
            out.append(ch)
            continue
        if ch == "-":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt == "" or nxt in _KEY_LITERAL:
                out.append(ch)
                continue
        out.extend(f"{_ESCAPE}{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def key_to_name(key: str) -> str:
    """Inverse of :func:`name_to_key` (one key part, as written by it)."""
    raw = bytearray()
    i = 0
    while i < len(key):
        m = _ESCAPED.match(key, i)
        if m:
            raw.append(int(m.group(1), 16))
            i = m.end()
        else:
            raw.extend(key[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8", "surrogateescape")


def make_key(*parts: object) -> str:
    """Join parts (each through :func:`name_to_key`) with ``_`` into a WebDataset-safe key (never a dot)."""
    return "_".join(name_to_key(str(p)) for p in parts if str(p) != "")


def key_collisions(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``{key: [file, file, …]}`` for every key that two or more ``(key, file)`` items share."""
    by_key: dict[str, list[str]] = {}
    for key, path in items:
        by_key.setdefault(key, []).append(str(path))
    return {k: sorted(v) for k, v in by_key.items() if len(v) > 1}


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
        from harmbench.arrays import swap_rows_cols

        return swap_rows_cols(mask.T).view(bool)  # values are 0/1: a bool view is exact
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
