"""``harmbench leaderboard run``: build missing datasets, then run the missing cells, locally or on Ray.

Finished cells are reused as they are, interrupted ones resume, and a cell
whose existing run used another protocol or other data is an error (see
:mod:`harmbench.leaderboard.store`). With a Ray address (argument or
``RAY_ADDRESS``) each cell is one Ray task (``cpus_per_cell`` CPUs, and one GPU
when the cluster has GPUs); run directories must then be on a filesystem every
node sees. Without one the cells run one after another in this process.
With LPIPS on, the real images' LPIPS features are computed by the first cell of a
dataset and read back by the others (``<runs>/.lpips-cache``, see
:mod:`harmbench.metrics.lpips_cache`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmbench.errors import UserError
from harmbench.leaderboard.definition import DatasetDef, Leaderboard, load_leaderboard, project_root
from harmbench.leaderboard.store import Cell, cells, check_cell

LPIPS_ENV = "HARMBENCH_LPIPS_ALEX"
TORCHVISION_ALEXNET = "alexnet-owt-7be5be79.pth"
#: folder under the runs directory where the real images' LPIPS features are shared by the cells
LPIPS_CACHE = ".lpips-cache"


@dataclass
class LeaderboardRun:
    """What :func:`run_leaderboard` did: cell ids run now, reused, skipped (with why) and failed (with the error)."""

    leaderboard: Leaderboard
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    lpips: bool = False
    notes: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


def find_lpips_weights(lb: Leaderboard) -> tuple[bool, str | None, str]:
    """``(available, weights_path_or_None, where)`` for LPIPS under ``lb.lpips``.

    Looked up offline only: ``lpips_weights`` of the definition, ``$HARMBENCH_LPIPS_ALEX``,
    ``../shared/lpips/alexnet_features.pth`` beside the project, torchvision's cache.
    """
    cands: list[tuple[Path, str]] = []
    if lb.lpips_weights is not None:
        cands.append((lb.lpips_weights, "leaderboard.lpips_weights"))
    if os.environ.get(LPIPS_ENV):
        cands.append((Path(os.environ[LPIPS_ENV]), f"${LPIPS_ENV}"))
    root = project_root(lb.dir)
    cands.append((root.parent / "shared" / "lpips" / "alexnet_features.pth", "../shared/lpips"))
    for p, where in cands:
        if p.is_file():
            return True, str(p.resolve()), where
    try:
        import torch

        cache = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET
        if cache.is_file():
            return True, None, "torchvision cache"
    except Exception:  # noqa: BLE001 - no cache
        pass
    return False, None, ""


def ensure_dataset(ds: DatasetDef, *, ray_address: str | None = None, progress: bool = False) -> bool:
    """Build ``ds`` from its recipe when its folder holds no built dataset yet; True when built now."""
    from harmbench.eval.datasets import ShardData

    if ds.path.exists() and ShardData.detect(ds.path) and (ds.recipe is None or (ds.path / "index.json").exists()):
        return False
    if ds.recipe is None:
        raise UserError(f"dataset {ds.name!r}: {ds.path} not found and no recipe is given to build it")
    from harmbench.generate import build_dataset

    build_dataset(ds.recipe, ds.path, max_samples=ds.max_samples, ray_address=ray_address, progress=progress)
    return True


def cell_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (a plain function: runs in this process or as a Ray task); returns a small summary."""
    from harmbench.eval.loop import EvalOptions, evaluate

    opts = EvalOptions(**spec["options"])
    res = evaluate(spec["model"], spec["data"], spec["out"], opts)
    env = res.run.get("environment", {})
    return {
        "cell": spec["id"],
        "reused": res.reused,
        "n": int(len(res.samples)),
        "new": res.new_samples,
        "images_per_s": (res.run.get("timing") or {}).get("images_per_s"),
        "broken_shards": list(res.run.get("broken_shards") or []),
        "n_skipped": int(res.run.get("n_skipped") or 0),
        "node": env.get("ray_node_id") or env.get("hostname"),
        "device": env.get("device_name"),
    }


def _seed(lb: Leaderboard, cell: Cell) -> int:
    """The model's own seed when its entry sets one, else the leaderboard's."""
    return lb.seed if cell.model.seed is None else cell.model.seed


def _spec(
    lb: Leaderboard,
    cell: Cell,
    lpips: tuple[bool, str | None],
    workers: int | None,
    restart: bool,
    progress: bool | None,
    device: str,
) -> dict[str, Any]:
    return {
        "id": cell.id,
        "model": cell.model.spec,
        "data": str(cell.dataset.path),
        "out": str(cell.run_dir),
        "options": {
            "profile": lb.profile,
            "resize": lb.resize,
            "split": cell.dataset.split,
            "device": device,
            "batch_size": lb.batch_size,
            "workers": workers,
            "limit": cell.dataset.limit,
            "lpips": lpips[0],
            "lpips_weights": lpips[1],
            "lpips_cache": str(lb.runs_dir / LPIPS_CACHE) if lpips[0] else None,
            "seed": _seed(lb, cell),
            "previews": lb.grid_samples,
            "progress": progress,
            "restart": restart,
            "model_options": dict(cell.model.options),
            "weights": cell.model.weights_spec,
            "protocol": cell.model.protocol,
            "harmony": lb.harmony,
        },
    }


def _expected(lb: Leaderboard, cell: Cell, lpips: bool, data_desc: dict[str, Any]) -> dict[str, Any]:
    from harmbench.metrics import get_profile
    from harmbench.models.checkpoints import sha256_file as file_sha256
    from harmbench.models.resolve import checkpoint_weights_file

    prof = get_profile(lb.profile)
    exp: dict[str, Any] = {
        "profile": prof.to_dict(),
        "resize": lb.resize,
        "lpips": lpips,
        "seed": _seed(lb, cell),
        "pred_8bit": bool(prof.pred_8bit),
        "data": {"index_sha256": data_desc["index_sha256"], "split": data_desc["split"], "limit": cell.dataset.limit},
    }
    if cell.model.checkpoint is not None and cell.model.checkpoint.is_file():
        exp["weights_sha256"] = file_sha256(checkpoint_weights_file(cell.model.checkpoint))
    elif (cell.model.weights or cell.model.card) and cell.model.available():
        from harmbench.models.official import split_weights_spec
        from harmbench.models.resolve import weights_digest

        files = cell.model.weights or split_weights_spec(cell.model.card, cell.model.name)
        exp["weights_sha256"] = weights_digest(files)
    return exp


def _run_on_ray(
    specs: list[dict[str, Any]], address: str, cpus: int, report: Callable[[str], None]
) -> tuple[list, list]:
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    done: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(num_cpus=cpus, num_gpus=1 if gpus >= 1 else 0, max_retries=0)(cell_task)
        inflight = {}
        for s in specs:
            s = {
                **s,
                "options": {
                    **s["options"],
                    "workers": s["options"]["workers"]
                    if s["options"]["workers"] is not None
                    else (cpus if cpus > 1 else 0),
                    "progress": False,
                },
            }
            inflight[remote.remote(s)] = s["id"]
        report(f"submitted {len(inflight)} cell(s) to Ray at {address} ({'1 GPU' if gpus >= 1 else 'CPU'} each)")
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                cid = inflight.pop(ref)
                try:
                    r = ray.get(ref)
                    done.append(r)
                    report(f"  {cid}: {r['n']} samples on node {str(r['node'])[:12]}")
                except Exception as exc:  # noqa: BLE001 - one failing cell does not stop the others
                    cause = getattr(exc, "cause", None) or exc
                    failed.append((cid, f"{type(cause).__name__}: {cause}"))
                    report(
                        f"  {cid}: FAILED ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
                    )
    finally:
        if started:
            ray.shutdown()
    return done, failed


def run_leaderboard(
    name: str | os.PathLike | Leaderboard,
    *,
    ray_address: str | None = None,
    device: str = "auto",
    workers: int | None = None,
    restart: bool = False,
    progress: bool | None = None,
    only_models: list[str] | None = None,
    report: Callable[[str], None] | None = None,
    raise_on_failure: bool = True,
) -> LeaderboardRun:
    """Run every missing cell of leaderboard ``name`` (finished ones are reused).

    ``ray_address`` (else ``$RAY_ADDRESS``): run the cells as Ray tasks on that cluster.
    ``restart``: discard existing runs of the selected cells. ``only_models``: labels
    or names to run. Cells that fail are listed; with ``raise_on_failure`` a
    :class:`UserError` naming them is raised after the other cells finished.
    """
    from harmbench.eval.datasets import open_data

    say = report or (lambda msg: print(msg, file=sys.stderr))
    lb = name if isinstance(name, Leaderboard) else load_leaderboard(name)
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    out = LeaderboardRun(lb)
    if lb.lpips is False:
        lp: tuple[bool, str | None] = (False, None)
    else:
        found, path, where = find_lpips_weights(lb)
        if lb.lpips is True:
            lp = (True, path)
        else:
            lp = (found, path)
            out.notes.append(
                f"LPIPS weights from {where}"
                if found
                else f"LPIPS off: no AlexNet weights found offline (set {LPIPS_ENV} or lpips_weights)"
            )
    out.lpips = lp[0]

    for m in lb.models:  # a required file that is missing is an error before any dataset is built
        if only_models and m.label not in only_models and m.name not in only_models:
            continue
        if not m.optional and not m.available():
            raise UserError(
                f"leaderboard {lb.name}, model {m.label!r}: {m.missing_reason()} (set optional = true to skip it)"
            )

    t0 = time.perf_counter()
    descs: dict[str, dict[str, Any]] = {}
    for ds in lb.datasets:
        if ensure_dataset(ds, ray_address=address, progress=bool(progress)):
            out.built.append(ds.name)
            say(f"built dataset {ds.name} -> {ds.path}")
        descs[ds.name] = open_data(ds.path, ds.split).describe()

    todo: list[dict[str, Any]] = []
    for cell in cells(lb):
        if only_models and cell.model.label not in only_models and cell.model.name not in only_models:
            continue
        if not cell.model.available():
            reason = cell.model.missing_reason()
            if not cell.model.optional:
                raise UserError(f"leaderboard {lb.name}, model {cell.model.label!r}: {reason}")
            out.skipped.append((cell.id, reason))
            continue
        if not restart:
            check_cell(cell, _expected(lb, cell, lp[0], descs[cell.dataset.name]))
            if cell.state() == "finished":
                out.reused.append(cell.id)
                continue
        todo.append(_spec(lb, cell, lp, workers if workers is not None else lb.workers, restart, progress, device))

    say(f"leaderboard {lb.name}: {len(todo)} cell(s) to run, {len(out.reused)} reused, {len(out.skipped)} skipped")
    if todo and address:
        done, failed = _run_on_ray(todo, address, lb.cpus_per_cell, say)
        out.results.extend(done)
        out.ran.extend(r["cell"] for r in done)
        out.failed.extend(failed)
    else:
        for spec in todo:
            say(f"  {spec['id']} …")
            try:
                r = cell_task(spec)
            except (UserError, RuntimeError, ValueError, OSError) as exc:
                out.failed.append((spec["id"], f"{type(exc).__name__}: {exc}"))
                say(f"  {spec['id']}: FAILED ({exc})")
                continue
            out.results.append(r)
            out.ran.append(spec["id"])
            ips = r.get("images_per_s")
            say(f"  {spec['id']}: {r['n']} samples" + (f", {ips:.2f} img/s" if ips else ""))
    say(f"leaderboard {lb.name}: done in {time.perf_counter() - t0:.1f} s")
    if out.failed and raise_on_failure:
        lines = "; ".join(f"{c}: {e.splitlines()[0] if e else ''}" for c, e in out.failed)
        raise UserError(f"leaderboard {lb.name}: {len(out.failed)} cell(s) failed ({lines}); finished cells are kept")
    return out


__all__ = ["LeaderboardRun", "cell_task", "ensure_dataset", "find_lpips_weights", "run_leaderboard"]
