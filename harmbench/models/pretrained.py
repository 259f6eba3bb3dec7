"""Committed baseline weights, loaded by name.

``load_pretrained("hen-ctn-cpu")`` loads ``baselines/weights/hen-ctn-cpu.safetensors`` (+ its
``.json`` sidecar) from the repository checkout, or from ``$HARMBENCH_WEIGHTS`` when set, verifies
the weights against the recorded model config and sha256, and returns the model in eval mode
(float32). The same names are registered in the model registry, so
``harmbench.models.get_model("hen-ctn-cpu")`` works too. Exporting such files from a training
run is :func:`harmbench.train.pretrained.export_pretrained`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import UserError
from harmbench.models.base import register_model
from harmbench.models.checkpoints import load_checkpoint

#: Pretrained names -> the model they hold.
PRETRAINED = {"hen-ctn-cpu": "hen-ctn", "dovenet-cpu": "dovenet", "bargainnet-cpu": "bargainnet"}


def weights_dir() -> Path:
    """``$HARMBENCH_WEIGHTS`` or ``<repository>/baselines/weights``."""
    env = os.environ.get("HARMBENCH_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "baselines" / "weights"


def pretrained_path(name: str) -> Path:
    """Path of the weights file of pretrained ``name`` (``UserError`` if absent)."""
    p = weights_dir() / f"{name}.safetensors"
    if not p.is_file():
        known = sorted(q.stem for q in weights_dir().glob("*.safetensors")) if weights_dir().is_dir() else []
        raise UserError(
            f"pretrained weights {name!r} not found at {p} (available: {', '.join(known) or 'none'}; "
            "set HARMBENCH_WEIGHTS to the folder holding them)"
        )
    return p


def load_pretrained(name: str, *, device: str | torch.device = "cpu", **overrides: Any) -> torch.nn.Module:
    """Load committed weights ``name`` (e.g. ``"hen-ctn-cpu"``) as an eval-mode model on ``device``.

    ``overrides``: run-time config fields (e.g. ``protocol``); the weights' own fields cannot change.
    """
    expect = PRETRAINED.get(name)
    return load_checkpoint(pretrained_path(name), device=device, expect_model=expect, overrides=overrides)


def _builder(pname: str):
    def build(device: str | torch.device = "cpu", **overrides: Any) -> torch.nn.Module:
        return load_pretrained(pname, device=device, **overrides)

    build.__name__ = f"build_{pname.replace('-', '_')}"
    build.__doc__ = f"The committed CPU baseline {pname!r} (trained weights; see baselines/README.md)."
    return build


for _name in PRETRAINED:
    register_model(_name)(_builder(_name))


__all__ = ["PRETRAINED", "load_pretrained", "pretrained_path", "weights_dir"]
