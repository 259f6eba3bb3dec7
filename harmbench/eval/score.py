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

import math
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harmbench.errors import InputError, UserError
from harmbench.imaging import IMAGE_EXTENSIONS, image_size, read_mask, read_rgb
from harmbench.sources.base import TripletRecord
from harmbench.sources.iharmony4 import SkippedInput, scan_triplets

ALL_ROW = "All"


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


@dataclass
class ScoreResult:
    """Per-image values and skips of one scoring run; aggregates are computed from them.

    ``per_sample`` rows hold ``key``, ``subset``, ``fg_ratio`` (fraction, 0–1) and one
    float per metric; ``buckets_of[key]`` lists the fg-ratio buckets of each sample.
    """

    profile: dict[str, Any]
    resize: str
    metric_names: tuple[str, ...]
    bucket_names: tuple[str, ...]
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    buckets_of: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[SkippedInput] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.per_sample)

    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``{"n": len(rows), metric: mean over rows}`` — image-weighted; None when ``rows`` is empty.

        As in :mod:`harmbench.eval.aggregate`, an undefined per-image value (non-finite:
        ``nan`` such as fSSIM when the foreground lies only in the border SSIM ignores, or
        the ``inf`` PSNR of an exact match under a profile without epsilon) is left out of
        its metric's mean; ``"n_undefined"`` (images with at least one undefined metric)
        is added only when it is non-zero.
        """
        out: dict[str, Any] = {"n": len(rows)}
        bad_rows = 0
        for r in rows:
            bad_rows += any(not math.isfinite(float(r[m])) for m in self.metric_names)
        for name in self.metric_names:
            defined = [float(r[name]) for r in rows if math.isfinite(float(r[name]))]
            out[name] = math.fsum(defined) / len(defined) if defined else None
        if bad_rows:
            out["n_undefined"] = bad_rows
        return out

    def groups(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """Rows of each subset (sorted by name) and of each bucket (protocol order)."""
        subsets: dict[str, list[dict[str, Any]]] = {}
        for r in self.per_sample:
            subsets.setdefault(r["subset"], []).append(r)
        buckets: dict[str, list[dict[str, Any]]] = {b: [] for b in self.bucket_names}
        for r in self.per_sample:
            for b in self.buckets_of.get(r["key"], ()):
                buckets.setdefault(b, []).append(r)
        return {"subsets": dict(sorted(subsets.items())), "buckets": buckets}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``harmbench score --json`` (non-finite floats become null)."""
        groups = self.groups()
        all_row = self.aggregate(self.per_sample)
        doc = {
            "profile": self.profile,
            "resize": self.resize,
            "n": all_row.pop("n"),
            "metrics": all_row,
            "subsets": {k: self.aggregate(v) for k, v in groups["subsets"].items()},
            "buckets": {k: self.aggregate(v) for k, v in groups["buckets"].items()},
            "per_sample": self.per_sample,
            "skipped": [s.to_dict() for s in self.skipped],
        }
        return _json_safe(doc)

    def format_table(self) -> str:
        """Plain-text table: All, each subset, each bucket, with N."""
        groups = self.groups()
        rows = [(ALL_ROW, self.aggregate(self.per_sample))]
        rows += [(k, self.aggregate(v)) for k, v in groups["subsets"].items()]
        rows += [(f"fg {k}%", self.aggregate(v)) for k, v in groups["buckets"].items()]
        width = max(12, *(len(name) for name, _ in rows)) + 1
        head = f"{'':<{width}}{'N':>7}" + "".join(f"{_LABELS.get(m, m):>10}" for m in self.metric_names)
        lines = [f"profile {self.profile.get('name', '?')}, resize {self.resize}", head, "-" * len(head)]
        for name, agg in rows:
            cells = "".join(f"{_fmt(m, agg[m]):>10}" for m in self.metric_names)
            lines.append(f"{name:<{width}}{agg['n']:>7}{cells}")
        return "\n".join(lines)


_LABELS = {"mse": "MSE", "psnr": "PSNR", "fmse": "fMSE", "fpsnr": "fPSNR", "ssim": "SSIM", "fssim": "fSSIM",
           "lpips": "LPIPS", "flpips": "fLPIPS"}


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if metric in ("ssim", "fssim", "lpips", "flpips") else f"{value:.2f}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


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


def load_sample(record: TripletRecord, prediction: Path | None, profile: Any, resize: str) -> Any:
    """Decode one triplet (and its prediction) and ``profile.prepare`` it.

    Raises :class:`InputError` naming the offending file: unreadable or truncated
    image, size mismatch between composite / real / mask (or prediction / real),
    empty mask, or a foreground that vanishes after resizing.
    """
    real = read_rgb(record.real_path)
    mask = read_mask(record.mask_path)
    if prediction is None:
        pred = read_rgb(record.composite_path)
        comp_hw = pred.shape[:2]
    else:
        w, h = image_size(record.composite_path)
        comp_hw = (h, w)
        pred = read_rgb(prediction)
    if not (comp_hw == real.shape[:2] == mask.shape[:2]):
        raise InputError(
            record.composite_path,
            f"size mismatch: composite {_size_text(comp_hw)}, real {_size_text(real.shape)} ({record.real_path}), "
            f"mask {_size_text(mask.shape)} ({record.mask_path})",
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
    if float(np.asarray(sample.mask, dtype=np.float64).sum()) <= 0.0:
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
) -> Iterator[_Loaded]:
    """Decode in a thread pool, yielding in record order; failures go to ``skipped``."""

    def job(rec: TripletRecord) -> _Loaded:
        pred_path = predictions.find(rec) if predictions is not None else None
        return _Loaded(rec, load_sample(rec, pred_path, profile, resize))

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


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _progress(total: int, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, file=sys.stderr, unit="img", desc="scoring", disable=(None if enabled is None else not enabled))


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
        bucket_names=tuple(profile.bucket_names),
        skipped=list(skipped),
    )
    preds = PredictionIndex(options.predictions) if options.predictions is not None else None
    new_skips: list[SkippedInput] = []
    pending: dict[tuple[int, ...], list[_Loaded]] = {}
    batch_size = max(1, int(options.batch_size))

    def flush(shape: tuple[int, ...]) -> None:
        group = pending.pop(shape, [])
        if not group:
            return
        pred, target, mask = stack_samples([g.sample for g in group], device=device)
        with torch.no_grad():
            vals = compute_metrics(pred, target, mask, profile, lpips_model=lpips_model)
        cols = {k: vals[k].detach().double().cpu().tolist() for k in names}
        for i, g in enumerate(group):
            fg = float(g.sample.fg_ratio)
            row = {"key": g.record.key, "subset": g.record.subset, "fg_ratio": fg}
            row.update({k: float(cols[k][i]) for k in names})
            result.per_sample.append(row)
            result.buckets_of[g.record.key] = list(profile.fg_buckets(fg))
        bar.update(len(group))

    with _progress(len(records), options.progress) as bar:
        seen_skips = 0
        for loaded in _iter_loaded(records, preds, profile, options.resize, options.workers, new_skips):
            shape = tuple(loaded.sample.pred.shape)
            group = pending.setdefault(shape, [])
            group.append(loaded)
            pixels = len(group) * int(np.prod(shape[-2:]))
            if len(group) >= batch_size or pixels >= options.max_batch_pixels:
                flush(shape)
            while seen_skips < len(new_skips):
                bar.update(1)
                if on_skip is not None:
                    on_skip(new_skips[seen_skips])
                seen_skips += 1
        for shape in list(pending):
            flush(shape)
        for s in new_skips[seen_skips:]:
            bar.update(1)
            if on_skip is not None:
                on_skip(s)

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
    opts = options or ScoreOptions()
    for k, v in overrides.items():
        if not hasattr(opts, k):
            raise TypeError(f"unknown score option {k!r}")
        setattr(opts, k, v)
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
    "load_sample",
    "resolve_device",
    "score_dataset",
    "score_records",
]
