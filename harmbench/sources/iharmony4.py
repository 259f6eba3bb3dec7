"""Ready-made harmonization triplets: the iHarmony4 layout and flat triplet folders.

Two on-disk layouts are recognised (see ``docs/benchmark_protocol.md`` §1):

* **iHarmony4 layout** — ``ROOT/<Subset>/{composite_images,masks,real_images}/``
  with optional split files ``ROOT/IHD_<split>.txt`` and
  ``ROOT/<Subset>/<Subset>_<split>.txt`` whose lines name composites
  (``HAdobe5k/composite_images/a0001_1_1.jpg``, or a bare ``a0001_1_1.jpg``
  inside a subset's own file). ROOT may also be a single subset folder.
* **flat folder** — one folder holding either ``N.png`` + ``N-gt.png`` +
  ``N-mask.png`` (RainNet examples) or iHarmony4 names side by side
  (composite ``<real>_<mask>_<k>``, mask ``<real>_<mask>``, real ``<real>``).

Name rule (iHarmony4): composite stem ``<real>_<mask>_<k>`` → mask stem
``<real>_<mask>`` → real stem ``<real>``; any image extension is accepted
(``.png`` preferred for masks, ``.jpg`` for reals).

Problems with individual samples never abort a scan: they come back as
:class:`SkippedInput` ``(path, reason)`` next to the usable records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harmbench.errors import InputError
from harmbench.imaging import IMAGE_EXTENSIONS
from harmbench.sources import register_source
from harmbench.sources.base import SourceRecords, TripletRecord, key_collisions, make_key, skip_entry

COMPOSITE_DIR = "composite_images"
MASK_DIR = "masks"
REAL_DIR = "real_images"
LAYOUT_DIRS = (COMPOSITE_DIR, MASK_DIR, REAL_DIR)
IHD_PREFIX = "IHD"
REAL_SUFFIX = "-gt"
MASK_SUFFIX = "-mask"

_MASK_EXT_ORDER = (".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")
_REAL_EXT_ORDER = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_ANY_EXT_ORDER = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class SkippedInput:
    """An input that could not become a usable sample: ``path`` names the file, ``reason`` says why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}

    @classmethod
    def from_error(cls, exc: InputError) -> SkippedInput:
        return cls(exc.path, exc.reason)


@dataclass
class TripletScan:
    """Result of scanning a triplet dataset: usable records (sorted by key) and skipped inputs."""

    records: list[TripletRecord] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)
    layout: str = ""

    def __iter__(self):  # allows ``records, skipped = scan_triplets(...)``
        yield self.records
        yield self.skipped


# --------------------------------------------------------------------------- helpers


def _image_index(folder: Path, order: tuple[str, ...] = _ANY_EXT_ORDER) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``folder``; one extension per stem, by ``order``."""
    rank = {ext: i for i, ext in enumerate(order)}
    best: dict[str, tuple[int, Path]] = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return {}
    for entry in entries:
        if not entry.is_file():
            continue
        p = Path(entry.path)
        ext = p.suffix.lower()
        if ext not in IMAGE_EXTENSIONS:
            continue
        r = rank.get(ext, len(rank))
        if p.stem not in best or r < best[p.stem][0]:
            best[p.stem] = (r, p)
    return {stem: rp[1] for stem, rp in best.items()}


def _duplicate_stems(folder: Path) -> dict[str, list[Path]]:
    """``{stem: [files]}`` of the stems that two or more image files in ``folder`` share (``a.jpg``, ``a.png``)."""
    seen: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    for entry in entries:
        p = Path(entry.path)
        if entry.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            seen.setdefault(p.stem, []).append(p)
    return {k: sorted(v) for k, v in seen.items() if len(v) > 1}


def _collision_skips(dups: Mapping[str, list[Path]]) -> list[SkippedInput]:
    return [
        SkippedInput(str(p), f"key {make_key(stem)!r} is shared by {len(files)} files: {', '.join(map(str, files))}")
        for stem, files in sorted(dups.items())
        for p in files
    ]


def split_composite_name(stem: str) -> tuple[str, str] | None:
    """``'<real>_<mask>_<k>'`` -> ``('<real>_<mask>', '<real>')`` (mask stem, real stem), else None."""
    parts = stem.rsplit("_", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return f"{parts[0]}_{parts[1]}", parts[0]


def _finish(records: Iterable[TripletRecord], skipped: list[SkippedInput], layout: str) -> TripletScan:
    """Sort by key; a key seen twice (same stem in two subsets) is prefixed with its subset.

    Records whose keys still coincide are all skipped, each naming the others' files.
    """
    recs = list(records)
    seen: dict[str, int] = {}
    for r in recs:
        seen[r.key] = seen.get(r.key, 0) + 1
    out = []
    for r in recs:
        if seen[r.key] > 1:
            r = TripletRecord(
                key=make_key(r.subset, r.key),
                subset=r.subset,
                composite_path=r.composite_path,
                mask_path=r.mask_path,
                real_path=r.real_path,
                split=r.split,
            )
        out.append(r)
    clashes = key_collisions((r.key, r.composite_path) for r in out)
    if clashes:
        for r in out:
            if r.key in clashes:
                skipped.append(
                    SkippedInput(r.composite_path, f"key {r.key!r} is shared by: {', '.join(clashes[r.key])}")
                )
        out = [r for r in out if r.key not in clashes]
    out.sort(key=lambda r: (r.key, r.composite_path))
    skipped = sorted(set(skipped), key=lambda s: (s.path, s.reason))
    return TripletScan(out, skipped, layout)


# --------------------------------------------------------------------------- iHarmony4 layout


def _is_subset_dir(path: Path) -> bool:
    return all((path / d).is_dir() for d in LAYOUT_DIRS)


def _subset_dirs(root: Path) -> list[Path]:
    if _is_subset_dir(root):
        return [root]
    return sorted((p for p in root.iterdir() if p.is_dir() and _is_subset_dir(p)), key=lambda p: p.name)


def _read_split_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read split file ({exc})") from exc
    return [ln.strip().replace("\\", "/") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _split_entries(root: Path, subsets: list[Path], split: str) -> dict[str, list[tuple[str, Path]]] | None:
    """Composites listed in the split files, per subset: ``{subset: [(composite_name, split_file)]}``.

    Returns None when no split file for ``split`` exists (then every composite is used).
    ``IHD_<split>.txt`` at the root covers every subset; a subset's own file adds to it.
    """
    names = {s.name for s in subsets}
    listed: dict[str, list[tuple[str, Path]]] = {s.name: [] for s in subsets}
    found = False
    ihd = root / f"{IHD_PREFIX}_{split}.txt"
    if ihd.is_file() and not _is_subset_dir(root):
        found = True
        for line in _read_split_file(ihd):
            parts = line.split("/")
            sub = parts[0] if len(parts) > 1 else None
            if sub not in names:
                listed.setdefault(sub or "", []).append((line, ihd))
                continue
            listed[sub].append((parts[-1], ihd))
    for s in subsets:
        own = s / f"{s.name}_{split}.txt"
        if not own.is_file():
            continue
        found = True
        for line in _read_split_file(own):
            listed[s.name].append((line.split("/")[-1], own))
    return listed if found else None


def scan_iharmony4_layout(root: Path, split: str | None = "test") -> TripletScan:
    """Scan an iHarmony4-layout root (or one subset folder) for triplets of ``split``.

    ``split=None`` ignores split files and uses every composite.
    """
    subsets = _subset_dirs(root)
    records: list[TripletRecord] = []
    skipped: list[SkippedInput] = []
    listed = _split_entries(root, subsets, split) if split else None
    for sub in subsets:
        comps = _image_index(sub / COMPOSITE_DIR, _REAL_EXT_ORDER)
        dups = _duplicate_stems(sub / COMPOSITE_DIR)
        skipped.extend(_collision_skips(dups))
        for stem in dups:
            comps.pop(stem, None)
        masks = _image_index(sub / MASK_DIR, _MASK_EXT_ORDER)
        reals = _image_index(sub / REAL_DIR, _REAL_EXT_ORDER)
        if listed is None:
            wanted = [(p.name, None) for p in sorted(comps.values())]
        else:
            wanted = listed.get(sub.name, [])
        done: set[str] = set()
        for name, split_file in wanted:
            stem = Path(name).stem
            if stem in done:
                continue
            done.add(stem)
            if stem in dups:
                continue
            comp = sub / COMPOSITE_DIR / name
            if not comp.is_file():
                comp = comps.get(stem)
            if comp is None:
                skipped.append(
                    SkippedInput(
                        str(sub / COMPOSITE_DIR / name), f"listed in {split_file} but the composite file is missing"
                    )
                )
                continue
            rec = _layout_record(sub, comp, masks, reals, split if listed is not None else None)
            if isinstance(rec, SkippedInput):
                skipped.append(rec)
            else:
                records.append(rec)
    if listed is not None:
        for sub_name, entries in listed.items():
            if sub_name in {s.name for s in subsets}:
                continue
            for line, split_file in entries:
                skipped.append(
                    SkippedInput(
                        str(root / line),
                        f"listed in {split_file} but no subset folder {sub_name!r} with {', '.join(LAYOUT_DIRS)}",
                    )
                )
    return _finish(records, skipped, "iharmony4")


def _layout_record(
    sub: Path, comp: Path, masks: Mapping[str, Path], reals: Mapping[str, Path], split: str | None
) -> TripletRecord | SkippedInput:
    names = split_composite_name(comp.stem)
    if names is None:
        return SkippedInput(str(comp), "composite name does not follow <real>_<mask>_<k>")
    mask_stem, real_stem = names
    mask = masks.get(mask_stem)
    if mask is None:
        return SkippedInput(str(comp), f"mask {sub / MASK_DIR / mask_stem}.* not found")
    real = reals.get(real_stem)
    if real is None:
        return SkippedInput(str(comp), f"real image {sub / REAL_DIR / real_stem}.* not found")
    return TripletRecord(
        key=make_key(comp.stem),
        subset=sub.name,
        composite_path=str(comp),
        mask_path=str(mask),
        real_path=str(real),
        split=split,
    )


# --------------------------------------------------------------------------- flat folder


def scan_flat_folder(root: Path, split: str | None = "test") -> TripletScan:
    """Scan one folder of triplets (``N``/``N-gt``/``N-mask`` or iHarmony4 names side by side).

    Split files do not apply to flat folders; records carry ``split=None``.
    Images that belong to no triplet are reported as skipped.
    """
    files = _image_index(root)
    records: list[TripletRecord] = []
    skipped: list[SkippedInput] = []
    dups = _duplicate_stems(root)
    skipped.extend(_collision_skips(dups))
    for stem in dups:
        files.pop(stem, None)
    used: set[str] = set()
    subset = root.name

    def add(stem: str, mask_stem: str, real_stem: str, mask_label: str, real_label: str) -> None:
        comp = files[stem]
        used.add(stem)
        used.update(s for s in (mask_stem, real_stem) if s in files)  # partners of a broken triplet are not orphans
        if mask_stem not in files:
            skipped.append(SkippedInput(str(comp), f"mask {root / mask_label}.* not found"))
            return
        if real_stem not in files:
            skipped.append(SkippedInput(str(comp), f"real image {root / real_label}.* not found"))
            return
        records.append(
            TripletRecord(
                key=make_key(stem),
                subset=subset,
                composite_path=str(comp),
                mask_path=str(files[mask_stem]),
                real_path=str(files[real_stem]),
                split=None,
            )
        )

    # RainNet style: N + N-gt + N-mask
    for stem in sorted(files):
        if stem.endswith((REAL_SUFFIX, MASK_SUFFIX)):
            continue
        if stem + REAL_SUFFIX in files or stem + MASK_SUFFIX in files:
            add(stem, stem + MASK_SUFFIX, stem + REAL_SUFFIX, stem + MASK_SUFFIX, stem + REAL_SUFFIX)
    # iHarmony4 names: <real>_<mask>_<k> + <real>_<mask> + <real>
    for stem in sorted(files):
        if stem in used:
            continue
        names = split_composite_name(stem)
        if names is None:
            continue
        mask_stem, real_stem = names
        if mask_stem in files or real_stem in files:
            add(stem, mask_stem, real_stem, mask_stem, real_stem)
    for stem in sorted(set(files) - used):
        skipped.append(
            SkippedInput(
                str(files[stem]),
                "belongs to no triplet (expected N + N-gt + N-mask, or <real>_<mask>_<k> + <real>_<mask> + <real>)",
            )
        )
    return _finish(records, skipped, "flat")


# --------------------------------------------------------------------------- entry points

#: Layout registry: name -> (detector(root) -> bool, scanner(root, split) -> TripletScan), tried in order.
LAYOUTS: dict[str, tuple[Callable[[Path], bool], Callable[[Path, str | None], TripletScan]]] = {
    "iharmony4": (lambda root: bool(_subset_dirs(root)), scan_iharmony4_layout),
    "flat": (lambda root: True, scan_flat_folder),
}


def detect_layout(root: str | os.PathLike) -> str:
    """Name of the first layout in :data:`LAYOUTS` that matches ``root``."""
    path = Path(root)
    return next(name for name, (detect, _) in LAYOUTS.items() if detect(path))


def scan_triplets(root: str | os.PathLike, split: str | None = "test", layout: str | None = None) -> TripletScan:
    """Find every triplet under ``root``: ``(records sorted by key, skipped inputs)``.

    ``layout`` forces one of :data:`LAYOUTS` (default: detected). Raises
    :class:`InputError` only when ``root`` is not a folder.
    """
    path = Path(root)
    if not path.is_dir():
        raise InputError(str(path), "dataset folder not found" if not path.exists() else "not a folder")
    name = layout or detect_layout(path)
    if name not in LAYOUTS:
        raise InputError(str(path), f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[name][1](path, split)


@register_source("iharmony4")
def iharmony4_source(root: str | os.PathLike, split: str | None = "test", layout: str | None = None) -> SourceRecords:
    """Registered source: the records of :func:`scan_triplets` with its skips in ``.skipped``."""
    scan = scan_triplets(root, split=split, layout=layout)
    return SourceRecords(scan.records, skipped=[skip_entry(s.path, s.reason) for s in scan.skipped])


register_source("triplets")(iharmony4_source)

__all__ = [
    "LAYOUTS",
    "SkippedInput",
    "TripletScan",
    "detect_layout",
    "iharmony4_source",
    "scan_flat_folder",
    "scan_iharmony4_layout",
    "scan_triplets",
    "split_composite_name",
]
