"""``harmbench bench train``: training throughput (samples/s) of each learned model at its CPU config
(``--full``: its full-size config, for GPUs: AMP as the config says, peak GPU memory reported).

For every model the committed ``baselines/<model>-cpu.toml`` is trained for a few steps on a
tiny synthetic shard set (written with the build writer at the config's image size + 25 %, so
the loader decodes and resizes as in real training), twice:

* **loader**: batches come from the trainer's own data pipeline (``HarmonizationShards`` +
  ``DataLoader`` with the config's workers: tar reading, image decoding, resizing, collation);
* **memory**: the same number of batches, decoded beforehand and held in memory, so each step
  is pure compute.

``ratio`` = min over models of (loader samples/s ÷ memory samples/s): how close training with the
real loader comes to being compute-bound (1.0 = the loader costs nothing). ``target`` = 0.8.
The last output line is ``{"bench": "train", "ratio", "target", "samples_per_s": {model: loader
samples/s}, "memory_samples_per_s", "per_model_ratio", ...}``. Timings exclude one warm-up step.
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "train"
HELP = "training samples/s per model at the CPU configs (real loader vs. in-memory batches)"
DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else HELP
MODELS = ("hen-ctn", "dovenet", "bargainnet", "pctnet-cnn")
TARGET = 0.8


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated models (default: all four)")
    p.add_argument("--steps", type=int, default=12, help="timed steps per model and mode (default 12)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument(
        "--full",
        action="store_true",
        help="use the full-size configs baselines/<model>.toml (GPU runs; AMP as the config says) "
        "instead of the CPU ones",
    )


def _write_tiny_shards(root, n: int, size: int) -> None:
    import hashlib
    import json

    import numpy as np

    from harmbench.generate.index import dataset_index
    from harmbench.generate.writer import (
        DeterministicTarWriter,
        OutputOptions,
        encode_sample,
    )
    from harmbench.recipes.base import SampleArrays

    rng = np.random.default_rng(0)
    h, w = int(size * 1.25), int(size * 1.5)
    stats = []
    for split, count in (("train", n), ("test", 4)):
        name = f"bench-{split}-000000.tar"
        with open(root / name, "wb") as f:
            wr = DeterministicTarWriter(f)
            for i in range(count):
                yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
                real = (
                    rng.uniform(40, 200, 3)
                    + yy[..., None] * rng.uniform(-0.5, 0.5, 3)
                    + xx[..., None] * rng.uniform(-0.5, 0.5, 3)
                )
                real = np.clip(real + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
                mask = np.zeros((h, w), bool)
                y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
                mask[y0 : y0 + h // 3, x0 : x0 + w // 3] = True
                comp = real.copy()
                comp[mask] = np.clip(real[mask] * rng.uniform(0.6, 1.4, 3), 0, 255).astype(np.uint8)
                key = f"b{split}{i:04d}"
                wr.write(
                    key,
                    encode_sample(
                        SampleArrays(key, comp, mask, real, {"recipe": "bench"}), split, "bench", OutputOptions()
                    ),
                )
            wr.close()
        data = (root / name).read_bytes()
        stats.append(
            {
                "shard": name,
                "split": split,
                "index": 0,
                "count": count,
                "md5sum": hashlib.md5(data).hexdigest(),
                "filesize": len(data),
            }
        )
    (root / "index.json").write_text(json.dumps(dataset_index("bench", stats)))


def config_path(repo, name: str, full: bool):
    """``baselines/<name>.toml`` (full size) or ``baselines/<name>-cpu.toml``."""
    from pathlib import Path

    return Path(repo) / "baselines" / (f"{name}.toml" if full else f"{name}-cpu.toml")


def _fresh(trainer) -> tuple[Any, Any, Any]:
    """A newly initialised model, its optimisers and a step context for ``trainer``'s config."""
    import torch

    from harmbench.models import get_model
    from harmbench.train.steps import StepContext, make_optimizers
    from harmbench.train.trainer import amp_dtype

    cfg = trainer.cfg
    model = get_model(cfg.model.name, seed=0, preset=cfg.model.preset, **cfg.model.options).to(trainer.device)
    opts = make_optimizers(model, trainer.spec, lr=cfg.optim.lr, betas=cfg.optim.betas)
    gen = torch.Generator(device=trainer.device).manual_seed(0)
    adtype = amp_dtype(cfg.train.amp, trainer.device)  # as the trainer: autocast (+ GradScaler for fp16) on CUDA
    scaler = torch.amp.GradScaler("cuda") if adtype == torch.float16 else None
    return model, opts, StepContext(trainer.loss_cfg, amp_dtype=adtype, scaler=scaler, generator=gen)


def _time_steps(trainer, model, opts, ctx, batches) -> float:
    """Samples/s over ``batches`` (an iterator of raw collated batches) after one warm-up step."""
    import time

    import torch

    from harmbench.train.steps import check_batch

    it = iter(batches)
    n = 0
    t0 = 0.0
    for i, batch in enumerate(it):
        if i == 1:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        check_batch(batch)
        b = trainer._to_device(batch)
        model.train()
        trainer.spec.step(model, b, opts, ctx)
        if ctx.scaler is not None:
            ctx.scaler.update()
        if i >= 1:
            n += b["composite"].shape[0]
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import itertools
    import os
    import sys
    import tempfile
    from pathlib import Path

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `harmbench train` does
    import torch

    from harmbench.bench import format_table
    from harmbench.train.config import load_train_config
    from harmbench.train.trainer import Trainer, amp_dtype

    torch.set_num_threads(max(1, args.threads))
    torch.set_flush_denormal(True)
    repo = Path(__file__).resolve().parents[2]
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    steps = max(2, args.steps)
    loader_sps: dict[str, float] = {}
    memory_sps: dict[str, float] = {}
    peak_mb: dict[str, float] = {}
    amp: dict[str, str] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hb-bench-train-") as tmp:
        for name in names:
            cfg = load_train_config(config_path(repo, name, args.full))
            size = cfg.data.image_size
            data = Path(tmp) / f"{name}-shards"
            data.mkdir()
            need = cfg.data.batch_size * (steps + 1) + cfg.data.batch_size * max(1, cfg.data.workers)
            _write_tiny_shards(data, need, size)
            trainer = Trainer(cfg, data, Path(tmp) / f"{name}-run", device=args.device, progress=False)

            batches = [b for _, _, b in itertools.islice(trainer._batches(0, 0), steps + 1)]
            cuda = trainer.device.type == "cuda"
            if cuda:
                torch.cuda.reset_peak_memory_stats(trainer.device)
            memory_sps[name] = _time_steps(trainer, *_fresh(trainer), batches)
            if cuda:
                peak_mb[name] = torch.cuda.max_memory_allocated(trainer.device) / 2**20
            amp[name] = str(amp_dtype(cfg.train.amp, trainer.device) or "off")
            loader_sps[name] = _time_steps(
                trainer, *_fresh(trainer), (b for _, _, b in itertools.islice(trainer._batches(0, 0), steps + 1))
            )
            ratio = loader_sps[name] / memory_sps[name]
            rows.append(
                (
                    name,
                    f"{size}{'/' + str(cfg.data.crop) if cfg.data.crop else ''}",
                    cfg.data.batch_size,
                    cfg.data.workers,
                    f"{loader_sps[name]:.2f}",
                    f"{memory_sps[name]:.2f}",
                    f"{ratio:.2f}",
                )
            )
    print(format_table(rows, ("model", "px", "batch", "workers", "loader samples/s", "memory samples/s", "ratio")))
    per_model = {m: loader_sps[m] / memory_sps[m] for m in names}
    return {
        "ratio": round(min(per_model.values()), 4),
        "target": TARGET,
        "samples_per_s": {m: round(v, 3) for m, v in loader_sps.items()},
        "memory_samples_per_s": {m: round(v, 3) for m, v in memory_sps.items()},
        "per_model_ratio": {m: round(v, 4) for m, v in per_model.items()},
        "steps": steps,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "configs": "full" if args.full else "cpu",
        "peak_memory_mb": {m: round(v, 1) for m, v in peak_mb.items()} or None,
        "amp": amp,
    }
