"""``harmbench bench eval``: end-to-end ``harmbench eval`` images/s against the decode floor of the same data.

Data: synthetic WebDataset shards written here (photos with shapes, colour-shifted
foregrounds; :func:`write_synthetic_shards`), or ``--data DIR``. In one process
and with the same DataLoader workers, it times

* the **decode floor**: iterating the eval DataLoader only (decode + profile
  preparation: resize and mask rule, same-size batches stacked in the workers),
  no model, no metrics;
* **end to end** :func:`harmbench.eval.loop.evaluate` for ``composite`` and
  ``reinhard`` with every metric but LPIPS (key listing, inference, metrics,
  parquet parts, merge, ``run.json``);
* the same for ``composite`` with LPIPS when AlexNet weights are available locally;
* end to end for each learned model of ``--models`` (default :data:`LEARNED`: the released
  architectures at full width, randomly initialised, harmbench protocol: speed does not depend
  on the weights) on the first ``--model-n`` samples, one timed run after the warm-up.

Each timing is the best of ``--repeats`` after one warm-up, the three pipelines
timed in turns (one run of each per round) so that a change of load on a shared
machine affects them alike. ``ratio`` = composite end-to-end images/s ÷
decode-floor images/s (1.0 = evaluation costs nothing beyond reading the data).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

NAME = "eval"
HELP = "end-to-end harmbench eval images/s (composite, reinhard) against the decode floor of the same data (target ratio >= 0.8, reinhard >= 0.5)"
TARGET = 0.8
#: reinhard end-to-end ÷ decode floor
TARGET_REINHARD = 0.5
#: learned models timed by default (registry names)
LEARNED = ("idih", "issam", "pctnet-cnn", "pctnet-vit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harmbench.bench.metrics import add_lpips_arguments

    parser.add_argument("--n", type=int, default=96, help="synthetic samples (default 96)")
    parser.add_argument("--width", type=int, default=320, help="synthetic photo width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="synthetic photo height (default 240)")
    parser.add_argument("--data", default=None, help="use this built shard directory instead of synthetic shards")
    parser.add_argument("--split", default="test", help="split of --data (default test)")
    parser.add_argument("--batch-size", type=int, default=16, help="eval batch size (default 16)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers for both sides (default: what harmbench eval picks for a large run)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats; the best is reported (default 2)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda …")
    parser.add_argument(
        "--models",
        default=",".join(LEARNED),
        help=f"learned models to time, comma-separated ('' for none; default {','.join(LEARNED)})",
    )
    parser.add_argument(
        "--model-n", type=int, default=16, help="samples the learned models run on (default 16; at most --n)"
    )
    add_lpips_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)


def write_synthetic_shards(
    out: str | os.PathLike,
    n: int,
    *,
    width: int = 96,
    height: int = 64,
    seed: int = 0,
    shard_size: int = 32,
    identity_every: int = 0,
    recipes: tuple[str, ...] = ("alpha", "beta"),
    split: str = "test",
    prefix: str = "",
    name: str = "synth",
) -> list[str]:
    """Write ``n`` samples as harmbench shards ``<name>-<split>-NNNNNN.tar`` plus ``index.json``; returns keys.

    Samples come from :mod:`harmbench.generate.synthetic` (foreground gain/gamma shifts of generated
    photos); recipes cycle through ``recipes``; every ``identity_every``-th sample (0: none) is an
    identity pair (composite = real, recipe ``identical``). Keys start with ``prefix``. No Ray needed;
    an existing ``index.json`` in ``out`` is extended (so calls with other sizes/prefixes can share a folder).
    """
    import dataclasses
    import hashlib

    from harmbench.generate import synthetic as syn
    from harmbench.generate.index import dataset_index
    from harmbench.generate.writer import DeterministicTarWriter, OutputOptions, encode_sample

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = syn.make_photos(out / "_src", math.ceil(n / 3), width=width, height=height, seed=seed)[:n]
    opts = OutputOptions(composite_format="jpg", jpeg_quality=95)
    items = []
    for i, r in enumerate(records):
        ident = bool(identity_every) and i % identity_every == identity_every - 1
        recipe = "identical" if ident else recipes[i % len(recipes)]
        spec = syn.plan_photos([r], seed=seed, recipe=recipe)[0]
        spec = dataclasses.replace(spec, split=split)
        arr = syn.synthesize(spec)
        if prefix:
            spec = dataclasses.replace(spec, key=prefix + spec.key)
            arr = dataclasses.replace(arr, key=spec.key, meta={**(arr.meta or {}), "key": spec.key})
        if ident:
            arr = dataclasses.replace(
                arr,
                composite=arr.real.copy(),
                real_bytes=None,
                meta={**(arr.meta or {}), "recipe_type": "identical", "method": "identity"},
            )
        items.append((spec, arr))
    items.sort(key=lambda t: t[0].key)
    stats = []
    idx_path = out / "index.json"
    if idx_path.exists():
        for r in json.loads(idx_path.read_text()).get("shardlist", []):
            stats.append(
                {
                    "shard": r["url"],
                    "split": r["split"],
                    "index": len(stats),
                    "count": r["nsamples"],
                    "md5sum": r["md5sum"],
                    "filesize": r["filesize"],
                }
            )
    first = len(stats)
    for s in range(0, len(items), shard_size):
        shard = f"{name}-{split}-{first + s // shard_size:06d}.tar"
        path = out / shard
        with open(path, "wb") as f:
            w = DeterministicTarWriter(f)  # type: ignore[arg-type]
            for spec, arr in items[s : s + shard_size]:
                w.write(spec.key, encode_sample(arr, spec.split, spec.recipe, opts))
            w.close()
        data = path.read_bytes()
        stats.append(
            {
                "shard": shard,
                "split": split,
                "index": first + s // shard_size,
                "count": len(items[s : s + shard_size]),
                "md5sum": hashlib.md5(data).hexdigest(),
                "filesize": len(data),
            }
        )
    idx_path.write_text(json.dumps(dataset_index(name, stats), indent=2))
    shutil.rmtree(out / "_src", ignore_errors=True)
    return [spec.key for spec, _ in items]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from harmbench.bench import format_table
    from harmbench.bench.metrics import best_times, find_lpips_weights
    from harmbench.eval.batches import batch_loader
    from harmbench.eval.datasets import open_data
    from harmbench.eval.loop import EvalOptions, auto_threads, auto_workers, evaluate
    from harmbench.eval.score import resolve_device
    from harmbench.metrics import get_profile

    tmp = Path(tempfile.mkdtemp(prefix="hb-bench-eval-"))
    try:
        if args.data:
            data = Path(args.data)
        else:
            data = tmp / "data"
            write_synthetic_shards(data, args.n, width=args.width, height=args.height, seed=args.seed)
        ds = open_data(data, args.split)
        keys = ds.keys()
        n = len(keys)
        workers = args.workers if args.workers is not None else auto_workers(10**6, args.batch_size)
        device = resolve_device(args.device)
        profile = get_profile("harmbench")

        def floor() -> None:  # the loader evaluate() iterates: decode, prepare, batch (workers), nothing else
            for batch in batch_loader(
                ds.torch_dataset(set(keys), profile, "fixed256"), workers, args.batch_size, EvalOptions.max_batch_pixels
            ):
                if batch["errors"]:
                    raise RuntimeError(f"bench data unusable: {batch['errors'][0]}")

        counter = iter(range(1_000_000))

        def e2e(model: str, lpips: bool = False, weights: str | None = None, limit: int | None = None):
            def go() -> None:
                evaluate(
                    model,
                    data,
                    tmp / f"run-{model}-{next(counter)}",
                    split=args.split,
                    device=device,
                    batch_size=args.batch_size,
                    workers=workers,
                    lpips=lpips,
                    lpips_weights=weights,
                    previews=0,
                    progress=False,
                    seed=args.seed,
                    limit=limit,
                )

            return go

        # warm-up: imports, worker start-up paths, first kernels
        evaluate(
            "composite",
            data,
            tmp / "warmup",
            split=args.split,
            device=device,
            batch_size=args.batch_size,
            workers=0,
            limit=min(n, args.batch_size),
            previews=0,
            progress=False,
        )
        times, _ = best_times(
            {"floor": floor, "composite": e2e("composite"), "reinhard": e2e("reinhard")}, args.repeats
        )
        t_floor, t_comp, t_rein = times["floor"], times["composite"], times["reinhard"]
        rows = [
            ("decode floor (DataLoader: decode + prepare)", f"{n / t_floor:.1f}", f"{t_floor * 1000 / n:.2f}"),
            ("eval composite, all metrics but LPIPS", f"{n / t_comp:.1f}", f"{t_comp * 1000 / n:.2f}"),
            ("eval reinhard, all metrics but LPIPS", f"{n / t_rein:.1f}", f"{t_rein * 1000 / n:.2f}"),
        ]
        lpips_ips, note = None, ""
        weights = None if args.no_lpips else find_lpips_weights(args.lpips_weights)
        if args.no_lpips:
            note = "LPIPS skipped (--no-lpips)"
        elif weights is None:
            note = "LPIPS skipped: no local AlexNet weights (--lpips-weights or HARMBENCH_LPIPS_ALEX)"
        else:
            t_lp = best_times({"lpips": e2e("composite", True, str(weights))}, 1)[0]["lpips"]
            lpips_ips = n / t_lp
            rows.append(("eval composite, all metrics + LPIPS/fLPIPS", f"{lpips_ips:.1f}", f"{t_lp * 1000 / n:.2f}"))
            note = f"LPIPS weights {weights}"
        learned: dict[str, float] = {}
        model_n = max(1, min(n, args.model_n))
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            e2e(name, limit=min(model_n, args.batch_size))()  # warm-up: model build, first kernels
            t_m = best_times({name: e2e(name, limit=model_n)}, 1)[0][name]
            learned[name] = model_n / t_m
            rows.append(
                (
                    f"eval {name} (learned, {model_n} samples), all metrics but LPIPS",
                    f"{model_n / t_m:.2f}",
                    f"{t_m * 1000 / model_n:.1f}",
                )
            )
        print(
            f"{n} samples ({'synthetic ' + str(args.width) + 'x' + str(args.height) if not args.data else data}), "
            f"fixed256, profile harmbench, device {device}, {workers} DataLoader workers, batch {args.batch_size}, "
            f"torch threads {auto_threads(workers)}, best of {args.repeats}"
        )
        print(format_table(rows, ("pipeline", "images/s", "ms/image")))
        if note:
            print(note)
        ratio = (n / t_comp) / (n / t_floor)
        return {
            "bench": NAME,
            "ratio": round(ratio, 3),
            "target": TARGET,
            "decode_floor_images_per_s": round(n / t_floor, 2),
            "composite_images_per_s": round(n / t_comp, 2),
            "reinhard_images_per_s": round(n / t_rein, 2),
            "reinhard_ratio": round(t_floor / t_rein, 3),
            "target_reinhard": TARGET_REINHARD,
            "lpips_composite_images_per_s": None if lpips_ips is None else round(lpips_ips, 2),
            "lpips_note": note,
            "learned_images_per_s": {k: round(v, 3) for k, v in learned.items()},
            "learned_n_images": model_n,
            "n_images": n,
            "workers": workers,
            "batch": args.batch_size,
            "device": device,
            "cpu_count": os.cpu_count(),
            "torch_threads": auto_threads(workers),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
