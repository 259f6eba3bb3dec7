"""Finding and reading shards of a built dataset (no torch needed).

Every way a shard can be broken — a bad tar header, a member cut short, a
missing field, a member that does not decode — becomes a :class:`ShardError`
naming the shard file and the member, built by :func:`shard_error` (the one
place that classifies reader exceptions; the tar reader itself is replaceable).
:func:`verify_shards` checks a built directory against its ``index.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmbench.errors import InputError, UserError

PathLike = str | os.PathLike


class ShardError(InputError):
    """A shard (or one of its members) cannot be read. ``path`` is the shard file, ``member`` the
    tar member (``key.field``) at fault or None when the damage comes before any member."""

    def __init__(self, shard: PathLike, reason: str, member: str | None = None):
        self.shard = str(shard)
        self.member = member
        self.detail = reason
        super().__init__(self.shard, f"member {member}: {reason}" if member else reason)


#: Exceptions a tar reader raises on damaged input (tarfile, gzip/zlib streams, short reads).
READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    ValueError,
    UnicodeDecodeError,
)


def shard_error(shard: PathLike, exc: BaseException, member: str | None = None, after: str | None = None) -> ShardError:
    """Turn a reader exception into a :class:`ShardError` naming ``shard`` and the member.

    ``member``: the member being read when it failed; ``after``: the last member read
    completely (for damage found between members, e.g. a bad header).
    """
    if isinstance(exc, ShardError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ShardError(shard, "shard file not found")
    text = str(exc) or type(exc).__name__
    if text == "empty file":
        return ShardError(shard, "empty file (0 bytes)")
    if isinstance(exc, InputError):  # an undecodable member (harmbench.imaging)
        return ShardError(shard, exc.reason, member)
    if member is not None:
        cut = "unexpected end" in text or isinstance(exc, EOFError)
        return ShardError(shard, ("member cut short (truncated shard)" if cut else f"cannot read ({text})"), member)
    where = f"after member {after}" if after else "at the start"
    if "unexpected end" in text or isinstance(exc, EOFError) or "truncated" in text:
        return ShardError(shard, f"truncated {where} ({text})")
    return ShardError(shard, f"bad tar header {where} ({text})")


def shard_files(source: PathLike | Sequence[PathLike], split: str | None = None) -> list[str]:
    """Shard paths of ``split`` in a built directory (from ``index.json``, else by name), or the given list.

    ``split=None`` returns every shard of the directory.
    """
    if not isinstance(source, (str, os.PathLike)):
        return [str(p) for p in source]
    root = Path(source)
    if root.is_file():
        return [str(root)]
    idx = root / "index.json"
    data: dict[str, Any] = {}
    if idx.exists():
        try:
            data = json.loads(idx.read_text(encoding="utf-8"))
            rows = data.get("shardlist", [])
            urls = [r["url"] for r in rows if split is None or r.get("split") == split]
            if not all(isinstance(u, str) for u in urls):
                raise TypeError("a shard url is not a string")
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
            raise UserError(f"{idx}: unreadable shard index ({type(exc).__name__}: {exc})") from None
    else:
        pattern = f"*-{split}-*.tar" if split else "*.tar"
        urls = sorted(p.name for p in root.glob(pattern))
    if not urls:
        have = sorted(data.get("splits", {})) if isinstance(data.get("splits"), dict) else []
        raise UserError(f"{root}: no shards for split {split!r}" + (f" (splits: {', '.join(have)})" if have else ""))
    return [str(root / u) for u in urls]


def member_key(name: str) -> tuple[str, str] | None:
    """``(key, field)`` of a tar member name (``d/k.composite.jpg`` -> ``("d/k", "composite.jpg")``);
    ``None`` for a name whose basename has no dot (not a sample field)."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return None
    key, field = base.split(".", 1)
    return name[: len(name) - len(base)] + key, field


def list_tar_samples(path: PathLike) -> list[tuple[str, set[str]]]:
    """``[(key, {fields})]`` of a WebDataset tar in file order, from its headers only.

    Raises :class:`ShardError` naming the shard and the member when the tar is damaged.
    """
    out: list[tuple[str, set[str]]] = []
    last: str | None = None
    try:
        size = _file_size(path)
        with tarfile.open(path, "r:") as tar:
            while True:
                m = tar.next()
                if m is None:
                    _check_end(path, tar.offset, last)
                    break
                if m.offset_data + m.size > size:
                    raise ShardError(path, "member cut short (truncated shard)", m.name)
                last = m.name
                parsed = member_key(m.name) if m.isfile() else None
                if parsed is None:
                    continue
                key, field = parsed
                if out and out[-1][0] == key:
                    out[-1][1].add(field)
                else:
                    out.append((key, {field}))
    except READ_ERRORS as exc:
        raise shard_error(path, exc, after=last) from exc
    return out


def _file_size(path: PathLike) -> int:
    return os.stat(path).st_size


def _check_end(path: PathLike, end: int, last: str | None) -> None:
    """After the last header: the end-of-archive marker (two zero blocks) must follow, and only zeros.

    The tar reader takes an unreadable header after the first one, or a file cut
    between two members, for the end of the archive; this tells them apart.
    """
    where = f"after member {last}" if last else "at the start"
    with open(path, "rb") as f:
        f.seek(end)
        tail = f.read()
    if len(tail) < 2 * tarfile.BLOCKSIZE:
        raise ShardError(path, f"truncated {where} (no end-of-archive marker)")
    if tail.strip(b"\0"):
        raise ShardError(path, f"bad tar header {where} (data follows an unreadable header)")


def iter_tar_samples(path: PathLike, suffixes: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """Stream a WebDataset tar: ``{"__key__", "__url__", field: bytes, …}`` per sample.

    Members of a sample must be adjacent; the key is the basename up to its
    first dot and the field the rest (``k.composite.jpg`` -> ``composite.jpg``).
    With ``suffixes`` (e.g. ``("json",)``) only those fields are read; the
    others are skipped without reading their bytes. Damage raises
    :class:`ShardError` naming the shard and the member (samples before it were yielded).
    """
    cur: dict[str, Any] | None = None
    last: str | None = None
    reading: str | None = None
    try:
        with tarfile.open(path, "r|") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parsed = member_key(m.name)
                if parsed is None:
                    continue
                key, field = parsed
                reading = m.name
                if suffixes is not None and field not in suffixes:
                    data = None
                else:
                    f = tar.extractfile(m)
                    data = f.read() if f is not None else b""
                    if len(data) != m.size:
                        raise ShardError(path, "member cut short (truncated shard)", m.name)
                reading, last = None, m.name
                if cur is None or cur["__key__"] != key:
                    if cur is not None:
                        yield cur
                    cur = {"__key__": key, "__url__": str(path)}
                if data is not None:
                    cur[field] = data
            _check_end(path, tar.offset, last)
    except READ_ERRORS as exc:
        raise shard_error(path, exc, member=reading, after=last) from exc
    if cur is not None:
        yield cur


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ShardCheck:
    """One shard checked against ``index.json``: ``problems`` is empty when it is intact."""

    shard: str
    split: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_shards(root: PathLike) -> list[ShardCheck]:
    """Check every shard listed in ``root/index.json``: file present, size, md5 and sample count.

    The count is read from the tar headers (a header-level break is reported with the
    shard and member). Raises :class:`UserError` when ``index.json`` is missing or unreadable.
    """
    root = Path(root)
    idx = root / "index.json"
    try:
        doc = json.loads(idx.read_text(encoding="utf-8"))
        rows = doc["shardlist"]
        if not isinstance(rows, list):
            raise TypeError("shardlist is not a list")
    except FileNotFoundError:
        raise UserError(f"{idx}: not found (is {root} a directory written by `harmbench build`?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{idx}: unreadable shard index ({type(exc).__name__}: {exc})") from None
    out: list[ShardCheck] = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("url"), str):
            out.append(ShardCheck(str(idx), None, (f"malformed shardlist entry {row!r}",)))
            continue
        path = root / row["url"]
        problems: list[str] = []
        if not path.is_file():
            out.append(ShardCheck(str(path), row.get("split"), ("file missing",)))
            continue
        size = path.stat().st_size
        if "filesize" in row and size != row["filesize"]:
            problems.append(f"size {size} bytes, index says {row['filesize']}")
        if "md5sum" in row:
            md5 = _md5(path)
            if md5 != row["md5sum"]:
                problems.append(f"md5 {md5}, index says {row['md5sum']}")
        try:
            n = len(list_tar_samples(path))
            if "nsamples" in row and n != row["nsamples"]:
                problems.append(f"{n} samples, index says {row['nsamples']}")
        except ShardError as exc:
            problems.append(exc.reason)
        out.append(ShardCheck(str(path), row.get("split"), tuple(problems)))
    return out
