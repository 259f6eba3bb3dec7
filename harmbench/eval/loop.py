"""``harmbench eval``: run a model over a dataset and score every output (the library behind it).

Pipeline, per sample:

1. DataLoader workers decode the composite, real image and raw mask (uint8) and
   ``profile.prepare`` them: the real image and the composite are resized to the
   profile's evaluation size with its filter, the mask follows its mask rule. The
   workers also group samples by size into batches within a pixel budget and stack
   them (:mod:`harmbench.eval.batches`), so the main process gets one tensor batch
   per message (pinned memory and non-blocking copies on CUDA) and its model and
   metric work overlaps with their decoding.
2. The model sees the composite at that size as ``float (N, 3, H, W)`` on 0–1 and
   the mask binarised at 0.5 (``(N, 1, H, W)`` in {0, 1}) (``none``/``limit1024``
   give many sizes, hence many batch shapes).
3. Its output (checked: shape, finite, on 0–1) goes to the 0–255 scale, rounded to
   8 bits when the profile scores saved 8-bit results, and
   :func:`harmbench.metrics.compute_metrics` scores it against the real image on the device.

Each row of ``samples.parquet``: ``key``, ``subset``, ``recipe``, ``category``,
``identity`` (composite = real), ``fg_ratio`` (0–1, at evaluation size),
``height``/``width`` (evaluation size), every metric (0–255 scale for (f)MSE, dB
for (f)PSNR), at ``--resize none`` with a profile that also reports a lower resolution
(``pctnet``, ``dccf``) the same metrics there as ``<metric>_low``
(:mod:`harmbench.eval.multires`), ``input_mse`` (output vs the model's input, 0–255 scale) and
``seconds`` (model time per image: batch time / batch size).

Rows are written in chunks (``parts/``, atomic) so an interrupted run resumes;
see :mod:`harmbench.eval.records` for the run directory. Datasets: built shard
directories (``index.json`` / ``*.tar``), iHarmony4 roots and flat triplet
folders (:data:`DATA_KINDS`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harmbench import __version__
from harmbench.errors import UserError
from harmbench.eval.datasets import EvalData, open_data
from harmbench.eval.multires import extra_columns, extra_resolutions, score_extra
from harmbench.eval.outputs import ModelOutputError, check_output, preview_keys, save_previews
from harmbench.eval.provenance import environment, git_info, now_utc
from harmbench.eval.records import FORMAT_VERSION, ID_COLUMNS, RunStore, json_safe
from harmbench.eval.score import progress_bar, resolve_device, with_overrides
from harmbench.models.resolve import ResolvedModel, resolve_model

PathLike = str | os.PathLike

# --------------------------------------------------------------------------- options and result


@dataclass
class EvalOptions:
    """How to evaluate. ``workers=None``: 0 for small runs, else up to 4 DataLoader workers.
    ``threads``: torch CPU threads of the scoring process on CPU (None: :func:`auto_threads`).
    Batches hold same-size images, at most ``batch_size`` of them and at most
    ``max_batch_pixels`` pixels (N·H·W; 16 images at 256×256, one from 1024×1024 up).
    ``lpips_cache``: a folder where the real images' LPIPS features are kept for other runs on
    the same data, profile and resize (:mod:`harmbench.metrics.lpips_cache`); None: not kept.
    ``weights``: files for the named model (the authors' ``"E.pth,G.pth"`` or a harmbench checkpoint);
    ``protocol``: the model's ``protocol`` option (``harmbench``/``official``; None: the model's
    default); ``harmony``: BargainNet extractor for the opt-in ``harmony`` column (the no-reference
    score of each output; see :mod:`harmbench.models.harmony`), None: no column."""

    profile: str = "harmbench"
    resize: str = "fixed256"
    split: str | None = "test"
    device: str = "auto"
    batch_size: int = 16
    workers: int | None = None
    limit: int | None = None
    lpips: bool = False
    lpips_weights: str | None = None
    lpips_cache: str | None = None
    seed: int = 0
    threads: int | None = None
    chunk_size: int = 64
    previews: int = 8
    max_batch_pixels: int = 1 << 20
    progress: bool | None = None
    restart: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    protocol: str | None = None
    harmony: str | None = None


@dataclass
class EvalResult:
    """A finished run: its directory, per-sample table and ``run.json`` document."""

    run_dir: Path
    samples: Any  # pandas.DataFrame
    run: dict[str, Any]
    new_samples: int = 0
    reused: bool = False


def auto_workers(n: int, batch_size: int) -> int:
    """DataLoader workers for ``n`` samples: 0 for small runs, else up to 4, leaving one CPU to the scoring process."""
    if n < 2 * batch_size:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def auto_threads(workers: int) -> int:
    """Torch CPU threads of the scoring process: half the CPUs the workers leave free, at least 1
    (oversubscribed intra-op threads slow small-image kernels down many times on busy machines)."""
    return max(1, ((os.cpu_count() or 1) - workers) // 2)


def _as_is(item: Any) -> Any:
    return item


def make_loader(dataset: Any, workers: int) -> Any:
    """One prepared item per iteration, decoded by ``workers`` processes (0: in this process)."""
    from torch.utils.data import DataLoader

    kw: dict[str, Any] = {"batch_size": None, "num_workers": int(workers), "collate_fn": _as_is}
    if workers > 0:
        kw["prefetch_factor"] = 4
        kw["persistent_workers"] = False
    return DataLoader(dataset, **kw)


def run_config(
    model: ResolvedModel, data: EvalData, profile: Any, opts: EvalOptions, n_selected: int, harmony: str | None = None
) -> dict[str, Any]:
    """``config.json``: the fingerprint (see :data:`harmbench.eval.records.FINGERPRINT_FIELDS`), the paths,
    the model's ``protocol`` and the harmony extractor's label (``harmony``, None when off)."""
    return {
        "format": FORMAT_VERSION,
        "model": model.fingerprint(),
        "data": {**data.describe(), "limit": opts.limit, "n_selected": n_selected},
        "profile": profile.to_dict(),
        "resize": opts.resize,
        "pred_8bit": bool(profile.pred_8bit),
        "lpips": bool(opts.lpips),
        "seed": int(opts.seed),
        "harmony": harmony,
        "protocol": getattr(model.harmonizer, "protocol", "harmbench"),
        "data_path": str(data.path.resolve()),
        "model_source": model.source,
    }


def evaluate(
    model: Any,
    data: PathLike | EvalData,
    out: PathLike,
    options: EvalOptions | None = None,
    *,
    on_batch: Callable[[int], None] | None = None,
    **overrides: Any,
) -> EvalResult:
    """Run ``model`` on ``data`` and score it into the run directory ``out`` (resuming it).

    ``model``: registered name, checkpoint path or an object with ``harmonize``;
    ``data``: shard directory, iHarmony4 root or triplet folder (or an :class:`EvalData`).
    Keyword ``overrides`` set :class:`EvalOptions` fields. ``on_batch(n_done)`` is
    called after each scored batch. Raises :class:`ModelOutputError` /
    :class:`~harmbench.models.resolve.ModelLoadError` /
    :class:`~harmbench.eval.records.RunMismatchError`; finished chunks stay on disk for the next run.
    """
    import torch

    from harmbench.metrics import RESIZES, get_profile

    opts = with_overrides(options or EvalOptions(), overrides, "eval")
    t_start = time.perf_counter()
    profile = get_profile(opts.profile)
    if opts.resize not in RESIZES:
        raise UserError(f"unknown resize {opts.resize!r}; known: {', '.join(RESIZES)}")
    if opts.limit is not None and opts.limit < 1:
        raise UserError(f"--limit must be at least 1, got {opts.limit}")
    device = torch.device(resolve_device(opts.device))
    torch.manual_seed(int(opts.seed))
    np.random.seed(int(opts.seed) & 0xFFFFFFFF)

    ds = data if isinstance(data, EvalData) else open_data(data, opts.split)
    all_keys = ds.keys()
    selected = all_keys[: opts.limit] if opts.limit else list(all_keys)
    model_options = dict(opts.model_options)
    if opts.protocol is not None:
        model_options["protocol"] = opts.protocol
    resolved = resolve_model(model, str(device), opts.seed, model_options, weights=opts.weights)
    extractor = None
    if opts.harmony:
        from harmbench.models.harmony import load_extractor

        extractor = load_extractor(opts.harmony, device=device)
    config = run_config(resolved, ds, profile, opts, len(selected), extractor.label if extractor else None)
    store = RunStore(out)
    store.open(config, restart=opts.restart)
    if store.is_finished():
        return EvalResult(store.root, store.read_samples(), store.read_run(), 0, reused=True)

    done = store.done_keys()
    todo = [k for k in selected if k not in done]
    scorer = _BatchScorer(resolved, profile, opts, device, store, preview_keys(selected, opts.previews), on_batch)
    scorer.extractor = extractor
    if scorer.lpips_model is not None and opts.lpips_cache:
        from harmbench.metrics.lpips_cache import LPIPSFeatureCache, weights_identity

        scorer.lpips_cache = LPIPSFeatureCache(
            opts.lpips_cache,
            dataset_hash=ds.index_hash(),
            profile=profile.name,
            resize=opts.resize,
            weights=weights_identity(scorer.lpips_source),
        )
    bs = max(1, int(opts.batch_size))
    workers = auto_workers(len(todo), bs) if opts.workers is None else max(0, int(opts.workers))
    old_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(opts.threads)) if opts.threads else min(old_threads, auto_threads(workers)))
    scorer.bar = progress_bar(len(selected), opts.progress, "eval", initial=len(selected) - len(todo))
    session = {
        "started": now_utc(),
        "device": str(device),
        "workers": workers,
        "batch_size": bs,
        "todo": len(todo),
        "torch_threads": torch.get_num_threads(),
    }
    t_loop = time.perf_counter()
    try:
        if todo:
            _run_loader(ds.torch_dataset(set(todo), profile, opts.resize), workers, bs, opts.max_batch_pixels, scorer)
    finally:
        torch.set_num_threads(old_threads)
        scorer.bar.close()
        scorer.flush(force=True)
        session["wall_s"] = round(time.perf_counter() - t_start, 4)
        session["loop_s"] = round(time.perf_counter() - t_loop, 4)
        session["samples"] = scorer.n_new
        session["model_s"] = round(scorer.model_s, 4)
        if scorer.lpips_cache is not None:
            session["lpips_cache"] = {"hits": scorer.lpips_cache.hits, "misses": scorer.lpips_cache.misses}
        store.add_session(session)
    names = scorer.names + (("harmony",) if extractor is not None else ()) + scorer.extra_cols
    return _finish(store, ds, config, opts, device, names, scorer.lpips_source, profile, scorer.n_new)


def _run_loader(dataset: Any, workers: int, batch_size: int, max_pixels: int, scorer: _BatchScorer) -> None:
    """Feed the same-size batches the DataLoader workers make (:mod:`harmbench.eval.batches`) to
    ``scorer``; items that could not be prepared become skips."""
    from harmbench.eval.batches import batch_loader

    pin = scorer.device.type == "cuda"
    for batch in batch_loader(dataset, workers, batch_size, max_pixels, pin_memory=pin):
        for err in batch["errors"]:
            scorer.skip(err)
        if batch["composite"] is not None:
            scorer.run(batch)


class _BatchScorer:
    """Runs the model on one batch, checks and scores its output, and buffers the rows and skips
    that :meth:`flush` writes to the run store in chunks."""

    ID_COLS = ("key", "subset", "recipe", "category", "identity", "fg_ratio")

    def __init__(
        self,
        resolved: ResolvedModel,
        profile: Any,
        opts: EvalOptions,
        device: Any,
        store: RunStore,
        previews: list[str],
        on_batch: Callable[[int], None] | None,
    ):
        from harmbench.metrics import LPIPS_NAMES, METRIC_NAMES

        self.resolved, self.profile, self.opts, self.device, self.store = resolved, profile, opts, device, store
        self.previews = set(previews)
        self.on_batch = on_batch
        self.pred_8bit = bool(profile.pred_8bit)
        self.names: tuple[str, ...] = tuple(METRIC_NAMES)
        self.lpips_model = None
        self.lpips_source = None
        self.lpips_cache: Any = None
        if opts.lpips:
            from harmbench.metrics.lpips import load_lpips

            self.lpips_model = load_lpips(weights=opts.lpips_weights, device=device)
            self.lpips_source = getattr(self.lpips_model, "harmbench_weights", None)
            self.names = self.names + tuple(LPIPS_NAMES)
        self.value_cols = (*self.names, "input_mse")
        self.row_cols = (*self.value_cols, "harmony") if opts.harmony else self.value_cols
        # full-resolution runs of a profile that also reports a lower resolution score both (multires.py)
        self.extra = extra_resolutions(profile, opts.resize)
        self.extra_cols = extra_columns(self.extra)
        self.rows: list[dict[str, Any]] = []
        self.skips: list[dict[str, str]] = []
        self.n_new = 0
        self.model_s = 0.0
        self.bar: Any = None
        self.extractor: Any = None  # harmony column (see EvalOptions.harmony)

    def skip(self, error: dict[str, str]) -> None:
        self.skips.append(error)
        self.bar.update(1)

    def flush(self, force: bool = False) -> None:
        """Write buffered rows once a chunk is full (or whatever is buffered when ``force``)."""
        if self.rows and (force or len(self.rows) >= self.opts.chunk_size):
            self.store.write_part(self.rows, self.skips)
            self.rows, self.skips = [], []
        elif force and self.skips:
            self.store.write_part([], self.skips)
            self.skips = []

    def _predict(self, comp: Any, mask: Any, keys: list[str], real: Any = None) -> tuple[Any, Any, float]:
        """The model's output for a batch (checked), its own low-resolution result when the run
        scores one (else ``None``) and the seconds it took. ``real`` (N,3,H,W, 0–1) goes to models
        that take it (``accepts_real``: their authors' test script reads it)."""
        import torch

        h = self.resolved.harmonizer
        extra = {"real": real} if real is not None and getattr(h, "accepts_real", False) else {}
        t0 = time.perf_counter()
        low = None
        multires = getattr(h, "harmonize_multires", None) if self.extra else None
        try:
            with torch.no_grad():
                if multires is not None:
                    out, low = multires(comp, mask)
                else:
                    out = h.harmonize(comp, mask, **extra)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model failure names the model and the samples
            shown = ", ".join(repr(k) for k in keys[:4])
            raise ModelOutputError(
                f"model {self.resolved.name!r} failed on samples {shown}: {type(exc).__name__}: {exc}"
            ) from exc
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        if getattr(h, "protocol", "harmbench") == "official" and tuple(out.shape[2:]) != tuple(comp.shape[2:]):
            raise UserError(
                f"model {self.resolved.name!r} under protocol 'official' returns {out.shape[3]}x{out.shape[2]} images "
                f"(the authors' test size) but the samples are {comp.shape[3]}x{comp.shape[2]}: evaluate at that size "
                "(--resize fixed256)"
            )
        check_output(out, comp, keys, self.resolved.name)
        return out.detach(), low, dt

    def _score(self, out: Any, comp_u8: Any, target: Any, mask: Any, keys: list[str]) -> list[list[float]]:
        """Per-image metric values (rows in ``value_cols`` order); saves the previews on the way."""
        import torch

        from harmbench.metrics import compute_metrics, pixel
        from harmbench.metrics.compute import chunk_size
        from harmbench.metrics.scratch import scratch

        per_image: list[Any] = []
        step = chunk_size(comp_u8)  # on CPU a few images at a time: their passes stay in cache
        for i in range(0, len(keys), step):
            part = slice(i, i + step)
            # clamp(x, 0, 1)·255 == clamp(x·255, 0, 255), computed in place in scratch memory
            pred = scratch("eval.pred", tuple(out[part].shape), torch.float32, self.device).copy_(out[part])
            pred.mul_(255.0).clamp_(0.0, 255.0)
            if self.pred_8bit:
                pred.round_()
            feats = self._target_features(target[part], keys[part])
            with torch.no_grad():
                vals = compute_metrics(
                    pred,
                    target[part],
                    mask[part],
                    self.profile,
                    lpips_model=self.lpips_model,
                    lpips_target_features=feats,
                )
                sq = torch.sub(
                    pred, comp_u8[part], out=scratch("eval.sq", tuple(pred.shape), torch.float32, self.device)
                )
                vals["input_mse"] = pixel.mse_from_sq(sq.mul_(sq), torch.float64)  # output vs the model's input
            per_image.append(torch.stack([vals[k].detach().double() for k in self.value_cols], dim=1))
            for j, key in enumerate(keys[part]):
                if key in self.previews:
                    save_previews(self.store, key, comp_u8[i + j], pred[j], target[i + j], mask[i + j])
        return torch.cat(per_image).cpu().tolist()  # one transfer: (N, metrics + input_mse) Python floats

    def _target_features(self, target: Any, keys: list[str]) -> list[Any] | None:
        """The real images' LPIPS features from the cache, or computed (and stored); None without a cache."""
        if self.lpips_model is None or self.lpips_cache is None:
            return None
        from harmbench.metrics.lpips import target_features

        feats = self.lpips_cache.get(keys, self.device)
        if feats is None:
            feats = target_features(self.lpips_model, target)
            self.lpips_cache.put(keys, feats)
        return feats

    def run(self, batch: dict[str, Any]) -> None:
        """Predict, score and buffer one same-size batch (:func:`harmbench.eval.batches.collate`)."""
        import torch

        dev = self.device
        ids = batch["ids"]
        keys = ids["key"]
        n = len(keys)
        # pinned by the loader on CUDA: the copies overlap with the host's work
        comp_u8 = torch.as_tensor(batch["composite"]).to(dev, non_blocking=True)
        target = torch.as_tensor(batch["target"]).to(dev, non_blocking=True)
        mask = torch.as_tensor(batch["mask"]).to(dev, non_blocking=True).to(torch.float32)  # uint8 {0, 1} or float
        comp = comp_u8.to(torch.float32).div_(255.0)
        mbin = mask if self.profile.mask_binary else (mask > 0.5).to(torch.float32)  # binary profiles: already {0, 1}
        real = target.to(torch.float32).div(255.0) if getattr(self.resolved.harmonizer, "accepts_real", False) else None
        out, low, dt = self._predict(comp, mbin, keys, real)
        values = self._score(out, comp_u8, target, mask, keys)
        if self.extractor is not None:
            from harmbench.models.harmony import harmony_scores

            pred = out.clamp(0.0, 1.0)
            if self.pred_8bit:
                pred = pred.mul(255.0).round_().div_(255.0)
            for row, score in zip(values, harmony_scores(self.extractor, pred, mbin).tolist()):
                row.append(score)
        extra = score_extra(self.profile, self.extra, out, low, target, mask) if self.extra else None
        self.model_s += dt
        h, w = int(target.shape[2]), int(target.shape[3])
        secs = dt / n
        cols = [ids[c] for c in self.ID_COLS]
        for i, (*idv, vals_i) in enumerate(zip(*cols, values)):
            row = dict(zip(self.ID_COLS, idv))
            row["height"], row["width"] = h, w
            row.update(zip(self.row_cols, vals_i))
            if extra is not None:
                row.update(zip(self.extra_cols, extra[i]))
            row["seconds"] = secs
            self.rows.append(row)
        self.n_new += n
        self.bar.update(n)
        if self.on_batch is not None:
            self.on_batch(self.n_new)
        self.flush()


def _finish(
    store: RunStore,
    ds: EvalData,
    config: dict[str, Any],
    opts: EvalOptions,
    device: Any,
    names: tuple[str, ...],
    lpips_source: Any,
    profile: Any,
    n_new: int,
) -> EvalResult:
    """Merge the run's parts into ``samples.parquet`` and write ``run.json`` (provenance, timing, summary)."""
    from harmbench.eval.aggregate import summary_dict

    sessions = store.sessions()
    skipped = sorted(
        ds.skipped + store.skipped(),  # same order however many sessions the run took
        key=lambda s: (str(s.get("path", "")), str(s.get("key", "")), str(s.get("reason", ""))),
    )
    df_cols = [
        *ID_COLUMNS,
        *(n for n in names if n != "harmony"),
        "input_mse",
        *(n for n in names if n == "harmony"),
        "seconds",
    ]
    run_doc: dict[str, Any] = {
        **config,
        "harmbench_version": __version__,
        "git": git_info(),
        "finished": now_utc(),
        "environment": environment(device),
        "options": {k: v for k, v in asdict(opts).items() if k not in ("progress", "restart")},
        "lpips_weights": lpips_source,
        "metrics": list(names),
        "skipped": skipped,
        "broken_shards": list(getattr(ds, "broken", [])),
    }
    samples = store.merge_parts(columns=df_cols)
    wall = sum(float(s.get("loop_s", 0.0)) for s in sessions)
    run_doc["n_samples"] = int(len(samples))
    run_doc["n_skipped"] = len(skipped)
    run_doc["n_broken_shards"] = len(run_doc["broken_shards"])
    run_doc["timing"] = {
        "wall_s": round(sum(float(s.get("wall_s", 0.0)) for s in sessions), 4),
        "loop_s": round(wall, 4),
        "images_per_s": round(len(samples) / wall, 4) if wall > 0 else None,
        "model_s": round(float(samples["seconds"].sum()), 4) if "seconds" in samples else 0.0,
        "sessions": sessions,
    }
    edges = tuple(profile.bucket_edges)
    run_doc["summary"] = (
        summary_dict(samples, list(names), bucket_edges=edges, bucket_inclusive=profile.bucket_inclusive)
        if len(samples)
        else {}
    )
    store.write_run(run_doc)
    return EvalResult(store.root, samples, json_safe(run_doc), n_new, reused=False)


__all__ = ["EvalOptions", "EvalResult", "auto_threads", "auto_workers", "evaluate", "make_loader", "run_config"]
