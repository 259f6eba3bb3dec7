"""Committed baseline weights: export from a training checkpoint, and check them.

Loading by name (``load_pretrained("hen-ctn-cpu")``, ``get_model("hen-ctn-cpu")``) lives in
:mod:`harmbench.models.pretrained` and is re-exported here.

:func:`export_pretrained` turns a training checkpoint into such a file: inference weights only
(DoveNet's discriminator dropped, its config saying so), floating tensors stored as float16,
with a sidecar recording the model config, train config, exact command, dataset index hash, step
and evaluation numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harmbench.errors import UserError
from harmbench.models.pretrained import PRETRAINED, load_pretrained, pretrained_path, weights_dir  # noqa: F401


def export_pretrained(
    checkpoint: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float16,
    extra: Mapping[str, Any] | None = None,
    evaluate_data: str | os.PathLike | None = None,
    evaluate_split: str | None = None,
    reference_root: str | os.PathLike | None = None,
) -> Path:
    """Write ``dest`` (``.safetensors``) + ``dest.json`` from a training checkpoint; returns the sidecar path.

    With ``evaluate_data`` (the training shards) the exported weights are scored on
    ``evaluate_split`` (default: the config's validation split, whole) at the training image size
    and the numbers go to the sidecar's ``"evaluation"``; with ``reference_root`` (the LabelMe
    outdoor photos) the per-sample :func:`reference_check` goes to ``"reference_check"``.
    """
    from harmbench.models import get_model
    from harmbench.train.checkpoint import (
        FORMAT,
        load_checkpoint,
        read_sidecar,
        save_weights,
        sha256_file,
        write_json,
    )

    jp, meta = read_sidecar(checkpoint)
    model = load_checkpoint(jp)
    cfg = model.config_dict()  # type: ignore[attr-defined]
    name = cfg.pop("model")
    if name == "dovenet" and cfg.get("discriminator"):
        slim = get_model("dovenet", **{**cfg, "discriminator": False})
        slim.generator.load_state_dict(model.generator.state_dict())  # type: ignore[attr-defined]
        model = slim
    dest = Path(dest)
    if dest.suffix != ".safetensors":
        raise UserError(f"{dest}: export destination must end in .safetensors")
    dest.parent.mkdir(parents=True, exist_ok=True)
    from harmbench.train.checkpoint import state_dict_for_save

    save_weights(dest, state_dict_for_save(model, dtype), {"format": FORMAT, "model": name})
    sidecar = {
        "format": FORMAT,
        "model": name,
        "model_config": model.config_dict(),  # type: ignore[attr-defined]
        "weights": dest.name,
        "weights_sha256": sha256_file(dest),
        "dtype": str(dtype).replace("torch.", ""),
        "parameters": sum(p.numel() for p in model.parameters()),
        "step": meta["step"],
        "train_config": meta.get("train_config"),
        "dataset": meta.get("dataset"),
        "command": meta.get("command"),
        "validation": meta.get("validation"),
        "source_checkpoint": {"sidecar": jp.name, "weights_sha256": meta.get("weights_sha256")},
        "torch_version": torch.__version__,
        **dict(extra or {}),
    }
    out = dest.with_suffix(".json")
    write_json(out, sidecar)
    if evaluate_data is not None or reference_root is not None:
        from harmbench.models.checkpoints import load_checkpoint as _load

        exported = _load(dest)
        tc = meta.get("train_config") or {}
        size = int(tc.get("data", {}).get("image_size", 128))
        if evaluate_data is not None:
            from harmbench.train.evaluate import evaluate

            split = evaluate_split or tc.get("data", {}).get("validation") or "test"
            sidecar["evaluation"] = evaluate(exported, evaluate_data, split, image_size=size, batch_size=16)
        if reference_root is not None:
            sidecar["reference_check"] = reference_check(exported, reference_root, size=size)
        write_json(out, sidecar)
    return out


def reference_samples(root: str | os.PathLike, *, n: int = 6, size: int = 128) -> dict[str, Any]:
    """Fixed check samples from the LabelMe-outdoor photos (COCO layout under ``root``).

    The first ``n`` objects by key; each photo and mask resized to ``size × size`` (bilinear with
    antialiasing / nearest, as the training loader), quantised to 8 bit; the composite is the
    real photo with its foreground hue rotated by ``0.2 + 0.1·i`` turns (saturation kept).
    Returns ``{"keys", "composite", "real", "mask"}`` with RGB 0–1 ``(n,3,S,S)``, mask {0,1}.
    """
    import numpy as np
    import torch.nn.functional as F

    from harmbench.imaging import read_rgb
    from harmbench.sources import get_source
    from harmbench.train.steps import hsv_to_rgb, rgb_to_hsv

    records = sorted(get_source("coco")(root=root, check_images=False), key=lambda r: r.key)[:n]
    if not records:
        raise UserError(f"{root}: no objects found")
    reals, masks = [], []
    for r in records:
        img = (
            torch.from_numpy(np.array(read_rgb(r.image_path), dtype=np.uint8, copy=True)).permute(2, 0, 1).float()[None]
            / 255.0
        )
        m = torch.from_numpy(r.decode_mask().astype(np.float32))[None, None]
        reals.append(F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
        masks.append(F.interpolate(m, size=(size, size), mode="nearest"))
    real = (torch.cat(reals).clamp(0, 1) * 255).round() / 255
    mask = torch.cat(masks)
    hsv = rgb_to_hsv(real)
    delta = torch.tensor([0.2 + 0.1 * i for i in range(len(records))]).view(-1, 1, 1)
    shifted = hsv_to_rgb(torch.stack([(hsv[:, 0] + delta) % 1.0, hsv[:, 1], hsv[:, 2]], 1))
    comp = ((shifted * mask + real * (1 - mask)).clamp(0, 1) * 255).round() / 255
    return {"keys": [r.key for r in records], "composite": comp, "real": real, "mask": mask}


def reference_check(model: Any, root: str | os.PathLike, *, n: int = 6, size: int = 128) -> dict[str, Any]:
    """Per-sample harmbench MSE/fMSE (0–255) of ``model`` on :func:`reference_samples`, plus the
    composite's, and the output-vs-input MSE on identical pairs (composite = real)."""
    from harmbench.train.evaluate import score_batch

    s = reference_samples(root, n=n, size=size)
    with torch.no_grad():
        pred = model.harmonize(s["composite"], s["mask"]).float()
        ident = model.harmonize(s["real"], s["mask"]).float()
    v = score_batch(pred, s["real"], s["mask"])
    c = score_batch(s["composite"], s["real"], s["mask"])
    i = score_batch(ident, s["real"], s["mask"])

    def r6(t):
        return [round(float(x), 6) for x in t]

    return {
        "root": "shared/data/labelme_outdoor",
        "size": size,
        "keys": s["keys"],
        "mse": r6(v["mse"]),
        "fmse": r6(v["fmse"]),
        "composite_mse": r6(c["mse"]),
        "composite_fmse": r6(c["fmse"]),
        "identical_mse": r6(i["mse"]),
        "identical_fmse": r6(i["fmse"]),
    }


__all__ = [
    "PRETRAINED",
    "export_pretrained",
    "load_pretrained",
    "pretrained_path",
    "reference_check",
    "reference_samples",
    "weights_dir",
]
