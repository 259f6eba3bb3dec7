"""Training the learned baselines (``harmbench train``) and loading their weights.

Public API::

    from harmbench.train import load_train_config, Trainer, train, load_checkpoint, load_pretrained

    cfg = load_train_config("baselines/hen-ctn-cpu.toml", {"train.steps": 100})
    result = train(cfg, "/tmp/lo-shards", "/tmp/run", device="auto", resume=False)
    model = load_checkpoint(result.checkpoint)          # eval-mode model, config verified
    model = load_pretrained("hen-ctn-cpu")              # committed weights (baselines/weights/)
    evaluate(model, "/tmp/lo-shards", "test", image_size=128)   # harmbench metrics, 0–255

Modules: :mod:`.config` (TOML -> dataclasses), :mod:`.steps` (per-model step functions, loss
options, batch checks), :mod:`.trainer` (the loop), :mod:`.checkpoint` (safetensors + JSON
sidecar), :mod:`.evaluate` (metrics on a split), :mod:`.pretrained` (export / committed weights).
Attributes load lazily so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "load_train_config": "config",
    "diff_configs": "config",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "train": "trainer",
    "preflight": "trainer",
    "resolve_device": "trainer",
    "STEPS": "steps",
    "StepContext": "steps",
    "StepSpec": "steps",
    "get_step": "steps",
    "make_optimizers": "steps",
    "check_batch": "steps",
    "NonFiniteLossError": "steps",
    "BadBatchError": "steps",
    "load_checkpoint": "checkpoint",
    "read_sidecar": "checkpoint",
    "dataset_index_hash": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "evaluate": "evaluate",
    "load_pretrained": "pretrained",
    "export_pretrained": "pretrained",
    "PRETRAINED": "pretrained",
}

__all__ = [  # noqa: RUF022 (same order as _EXPORTS)
    "TrainConfig",
    "load_train_config",
    "diff_configs",
    "Trainer",
    "TrainResult",
    "train",
    "preflight",
    "resolve_device",
    "STEPS",
    "StepContext",
    "StepSpec",
    "get_step",
    "make_optimizers",
    "check_batch",
    "NonFiniteLossError",
    "BadBatchError",
    "load_checkpoint",
    "read_sidecar",
    "dataset_index_hash",
    "latest_checkpoint",
    "evaluate",
    "load_pretrained",
    "export_pretrained",
    "PRETRAINED",
]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"harmbench.train.{mod}"), name)
