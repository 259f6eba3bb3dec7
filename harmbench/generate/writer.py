"""Encoding samples into WebDataset members and writing byte-reproducible tars.

Members of a sample share the dot-free key and are written adjacent, sorted by
name: ``<key>.composite.<fmt>``, ``<key>.json``, ``<key>.mask.png``,
``<key>.real.<fmt>`` and optionally ``<key>.reference.jpg``. Every tar header
uses a fixed mtime, uid/gid 0, empty user/group names and mode 0o444, so a
shard's bytes depend only on its samples.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harmbench.fileio import json_default
from harmbench.imaging import encode_image
from harmbench.recipes.base import SampleArrays

#: mtime written in every tar header (2020-01-01T00:00:00Z).
FIXED_MTIME = 1577836800


@dataclass(frozen=True)
class OutputOptions:
    """How samples are encoded.

    ``real_format`` follows ``composite_format`` (``jpg`` datasets store JPEG
    reals, ``png`` datasets lossless PNG reals); the original bytes of the real
    photo are stored verbatim when the recipe passes them in the same format.
    """

    composite_format: str = "jpg"
    jpeg_quality: int = 95
    store_reference: bool = False

    @property
    def real_format(self) -> str:
        return self.composite_format

    def fields(self) -> list[str]:
        """The member fields (extensions after the key) every sample has."""
        f = [f"composite.{self.composite_format}", "json", "mask.png", f"real.{self.real_format}"]
        if self.store_reference:
            f.append("reference.jpg")
        return f


_INT64 = (-(2**63), 2**63 - 1)


def arrow_safe(obj: Any) -> Any:
    """Make metadata loadable by Arrow (and so ``datasets``).

    Integers outside int64 become decimal strings, and so does every integer
    under a key named ``seed`` or ``*_seed`` (per-sample seeds are 64-bit
    unsigned: as strings they keep one type across samples).
    """
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, (int, np.integer)):
        v = int(obj)
        return v if _INT64[0] <= v <= _INT64[1] else str(v)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            k = str(k)
            is_seed = (
                (k == "seed" or k.endswith("_seed")) and isinstance(v, (int, np.integer)) and not isinstance(v, bool)
            )
            out[k] = str(int(v)) if is_seed else arrow_safe(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [arrow_safe(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, compact, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default).encode()


def _norm_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = ext.lower().lstrip(".")
    return "jpg" if ext == "jpeg" else ext


def fg_ratio(mask: np.ndarray) -> float:
    """Foreground fraction of a boolean mask."""
    return float(np.count_nonzero(mask)) / float(max(mask.size, 1))


def encode_sample(arr: SampleArrays, spec_split: str, spec_recipe: str, opts: OutputOptions) -> dict[str, bytes]:
    """Encode one sample into ``{field: bytes}`` (fields as in :meth:`OutputOptions.fields`)."""
    mask = np.asarray(arr.mask).astype(bool)
    if arr.composite.shape[:2] != mask.shape or arr.real.shape[:2] != mask.shape:
        raise ValueError(
            f"{arr.key}: composite {arr.composite.shape}, mask {mask.shape} and real {arr.real.shape} sizes differ"
        )
    fmt = opts.composite_format
    out: dict[str, bytes] = {
        f"composite.{fmt}": encode_image(arr.composite, fmt, quality=opts.jpeg_quality),
        "mask.png": encode_image(mask.astype(np.uint8) * np.uint8(255), "png"),
    }
    rfmt = opts.real_format
    if arr.real_bytes is not None and _norm_ext(arr.real_ext) == rfmt:
        out[f"real.{rfmt}"] = bytes(arr.real_bytes)
    else:
        out[f"real.{rfmt}"] = encode_image(arr.real, rfmt, quality=opts.jpeg_quality)
    if opts.store_reference:
        if arr.reference is None:
            raise ValueError(f"{arr.key}: store_reference is set but the recipe gave no reference image")
        out["reference.jpg"] = encode_image(arr.reference, "jpg", quality=opts.jpeg_quality)
    meta = dict(arr.meta or {})
    meta.setdefault("key", arr.key)
    meta.setdefault("split", spec_split)
    meta.setdefault("recipe", spec_recipe)
    meta.setdefault("fg_ratio", round(fg_ratio(mask), 6))
    h, w = mask.shape
    meta.setdefault("height", int(h))
    meta.setdefault("width", int(w))
    out["json"] = canonical_json(arrow_safe(meta))
    return out


class DeterministicTarWriter:
    """Append samples to an uncompressed tar with fixed header fields."""

    def __init__(self, fileobj: io.BufferedIOBase):
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed by close()
        self._last_key: str | None = None

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        """Write one sample's members, sorted by field name."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain dots or slashes")
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"sample keys must be written in increasing order ({self._last_key!r} then {key!r})")
        self._last_key = key
        for field in sorted(fields):
            data = fields[field]
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size = len(data)
            info.mtime = FIXED_MTIME
            info.mode = 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()
