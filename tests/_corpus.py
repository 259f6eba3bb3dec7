"""A corpus of unusual and broken inputs, generated at test time (nothing binary is committed).

Every helper writes files with Pillow, OpenCV or ``tarfile`` from small seeded arrays and
returns what the reading layer must make of them, so the tests compare against values
computed here, independently of :mod:`harmbench.imaging`.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: PASCAL VOC's colour map for the first indices (background, aeroplane, bicycle) and 255 (void).
VOC_PALETTE = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 255: (224, 224, 192)}


def rgb_array(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth seeded ``uint8 (h, w, 3)`` photo-like image (JPEG keeps it close)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-1.5, 1.5, (2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1] + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def box_mask(h: int, w: int, top: int, left: int, bh: int, bw: int) -> np.ndarray:
    """``bool (h, w)`` with one rectangle set."""
    m = np.zeros((h, w), bool)
    m[top : top + bh, left : left + bw] = True
    return m


def save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def palette_mask(mask: np.ndarray, index: int = 1, border: bool = True) -> Image.Image:
    """A VOC-style palette mask: ``index`` on the object, 255 (void) on its one-pixel border, 0 elsewhere."""
    idx = np.zeros(mask.shape, np.uint8)
    idx[mask] = index
    if border:
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        idx[grown & ~mask] = 255
    img = Image.fromarray(idx, mode="P")
    pal = [0] * 768
    for i, c in VOC_PALETTE.items():
        pal[3 * i : 3 * i + 3] = c
    img.putpalette(pal)
    return img


def exif_bytes(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def stored_for_orientation_6(displayed: np.ndarray) -> np.ndarray:
    """The stored pixels of a photo tagged orientation 6 ("rotate 90° clockwise to display")."""
    return np.ascontiguousarray(np.rot90(displayed, k=1))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` 8-bit grey pixels, with one tiny (wrong) IDAT chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def write_flat_triplet(
    folder: Path,
    stem: str,
    comp: np.ndarray,
    real: np.ndarray,
    mask: Image.Image | np.ndarray,
    ext: str = "png",
    **save_kw,
) -> None:
    """``<stem>.<ext>``, ``<stem>-gt.<ext>`` and ``<stem>-mask.png`` (RainNet naming) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    fmt = {"png": "PNG", "jpg": "JPEG"}[ext]
    kw = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    kw.update(save_kw)
    Image.fromarray(comp).save(folder / f"{stem}.{ext}", format=fmt, **kw)
    Image.fromarray(real).save(folder / f"{stem}-gt.{ext}", format=fmt, **kw)
    m = mask if isinstance(mask, Image.Image) else Image.fromarray(mask.astype(np.uint8) * np.uint8(255))
    m.save(folder / f"{stem}-mask.png", format="PNG")


def reference_metrics(comp: np.ndarray, real: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """MSE and fMSE on 0–255 of the harmbench profile at full size (``resize='none'``): binary mask, plain means."""
    d = comp.astype(np.float64) - real.astype(np.float64)
    sq = d * d
    m = mask.astype(bool)
    return {"mse": float(sq.mean()), "fmse": float(sq[m].sum() / (3.0 * m.sum()))}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_shard(path: Path, samples: list[dict[str, bytes]]) -> dict:
    """A WebDataset tar of ``samples`` (``{"__key__": k, field: bytes}``); returns its index row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            for field, data in s.items():
                if field == "__key__":
                    continue
                info = tarfile.TarInfo(f"{s['__key__']}.{field}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    raw = path.read_bytes()
    return {"url": path.name, "nsamples": len(samples), "md5sum": hashlib.md5(raw).hexdigest(), "filesize": len(raw)}


def shard_sample(key: str, seed: int, h: int = 24, w: int = 32) -> dict[str, bytes]:
    """One sample: composite (real with a shifted box), 0/255 mask, real, meta."""
    real = rgb_array(h, w, seed)
    mask = box_mask(h, w, 4, 6, 10, 12)
    comp = real.copy()
    comp[mask] = np.clip(comp[mask].astype(int) + 40, 0, 255).astype(np.uint8)
    meta = {"key": key, "split": "test", "recipe": "corpus", "subset": "corpus"}
    return {
        "__key__": key,
        "composite.png": _png(comp),
        "mask.png": _png(mask.astype(np.uint8) * 255),
        "real.png": _png(real),
        "json": json.dumps(meta).encode(),
    }


def write_shard_dir(root: Path, n_shards: int = 4, per_shard: int = 3) -> list[dict]:
    """A built-dataset folder: ``n_shards`` test shards and an ``index.json`` (sizes, md5s, counts)."""
    rows = []
    for i in range(n_shards):
        samples = [shard_sample(f"s{i}_{j}", 100 * i + j) for j in range(per_shard)]
        row = write_shard(root / f"corpus-test-{i:06d}.tar", samples)
        rows.append({**row, "split": "test"})
    index = {
        "name": "corpus",
        "nsamples": sum(r["nsamples"] for r in rows),
        "splits": {"test": {"nsamples": sum(r["nsamples"] for r in rows), "shardlist": rows}},
        "shardlist": rows,
    }
    (root / "index.json").write_text(json.dumps(index))
    return rows
