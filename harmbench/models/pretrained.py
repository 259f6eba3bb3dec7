"""Committed baseline weights, loaded by name.

``load_pretrained("hen-ctn-cpu")`` loads ``hen-ctn-cpu.safetensors`` (+ its ``.json`` sidecar)
from the weights cache (``$HARMBENCH_WEIGHTS``, default ``~/.cache/harmbench/weights``; a copy
there takes precedence) or else from ``baselines/weights/`` in the repository checkout, verifies
the weights against the recorded model config and sha256, and returns the model in eval mode
(float32). The same names are registered in the model registry, so
``harmbench.models.get_model("hen-ctn-cpu")`` works too, and each has a model card (its files,
their sha256 from the committed sidecar), so ``--weights hen-ctn-cpu`` and ``harmbench weights
list`` know them. Exporting such files from a training run is
:func:`harmbench.train.pretrained.export_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import UserError
from harmbench.models.base import register_model
from harmbench.models.cards import ModelCard, WeightFile, register_card
from harmbench.models.checkpoints import load_checkpoint
from harmbench.models.weights_cache import cache_dir, committed_dir, search_dirs

#: Pretrained names -> the model they hold.
PRETRAINED = {
    "hen-ctn-cpu": "hen-ctn",
    "dovenet-cpu": "dovenet",
    "bargainnet-cpu": "bargainnet",
    "pctnet-cnn-cpu": "pctnet-cnn",
}


def weights_dir() -> Path:
    """The folder searched first: the weights cache (:func:`harmbench.models.weights_cache.cache_dir`)."""
    return cache_dir()


def pretrained_path(name: str) -> Path:
    """Path of the weights file of pretrained ``name``: the first ``<name>.safetensors`` in
    :func:`~harmbench.models.weights_cache.search_dirs` (the cache, then the committed folder);
    ``UserError`` naming the folders searched if absent."""
    dirs = search_dirs()
    for d in dirs:
        for p in (d / f"{name}.safetensors", d / name / f"{name}.safetensors"):  # flat, or a card's cache folder
            if p.is_file():
                return p
    known = sorted({q.stem for d in dirs if d.is_dir() for q in d.glob("*.safetensors")})
    raise UserError(
        f"pretrained weights {name!r} not found as {name}.safetensors in {', '.join(map(str, dirs))} "
        f"(available: {', '.join(known) or 'none'}; set HARMBENCH_WEIGHTS to the folder holding them)"
    )


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


def committed_card(name: str) -> ModelCard:
    """The model card of committed weights ``name``: the ``.safetensors`` file (size from disk, sha256
    from the committed sidecar) and its ``.json`` sidecar; no download link (they ship with harmbench)."""
    folder = committed_dir()
    weights, sidecar = folder / f"{name}.safetensors", folder / f"{name}.json"
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    where = "committed with harmbench as baselines/weights/{} (a repository checkout has it)"
    return ModelCard(
        name=name,
        model=PRETRAINED[name],
        source=f"harmbench: baselines/weights/ (trained with baselines/{name}.toml; see baselines/README.md)",
        code_license="Apache-2.0",
        weights_license="Apache-2.0 (harmbench)",
        files=(
            WeightFile(
                "weights",
                weights.name,
                sha256=meta.get("weights_sha256"),
                size=weights.stat().st_size if weights.is_file() else None,
                manual=where.format(weights.name),
            ),
            WeightFile("sidecar", sidecar.name, manual=where.format(sidecar.name)),
        ),
        protocol="harmbench",
        notes="harmbench checkpoint (safetensors + JSON sidecar): the model normalises its own input, so the card's "
        "mean/std are not used; trained at 128x128 on CPU on the labelme-outdoor train split (research-use "
        "photos), best run at about that size.",
    )


for _name in PRETRAINED:
    register_model(_name)(_builder(_name))
    register_card(committed_card(_name))


__all__ = ["PRETRAINED", "committed_card", "load_pretrained", "pretrained_path", "weights_dir"]
