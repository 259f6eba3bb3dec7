"""``harmbench train CONFIG.toml --data SHARDS``: train a learned baseline on built shards."""

from __future__ import annotations

import argparse
import shlex
import sys

NAME = "train"
HELP = "Train a learned baseline (hen-ctn, dovenet, bargainnet, pctnet-cnn, pctnet-vit) on built shards."
DESCRIPTION = (
    "Train the model of a training TOML (see baselines/*.toml) on the shards of a built dataset. "
    "Checkpoints (safetensors + JSON sidecar) go to OUT/checkpoints; --resume continues exactly where "
    "the last one stopped. --export writes float16 inference weights plus a sidecar after training."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training config TOML (e.g. baselines/hen-ctn-cpu.toml)")
    p.add_argument("--data", required=True, help="built dataset directory (with index.json)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--seed", type=int, default=None, help="override train.seed")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch.set_num_threads)")
    p.add_argument(
        "--export",
        default=None,
        metavar="FILE.safetensors",
        help="after training, export float16 inference weights + sidecar here",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    if "torch" not in sys.modules:
        # OpenMP threads that spin while waiting stall badly when the cores are shared
        # with other processes; sleeping waits cost little when they are not.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from harmbench.train.config import load_train_config
    from harmbench.train.trainer import Trainer

    if args.threads is not None:
        if args.threads < 1:
            print("harmbench train: error: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    overrides = {}
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    cfg = load_train_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    command = "harmbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    trainer = Trainer(
        cfg,
        args.data,
        out,
        device=args.device,
        resume=args.resume,
        progress=False if args.no_progress else None,
        command=command,
    )
    res = trainer.run()
    v = res.validation
    line = f"trained {cfg.model.name} to step {res.steps} in {res.train_time_s:.0f} s ({res.samples_per_s:.2f} samples/s) -> {res.checkpoint}"
    print(line)
    if v:
        print(
            f"validation ({cfg.data.validation}, n={v.get('n')}): MSE {v['mse']:.2f}  fMSE {v['fmse']:.2f}  PSNR {v['psnr']:.2f}"
        )
    if args.export:
        from harmbench.train.pretrained import export_pretrained

        shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "labelme_outdoor"
        side = export_pretrained(
            res.checkpoint,
            args.export,
            extra={"train_time_s": res.train_time_s, "samples_per_s": res.samples_per_s},
            evaluate_data=args.data if cfg.data.validation else None,
            reference_root=shared if shared.is_dir() else None,
        )
        print(f"exported {args.export} (+ {side.name})")
    return 0
