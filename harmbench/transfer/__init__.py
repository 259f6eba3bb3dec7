"""Foreground colour-transfer operations (pure numpy functions).

Every op has the signature::

    op(image, mask, ref_image=None, ref_mask=None, *, rng=None, **params) -> np.ndarray

* ``image``: ``float32 (H, W, 3)`` RGB on the 0–1 scale (the photo to edit).
* ``mask``: ``bool (H, W)``: the foreground to recolour. Pixels outside it are
  returned unchanged (bit-exact).
* ``ref_image``/``ref_mask``: the reference region whose statistics drive the
  transfer (another photo's object for HCOCO-style synthesis, or the same
  photo's background ``~mask`` for harmonization baselines). Ops that need no
  reference (``hue``) ignore them.
* ``rng``: ``numpy.random.Generator`` for ops with randomness (IDT rotations,
  hue amounts); deterministic given the generator.
* returns ``float32 (H, W, 3)`` on 0–1 (clipped).

``TRANSFERS[name]`` maps names to ops; each module registers its ops with
:func:`register_transfer`.
"""

from __future__ import annotations

from collections.abc import Callable

TRANSFERS: dict[str, Callable] = {}


def register_transfer(name: str):
    def deco(fn):
        TRANSFERS[name] = fn
        return fn

    return deco


def get_transfer(name: str) -> Callable:
    _load_all()
    try:
        return TRANSFERS[name]
    except KeyError:
        raise KeyError(f"unknown colour transfer {name!r}; known: {', '.join(sorted(TRANSFERS))}") from None


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["TRANSFERS", "get_transfer", "register_transfer"]
