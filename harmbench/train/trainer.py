"""The training loop shared by every learned model (the per-model work is in :mod:`.steps`).

``Trainer(cfg, data_dir, out_dir).run()``:

1. checks the shard set before anything else (``index.json``, the splits, the fields the model
   needs, mask values and sizes of the first sample of every split used);
2. builds the model (``get_model(name, seed=train.seed, preset=..., **options)``) and one Adam
   per parameter group (DoveNet: ``g``/``d``) with the paper's lr/betas unless overridden;
3. loops ``train.steps`` iterations over ``HarmonizationShards`` batches (RGB 0–1, mask {0,1},
   resized to ``data.image_size`` and optionally randomly cropped), calling the model's step
   function; AMP (autocast bf16/fp16 + GradScaler for fp16) on CUDA only;
4. validates every ``validate_every`` steps on ``data.validation`` (harmbench metrics, 0–255),
   checkpoints every ``checkpoint_every`` steps and at the end (:mod:`.checkpoint`).

Run directory: ``train_config.json``, ``train_log.jsonl`` (losses, lr, samples/s, validation),
``checkpoints/`` and ``result.json``. ``resume=True`` continues bit-exactly from the last
checkpoint (weights, optimiser, scaler, RNG, data position); a non-finite loss stops the run with
:class:`~harmbench.train.steps.NonFiniteLossError` and writes nothing after the last good checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmbench.errors import ConfigError, UserError
from harmbench.train.checkpoint import (
    dataset_index_hash,
    latest_checkpoint,
    load_weights_into,
    read_sidecar,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from harmbench.train.config import RESUMABLE_CHANGES, TrainConfig, diff_configs
from harmbench.train.steps import (
    NonFiniteLossError,
    StepContext,
    StepSpec,
    check_batch,
    get_step,
    make_optimizers,
)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    return dev


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``train.amp`` on ``device`` (``None`` off / on CPU)."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def lr_factor(step: int, total: int, schedule: str, decay_start: float) -> float:
    """Multiplier of the base lr at 0-based ``step``: 1, or constant then linear decay to 0 (pix2pix 'linear')."""
    if schedule == "constant":
        return 1.0
    start = int(total * decay_start)
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1, total - start))


# --------------------------------------------------------------------------- pre-flight checks


def _first_sample(shard: str) -> dict[str, Any]:
    from harmbench.data import iter_tar_samples

    for sample in iter_tar_samples(shard):
        return sample
    raise UserError(f"{shard}: shard is empty")


def preflight(data_dir: str | os.PathLike, cfg: TrainConfig, spec: StepSpec) -> dict[str, Any]:
    """Check the shard set for this config before training; returns ``{"index_sha256", "splits": {split: n}}``.

    Raises :class:`UserError` naming the split, shard, sample key and field at fault: a missing
    ``index.json`` or split, a sample without a field the model needs, a mask that is not 0/255
    or whose size differs from the composite's.
    """
    from harmbench.data import shard_files
    from harmbench.imaging import image_size, read_mask

    root = Path(data_dir)
    digest = dataset_index_hash(root)
    index = json.loads((root / "index.json").read_text())
    splits = {k: int(v.get("nsamples", 0)) for k, v in index.get("splits", {}).items()}
    needed = [cfg.data.split] + ([cfg.data.validation] if cfg.data.validation else [])
    for role, split in zip(("data.split", "data.validation"), needed):
        if split not in splits:
            raise ConfigError(
                role, f"{root}: no split {split!r} in the shards (splits: {', '.join(sorted(splits)) or 'none'})"
            )
    for split in dict.fromkeys(needed):
        for shard in shard_files(root, split)[:1]:
            sample = _first_sample(shard)
            key = sample["__key__"]
            stems = {f.split(".", 1)[0]: f for f in sample if not f.startswith("__")}
            for need in spec.required_fields:
                if need not in stems:
                    raise UserError(
                        f"{shard}: sample {key} has no '{need}' field, which {cfg.model.name} training needs "
                        f"(fields: {', '.join(sorted(f for f in sample if not f.startswith('__')))})"
                    )
            sizes = {}
            for stem in ("composite", "real", "mask"):
                if stem in stems:
                    name = f"{shard}: {key}.{stems[stem]}"
                    w, h = image_size(sample[stems[stem]], name)
                    sizes[stem] = (h, w)
                    if stem == "mask":
                        vals = np.unique(read_mask(sample[stems[stem]], name))
                        if not set(vals.tolist()) <= {0, 255}:
                            raise UserError(
                                f"{shard}: sample {key}: mask values must be 0 or 255, got {vals.min()}..{vals.max()} "
                                f"({len(vals)} distinct values; binarise the masks when building)"
                            )
            if len(set(sizes.values())) > 1:
                raise UserError(f"{shard}: sample {key}: image sizes differ: {sizes}")
    need_n = cfg.data.batch_size * max(1, cfg.data.workers)
    if splits[cfg.data.split] < need_n:
        raise ConfigError(
            "data.batch_size",
            f"split {cfg.data.split!r} has {splits[cfg.data.split]} samples; need at least batch_size × workers = {need_n}",
        )
    return {"index_sha256": digest, "splits": splits, "name": index.get("name", "")}


# --------------------------------------------------------------------------- trainer


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.run` (``samples_per_s`` excludes validation and checkpoint time)."""

    out_dir: Path
    steps: int
    checkpoint: Path | None
    samples_per_s: float
    train_time_s: float
    validation: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Train ``cfg``'s model on the shards in ``data_dir``; outputs go to ``out_dir``."""

    def __init__(
        self,
        cfg: TrainConfig,
        data_dir: str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        resume: bool = False,
        progress: bool | None = None,
        command: str | None = None,
    ):
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.device = resolve_device(device)
        self.resume = resume
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.command = command
        self.spec = get_step(cfg.model.name)
        self.loss_cfg = self.spec.loss_config(cfg.loss)

    # -- data -------------------------------------------------------------------------
    def _loader(self, epoch: int):
        from torch.utils.data import DataLoader

        from harmbench.data import HarmonizationShards, collate

        d = self.cfg.data
        seed = self.cfg.train.seed
        ds = HarmonizationShards(
            self.data_dir,
            d.split,
            shuffle=d.shuffle,
            seed=seed,
            resize=d.image_size,
            crop=d.crop or None,
            random_crop=True if d.crop else None,
            hflip=d.flip,
        )
        ds.set_epoch(epoch)
        g = torch.Generator()
        g.manual_seed(seed * 100_003 + epoch)
        return DataLoader(
            ds,
            batch_size=d.batch_size,
            num_workers=d.workers,
            collate_fn=collate,
            drop_last=True,
            generator=g,
            pin_memory=self.device.type == "cuda",
        )

    def _batches(self, epoch: int, skip: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Infinite ``(epoch, index in epoch, batch)`` from ``epoch``, skipping its first ``skip`` batches."""
        while True:
            got = 0
            for i, batch in enumerate(self._loader(epoch)):
                got += 1
                if i < skip:
                    continue
                yield epoch, i, batch
            if got == 0:
                raise UserError(
                    f"{self.data_dir}: split {self.cfg.data.split!r} yields no full batch of {self.cfg.data.batch_size}"
                )
            epoch, skip = epoch + 1, 0

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        for k in ("composite", "real", "mask"):
            out[k] = batch[k].to(self.device, non_blocking=True)
        return out

    # -- validation -------------------------------------------------------------------
    def validate(self, model, *, full: bool = False) -> dict[str, Any]:
        """harmbench metrics on ``data.validation`` (first ``val_samples`` samples unless ``full``)."""
        from harmbench.train.evaluate import evaluate

        d = self.cfg.data
        return evaluate(
            model,
            self.data_dir,
            d.validation,
            image_size=d.image_size,
            batch_size=d.val_batch_size,
            max_samples=0 if full else d.val_samples,
            device=self.device,
        )

    # -- logging ----------------------------------------------------------------------
    def _log(self, record: Mapping[str, Any]) -> None:
        with open(self.out_dir / "train_log.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True, default=float) + "\n")

    # -- resume -----------------------------------------------------------------------
    def _check_resume(self, meta: Mapping[str, Any], model, digest: str, where: str) -> None:
        if meta.get("model") != self.cfg.model.name:
            raise ConfigError(
                "model.name", f"{where}: checkpoint is for {meta.get('model')!r}, config trains {self.cfg.model.name!r}"
            )
        model.check_config(meta["model_config"])
        saved_cfg = meta.get("train_config", {})
        diffs = diff_configs(
            saved_cfg, self.cfg.to_dict(), ignore=RESUMABLE_CHANGES | {"model.options", "model.preset"}
        )
        if diffs:
            f = diffs[0]
            sec, _, key = f.partition(".")
            mine = self.cfg.to_dict().get(sec, {})
            theirs = saved_cfg.get(sec, {})
            a = theirs.get(key) if isinstance(theirs, Mapping) else theirs
            b = mine.get(key) if isinstance(mine, Mapping) else mine
            raise ConfigError(f, f"{where}: checkpoint was trained with {a!r}, this config has {b!r}")
        saved_hash = meta.get("dataset", {}).get("index_sha256")
        if saved_hash != digest:
            raise ConfigError(
                "data.index_sha256",
                f"{where}: checkpoint was trained on shards with index sha256 {saved_hash}, {self.data_dir} has {digest}",
            )
        if int(meta["step"]) >= self.cfg.train.steps:
            raise UserError(
                f"{where}: already trained to step {meta['step']} >= train.steps {self.cfg.train.steps}; raise --steps"
            )

    # -- main loop --------------------------------------------------------------------
    def run(self) -> TrainResult:
        from harmbench.models import get_model

        cfg, d, t = self.cfg, self.cfg.data, self.cfg.train
        info = preflight(self.data_dir, cfg, self.spec)
        digest = info["index_sha256"]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        last = latest_checkpoint(self.ckpt_dir)
        if last is not None and not self.resume:
            raise UserError(
                f"{self.out_dir} already has checkpoints (last: {last.name}); pass --resume to continue or choose another --out"
            )
        if self.resume and last is None:
            raise UserError(f"--resume: no checkpoint in {self.ckpt_dir}")

        model = get_model(cfg.model.name, seed=t.seed, preset=cfg.model.preset, **cfg.model.options).to(self.device)
        opts = make_optimizers(
            model, self.spec, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
        )
        base_lr = {k: o.param_groups[0]["lr"] for k, o in opts.items()}
        adtype = amp_dtype(t.amp, self.device)
        scaler = torch.amp.GradScaler("cuda") if adtype == torch.float16 else None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(t.seed + 7919)
        ctx = StepContext(self.loss_cfg, amp_dtype=adtype, scaler=scaler, generator=gen, grad_clip=cfg.optim.grad_clip)

        start, epoch, in_epoch = 0, 0, 0
        last_val: dict[str, Any] = {}
        if self.resume:
            assert last is not None
            jp, meta = read_sidecar(last)
            self._check_resume(meta, model, digest, str(jp))
            load_weights_into(model, jp.with_name(meta["weights"]), where=str(jp))
            state = torch.load(jp.with_name(meta["state"]), map_location="cpu", weights_only=True)
            for k, o in opts.items():
                o.load_state_dict(state["optimizers"][k])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"], gen)
            start = int(meta["step"])
            epoch, in_epoch = int(meta["data_position"]["epoch"]), int(meta["data_position"]["batches"])
            last_val = meta.get("validation", {})
        else:
            torch.manual_seed(t.seed)
            for f in ("train_log.jsonl",):
                if (self.out_dir / f).exists():
                    (self.out_dir / f).unlink()
        write_json(
            self.out_dir / "train_config.json",
            {
                "train_config": cfg.to_dict(),
                "model_config": model.config_dict(),
                "command": self.command,
                "dataset": {"path": str(self.data_dir), **info},
            },
        )

        from tqdm import tqdm

        pbar = tqdm(total=t.steps, initial=start, disable=not self.progress, dynamic_ncols=True, desc=cfg.model.name)
        batches = self._batches(epoch, in_epoch)
        busy = 0.0
        n_samples = 0
        window: dict[str, list[float]] = {}
        last_ckpt = last
        t_run = time.perf_counter()
        step = start
        try:
            for step in range(start, t.steps):
                t0 = time.perf_counter()
                epoch, idx, batch = next(batches)
                check_batch(batch)
                batch = self._to_device(batch)
                f = lr_factor(step, t.steps, cfg.optim.schedule, cfg.optim.decay_start)
                for k, o in opts.items():
                    for g in o.param_groups:
                        g["lr"] = base_lr[k] * f
                ctx.step = step
                model.train()
                terms = self.spec.step(model, batch, opts, ctx)
                if scaler is not None:
                    scaler.update()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t0
                busy += dt
                n_samples += batch["composite"].shape[0]
                in_epoch = idx + 1
                done = step + 1
                for k, v in terms.items():
                    window.setdefault(k, []).append(v)
                sps = n_samples / busy if busy > 0 else 0.0
                pbar.set_postfix(loss=f"{terms['loss']:.4g}", sps=f"{sps:.2f}")
                pbar.update(1)
                if done % t.log_every == 0 or done == t.steps:
                    self._log(
                        {
                            "step": done,
                            "epoch": epoch,
                            "lr": base_lr[next(iter(base_lr))] * f,
                            "samples_per_s": sps,
                            **{k: float(np.mean(v)) for k, v in window.items()},
                        }
                    )
                    window = {}
                final = done == t.steps
                if d.validation and (
                    (done % t.validate_every == 0 and not final) or (final and t.final_validation != "none")
                ):
                    last_val = self.validate(model, full=final and t.final_validation == "full")
                    self._log({"step": done, "validation": last_val})
                    pbar.write(
                        f"step {done}: {d.validation} MSE {last_val['mse']:.2f} fMSE {last_val['fmse']:.2f} "
                        f"PSNR {last_val['psnr']:.2f} (n={last_val['n']})"
                    )
                if done % t.checkpoint_every == 0 or final:
                    last_ckpt = save_checkpoint(
                        self.ckpt_dir,
                        step=done,
                        model=model,
                        optimizers=opts,
                        scaler=scaler,
                        generator=gen,
                        keep=t.keep_checkpoints,
                        sidecar={
                            "train_config": cfg.to_dict(),
                            "dataset": {
                                "index_sha256": digest,
                                "path": str(self.data_dir),
                                "name": info["name"],
                                "splits": info["splits"],
                            },
                            "data_position": {"epoch": epoch, "batches": in_epoch},
                            "validation": last_val,
                            "command": self.command,
                            "samples_per_s": sps,
                        },
                    )
        except NonFiniteLossError as exc:
            note = (
                f"; last good checkpoint: {last_ckpt} (nothing written after it)"
                if last_ckpt
                else "; no checkpoint was written"
            )
            self._log({"step": exc.step, "error": str(exc)})
            raise NonFiniteLossError(exc.step, exc.term, exc.value, exc.keys, note) from None
        finally:
            pbar.close()
        train_time = time.perf_counter() - t_run
        result = TrainResult(self.out_dir, t.steps, last_ckpt, n_samples / busy if busy else 0.0, train_time, last_val)
        write_json(
            self.out_dir / "result.json",
            {
                "steps": t.steps,
                "resumed_from": start,
                "checkpoint": str(last_ckpt),
                "samples_per_s": result.samples_per_s,
                "train_time_s": train_time,
                "validation": last_val,
                "device": str(self.device),
                "threads": torch.get_num_threads(),
            },
        )
        return result


def train(cfg: TrainConfig, data_dir: str | os.PathLike, out_dir: str | os.PathLike, **kwargs: Any) -> TrainResult:
    """Functional form of :class:`Trainer` (``device``, ``resume``, ``progress``, ``command``)."""
    return Trainer(cfg, data_dir, out_dir, **kwargs).run()


__all__ = ["TrainResult", "Trainer", "amp_dtype", "lr_factor", "preflight", "resolve_device", "train"]
