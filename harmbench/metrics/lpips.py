"""LPIPS (AlexNet, v0.1) and masked LPIPS, per image, with offline weight loading.

``lpips`` is the usual LPIPS distance (≥ 0, lower = more similar; typical
values 0–1). ``flpips`` is the mean of LPIPS's spatial map inside the
foreground: ``Σ map·M / ΣM`` (mask-weighted for continuous masks, ``nan`` for
an empty mask). Inputs are 0–255 tensors ``(N, 3, H, W)``; they are mapped to
[-1, 1] here.

Weights: the linear calibration layers ship inside the ``lpips`` wheel; the
AlexNet backbone comes from, in order, the ``weights`` argument, the
``HARMBENCH_LPIPS_ALEX`` environment variable (a torch state dict with
torchvision names ``features.{0,3,6,8,10}.{weight,bias}``), or torchvision's
normal pretrained download/cache.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from harmbench.errors import InputError, UserError

ENV_VAR = "HARMBENCH_LPIPS_ALEX"
_ALEX_CONVS = (0, 3, 6, 8, 10)


def _torchvision_alexnet_features() -> dict[str, Tensor]:
    """AlexNet ``features.*`` weights from torchvision's pretrained cache or download."""
    import torchvision

    model = torchvision.models.alexnet(weights=torchvision.models.AlexNet_Weights.IMAGENET1K_V1)
    return {f"features.{k}": v for k, v in model.features.state_dict().items()}


def _read_features(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise InputError(str(path), "LPIPS AlexNet weights file not found")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user input problem
        raise InputError(str(path), f"cannot read LPIPS AlexNet weights ({exc})") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise InputError(str(path), "not a state dict")
    missing = [f"features.{i}.{p}" for i in _ALEX_CONVS for p in ("weight", "bias") if f"features.{i}.{p}" not in sd]
    if missing:
        raise InputError(str(path), f"not torchvision AlexNet weights: missing {', '.join(missing)}")
    return sd


def load_lpips(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """Build ``lpips.LPIPS(net='alex', version='0.1')`` in eval mode on ``device``.

    ``weights``: path to an AlexNet ``features.*`` state dict; else ``$HARMBENCH_LPIPS_ALEX``;
    else torchvision's pretrained weights (download or ``$TORCH_HOME`` cache). Raises
    :class:`~harmbench.errors.UserError` naming both offline options when none is usable.
    """
    import lpips as lpips_pkg

    source = weights if weights is not None else os.environ.get(ENV_VAR) or None
    if source is not None:
        feats = _read_features(Path(source))
    else:
        try:
            feats = _torchvision_alexnet_features()
        except Exception as exc:  # noqa: BLE001 - network/cache failures come in many types
            raise UserError(
                "LPIPS needs AlexNet backbone weights and torchvision could not provide them "
                f"({type(exc).__name__}: {exc}). Pass a local file (weights=... / --lpips-weights PATH) "
                f"or set the environment variable {ENV_VAR}=PATH to a state dict with torchvision names "
                "features.{0,3,6,8,10}.{weight,bias}; or pre-fill torchvision's cache ($TORCH_HOME)."
            ) from exc
    with warnings.catch_warnings():  # torchvision's deprecation notes about lpips' `pretrained=` call
        warnings.simplefilter("ignore", UserWarning)
        model = lpips_pkg.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False)
    net_sd = {}
    for sname in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for key in getattr(model.net, sname).state_dict():
            net_sd[f"{sname}.{key}"] = feats[f"features.{key}"]
    model.net.load_state_dict(net_sd, strict=True)
    model.harmbench_weights = str(source) if source is not None else "torchvision:IMAGENET1K_V1"
    return model.eval().requires_grad_(False).to(device)


def target_features(model, target: Tensor) -> list[Tensor]:
    """Unit-normalised AlexNet features of 0–255 images ``(N, 3, H, W)``: one ``(N, C_k, h_k, w_k)``
    float tensor per LPIPS layer, on the model's device.

    They depend on the image only, so the real image's features can be computed once and
    reused for every method scored against it (:mod:`harmbench.metrics.lpips_cache`).
    """
    import lpips as lpips_pkg

    p = next(model.parameters())
    y = target.to(device=p.device, dtype=p.dtype) / 127.5 - 1.0
    with torch.no_grad():
        return [lpips_pkg.normalize_tensor(f) for f in model.net(model.scaling_layer(y))]


def _layer_maps(model, pred: Tensor, target: Tensor | None, target_feats: list[Tensor] | None = None) -> list[Tensor]:
    """Per-layer LPIPS maps ``lin_k(‖φ_k(x) − φ_k(y)‖²)``, each ``(N, 1, h_k, w_k)``.

    ``target_feats`` (from :func:`target_features`) stand for ``target`` when given.
    """
    fy = target_feats if target_feats is not None else target_features(model, target)
    fx = target_features(model, pred)
    with torch.no_grad():
        return [model.lins[k]((fx[k] - fy[k].to(fx[k].device)).square()) for k in range(model.L)]


def _upsampled_sum(layers: list[Tensor], size) -> Tensor:
    return sum(F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in layers)


def lpips_spatial(model, pred: Tensor, target: Tensor) -> Tensor:
    """LPIPS spatial map ``(N, 1, H, W)`` (as ``lpips.LPIPS(spatial=True)``), 0–255 inputs."""
    return _upsampled_sum(_layer_maps(model, pred, target), pred.shape[2:])


def lpips_flpips(
    model, pred: Tensor, target: Tensor | None, mask: Tensor, target_feats: list[Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """Per-image ``(lpips, flpips)``, each ``(N,)`` float32, from one forward pass (batched).

    ``lpips`` equals ``model(x, y)`` (each layer averaged spatially, summed over layers);
    ``flpips`` averages the spatial map (layers upsampled bilinearly to the input size, as
    ``lpips.LPIPS(spatial=True)`` does) inside ``mask``. ``target_feats``: the target's
    :func:`target_features`, computed earlier (``target`` may then be None).
    """
    layers = _layer_maps(model, pred, target, target_feats)
    total = sum(t.mean(dim=(1, 2, 3)) for t in layers)
    spatial = _upsampled_sum(layers, pred.shape[2:])
    m = mask.to(device=spatial.device, dtype=spatial.dtype)
    flp = (spatial * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    return total, flp
