"""Sources: turn datasets on disk into records (:mod:`harmbench.sources.base`).

Registry: ``SOURCES[name]`` is a callable ``(**options) -> list[Record]`` with
records sorted by key (deterministic plans depend on it). Each source module
registers itself with :func:`register_source`.
"""

from __future__ import annotations

from collections.abc import Callable

from harmbench.sources.base import ObjectRecord, TripletRecord, make_key

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


__all__ = ["SOURCES", "ObjectRecord", "TripletRecord", "get_source", "make_key", "register_source"]
