"""Writing shards: the worker-side shard function and its Ray orchestration.

One Ray task per shard. A worker synthesizes the shard's specs one at a time
(never holding more than one sample's pixels), writes the tar to a temp file,
renames it, and writes ``<shard>.stats.json`` LAST: the stats file is the
shard's done marker.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from harmbench.errors import InputError
from harmbench.fileio import atomic_write_json, temp_path
from harmbench.generate.plan import ShardTask
from harmbench.generate.stats import ShardCounter, skip_record
from harmbench.generate.writer import (
    DeterministicTarWriter,
    OutputOptions,
    encode_sample,
    fg_ratio,
)
from harmbench.recipes.base import SampleArrays, SampleSpec

Synthesize = Callable[[SampleSpec], SampleArrays]

#: Object store size of a locally started Ray (bytes): tasks only pass small specs and stats.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2

STATS_VERSION = 1

#: Freed blocks up to this many bytes stay in a worker's heap (see :func:`keep_freed_memory`).
HEAP_KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_heap_kept: bool | None = None


class _HashingFile:
    """Write-through file wrapper that keeps an md5 and a byte count."""

    def __init__(self, f: Any):
        self._f = f
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def _node_info() -> dict[str, Any]:
    node_id = "local"
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - node id is informative only
        pass
    return {"node_id": node_id, "hostname": socket.gethostname(), "pid": os.getpid()}


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # noqa: BLE001
        return 0.0


def keep_freed_memory(nbytes: int = HEAP_KEEP_BYTES) -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the OS (glibc only).

    A sample's arrays are larger than glibc's default mmap threshold (a 24 MP photo is
    72 MB as uint8, 288 MB as float32): each is mapped fresh and unmapped when freed, so
    every sample faults in and zeroes all its pages again, about a third of the time of a
    6000×4000 build. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``nbytes``
    keeps blocks up to that size in the heap for the next sample. The peak RSS is that of
    the largest sample, as before; the process keeps it until it exits. Set once per
    process; returns whether both settings took (False where there is no glibc ``mallopt``).
    """
    global _heap_kept
    if _heap_kept is None:
        _heap_kept = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                _heap_kept = bool(
                    libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)) and libc.mallopt(_M_TRIM_THRESHOLD, int(nbytes))
                )
            except (OSError, AttributeError):  # not glibc (musl, …): the allocator's defaults stay
                pass
    return _heap_kept


def one_thread_per_task() -> None:
    """Hold OpenCV to one thread in this process: a shard task reserves one CPU (``num_cpus=1``).

    OpenCV otherwise starts a thread per core for its kernels (the IDT regrain's), so one
    worker borrows idle cores and several workers oversubscribe the machine. (Ray already
    sets ``OMP_NUM_THREADS`` for a task; OpenCV's own thread pool does not read it.)
    """
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency
        return
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def write_shard(task: ShardTask, out_dir: str, opts: OutputOptions, synthesize: Synthesize) -> dict[str, Any]:
    """Build one shard: synthesize, encode, write the tar, then its stats file (last).

    ``InputError`` from ``synthesize`` skips that sample (recorded with its
    reason); any other error fails the shard and leaves no output behind. The
    worker process keeps the memory it frees for the next sample (:func:`keep_freed_memory`)
    and runs OpenCV on one thread, the task's CPU (:func:`one_thread_per_task`).
    """
    keep_freed_memory()
    one_thread_per_task()
    t0 = time.perf_counter()
    out = Path(out_dir)
    final = out / task.name
    tmp = temp_path(final)
    counter = ShardCounter()
    skipped: list[dict[str, Any]] = []
    synth_s = encode_s = 0.0
    try:
        with open(tmp, "wb") as raw:
            hf = _HashingFile(raw)
            writer = DeterministicTarWriter(hf)  # type: ignore[arg-type]
            for spec in task.specs:
                ts = time.perf_counter()
                try:
                    arr = synthesize(spec)
                except InputError as exc:
                    skipped.append(skip_record(exc, key=spec.key, stage="synth"))
                    synth_s += time.perf_counter() - ts
                    continue
                te = time.perf_counter()
                synth_s += te - ts
                if arr.key != spec.key:
                    raise ValueError(f"synthesize returned key {arr.key!r} for spec {spec.key!r}")
                try:
                    fields = encode_sample(arr, spec.split, spec.recipe, opts)
                except Exception as exc:
                    raise RuntimeError(f"shard {task.name}, sample {spec.key}: cannot encode: {exc}") from exc
                meta = dict(arr.meta or {})
                ratio = fg_ratio(arr.mask)
                del arr
                writer.write(spec.key, fields)
                counter.add(spec.recipe, meta, ratio, sum(len(v) for v in fields.values()))
                del fields
                encode_s += time.perf_counter() - te
            writer.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    stats: dict[str, Any] = {
        "stats_version": STATS_VERSION,
        "shard": task.name,
        "split": task.split,
        "index": task.index,
        "planned": len(task.specs),
        **counter.as_dict(),
        "skipped": skipped,
        "md5sum": hf.md5.hexdigest(),
        "filesize": hf.size,
        "duration_s": round(time.perf_counter() - t0, 4),
        "synth_s": round(synth_s, 4),
        "encode_write_s": round(encode_s, 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "node": _node_info(),
    }
    atomic_write_json(out / task.stats_name, stats)
    return stats


def _drain(inflight: dict[Any, ShardTask], on_done: Callable[[dict[str, Any]], None] | None) -> None:
    """Wait for the tasks still running after a failure; the shards they finish are reported to ``on_done``."""
    import ray

    for ref in list(inflight):
        try:
            st = ray.get(ref)
        except Exception:  # noqa: BLE001 - the first failure is the one raised
            continue
        if on_done is not None:
            on_done(st)
    inflight.clear()


@contextlib.contextmanager
def ray_session(workers: int, address: str | None = None) -> Iterator[int]:
    """Connect to Ray for the duration of a build; yields the worker (CPU) count to use.

    * Ray already initialised in this process: it is used as is (and left running).
    * ``address`` (or ``RAY_ADDRESS``): join that cluster.
    * otherwise: start a local instance with ``workers`` CPUs, dashboard off,
      quiet logs and a small object store; shut it down afterwards.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    started = False
    if not ray.is_initialized():
        common = {"logging_level": logging.WARNING, "log_to_driver": True, "configure_logging": True}
        if address:
            ray.init(address=address, **common)
        else:
            os.environ.setdefault("RAY_DEDUP_LOGS", "1")
            ray.init(
                address="local",
                num_cpus=int(workers) if workers else (os.cpu_count() or 1),
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **common,
            )
        started = True
    try:
        n = int(workers) if workers else int(ray.cluster_resources().get("CPU", 1))
        yield max(1, n)
    finally:
        if started:
            ray.shutdown()


def run_shards(
    tasks: Sequence[ShardTask],
    out_dir: str,
    opts: OutputOptions,
    synthesize: Synthesize,
    *,
    workers: int,
    progress: bool = True,
    done_samples: int = 0,
    total_samples: int | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run one Ray task per shard, at most ``workers`` in flight; returns their stats in completion order.

    Ray must be initialised (see :func:`ray_session`). On a failing shard no
    further task is started, the shards already running are let finish (each is
    written whole or not at all) and the error is raised; finished shards stay on
    disk for the next (resumed) run. Running tasks are not cancelled: cancelling a
    task that is completing at that moment can abort the driver inside Ray.
    """
    import ray
    from tqdm import tqdm

    remote = ray.remote(num_cpus=1, max_retries=2)(write_shard)
    opts_ref = ray.put(opts)
    synth_ref = ray.put(synthesize)
    pending = list(reversed(tasks))
    inflight: dict[Any, ShardTask] = {}
    results: list[dict[str, Any]] = []
    total = total_samples if total_samples is not None else done_samples + sum(len(t.specs) for t in tasks)
    bar = tqdm(
        total=total,
        initial=done_samples,
        unit="sample",
        desc="build",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    try:
        while pending or inflight:
            while pending and len(inflight) < workers:
                t = pending.pop()
                inflight[remote.remote(t, out_dir, opts_ref, synth_ref)] = t
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                t = inflight.pop(ref)
                try:
                    st = ray.get(ref)
                except Exception as exc:
                    _drain(inflight, on_done)
                    raise RuntimeError(f"shard {t.name} failed: {exc}") from exc
                results.append(st)
                bar.update(len(t.specs))
                bar.set_postfix(shards=f"{len(results)}/{len(tasks)}", skipped=sum(len(r["skipped"]) for r in results))
                if on_done is not None:
                    on_done(st)
    finally:
        bar.close()
    return results
