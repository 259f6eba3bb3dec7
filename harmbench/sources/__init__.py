"""Sources: turn datasets on disk into records (:mod:`harmbench.sources.base`).

Registry: ``SOURCES[name]`` is a callable ``(**options) -> list[Record]`` with
records sorted by key (deterministic plans depend on it). Each source module
registers itself with :func:`register_source`.

Skip convention (all sources): the callable returns a
:class:`~harmbench.sources.base.SourceRecords`, a ``list`` subclass holding the
records plus two attributes:

* ``skipped``: bad inputs left out, one ``{"path": ..., "reason": ...}`` each
  (missing or unreadable image, mask/image size mismatch, empty or
  out-of-range mask or polygon, malformed annotation). A bad input never stops
  a source; it is skipped and counted here.
* ``filtered``: ``{reason: count}`` of valid objects dropped on purpose by
  filters (``iscrowd``, ``category``, ``min_area``, ``max_objects_per_image`` …).

Object sources (``coco``, ``labelme``, ``fivek``, ``folder``, ``demo``) share the
per-object filters of :func:`harmbench.sources.coco.apply_object_filters`:
``categories``, ``exclude_categories``, ``min_area``, ``max_area``,
``min_fg_ratio``, ``max_fg_ratio``, ``max_objects_per_image``.
"""

from __future__ import annotations

from collections.abc import Callable

from harmbench.sources.base import ObjectRecord, SourceRecords, TripletRecord, make_key, skip_entry

SOURCES: dict[str, Callable[..., list]] = {}


def register_source(name: str):
    def deco(fn):
        SOURCES[name] = fn
        return fn

    return deco


def get_source(name: str) -> Callable[..., list]:
    _load_all()
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}") from None


def _load_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = [
    "SOURCES",
    "ObjectRecord",
    "SourceRecords",
    "TripletRecord",
    "get_source",
    "make_key",
    "register_source",
    "skip_entry",
]
