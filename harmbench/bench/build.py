"""``harmbench bench build``: builder throughput against the codec floor, on large photos.

Synthetic 6000×4000 photos (12 by default, 2 objects each) are written to a temp
dir and built with a real recipe (``hue`` by default, full resolution) through
a ``folder`` source. The **codec floor** decodes the same sources (photo JPEG,
mask PNG, and the reference object's photo and mask for recipes that read one,
as listed in the built samples' JSON) and encodes the same outputs (composite,
mask PNG, and the real image when the builder re-encodes it), serially, nothing
else; best of three runs in a fresh process. The builder is
timed over its shard phase (Ray already up) with 1 and then 2 workers, in
``--repeats`` rounds (default 3) of one build each, the best of each kept. An
untimed 2-worker build comes first: it starts the Ray worker processes and
imports the recipes there, which a long build pays once and the floor's
best-of-3 leaves out too, so that every counted round runs warm.

``ratio`` = 1-worker builder samples/s ÷ floor samples/s (target ≥ 0.5; ≥ 0.6 for ``hue``);
``speedup_2w`` = 2-worker ÷ 1-worker (target ≥ 1.8, needs 2 free cores);
``peak_rss_mb_per_worker`` = largest ``ru_maxrss`` of a Ray worker (target < 1500).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "build"
HELP = "builder samples/s (1 and 2 workers) vs the decode+encode floor on 6000x4000 photos (target ratio >= 0.5)"
TARGET = 0.5
#: Recipes held to a higher ratio than :data:`TARGET` (cheap synthesis: the codecs set the pace).
RECIPE_TARGETS = {"hue": 0.6}
TARGET_SPEEDUP = 1.8
TARGET_RSS_MB = 1500.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--photos",
        type=int,
        default=12,
        help="synthetic photos (default 12: 24 samples in 12 shards, 6 per worker, so that the last shard's "
        "tail is a small part of the 2-worker run)",
    )
    parser.add_argument("--objects", type=int, default=2, help="object masks per photo = samples per photo (default 2)")
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--shard-size", type=int, default=2, help="samples per shard (default 2)")
    parser.add_argument(
        "--recipe",
        default="hue",
        help="recipe type to build with (default hue); 'synthetic' uses the engine's own minimal "
        "recipe (harmbench.generate.synthetic) to measure the engine without a recipe's cost",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds of (1-worker build, 2-worker build); the best of each is reported, as the floor is the "
        "best of 3 (default 3; an untimed 2-worker build before them starts and warms the Ray workers)",
    )
    parser.add_argument("--keep", default=None, help="keep the photos and builds in this directory")


def _toml(src: Path, recipe: str, shard_size: int) -> str:
    return f"""[dataset]
name = "benchbuild"
seed = 0
shard_size = {shard_size}

[output]
composite_format = "jpg"
jpeg_quality = 95

[split]
test_fraction = 0.0

[filters]
fg_ratio_min = 0.0
fg_ratio_max = 1.0
min_fmse = 0.0
max_attempts = 1

[sources.photos]
type = "folder"
images = "{src / "images"}"
masks = "{src / "masks"}"
category = "object"

[[recipes]]
type = "{recipe}"
source = "photos"
"""


def floor_inputs(out: Path, src: Path) -> list[list[tuple[Path, Path]]]:
    """Per built sample, the ``(photo, mask)`` files it was made from: its own, then its
    reference object's when the recipe read one (``hcoco``), from the shards' JSON.

    Object keys are resolved through the ``folder`` source over ``src`` (what the bench
    builds from); the engine's synthetic recipe keys samples ``<photo>_obj<n>`` (see
    :func:`harmbench.generate.synthetic.make_photos`).
    """
    from harmbench.data.shards import iter_tar_samples
    from harmbench.sources import get_source

    files: dict[str, tuple[Path, Path]] = {}
    for r in get_source("folder")(images=src / "images", masks=src / "masks", category="object"):
        pair = (Path(r.image_path), Path(r.mask_path))
        files[r.key] = files[f"{r.image_id}_obj{r.object_id}"] = pair
    inputs = []
    for tar_path in sorted(out.glob("*.tar")):
        for sample in iter_tar_samples(tar_path, suffixes=("json",)):
            meta = json.loads(sample["json"])
            keys = [meta.get("object_key") or sample["__key__"].rsplit("/", 1)[-1], meta.get("reference_key")]
            inputs.append([files[k] for k in keys if k])
    return inputs


def codec_floor(inputs: list[list[tuple[Path, Path]]], quality: int, encode_real: bool) -> float:
    """Samples/s of decoding every source a sample reads (photo + mask, and the reference photo +
    mask when there is one) and encoding its outputs (composite, mask, real if re-encoded), serially."""
    from harmbench.imaging import binarize, encode_image, read_mask, read_rgb

    t0 = time.perf_counter()
    for row in inputs:
        decoded = [(read_rgb(i.read_bytes(), str(i)), binarize(read_mask(m))) for i, m in row]
        rgb, mask = decoded[0]
        encode_image(rgb, "jpg", quality=quality)
        encode_image(mask.astype("uint8") * 255, "png")
        if encode_real:
            encode_image(rgb, "jpg", quality=quality)
        del rgb, mask, decoded
    return len(inputs) / (time.perf_counter() - t0)


def isolated_floor(
    inputs: list[list[tuple[Path, Path]]], quality: int, encode_real: bool, scratch: Path, repeats: int = 3
) -> float:
    """Best of ``repeats`` :func:`codec_floor` runs in a fresh Python process.

    The conservative denominator: a new process, as the builder's workers are, with the
    same allocator settings (:func:`harmbench.generate.runner.keep_freed_memory`) and no Ray
    threads or half-stopped Ray processes beside it; the first run pays cold page faults.
    """
    import subprocess
    import sys

    scratch.write_text(
        json.dumps(
            {
                "inputs": [[[str(i), str(m)] for i, m in row] for row in inputs],
                "quality": quality,
                "encode_real": encode_real,
                "repeats": repeats,
            }
        )
    )
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from harmbench.bench.build import codec_floor\n"
        "from harmbench.generate.runner import keep_freed_memory\n"
        "keep_freed_memory()\n"
        "a = json.loads(Path(sys.argv[1]).read_text())\n"
        "rows = [[(Path(i), Path(m)) for i, m in row] for row in a['inputs']]\n"
        "print(max(codec_floor(rows, a['quality'], a['encode_real']) for _ in range(a['repeats'])))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(scratch)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _real_reencoded(out: Path, src: Path) -> bool:
    """Whether the builder stored re-encoded reals (not the source bytes)."""
    tar_path = sorted(out.glob("*.tar"))[0]
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            if ".real." in m.name:
                meta = json.loads(tar.extractfile(tar.getmember(m.name.split(".", 1)[0] + ".json")).read())
                data = tar.extractfile(m).read()
                img = meta.get("image_file") or meta.get("image")
                cand = [p for p in (src / "images").glob("*.jpg") if img and Path(str(img)).name == p.name]
                return not any(p.read_bytes() == data for p in cand) if cand else True
    return True


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from harmbench.bench import format_table
    from harmbench.generate import build_dataset, build_from_plan
    from harmbench.generate.synthetic import make_photos, plan_photos, synthesize

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hb-bench-build-"))
    root.mkdir(parents=True, exist_ok=True)
    src = root / "src"
    try:
        t = time.perf_counter()
        records = make_photos(
            src, args.photos, width=args.width, height=args.height, n_objects=args.objects, seed=7, folder_layout=True
        )
        gen_s = time.perf_counter() - t
        toml_path = root / "bench.toml"
        toml_path.write_text(_toml(src, args.recipe, args.shard_size))

        def build(workers: int, out: Path) -> Any:
            shutil.rmtree(out, ignore_errors=True)
            if args.recipe == "synthetic":
                return build_from_plan(
                    plan_photos(records),
                    out,
                    name="benchbuild",
                    synthesize=synthesize,
                    shard_size=args.shard_size,
                    workers=workers,
                    resume=False,
                    progress=False,
                )
            return build_dataset(toml_path, out, workers=workers, resume=False, progress=False)

        started = False
        if not ray.is_initialized():
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=256 * 1024**2,
                logging_level=logging.WARNING,
            )
            started = True
        runs: dict[int, dict[str, Any]] = {}
        rounds: dict[int, list[float]] = {}
        try:
            build(2, root / "warmup")  # untimed: starts both Ray workers and imports the recipes there
            shutil.rmtree(root / "warmup", ignore_errors=True)
            for _ in range(max(1, args.repeats)):  # rounds of (1 worker, 2 workers); the best of each is kept
                for w in (1, 2):
                    out = root / f"out{w}"
                    res = build(w, out)
                    shard_stats = [json.loads(p.read_text()) for p in out.glob("*.stats.json")]
                    sps = res.stats["run"]["shard_phase_samples_per_s"]
                    rounds.setdefault(w, []).append(round(sps, 3))
                    if w in runs and runs[w]["sps"] >= sps:
                        continue
                    runs[w] = {
                        "samples": res.stats["samples"],
                        "skipped": res.stats["skipped"]["synth"] + res.stats["skipped"]["plan"],
                        "sps": sps,
                        "rss": max(s["peak_rss_mb"] for s in shard_stats),
                        "synth_s": sum(s["synth_s"] for s in shard_stats),
                        "encode_s": sum(s["encode_write_s"] for s in shard_stats),
                    }
        finally:
            if started:
                ray.shutdown()
        same = sorted(p.read_bytes() for p in (root / "out1").glob("*.tar")) == sorted(
            p.read_bytes() for p in (root / "out2").glob("*.tar")
        )
        reenc = _real_reencoded(root / "out1", src)
        inputs = floor_inputs(root / "out1", src)
        floor = isolated_floor(inputs, 95, reenc, root / "floor.json")
        ratio = runs[1]["sps"] / floor if floor else 0.0
        speedup = runs[2]["sps"] / runs[1]["sps"] if runs[1]["sps"] else 0.0
        rss = max(runs[1]["rss"], runs[2]["rss"])
        rows = [
            ("codec floor (serial)", f"{floor:.3f}", "-", "-"),
            (
                "builder, 1 worker",
                f"{runs[1]['sps']:.3f}",
                f"{runs[1]['rss']:.0f}",
                f"synth {runs[1]['synth_s']:.1f} s, encode+write {runs[1]['encode_s']:.1f} s",
            ),
            ("builder, 2 workers", f"{runs[2]['sps']:.3f}", f"{runs[2]['rss']:.0f}", f"identical bytes: {same}"),
        ]
        print(
            f"{args.photos} photos {args.width}x{args.height}, {runs[1]['samples']} samples "
            f"(recipe {args.recipe}, generated in {gen_s:.1f} s, {os.cpu_count()} CPUs)"
        )
        print(format_table(rows, ("run", "samples/s", "peak RSS MB/worker", "notes")))
        return {
            "bench": NAME,
            "ratio": round(ratio, 3),
            "speedup_2w": round(speedup, 3),
            "peak_rss_mb_per_worker": round(rss, 1),
            "target": RECIPE_TARGETS.get(args.recipe, TARGET),
            "target_speedup_2w": TARGET_SPEEDUP,
            "target_peak_rss_mb": TARGET_RSS_MB,
            "floor_samples_per_s": round(floor, 3),
            "builder_1w_samples_per_s": runs[1]["sps"],
            "builder_2w_samples_per_s": runs[2]["sps"],
            "samples": runs[1]["samples"],
            "skipped": runs[1]["skipped"],
            "photo_size": [args.width, args.height],
            "recipe": args.recipe,
            "real_reencoded": reenc,
            "identical_bytes_1w_2w": same,
            "builder_rounds_samples_per_s": {f"{w}w": v for w, v in rounds.items()},
            "cpus": os.cpu_count(),
        }
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
