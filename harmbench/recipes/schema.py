"""A small declarative validator: TOML tables -> frozen dataclasses.

Each config section is a frozen dataclass whose fields carry their checks in
``metadata`` (built with :func:`opt`). :func:`from_table` checks the table's
keys (unknown keys are errors), the type of every value (from the field's
annotation) and its range, and raises :class:`~harmbench.errors.ConfigError`
naming the dotted field (``recipes[1].methods``) and the file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from harmbench.errors import ConfigError

MISSING = dataclasses.MISSING


def opt(
    default: Any = MISSING,
    *,
    doc: str = "",
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    nonempty: bool = False,
    unique: bool = False,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field with validation metadata.

    ``ge``/``le``/``gt``/``lt`` bound numbers (or every number of a tuple);
    ``nonempty`` rejects empty strings and tuples; ``unique`` rejects repeated
    tuple items; ``check(value)`` returns an error message or None.
    """
    md = {"doc": doc, "ge": ge, "le": le, "gt": gt, "lt": lt, "nonempty": nonempty, "unique": unique, "check": check}
    if default is MISSING:
        return dataclasses.field(metadata=md)
    return dataclasses.field(default=default, metadata=md)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "none"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"array of {_type_name(args[0])}"
        return f"array of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if origin in (dict, Mapping) or tp in (dict,):
        return "table"
    return getattr(tp, "__name__", str(tp))


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against annotation ``tp``; returns the normalised value (lists -> tuples)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Bad(name, f"must be {_type_name(tp)}")
        last: _Bad | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, name)
            except _Bad as exc:
                last = exc
        if last is not None and last.field != name:
            raise last
        raise _Bad(name, f"must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            raise _Bad(name, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Bad(name, f"must be an {_type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Bad(name, f"must be an {_type_name(tp)}, got {len(value)} item(s)")
        return tuple(coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise _Bad(name, f"must be a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Bad(name, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(name, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(name, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise _Bad(name, f"must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Bad(name, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {name}")  # programming error


def _numbers(value: Any) -> list[float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    if isinstance(value, tuple):
        return [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
    return []


def _check_meta(value: Any, md: Mapping, name: str) -> None:
    if value is None:
        return
    for v in _numbers(value):
        if md.get("ge") is not None and v < md["ge"]:
            raise _Bad(name, f"must be >= {md['ge']}, got {v}")
        if md.get("le") is not None and v > md["le"]:
            raise _Bad(name, f"must be <= {md['le']}, got {v}")
        if md.get("gt") is not None and v <= md["gt"]:
            raise _Bad(name, f"must be > {md['gt']}, got {v}")
        if md.get("lt") is not None and v >= md["lt"]:
            raise _Bad(name, f"must be < {md['lt']}, got {v}")
    if md.get("nonempty") and isinstance(value, str | tuple) and len(value) == 0:
        raise _Bad(name, "must not be empty")
    if md.get("unique") and isinstance(value, tuple) and len(set(value)) != len(value):
        raise _Bad(name, f"must not repeat items, got {list(value)}")
    if md.get("check") is not None:
        msg = md["check"](value)
        if msg:
            raise _Bad(name, msg)


def reject_non_finite(data: Any, path: str | None, where: str = "") -> None:
    """Raise :class:`ConfigError` naming the first NaN or infinite number anywhere in a parsed TOML document.

    TOML allows ``nan`` and ``inf`` literals; no harmbench setting means either.
    """
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(where or "<root>", f"must be a finite number, got {data!r}", path=path)
    if isinstance(data, dict):
        for k, v in data.items():
            reject_non_finite(v, path, f"{where}.{k}" if where else str(k))
    elif isinstance(data, list | tuple):
        for i, v in enumerate(data):
            reject_non_finite(v, path, f"{where}[{i}]")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_table(
    cls: type,
    table: Any,
    where: str,
    path: str | None,
    *,
    skip: frozenset[str] | set[str] = frozenset(),
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """Build ``cls`` from a TOML table, validating every key.

    Args:
        cls: a dataclass made of :func:`opt` fields.
        table: the parsed TOML table (dict).
        where: dotted name of the table (``output``, ``recipes[0]``); '' for the top level.
        path: the config file (named in errors).
        skip: keys of ``table`` that belong to someone else (not unknown, not read).
        extra: values for fields that do not come from the table (already validated).
    """
    prefix = f"{where}." if where else ""
    if not isinstance(table, dict):
        raise ConfigError(where or "<root>", f"must be a table, got {table!r}", path=path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = dict(extra or {})
    for key in table:
        if key not in fields or key in extra:
            if key in skip:
                continue
            known = sorted((set(fields) - set(extra)) | set(skip))
            raise ConfigError(f"{prefix}{key}", f"unknown field (known: {', '.join(known)})", path=path)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in extra:
            values[name] = extra[name]
            continue
        if name in table:
            raw = table[name]
        elif f.default is not MISSING:
            raw = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            raw = f.default_factory()  # type: ignore[misc]
        else:
            raise ConfigError(f"{prefix}{name}", "is required", path=path)
        try:
            value = coerce(raw, hints[name], f"{prefix}{name}")
            _check_meta(value, f.metadata, f"{prefix}{name}")
        except _Bad as exc:
            raise ConfigError(exc.field, exc.message, path=path) from None
        values[name] = value
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, doc)`` rows for documentation."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = "required" if f.default is MISSING else repr(f.default)
        rows.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("doc", "")))
    return rows
