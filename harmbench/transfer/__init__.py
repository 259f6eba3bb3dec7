"""Foreground colour-transfer operations (pure numpy functions), and :func:`transfer`.

:func:`transfer` (``harmbench transfer``) applies an op, or HEN/CTN, to whole photos, to a
region of one photo from a region of another (or the same) photo, or label by label; see
:mod:`harmbench.transfer._apply`.

Every op has the signature::

    op(image, mask, ref_image=None, ref_mask=None, *, rng=None, **params) -> np.ndarray

* ``image``: ``float32 (H, W, 3)`` RGB on the 0–1 scale (the photo to edit).
  Values above 1 (a 0–255 image passed by mistake) raise ``ValueError``.
* ``mask``: ``bool (H, W)``: the foreground to recolour. Pixels outside it are
  returned unchanged (bit-exact). Non-bool masks raise ``TypeError`` (binarise
  raw 0–255 masks first, e.g. :func:`harmbench.imaging.binarize`).
* ``ref_image``/``ref_mask``: the reference region ``ref_image[ref_mask]``
  whose statistics drive the transfer (another photo's object for HCOCO-style
  synthesis, or the same photo's background ``~mask`` for harmonization
  baselines). ``ref_image`` may have another size than ``image``; when it is
  ``None`` but ``ref_mask`` is given, the reference is ``image[ref_mask]``.
  Ops that need no reference (``hue``) ignore both.
* ``rng``: ``numpy.random.Generator`` for ops with randomness (IDT rotations,
  hue amounts); deterministic given the generator.
* returns ``float32 (H, W, 3)`` on 0–1 (clipped).

Errors: an empty foreground or empty reference region raises ``ValueError``
naming which; ops needing a reference raise ``ValueError`` without one.
Single-colour regions are defined per op (see each module); nothing divides
by zero. A constant foreground becomes the reference's mean colour for
``xiao``/``idt`` (the lαβ mean for ``reinhard``); the quantile ops
(``histmatch``/``ychist``) follow their rank rule (the top of the reference
range). A constant reference collapses the foreground onto that colour.

Ops (``TRANSFERS[name]``):

=============  ================================================================
``reinhard``   Reinhard 2001 mean/std transfer in lαβ (:mod:`.reinhard`)
``histmatch``  per-channel CDF matching, skimage semantics (:mod:`.histogram`)
``ychist``     iHarmony4 cumulative histogram mapping in YCbCr (:mod:`.histogram`)
``xiao``       Xiao–Ma 2006 mean/covariance transfer in RGB (:mod:`.xiao`)
``idt``        Pitié iterative distribution transfer + regrain (:mod:`.idt`)
``hue``        HSV hue rotation / saturation scale, Lab L kept (:mod:`.hue`)
=============  ================================================================

Recordable parameters. For the sample JSON, draw an op's random parameters
first and pass them explicitly, so that the output is a pure function of the
recorded values::

    params = sample_params("hue", rng)      # {'hue_shift': 0.41, 'sat_scale': 0.87}
    out = get_transfer("hue")(image, mask, **params)

``sample_params`` returns ``{}`` for deterministic ops, ``{'seed': int}`` for
``idt`` and ``{'hue_shift', 'sat_scale'}`` for ``hue``; every value is a plain
JSON-serialisable Python scalar. Passing ``rng=`` instead draws the same kind of
parameters inside the op (not recorded).

Cropping (``crop_mode(name)``). On large photos the caller may hand an op
much less than the whole frame, when the op says that gives the same
foreground:

* ``"pixel"``: the output at a foreground pixel is a function of that pixel's
  colour alone (given the parameters), so the op may be run on the distinct
  colours only, e.g. as a ``1×K`` image with an all-true mask (``hue``).
* ``"mask"``: the output on the mask is a function of the sequence
  ``image[mask]`` (raster order) and of the reference pixels
  ``ref_image[ref_mask]`` only, so any image/mask pair listing the same
  pixels in the same order gives identical foreground values, e.g. the mask's
  bounding box, or the pixel list as a ``1×N`` image with an all-true mask
  (``reinhard``, ``histmatch``, ``ychist``, ``xiao``). ``"pixel"`` ops are
  ``"mask"`` ops too.
* ``"frame"``: as ``"mask"``, but the result also depends on the size of the
  frame and on where the mask lies in it; the op takes
  ``frame=(H, W, top, left)`` saying that ``image`` is the window of an
  ``H×W`` frame starting at ``(top, left)`` (``idt``: its regrain pyramid);
  the window must contain the whole mask. The reference is used through its
  pixels only, as for ``"mask"``.
* ``None`` (ops registered without ``crop=``): the op may read any pixel, so
  it gets the whole frame and the whole reference photo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

TRANSFERS: dict[str, Callable[..., np.ndarray]] = {}
SAMPLERS: dict[str, Callable[[np.random.Generator], dict[str, Any]]] = {}
_NEEDS_REFERENCE: dict[str, bool] = {}
_CROP: dict[str, str | None] = {}
_COST: dict[str, float] = {}
#: Cost assumed for an op registered without ``cost=`` (seconds per foreground megapixel).
DEFAULT_COST = 0.3
CROP_MODES = ("pixel", "mask", "frame")


def register_transfer(
    name: str,
    *,
    sampler: Callable[[np.random.Generator], dict[str, Any]] | None = None,
    needs_reference: bool = True,
    crop: str | None = None,
    cost: float = DEFAULT_COST,
):
    """Decorator registering ``fn`` as colour transfer ``name``.

    ``sampler(rng) -> dict`` draws the op's random parameters (see
    :func:`sample_params`); ``needs_reference`` is False for ops such as ``hue``;
    ``crop`` (``"pixel"``, ``"mask"``, ``"frame"`` or None) says what less than
    the whole frame callers may pass (module docstring); ``cost`` is the op's
    time per megapixel of foreground, in seconds on one core (see :func:`transfer_cost`).
    """
    if crop is not None and crop not in CROP_MODES:
        raise ValueError(f"register_transfer({name!r}): crop must be one of {CROP_MODES} or None, got {crop!r}")

    def deco(fn):
        TRANSFERS[name] = fn
        _NEEDS_REFERENCE[name] = needs_reference
        _CROP[name] = crop
        _COST[name] = float(cost)
        if sampler is not None:
            SAMPLERS[name] = sampler
        return fn

    return deco


def get_transfer(name: str) -> Callable[..., np.ndarray]:
    """The op registered as ``name``; ``KeyError`` listing the known names."""
    _load_all()
    try:
        return TRANSFERS[name]
    except KeyError:
        raise KeyError(f"unknown colour transfer {name!r}; known: {', '.join(sorted(TRANSFERS))}") from None


def available_transfers() -> list[str]:
    """Sorted names of all registered ops."""
    _load_all()
    return sorted(TRANSFERS)


def sample_params(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """Draw op ``name``'s random parameters from ``rng`` as a JSON-ready dict.

    Pass the result as keyword arguments to the op. Deterministic ops return
    ``{}`` (and consume nothing from ``rng``).
    """
    get_transfer(name)  # validates the name
    sampler = SAMPLERS.get(name)
    return {} if sampler is None else sampler(rng)


def needs_reference(name: str) -> bool:
    """Whether op ``name`` uses ``ref_image``/``ref_mask``."""
    get_transfer(name)
    return _NEEDS_REFERENCE.get(name, True)


def crop_mode(name: str) -> str | None:
    """What op ``name`` may be given instead of the whole frame: ``"pixel"``, ``"mask"``, ``"frame"`` or None."""
    get_transfer(name)
    return _CROP.get(name)


def transfer_cost(name: str) -> float:
    """Estimated seconds per megapixel of foreground for op ``name`` on one CPU core.

    Measured through the recipes' path (a 6000×4000 frame, regions of 0.5–4 MP, and a
    0.15 MP region of a FiveK photo) on one core of a 2-core AMD EPYC machine. Only
    the ratios between ops matter: the build engine orders its shard tasks by these
    estimates (:meth:`harmbench.recipes.Recipe.cost`), which never changes an output.
    """
    get_transfer(name)
    return _COST.get(name, DEFAULT_COST)


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def __getattr__(name: str):
    """``transfer`` (photo-to-photo and region-to-region transfer) is loaded on first use."""
    if name == "transfer":
        import importlib

        return importlib.import_module(f"{__name__}._apply").transfer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SAMPLERS",
    "TRANSFERS",
    "available_transfers",
    "crop_mode",
    "get_transfer",
    "needs_reference",
    "register_transfer",
    "sample_params",
    "transfer",
]
