"""Offline scoring of a triplet dataset folder (the library behind ``harmbench score``).

Pipeline: scan the dataset (:func:`harmbench.sources.iharmony4.scan_triplets`),
find each prediction by composite key, decode and prepare samples in a thread
pool (``profile.prepare``: resize and mask handling of the chosen metric
profile), group same-size samples into batches, run
:func:`harmbench.metrics.compute_metrics` on the device, then average per-image
values over images: "All", each subset and each foreground-ratio bucket, each
with its ``n``.

Units: images are read as ``uint8`` 0–255; prepared tensors are float32 on the
0–255 scale, masks in [0, 1]; MSE/fMSE are on the 0–255 scale, PSNR/fPSNR in
dB, SSIM/fSSIM/LPIPS unitless; ``fg_ratio`` is a fraction in [0, 1].

Bad samples never abort a run: each becomes a :class:`SkippedInput`
``(path, reason)`` and the rest is scored.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmbench.errors import InputError, UserError
from harmbench.eval.aggregate import ALL, breakdown, summary_dict
from harmbench.eval.records import json_safe
from harmbench.eval.report import format_breakdown
from harmbench.imaging import IMAGE_EXTENSIONS, image_info, image_size, read_mask, read_rgb
from harmbench.sources.base import TripletRecord
from harmbench.sources.iharmony4 import SkippedInput, scan_triplets

ALL_ROW = ALL


# --------------------------------------------------------------------------- options and results


@dataclass
class ScoreOptions:
    """How to score. ``progress=None`` shows the bar only when stderr is a terminal."""

    profile: str = "harmbench"
    resize: str = "fixed256"
    split: str | None = "test"
    predictions: str | os.PathLike | None = None
    lpips: bool = False
    lpips_weights: str | os.PathLike | None = None
    batch_size: int = 16
    workers: int = 4
    device: str = "auto"
    progress: bool | None = None
    max_batch_pixels: int = 1 << 26  # cap on N·H·W per batch (full-resolution images)
    palette_index: int | None = None  # palette masks: the one foreground index (default: every index but 0)


@dataclass
class ScoreResult:
    """Per-image values and skips of one scoring run; aggregates are computed from them.

    ``per_sample`` rows hold ``key``, ``subset``, ``fg_ratio`` (fraction, 0–1) and one
    float per metric. Aggregation (image-weighted means over All, each subset and each
    fg-ratio bucket of the profile) is :mod:`harmbench.eval.aggregate`'s, as for
    ``harmbench eval``: a non-finite per-image value (``nan`` such as fSSIM when the
    foreground lies only in the border SSIM ignores, or the ``inf`` PSNR of an exact match
    under a profile without epsilon) is left out of its metric's mean, and
    ``n_undefined`` (images with at least one undefined metric) is reported when non-zero.
    """

    profile: dict[str, Any]
    resize: str
    metric_names: tuple[str, ...]
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.per_sample)

    def samples(self) -> pd.DataFrame:
        """``per_sample`` as a table (columns ``key``, ``subset``, ``fg_ratio``, metrics)."""
        return pd.DataFrame(self.per_sample, columns=["key", "subset", "fg_ratio", *self.metric_names])

    def _grouping(self) -> dict[str, Any]:
        return {
            "bucket_edges": tuple(self.profile["bucket_edges"]),
            "bucket_inclusive": self.profile["bucket_inclusive"],
            "exclude_identity": False,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``harmbench score --json`` (non-finite floats become null)."""
        summary = summary_dict(self.samples(), self.metric_names, **self._grouping())
        doc = {
            "profile": self.profile,
            "resize": self.resize,
            **summary,  # n, metrics, subsets, buckets
            "per_sample": self.per_sample,
            "skipped": [s.to_dict() for s in self.skipped],
        }
        return json_safe(doc)

    def format_table(self) -> str:
        """Plain-text table: All, each subset, each bucket, with N."""
        table = breakdown(
            self.samples(), self.metric_names, kinds=("all", "subset", "bucket"), n_boot=0, **self._grouping()
        )
        title = f"profile {self.profile.get('name', '?')}, resize {self.resize}"
        return format_breakdown(table, self.metric_names, title)


# --------------------------------------------------------------------------- predictions


class PredictionIndex:
    """Predictions under a folder, found by composite key (file stem, any image extension).

    The folder may be flat (``DIR/a0001_1_1.png``) or mirror the dataset
    (``DIR/HAdobe5k/a0001_1_1.jpg``, ``DIR/HAdobe5k/composite_images/…``). When a stem
    occurs more than once, the file under a folder named like the sample's subset wins.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: predictions folder not found")
        self._by_stem: dict[str, list[Path]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath, fn)
                if p.suffix.lower() in IMAGE_EXTENSIONS:
                    self._by_stem.setdefault(p.stem, []).append(p)

    def find(self, record: TripletRecord) -> Path:
        """The prediction of ``record``; :class:`InputError` naming the expected file when absent or ambiguous."""
        stem = Path(record.composite_path).stem
        cands = self._by_stem.get(stem) or self._by_stem.get(record.key) or []
        if len(cands) > 1:
            in_subset = [p for p in cands if record.subset in p.relative_to(self.root).parts[:-1]]
            cands = in_subset or cands
        if not cands:
            raise InputError(str(self.root / f"{stem}.*"), f"no prediction for {record.composite_path}")
        if len(cands) > 1:
            raise InputError(str(cands[0]), f"ambiguous prediction for {record.key}: {', '.join(map(str, cands))}")
        return cands[0]


# --------------------------------------------------------------------------- loading


@dataclass
class _Loaded:
    record: TripletRecord
    sample: Any  # PreparedSample


def _size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _orientation_note(path: str | Path, orient: bool) -> str:
    try:
        o = image_info(path, limit=0).orientation
    except InputError:
        return ""
    if o == 1:
        return ""
    return f" (EXIF orientation {o} applied)" if orient else f" (EXIF orientation {o} not applied)"


def load_sample(
    record: TripletRecord, prediction: Path | None, profile: Any, resize: str, palette_index: int | None = None
) -> Any:
    """Decode one triplet (and its prediction) and ``profile.prepare`` it.

    Files are read as displayed or as stored by ``profile.exif_orientation``.
    Raises :class:`InputError` naming the offending file: unreadable or truncated
    image, image over the pixel limit, size mismatch between composite / real /
    mask (after orientation; the reason gives every size) or prediction / real,
    empty mask, or a foreground that vanishes after resizing.
    """
    orient = bool(getattr(profile, "exif_orientation", True))
    real = read_rgb(record.real_path, orient=orient)
    mask = read_mask(record.mask_path, orient=orient, palette_index=palette_index)
    if prediction is None:
        pred = read_rgb(record.composite_path, orient=orient)
        comp_hw = pred.shape[:2]
    else:
        w, h = image_size(record.composite_path, orient=orient)
        comp_hw = (h, w)
        pred = read_rgb(prediction, orient=orient)
    if not (comp_hw == real.shape[:2] == mask.shape[:2]):
        raise InputError(
            record.composite_path,
            f"size mismatch: composite {_size_text(comp_hw)}{_orientation_note(record.composite_path, orient)}, "
            f"real {_size_text(real.shape)}{_orientation_note(record.real_path, orient)} ({record.real_path}), "
            f"mask {_size_text(mask.shape)}{_orientation_note(record.mask_path, orient)} ({record.mask_path})",
        )
    if prediction is not None and pred.shape[:2] != real.shape[:2]:
        from harmbench.metrics.resize import target_size

        resized = target_size(real.shape[0], real.shape[1], resize)
        if pred.shape[:2] != resized:
            raise InputError(
                str(prediction),
                f"size mismatch: prediction {_size_text(pred.shape)}, real {_size_text(real.shape)} "
                f"({record.real_path}); expected the real size or the {resize} size {resized[1]}x{resized[0]}",
            )
    if not mask.any():
        raise InputError(record.mask_path, "mask is empty (no foreground pixel)")
    try:
        sample = profile.prepare(pred, real, mask, resize=resize)
    except UserError as exc:  # e.g. a prediction at neither the real nor the resized size
        raise InputError(str(prediction or record.composite_path), str(exc)) from exc
    if not np.any(sample.mask):  # mask values are >= 0: no foreground weight left
        raise InputError(
            record.mask_path, f"mask has no foreground left after profile {profile.name!r} resizes it (resize={resize})"
        )
    return sample


def _iter_loaded(
    records: Sequence[TripletRecord],
    predictions: PredictionIndex | None,
    profile: Any,
    resize: str,
    workers: int,
    skipped: list[SkippedInput],
    palette_index: int | None = None,
) -> Iterator[_Loaded]:
    """Decode in a thread pool, yielding in record order; failures go to ``skipped``."""

    def job(rec: TripletRecord) -> _Loaded:
        pred_path = predictions.find(rec) if predictions is not None else None
        return _Loaded(rec, load_sample(rec, pred_path, profile, resize, palette_index))

    ahead = max(2, 2 * workers)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="harmbench-score") as pool:
        queue: deque[Future[_Loaded]] = deque()
        it = iter(records)
        for rec in it:
            queue.append(pool.submit(job, rec))
            if len(queue) >= ahead:
                break
        while queue:
            fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(job, nxt))
            try:
                yield fut.result()
            except InputError as exc:
                skipped.append(SkippedInput.from_error(exc))


# --------------------------------------------------------------------------- scoring


def with_overrides(options: Any, overrides: Mapping[str, Any], what: str) -> Any:
    """Set the fields ``overrides`` names on the options dataclass ``options`` (``TypeError`` for an unknown one)."""
    for k, v in overrides.items():
        if not hasattr(options, k):
            raise TypeError(f"unknown {what} option {k!r}")
        setattr(options, k, v)
    return options


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def progress_bar(total: int, enabled: bool | None, desc: str, initial: int = 0) -> Any:
    """A tqdm bar on stderr counting images; ``enabled=None`` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        file=sys.stderr,
        unit="img",
        desc=desc,
        dynamic_ncols=True,
        disable=(None if enabled is None else not enabled),
    )


class SizeBatcher:
    """Groups items by image size into batches of at most ``batch_size`` items and ``max_pixels``
    pixels (N·H·W), so that every batch stacks into one tensor.

    :meth:`add` returns a batch as soon as one is full; :meth:`drain` returns the rest.
    """

    def __init__(self, batch_size: int, max_pixels: int):
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = int(max_pixels)
        self._pending: dict[tuple[int, int], list[Any]] = {}

    def add(self, size: tuple[int, int], item: Any) -> list[Any] | None:
        group = self._pending.setdefault(size, [])
        group.append(item)
        if len(group) >= self.batch_size or len(group) * size[0] * size[1] >= self.max_pixels:
            return self._pending.pop(size)
        return None

    def drain(self) -> list[list[Any]]:
        rest = list(self._pending.values())
        self._pending.clear()
        return rest


def score_records(
    records: Sequence[TripletRecord],
    options: ScoreOptions,
    skipped: Sequence[SkippedInput] = (),
    on_skip: Callable[[SkippedInput], None] | None = None,
) -> ScoreResult:
    """Score ``records`` (composites, or predictions when ``options.predictions`` is set)."""
    import torch

    from harmbench.metrics import LPIPS_NAMES, METRIC_NAMES, RESIZES, compute_metrics, get_profile
    from harmbench.metrics.compute import stack_samples

    profile = get_profile(options.profile)  # UserError naming the known profiles
    if options.resize not in RESIZES:
        raise UserError(f"unknown resize {options.resize!r}; known: {', '.join(RESIZES)}")
    device = torch.device(resolve_device(options.device))
    lpips_model = None
    names = tuple(METRIC_NAMES)
    if options.lpips:
        from harmbench.metrics.lpips import load_lpips

        lpips_model = load_lpips(weights=options.lpips_weights, device=device)
        names = names + tuple(LPIPS_NAMES)

    result = ScoreResult(
        profile=profile.to_dict(),
        resize=options.resize,
        metric_names=names,
        skipped=list(skipped),
    )
    preds = PredictionIndex(options.predictions) if options.predictions is not None else None
    new_skips: list[SkippedInput] = []
    batches = SizeBatcher(options.batch_size, options.max_batch_pixels)

    def run_batch(group: list[_Loaded]) -> None:
        pred, target, mask = stack_samples([g.sample for g in group], device=device)
        with torch.no_grad():
            vals = compute_metrics(pred, target, mask, profile, lpips_model=lpips_model)
        values = torch.stack([vals[k].detach().double() for k in names], dim=1).cpu().tolist()  # one transfer
        for g, v in zip(group, values):
            row = {"key": g.record.key, "subset": g.record.subset, "fg_ratio": float(g.sample.fg_ratio)}
            row.update(zip(names, v))
            result.per_sample.append(row)
        bar.update(len(group))

    seen = 0

    def report_skips() -> None:
        nonlocal seen
        for s in new_skips[seen:]:
            bar.update(1)
            if on_skip is not None:
                on_skip(s)
        seen = len(new_skips)

    with progress_bar(len(records), options.progress, "scoring") as bar:
        for loaded in _iter_loaded(
            records, preds, profile, options.resize, options.workers, new_skips, options.palette_index
        ):
            full = batches.add(loaded.sample.size, loaded)
            if full:
                run_batch(full)
            report_skips()
        for group in batches.drain():
            run_batch(group)
        report_skips()

    result.per_sample.sort(key=lambda r: r["key"])
    result.skipped.extend(new_skips)
    result.skipped.sort(key=lambda s: (s.path, s.reason))
    return result


def score_dataset(
    dataset: str | os.PathLike,
    options: ScoreOptions | None = None,
    on_skip: Callable[[SkippedInput], None] | None = None,
    **overrides: Any,
) -> ScoreResult:
    """Scan ``dataset`` (iHarmony4 layout or flat triplet folder) and score it.

    Keyword ``overrides`` set :class:`ScoreOptions` fields. Scan-time skips
    (missing mask or real image, split-file lines without files) are reported
    through ``on_skip`` and in the result like decode-time ones.
    """
    opts = with_overrides(options or ScoreOptions(), overrides, "score")
    scan = scan_triplets(dataset, split=opts.split)
    if on_skip is not None:
        for s in scan.skipped:
            on_skip(s)
    return score_records(scan.records, opts, skipped=scan.skipped, on_skip=on_skip)


__all__ = [
    "ALL_ROW",
    "PredictionIndex",
    "ScoreOptions",
    "ScoreResult",
    "SizeBatcher",
    "load_sample",
    "progress_bar",
    "resolve_device",
    "score_dataset",
    "score_records",
    "with_overrides",
]
