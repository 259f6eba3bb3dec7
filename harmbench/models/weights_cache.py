"""The weights cache: the files of model cards on local disk, downloaded or imported by hand.

Layout: ``<cache>/<card name>/<file name>``, where ``<cache>`` is ``$HARMBENCH_WEIGHTS``, else
``$HARMBENCH_CACHE/weights``, else ``~/.cache/harmbench/weights`` (:func:`cache_dir`). Files
committed with the repository (``baselines/weights/``) are found too: a card's file is looked
up in its cache folder first, then in the committed folder
(:func:`search_dirs`; files named after their card), so committed weights keep working with or
without a cache.

* :func:`fetch` downloads every file of a card that has a direct link (``http(s)://`` or
  ``file://``): into ``<name>.part`` first, resumed with an HTTP ``Range`` request after a cut
  connection (and on the next call), checked against the card's size and sha256, then moved
  into place. A file that fails its check is deleted: nothing unverified stays in the cache.
  Files without a link are reported with the card's instructions for getting them by hand.
* :func:`import_files` verifies hand-downloaded files the same way and copies them in.
* :func:`cached_files` / :func:`resolve_card_weights` give the paths to load, which is how
  ``--weights CARD-NAME`` works (:func:`harmbench.models.official.split_weights_spec`).

Sizes are in bytes; sha256 digests are lowercase hex. No torch import here.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from harmbench.errors import ConfigError, UserError
from harmbench.models.cards import ModelCard, WeightFile, get_card

ENV_WEIGHTS = "HARMBENCH_WEIGHTS"
ENV_CACHE = "HARMBENCH_CACHE"
PART_SUFFIX = ".part"
CHUNK = 1 << 20  # bytes per read


class ChecksumError(UserError):
    """A downloaded or imported file does not match its card (size or sha256); it was not kept."""


class DownloadError(UserError):
    """A download failed (after its retries); the ``.part`` file is kept so the next call resumes."""


# ---- where files live ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where fetched and imported files go: ``$HARMBENCH_WEIGHTS``, else ``$HARMBENCH_CACHE/weights``,
    else ``~/.cache/harmbench/weights``."""
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return Path(env).expanduser()
    root = os.environ.get(ENV_CACHE)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "harmbench") / "weights"


def committed_dir() -> Path:
    """The weights committed with the repository: ``<repository>/baselines/weights``."""
    return Path(__file__).resolve().parents[2] / "baselines" / "weights"


def search_dirs() -> list[Path]:
    """Folders searched for weights, first match wins: the cache, then the committed folder."""
    out: list[Path] = []
    for d in (cache_dir(), committed_dir()):
        if d not in out:
            out.append(d)
    return out


def _card(card: ModelCard | str) -> ModelCard:
    return card if isinstance(card, ModelCard) else get_card(str(card))


def card_dir(card: ModelCard | str, root: str | os.PathLike | None = None) -> Path:
    """The cache folder of ``card``: ``<root or cache_dir()>/<card name>``."""
    return (Path(root) if root is not None else cache_dir()) / _card(card).name


def target_path(card: ModelCard | str, wf: WeightFile, root: str | os.PathLike | None = None) -> Path:
    """Where :func:`fetch`/:func:`import_files` put ``wf`` of ``card``."""
    return card_dir(card, root) / wf.filename


def _candidates(card: ModelCard, wf: WeightFile, root: str | os.PathLike | None) -> list[Path]:
    """Where ``wf`` may be: each search folder's ``<card>/<file>``, and, for files named after their
    card (``<card>.safetensors``, ``<card>.json``), the committed folder itself."""
    if root is not None:
        return [target_path(card, wf, root)]
    out = [d / card.name / wf.filename for d in search_dirs()]
    if Path(wf.filename).stem == card.name:
        out.append(committed_dir() / wf.filename)
    return out


def _size_ok(path: Path, wf: WeightFile) -> bool:
    return path.is_file() and (wf.size is None or path.stat().st_size == wf.size)


def cached_path(card: ModelCard | str, wf: WeightFile, root: str | os.PathLike | None = None) -> Path | None:
    """The first complete copy of ``wf`` (present, and of the card's size when known), or ``None``."""
    c = _card(card)
    return next((p for p in _candidates(c, wf, root) if _size_ok(p, wf)), None)


def cached_files(card: ModelCard | str, root: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{role: path}`` of the card's files that are on disk (missing roles are left out)."""
    c = _card(card)
    return {wf.role: p for wf in c.files if (p := cached_path(c, wf, root)) is not None}


def missing_files(card: ModelCard | str, root: str | os.PathLike | None = None) -> list[WeightFile]:
    """The card's files that are not on disk."""
    c = _card(card)
    return [wf for wf in c.files if cached_path(c, wf, root) is None]


def is_cached(card: ModelCard | str, root: str | os.PathLike | None = None) -> bool:
    """Whether every file of the card is on disk (a card without files is not)."""
    c = _card(card)
    return bool(c.files) and not missing_files(c, root)


def manual_instructions(card: ModelCard | str, wf: WeightFile, root: str | os.PathLike | None = None) -> str:
    """How to get ``wf`` by hand and put it in the cache."""
    c = _card(card)
    how = wf.manual or (f"download it from {wf.url}" if wf.url else f"no download link is known; see {c.source}")
    return (
        f"{c.name}: {wf.filename}: {how}; then run `harmbench weights import {c.name} FILE` "
        f"(or put it at {target_path(c, wf, root)})"
    )


# ---- verification ---------------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, wf: WeightFile, what: str) -> str:
    """Check ``path`` against ``wf``'s size and sha256 (those known); returns its sha256.

    Raises :class:`ChecksumError` naming ``what`` (the card and file) and both values.
    """
    size = path.stat().st_size
    if wf.size is not None and size != wf.size:
        raise ChecksumError(f"{what}: size mismatch: expected {wf.size} bytes, got {size}")
    digest = sha256_of(path)
    if wf.sha256 is not None and digest != wf.sha256.lower():
        raise ChecksumError(f"{what}: sha256 mismatch: expected {wf.sha256.lower()}, got {digest}")
    return digest


# ---- downloading ----------------------------------------------------------------------------------


@dataclass
class FileResult:
    """What happened to one file: ``status`` is ``"cached"`` (already there), ``"fetched"``,
    ``"imported"`` or ``"manual"`` (no direct link: ``instructions`` says what to do)."""

    role: str
    filename: str
    status: str
    path: Path | None = None
    sha256: str | None = None
    sha256_known: bool = False
    instructions: str = ""


@dataclass
class FetchReport:
    """The outcome of :func:`fetch` for one card."""

    card: str
    files: list[FileResult] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every file of the card is in the cache."""
        return all(f.status != "manual" for f in self.files)

    @property
    def manual(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "manual"]


_RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout)


class _Incomplete(Exception):
    """The server closed the stream before the announced length."""


def _progress(total: int | None, initial: int, desc: str, enabled: bool | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=(None if enabled is None else not enabled),
    )


def _open_http(url: str, offset: int, timeout: float) -> tuple[BinaryIO, int, int | None]:
    """``(stream, start, total)``: ``start`` is where the body begins (``offset`` when the server honoured
    the Range request, 0 when it sent the whole file); ``total`` the full size when announced."""
    from harmbench import __version__

    headers = {"User-Agent": f"harmbench/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        crange = resp.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
        start = int(crange.split()[1].split("-")[0]) if crange.startswith("bytes ") else offset
        total = crange.rsplit("/", 1)[-1]
        return resp, start, int(total) if total.isdigit() else (start + int(length) if length else None)
    return resp, 0, int(length) if length else None


def _open_file_url(url: str, offset: int) -> tuple[BinaryIO, int, int | None]:
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not path.is_file():
        raise UserError(f"{url}: no such file")
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    total = path.stat().st_size
    start = min(offset, total)
    f.seek(start)
    return f, start, total


def _download_once(url: str, part: Path, timeout: float, desc: str, progress: bool | None) -> None:
    """Append the rest of ``url`` to ``part`` (one request). Raises on a failed or short transfer."""
    offset = part.stat().st_size if part.exists() else 0
    scheme = urllib.parse.urlparse(url).scheme.lower()
    try:
        if scheme == "file":
            stream, start, total = _open_file_url(url, offset)
        elif scheme in ("http", "https"):
            stream, start, total = _open_http(url, offset, timeout)
        else:
            raise UserError(f"{url}: unsupported URL scheme {scheme!r} (http, https or file)")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the part holds the whole file (or too much)
            return
        raise
    if start > offset:
        stream.close()
        raise DownloadError(f"{url}: the server sent bytes from {start} on, {offset} were asked for")
    with stream, open(part, "r+b" if part.exists() else "wb") as out:
        out.truncate(start)  # a 200 answer (range ignored) starts again from 0
        out.seek(start)
        got = start
        bar = _progress(total, start, desc, progress)
        try:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
        out.truncate(got)
    if total is not None and got < total:
        raise _Incomplete(f"{got} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    wf: WeightFile,
    *,
    what: str = "",
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool | None = None,
    backoff: float = 1.0,
) -> str:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed from what it holds), verify it
    against ``wf`` and move it into place; returns its sha256.

    A cut connection or a short body is retried ``retries`` times, each resuming with an HTTP
    ``Range`` request (``file://`` URLs seek). When they run out, :class:`DownloadError` keeps
    the ``.part`` file so the next call resumes. A size or sha256 mismatch deletes the ``.part``
    and raises :class:`ChecksumError`.
    """
    dest = Path(dest)
    what = what or str(dest)
    part = dest.with_name(dest.name + PART_SUFFIX)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and wf.size is not None and part.stat().st_size > wf.size:
        part.unlink()  # more than the whole file: not a prefix of it
    last: BaseException | None = None
    for attempt in range(max(0, int(retries)) + 1):
        try:
            _download_once(url, part, timeout, dest.name, progress)
            last = None
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise DownloadError(f"{what}: {url} answered HTTP {exc.code} {exc.reason}") from None
            last = exc
        except (_Incomplete, *_RETRYABLE) as exc:
            last = exc
        if attempt < retries:
            time.sleep(backoff * (attempt + 1))
    if last is not None:
        held = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{what}: download from {url} failed after {retries + 1} attempts ({type(last).__name__}: {last}); "
            f"{held} bytes kept in {part}, run the command again to resume"
        )
    try:
        digest = verify_file(part, wf, what)
    except ChecksumError as exc:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{exc} (downloaded from {url}); the file was deleted, nothing was kept in the cache"
        ) from None
    os.replace(part, dest)
    return digest


def fetch(
    card: ModelCard | str,
    *,
    root: str | os.PathLike | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool | None = None,
    backoff: float = 1.0,
) -> FetchReport:
    """Put every file of ``card`` that has a direct link into the cache (``root`` overrides
    :func:`cache_dir`). Files already there (and of the right size) are left alone; files
    without a link come back with ``status="manual"`` and their instructions."""
    c = _card(card)
    if not c.files:
        raise ConfigError("files", f"model card {c.name!r} lists no weight files")
    report = FetchReport(c.name)
    for wf in c.files:
        have = cached_path(c, wf, root)
        if have is not None:
            report.files.append(FileResult(wf.role, wf.filename, "cached", have))  # found, not re-hashed
            continue
        if not wf.url:
            report.files.append(
                FileResult(wf.role, wf.filename, "manual", instructions=manual_instructions(c, wf, root))
            )
            continue
        dest = target_path(c, wf, root)
        digest = download(
            wf.url,
            dest,
            wf,
            what=f"{c.name}: {wf.filename}",
            retries=retries,
            timeout=timeout,
            progress=progress,
            backoff=backoff,
        )
        report.files.append(FileResult(wf.role, wf.filename, "fetched", dest, digest, wf.sha256 is not None))
    return report


# ---- importing ------------------------------------------------------------------------------------


def _match(card: ModelCard, paths: Sequence[Path]) -> list[tuple[WeightFile, Path]]:
    """Pair each given file with a file of the card: by file name, else by sha256, else the card's only
    file. Errors name the file that fits nothing or the card file given twice."""
    pairs: list[tuple[WeightFile, Path]] = []
    taken: dict[str, Path] = {}
    digests: dict[Path, str] = {}
    for p in paths:
        wf = next((f for f in card.files if f.filename == p.name), None)
        if wf is None and any(f.sha256 for f in card.files):
            digests[p] = sha256_of(p)
            wf = next((f for f in card.files if f.sha256 and f.sha256.lower() == digests[p]), None)
        if wf is None and len(card.files) == 1 and len(paths) == 1:
            wf = card.files[0]
        if wf is None:
            names = ", ".join(f.filename for f in card.files)
            raise UserError(
                f"{p}: not a file of model card {card.name!r} (its files: {names}); rename it to the card's file name"
            )
        if wf.filename in taken:
            raise UserError(f"{p} and {taken[wf.filename]} are both {card.name}'s {wf.filename}")
        taken[wf.filename] = p
        pairs.append((wf, p))
    return pairs


def import_files(
    card: ModelCard | str, paths: Iterable[str | os.PathLike], *, root: str | os.PathLike | None = None
) -> list[FileResult]:
    """Verify hand-downloaded ``paths`` against ``card`` and copy them into the cache.

    Each path is matched to a card file (see :func:`_match`); every file is checked (size and
    sha256 when the card knows them) before anything is copied, and copies are atomic, so a
    failed import leaves the cache as it was.
    """
    c = _card(card)
    given = [Path(p).expanduser() for p in paths]
    if not given:
        raise UserError(f"no file given to import for {c.name!r}")
    for p in given:
        if not p.is_file():
            raise UserError(f"{p}: file not found")
    pairs = _match(c, given)
    digests = {p: verify_file(p, wf, f"{c.name}: {wf.filename} ({p})") for wf, p in pairs}
    out = []
    for wf, p in pairs:
        dest = target_path(c, wf, root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".import")
        try:
            shutil.copyfile(p, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        out.append(FileResult(wf.role, wf.filename, "imported", dest, digests[p], wf.sha256 is not None))
    return out


# ---- card names as --weights --------------------------------------------------------------------


def _known_card(name: str) -> ModelCard | None:
    from harmbench.models.cards import CARDS
    from harmbench.models.cards import _load_all as load_cards

    load_cards()
    return CARDS.get(name)


def resolve_card_weights(
    spec: str, model: str | None = None, root: str | os.PathLike | None = None
) -> list[Path] | None:
    """The cached files of model card ``spec`` (in the card's order), or ``None`` when ``spec``
    names no card. A card for another model than ``model`` is a :class:`ConfigError`; a card
    whose files are not all on disk is a :class:`UserError` saying how to get them."""
    card = _known_card(spec.strip())
    if card is None:
        return None
    if model is not None and card.model != model:
        raise ConfigError("weights", f"model card {card.name!r} holds weights for model {card.model!r}, not {model!r}")
    missing = missing_files(card, root)
    if missing:
        how = [
            f"`harmbench weights fetch {card.name}`" if any(f.url for f in missing) else None,
            f"`harmbench weights import {card.name} FILE…`",
        ]
        lines = "; ".join(manual_instructions(card, f, root) for f in missing if not f.url)
        raise UserError(
            f"model card {card.name!r} is not in the weights cache ({cache_dir()}): missing "
            f"{', '.join(f.filename for f in missing)}; run {' or '.join(h for h in how if h)}"
            + (f". By hand: {lines}" if lines else "")
        )
    return [p for wf in card.files if (p := cached_path(card, wf, root)) is not None]


def card_names() -> list[str]:
    """Names of every registered model card."""
    from harmbench.models.cards import list_cards

    return [c.name for c in list_cards()]


# ---- listing --------------------------------------------------------------------------------------


def human_size(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``None`` -> ``"?"``."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def card_rows(cards: Iterable[ModelCard], root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per file of each card: what ``harmbench weights list`` prints (and ``--json`` writes)."""
    rows = []
    for c in cards:
        for wf in c.files or (WeightFile(role="", filename=""),):
            path = cached_path(c, wf, root) if wf.filename else None
            rows.append(
                {
                    "name": c.name,
                    "model": c.model,
                    "role": wf.role,
                    "file": wf.filename,
                    "size": wf.size,
                    "sha256": wf.sha256,
                    "licence": c.weights_license or c.code_license,
                    "source": c.source,
                    "url": wf.url,
                    "cached": path is not None,
                    "committed": path is not None and path.parent == committed_dir(),
                    "path": str(path) if path else None,
                }
            )
    return rows


def format_table(rows: Sequence[dict[str, Any]], *, wide: bool = False) -> str:
    """An aligned text table of :func:`card_rows`; sha256 shortened to 12 digits unless ``wide``."""
    cols: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("NAME", lambda r: r["name"]),
        ("MODEL", lambda r: r["model"]),
        ("FILE", lambda r: r["file"]),
        ("SIZE", lambda r: human_size(r["size"])),
        ("SHA256", lambda r: (r["sha256"] if wide else r["sha256"][:12]) if r["sha256"] else "-"),
        (
            "CACHED",
            lambda r: (
                ("committed" if r["committed"] else "yes") if r["cached"] else ("no" if r["url"] else "no (by hand)")
            ),
        ),
        ("LICENCE", lambda r: r["licence"] or "?"),
        ("SOURCE", lambda r: r["source"]),
    ]
    cells = [[name for name, _ in cols]]
    prev = None
    for r in rows:
        line = [get(r) for _, get in cols]
        if r["name"] == prev:  # further files of the same card: card-level columns left blank
            line[0] = line[1] = line[6] = line[7] = ""
        prev = r["name"]
        cells.append(line)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


__all__ = [
    "CHUNK",
    "ENV_CACHE",
    "ENV_WEIGHTS",
    "ChecksumError",
    "DownloadError",
    "FetchReport",
    "FileResult",
    "cache_dir",
    "cached_files",
    "cached_path",
    "card_dir",
    "card_names",
    "card_rows",
    "committed_dir",
    "download",
    "fetch",
    "format_table",
    "human_size",
    "import_files",
    "is_cached",
    "manual_instructions",
    "missing_files",
    "resolve_card_weights",
    "search_dirs",
    "sha256_of",
    "target_path",
    "verify_file",
]
