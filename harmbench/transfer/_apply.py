"""Colour transfer between photos and regions: what ``harmbench transfer`` runs.

:func:`transfer` recolours a **source** photo after a **reference** photo (or after another part of
the same photo), in three modes:

* **whole images** (no masks, no labels): the source's colours become the reference's
  (HEN/CTN's own task: FiveK-style pairs);
* **regions** (``source_mask`` and/or ``reference_mask``): only the source region changes, toward
  the colours of the reference region, e.g. an inpainted face area (source region) toward the
  surrounding skin (reference region) of the same photo. Without ``reference_mask`` the reference
  region is the whole reference photo, or, when the reference is the source itself, the rest of it;
* **labels** (``source_labels`` and ``reference_labels``): semantic transfer; every source label
  takes the colours of the same label in the reference (labels absent from the reference keep
  their colours). Label maps are integer ``(H, W)`` arrays or RGB ``(H, W, 3)`` colour maps (one
  colour per label, matched exactly).

Methods: the classical ops of :mod:`harmbench.transfer` (``histmatch``, ``reinhard``, ``ychist``,
``xiao``, ``idt``: each region is matched to its reference region), and ``hen-ctn``, where HEN
encodes the histograms of the regions into codes that are painted on the source regions for the
CTN. ``hen-ctn`` runs under ``protocol="harmbench"`` (torch, any size) or ``"official"`` (the
authors' test chain: :mod:`harmbench.models.hen_ctn_protocol`; the output is then the authors'
crop, (H'−30)×(W'−30) of the source after their 700 px rule).

Images are ``uint8 (H, W, 3)`` RGB on 0–255; masks ``bool (H, W)``; the result is ``uint8``.
Outside the regions the source pixels are kept unless ``keep_all`` (then the network's output is
returned everywhere; classical ops never change pixels outside the regions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harmbench.errors import UserError

#: Methods ``transfer`` accepts.
METHODS = ("histmatch", "reinhard", "ychist", "xiao", "idt", "hen-ctn")
PROTOCOLS = ("harmbench", "official")
#: Weights ``hen-ctn`` uses when none are given: the committed CPU baseline.
DEFAULT_HEN_CTN = "hen-ctn-cpu"


def _check_image(arr: Any, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise UserError(f"{what}: expected a uint8 RGB image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def _check_mask(arr: Any, shape: tuple[int, ...], what: str, image: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.bool_:
        raise UserError(f"{what}: expected a bool mask, got {arr.dtype} (binarise it first)")
    if arr.shape != tuple(shape[:2]):
        raise UserError(f"{what}: mask is {arr.shape[1]}x{arr.shape[0]} but {image} is {shape[1]}x{shape[0]}")
    if not arr.any():
        raise UserError(f"{what}: mask is empty")
    return arr


def label_ids(labels: Any, shape: tuple[int, ...], what: str, image: str) -> np.ndarray:
    """Label map -> ``int64 (H, W)`` ids: integer maps as they are, RGB maps by exact colour (r·2¹⁶ + g·2⁸ + b)."""
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        arr = (arr[..., 0].astype(np.int64) << 16) | (arr[..., 1].astype(np.int64) << 8) | arr[..., 2]
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise UserError(
            f"{what}: expected an integer label map (H, W) or an RGB colour map, got {arr.dtype} {arr.shape}"
        )
    if arr.shape != tuple(shape[:2]):
        raise UserError(f"{what}: label map is {arr.shape[1]}x{arr.shape[0]} but {image} is {shape[1]}x{shape[0]}")
    return arr.astype(np.int64, copy=False)


def region_pairs(
    source: np.ndarray,
    reference: np.ndarray,
    *,
    same_photo: bool,
    source_mask: Any = None,
    reference_mask: Any = None,
    source_labels: Any = None,
    reference_labels: Any = None,
    names: Mapping[str, str] | None = None,
):
    """Validate masks/labels and return :class:`~harmbench.models.hen_ctn_protocol.RegionPairs`."""
    from harmbench.models.hen_ctn_protocol import RegionPairs

    n = {
        "source": "source",
        "reference": "reference",
        "source_mask": "source_mask",
        "reference_mask": "reference_mask",
        "source_labels": "source_labels",
        "reference_labels": "reference_labels",
        **dict(names or {}),
    }
    if (source_labels is None) != (reference_labels is None):
        given = "source_labels" if source_labels is not None else "reference_labels"
        raise UserError(f"{n[given]}: semantic transfer needs both source and reference label maps")
    if source_labels is not None:
        if source_mask is not None or reference_mask is not None:
            raise UserError("give either masks (region transfer) or label maps (semantic transfer), not both")
        src = label_ids(source_labels, source.shape, n["source_labels"], n["source"])
        ref = label_ids(reference_labels, reference.shape, n["reference_labels"], n["reference"])
        ref_present = set(np.unique(ref).tolist())
        sources, refs = [], []
        for lab in np.unique(src).tolist():
            sources.append(src == lab)
            refs.append(ref == lab if lab in ref_present else None)
        if all(r is None for r in refs):
            raise UserError(f"{n['source_labels']} and {n['reference_labels']} share no label")
        return RegionPairs(tuple(sources), tuple(refs), labels=True)
    if source_mask is None and reference_mask is None:
        return RegionPairs()
    s = (
        np.ones(source.shape[:2], bool)
        if source_mask is None
        else _check_mask(source_mask, source.shape, n["source_mask"], n["source"])
    )
    if reference_mask is not None:
        r = _check_mask(reference_mask, reference.shape, n["reference_mask"], n["reference"])
    elif same_photo:
        r = ~s
        if not r.any():
            raise UserError(
                f"{n['source_mask']}: covers the whole photo, nothing is left as reference "
                "(give a reference mask or a reference photo)"
            )
    else:
        r = np.ones(reference.shape[:2], bool)
    return RegionPairs((s,), (r,))


def _changed(pairs) -> np.ndarray | None:
    """Source pixels a transfer may change (``None`` = all)."""
    if pairs.whole:
        return None
    regions = [s for s, r in zip(pairs.source, pairs.reference) if r is not None]
    return np.logical_or.reduce(regions)


def _classical(
    method: str, source: np.ndarray, reference: np.ndarray, pairs, seed: int, params: Mapping[str, Any]
) -> np.ndarray:
    from harmbench.transfer import get_transfer

    op = get_transfer(method)
    src = source.astype(np.float32) / np.float32(255.0)
    ref = reference.astype(np.float32) / np.float32(255.0)
    if pairs.whole:
        jobs = [(np.ones(src.shape[:2], bool), np.ones(ref.shape[:2], bool))]
    else:
        jobs = [(s, r) for s, r in zip(pairs.source, pairs.reference) if r is not None]
    out = src.copy()
    for s, r in jobs:
        try:
            new = op(src, s, ref, r, rng=np.random.default_rng(seed), **params)
        except (ValueError, TypeError) as exc:
            raise UserError(f"transfer --method {method}: {exc}") from None
        out[s] = new[s]
    return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_hen_ctn(
    weights: Any = None, *, protocol: str = "harmbench", options: Mapping[str, Any] | None = None, device: str = "cpu"
):
    """``hen-ctn`` from ``weights`` (the authors' ``C.pth,G.pth`` or a harmbench checkpoint; default:
    the committed CPU weights) with ``protocol`` and model ``options``; eval mode on ``device``."""
    from harmbench.models.official import load_weights
    from harmbench.models.pretrained import pretrained_path

    spec = weights if weights is not None else pretrained_path(DEFAULT_HEN_CTN)
    model = load_weights("hen-ctn", spec, protocol=protocol, **dict(options or {}))
    return model.to(device).eval()


def _hen_ctn(model, source: np.ndarray, reference: np.ndarray, pairs, protocol: str, keep_all: bool) -> np.ndarray:
    import torch

    changed = None if keep_all else _changed(pairs)
    if protocol == "official":
        from harmbench.models.hen_ctn_protocol import official_transfer

        res = official_transfer(model, source, reference, pairs, crop_bug=True)
        if changed is None:
            return res.output
        keep = np.logical_or.reduce([s for s, r in zip(res.regions, pairs.reference) if r is not None])
        return np.where(keep[..., None], res.output, res.source)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255.0

    src_regions = [torch.from_numpy(s) for s in pairs.source]
    ref_regions = [None if r is None else torch.from_numpy(r) for r in pairs.reference]
    out = model.transfer_regions(tensor(source), tensor(reference), src_regions, ref_regions, labels=pairs.labels)
    u8 = (out[0].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return u8 if changed is None else np.where(changed[..., None], u8, source)


def transfer(
    source: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    method: str = "histmatch",
    source_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    source_labels: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    protocol: str = "harmbench",
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    keep_all: bool = False,
    model: Any = None,
    device: str = "cpu",
    names: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Recolour ``source`` after ``reference`` (``None`` = the source itself); see the module docstring.

    ``source``/``reference``: ``uint8 (H, W, 3)`` RGB. ``method``: one of :data:`METHODS`.
    ``weights``/``protocol``/``model``/``device``: ``hen-ctn`` only (``weights``: the authors'
    ``"C.pth,G.pth"`` in any order, or a harmbench checkpoint; default the committed CPU weights;
    ``model``: an already loaded ``hen-ctn``). ``options``: op parameters (classical) or model
    options (``hen-ctn``). ``seed``: for ``idt``'s random rotations. ``names``: what to call the
    inputs in error messages (e.g. file paths). Returns ``uint8 (h, w, 3)``: the source's size, or
    under ``protocol="official"`` the authors' crop of it. Bad input raises :class:`UserError`.
    """
    if method not in METHODS:
        raise UserError(f"unknown transfer method {method!r}; known: {', '.join(METHODS)}")
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    n = {"source": "source", "reference": "reference", **dict(names or {})}
    source = _check_image(source, n["source"])
    same = reference is None
    reference = source if same else _check_image(reference, n["reference"])
    pairs = region_pairs(
        source,
        reference,
        same_photo=same,
        source_mask=source_mask,
        reference_mask=reference_mask,
        source_labels=source_labels,
        reference_labels=reference_labels,
        names=names,
    )
    if method != "hen-ctn":
        if weights is not None or model is not None:
            raise UserError(f"--weights: method {method!r} has no weights (only hen-ctn has)")
        if protocol != "harmbench":
            raise UserError(
                f"--protocol {protocol}: only hen-ctn has an authors' protocol; {method!r} has one behaviour"
            )
        return _classical(method, source, reference, pairs, seed, options or {})
    if model is None:
        model = load_hen_ctn(weights, protocol=protocol, options=options, device=device)
    return _hen_ctn(model, source, reference, pairs, protocol, keep_all)


__all__ = ["DEFAULT_HEN_CTN", "METHODS", "PROTOCOLS", "label_ids", "load_hen_ctn", "region_pairs", "transfer"]
