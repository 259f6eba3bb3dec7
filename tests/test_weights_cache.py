"""Weights cache: downloads from a 127.0.0.1 server started here (resume, checksums, errors), file:// URLs,
imports by hand, card names as ``--weights``, the CLI, and the committed weights still found."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harmbench.cli import main
from harmbench.errors import ConfigError, UserError
from harmbench.models import weights_cache as wc
from harmbench.models.cards import CARDS, ModelCard, WeightFile

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "baselines" / "weights"


# ---- a local HTTP server with Range support and scripted failures -------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: list[int] = []  # per request, in order: bytes sent before the connection is cut
        self.ignore_range = False
        self.sent = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        srv.log.append((name, rng))
        body = srv.files.get(name)
        if body is None:
            self.send_error(404, "no such file")
            return
        start = 0
        if rng and not srv.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        cut = srv.cut_after.pop(0) if srv.cut_after else None
        # bytes are counted before they are written: the client may finish (and the test read the count)
        # before this thread runs another line
        if cut is not None:
            srv.sent += min(cut, len(part))
            self.wfile.write(part[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
            self.close_connection = True
            return
        srv.sent += len(part)
        self.wfile.write(part)


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty weights cache; proxies off so 127.0.0.1 is reached directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "cache"
    monkeypatch.setenv("HARMBENCH_WEIGHTS", str(root))
    return root


def _blob(n: int, seed: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}-{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _register(monkeypatch, card: ModelCard) -> ModelCard:
    wc._known_card(card.name)  # load the built-in cards first, so the test card is not overwritten
    monkeypatch.setitem(CARDS, card.name, card)
    return card


def _card(name: str, *files: WeightFile, model: str = "dovenet") -> ModelCard:
    return ModelCard(
        name=name,
        model=model,
        source="https://example.org/test",
        code_license="MIT",
        weights_license="test-only",
        files=tuple(files),
    )


# ---- downloads ---------------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_skips_cached(server, cache, monkeypatch):
    data = _blob(300_000, 1)
    server.files["g.pth"] = data
    card = _register(
        monkeypatch, _card("t-fetch", WeightFile("G", "g.pth", server.url("g.pth"), _sha(data), len(data)))
    )
    assert not wc.is_cached(card) and [f.filename for f in wc.missing_files(card)] == ["g.pth"]
    report = wc.fetch("t-fetch", progress=False, backoff=0)
    dest = cache / "t-fetch" / "g.pth"
    assert report.complete and [(f.status, f.path) for f in report.files] == [("fetched", dest)]
    assert dest.read_bytes() == data and report.files[0].sha256 == _sha(data)
    assert not dest.with_name("g.pth.part").exists()
    assert wc.cached_files(card) == {"G": dest} and wc.is_cached(card)
    n = len(server.log)
    again = wc.fetch(card, progress=False)
    assert [f.status for f in again.files] == ["cached"] and len(server.log) == n  # no request made


def test_resume_after_a_cut_connection(server, cache, monkeypatch):
    data = _blob(1_000_000, 2)
    server.files["big.bin"] = data
    server.cut_after = [250_000, 300_000]  # two drops, then a clean transfer
    card = _register(monkeypatch, _card("t-resume", WeightFile("G", "big.bin", server.url("big.bin"), _sha(data))))
    report = wc.fetch(card, retries=3, progress=False, backoff=0)
    assert (cache / "t-resume" / "big.bin").read_bytes() == data and report.complete
    assert [r for _, r in server.log] == [None, "bytes=250000-", "bytes=550000-"]  # each retry resumes
    assert server.sent == len(data)  # not one byte sent twice


def test_interrupted_download_resumes_on_the_next_call(server, cache, monkeypatch):
    data = _blob(400_000, 3)
    server.files["e.pth"] = data
    server.cut_after = [123_456]
    card = _register(monkeypatch, _card("t-next", WeightFile("E", "e.pth", server.url("e.pth"), _sha(data), len(data))))
    with pytest.raises(wc.DownloadError, match="run the command again to resume") as info:
        wc.fetch(card, retries=0, progress=False, backoff=0)
    part = cache / "t-next" / "e.pth.part"
    assert "t-next: e.pth" in str(info.value) and part.stat().st_size == 123_456
    assert not (cache / "t-next" / "e.pth").exists() and not wc.is_cached(card)
    wc.fetch(card, retries=0, progress=False)
    assert server.log[-1] == ("e.pth", "bytes=123456-")
    assert (cache / "t-next" / "e.pth").read_bytes() == data and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, cache, monkeypatch):
    data = _blob(200_000, 4)
    server.files["g.pth"] = data
    server.ignore_range = True
    card = _register(monkeypatch, _card("t-norange", WeightFile("G", "g.pth", server.url("g.pth"), _sha(data))))
    part = cache / "t-norange" / "g.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)  # a stale prefix that a 200 answer must replace, not extend
    wc.fetch(card, progress=False)
    assert server.log == [("g.pth", "bytes=5000-")]
    assert (cache / "t-norange" / "g.pth").read_bytes() == data


@pytest.mark.parametrize("bad", ["sha256", "size"])
def test_checksum_mismatch_is_a_clear_error_and_leaves_nothing(server, cache, monkeypatch, bad):
    data = _blob(100_000, 5)
    server.files["g.pth"] = data
    wf = WeightFile(
        "G",
        "g.pth",
        server.url("g.pth"),
        sha256="0" * 64 if bad == "sha256" else _sha(data),
        size=len(data) + 1 if bad == "size" else None,
    )
    card = _register(monkeypatch, _card("t-bad", wf))
    with pytest.raises(wc.ChecksumError) as info:
        wc.fetch(card, retries=0, progress=False)
    msg = str(info.value)
    assert f"t-bad: g.pth: {bad} mismatch" in msg and "nothing was kept in the cache" in msg
    if bad == "sha256":
        assert "0" * 64 in msg and _sha(data) in msg  # both values named
    folder = cache / "t-bad"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert not wc.is_cached(card)


def test_http_error_names_the_status(server, cache, monkeypatch):
    card = _register(monkeypatch, _card("t-404", WeightFile("G", "g.pth", server.url("missing.pth"))))
    with pytest.raises(wc.DownloadError, match="HTTP 404"):
        wc.fetch(card, progress=False, backoff=0)
    assert len(server.log) == 1  # a client error is not retried
    assert not (cache / "t-404" / "g.pth").exists()


def test_file_url_and_resume_by_seeking(tmp_path, cache, monkeypatch):
    data = _blob(150_000, 6)
    src = tmp_path / "published" / "net G.pth"
    src.parent.mkdir()
    src.write_bytes(data)
    card = _register(
        monkeypatch, _card("t-file", WeightFile("G", "latest_net_G.pth", src.as_uri(), _sha(data), len(data)))
    )
    part = cache / "t-file" / "latest_net_G.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:70_000])  # an earlier, interrupted copy
    report = wc.fetch(card, progress=False)
    assert report.files[0].status == "fetched"
    assert (cache / "t-file" / "latest_net_G.pth").read_bytes() == data and not part.exists()
    gone = _register(monkeypatch, _card("t-file-gone", WeightFile("G", "x.pth", (tmp_path / "nope.pth").as_uri())))
    with pytest.raises(UserError, match="no such file"):
        wc.fetch(gone, progress=False)


def test_files_without_a_link_come_with_instructions(server, cache, monkeypatch, capsys):
    e = _blob(50_000, 7)
    server.files["e.pth"] = e
    card = _register(
        monkeypatch,
        _card(
            "t-manual",
            WeightFile("E", "latest_net_E.pth", server.url("e.pth"), _sha(e)),
            WeightFile(
                "G", "latest_net_G.pth", manual="no direct link: take it from the authors' Baidu share (code abcd)"
            ),
        ),
    )
    report = wc.fetch(card, progress=False)
    assert not report.complete and [f.status for f in report.files] == ["fetched", "manual"]
    how = report.manual[0].instructions
    assert "Baidu share (code abcd)" in how and "harmbench weights import t-manual FILE" in how
    assert str(cache / "t-manual" / "latest_net_G.pth") in how
    assert main(["weights", "fetch", "t-manual", "--no-progress"]) == 1  # E cached now, G still by hand
    out = capsys.readouterr()
    assert "latest_net_E.pth: already in the cache" in out.out and "Baidu share" in out.err


# ---- imports -------------------------------------------------------------------------------------------


def test_import_matches_verifies_and_copies(tmp_path, cache, monkeypatch):
    g, e = _blob(60_000, 8), _blob(40_000, 9)
    card = _register(
        monkeypatch,
        _card(
            "t-import",
            WeightFile("E", "latest_net_E.pth", sha256=_sha(e)),
            WeightFile("G", "latest_net_G.pth", sha256=_sha(g)),
        ),
    )
    (tmp_path / "dl").mkdir()
    renamed = tmp_path / "dl" / "download (1).pth"  # browser-renamed: matched by its sha256
    renamed.write_bytes(g)
    res = wc.import_files(card, [renamed])
    assert [(r.role, r.status) for r in res] == [("G", "imported")]
    assert (cache / "t-import" / "latest_net_G.pth").read_bytes() == g and not wc.is_cached(card)
    wrong = tmp_path / "dl" / "latest_net_E.pth"  # right name, wrong bytes
    wrong.write_bytes(g)
    with pytest.raises(wc.ChecksumError, match="t-import: latest_net_E.pth .*sha256 mismatch"):
        wc.import_files(card, [wrong])
    assert not (cache / "t-import" / "latest_net_E.pth").exists()
    stranger = tmp_path / "dl" / "other.pth"
    stranger.write_bytes(b"unrelated")
    with pytest.raises(UserError, match=r"other\.pth: not a file of model card 't-import'"):
        wc.import_files(card, [stranger])
    wrong.write_bytes(e)
    assert main(["weights", "import", "t-import", str(wrong)]) == 0
    assert wc.is_cached(card)


def test_failed_import_leaves_the_cache_as_it_was(tmp_path, cache, monkeypatch):
    a, b = _blob(1000, 10), _blob(2000, 11)
    card = _register(
        monkeypatch, _card("t-atomic", WeightFile("E", "e.pth", size=1000), WeightFile("G", "g.pth", size=2000))
    )
    (tmp_path / "e.pth").write_bytes(a)
    (tmp_path / "g.pth").write_bytes(b[:1500])  # truncated download
    with pytest.raises(wc.ChecksumError, match="size mismatch: expected 2000 bytes, got 1500"):
        wc.import_files(card, [tmp_path / "e.pth", tmp_path / "g.pth"])
    assert not (cache / "t-atomic").exists()  # e.pth, although fine, was not copied either


# ---- card names as --weights ----------------------------------------------------------------------


def _checkpoint_card(name: str, server: _Server) -> ModelCard:
    """A card serving the committed dovenet-cpu checkpoint (safetensors + sidecar) over HTTP."""
    w = (COMMITTED / "dovenet-cpu.safetensors").read_bytes()
    j = (COMMITTED / "dovenet-cpu.json").read_bytes()
    server.files["dovenet-cpu.safetensors"], server.files["dovenet-cpu.json"] = w, j
    return _card(
        name,
        WeightFile("weights", "dovenet-cpu.safetensors", server.url("dovenet-cpu.safetensors"), _sha(w), len(w)),
        WeightFile("sidecar", "dovenet-cpu.json", server.url("dovenet-cpu.json")),
    )


def test_card_name_as_weights(server, cache, monkeypatch):
    if not (COMMITTED / "dovenet-cpu.safetensors").is_file():
        pytest.skip("committed dovenet-cpu weights absent")
    from harmbench.models.official import load_weights, split_weights_spec

    card = _register(monkeypatch, _checkpoint_card("t-dovenet", server))
    with pytest.raises(UserError, match="harmbench weights fetch t-dovenet"):
        load_weights("dovenet", "t-dovenet")
    wc.fetch(card, progress=False)
    assert split_weights_spec("t-dovenet", "dovenet") == [
        cache / "t-dovenet" / "dovenet-cpu.safetensors",
        cache / "t-dovenet" / "dovenet-cpu.json",
    ]
    net = load_weights("dovenet", "t-dovenet")
    ref = load_weights("dovenet", COMMITTED / "dovenet-cpu.json")
    assert type(net).__name__ == "DoveNet"
    for (k, a), (_, b) in zip(sorted(net.state_dict().items()), sorted(ref.state_dict().items())):
        assert a.equal(b), k
    with pytest.raises(ConfigError, match="holds weights for model 'dovenet', not 'bargainnet'"):
        load_weights("bargainnet", "t-dovenet")
    assert split_weights_spec("a.pth, b.pth") == [Path("a.pth"), Path("b.pth")]  # paths stay paths


def test_committed_weights_have_cards_and_resolve():
    from harmbench.models.cards import get_card
    from harmbench.models.official import split_weights_spec

    card = get_card("hen-ctn-cpu")
    if not (COMMITTED / "hen-ctn-cpu.safetensors").is_file():
        pytest.skip("committed weights absent")
    meta = json.loads((COMMITTED / "hen-ctn-cpu.json").read_text())
    assert card.model == "hen-ctn" and card.file("weights").sha256 == meta["weights_sha256"]
    assert wc.verify_file(COMMITTED / "hen-ctn-cpu.safetensors", card.file("weights"), "x") == meta["weights_sha256"]
    assert split_weights_spec("hen-ctn-cpu") == [COMMITTED / "hen-ctn-cpu.safetensors", COMMITTED / "hen-ctn-cpu.json"]


# ---- listing, directories ---------------------------------------------------------------------------


def test_weights_list_cli(server, cache, monkeypatch, capsys):
    data = _blob(3000, 12)
    server.files["g.pth"] = data
    _register(
        monkeypatch,
        _card(
            "t-list",
            WeightFile("G", "g.pth", server.url("g.pth"), _sha(data), len(data)),
            WeightFile("E", "e.pth", manual="ask the authors"),
        ),
    )
    assert main(["weights", "list", "--json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "t-list"]
    assert [(r["file"], r["size"], r["sha256"], r["cached"], r["licence"]) for r in rows] == [
        ("g.pth", 3000, _sha(data), False, "test-only"),
        ("e.pth", None, None, False, "test-only"),
    ]
    assert main(["weights", "fetch", "t-list", "--no-progress"]) == 1  # e.pth has no link
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    table = capsys.readouterr().out
    line = next(ln for ln in table.splitlines() if ln.startswith("t-list"))
    assert "g.pth" in line and "2.9 KiB" in line and _sha(data)[:12] in line and " yes " in line
    assert "no (by hand)" in next(ln for ln in table.splitlines() if "e.pth" in ln)
    assert f"weights cache: {cache}" in table
    assert main(["weights", "fetch", "no-such-card"]) == 2
    assert "unknown model card 'no-such-card'" in capsys.readouterr().err


def test_cache_dir_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("HARMBENCH_WEIGHTS", raising=False)
    monkeypatch.delenv("HARMBENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wc.cache_dir() == tmp_path / ".cache" / "harmbench" / "weights"
    monkeypatch.setenv("HARMBENCH_CACHE", str(tmp_path / "c"))
    assert wc.cache_dir() == tmp_path / "c" / "weights"
    monkeypatch.setenv("HARMBENCH_WEIGHTS", str(tmp_path / "w"))
    assert wc.cache_dir() == tmp_path / "w" and wc.search_dirs() == [tmp_path / "w", COMMITTED]


def test_pretrained_weights_found_in_cache_then_repository(cache):
    from harmbench.models.pretrained import load_pretrained, pretrained_path

    if not (COMMITTED / "dovenet-cpu.safetensors").is_file():
        pytest.skip("committed weights absent")
    assert pretrained_path("dovenet-cpu") == COMMITTED / "dovenet-cpu.safetensors"  # empty cache: the committed file
    assert type(load_pretrained("dovenet-cpu")).__name__ == "DoveNet"
    folder = cache / "dovenet-cpu"  # an imported copy takes precedence
    folder.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(COMMITTED / f"dovenet-cpu{suffix}", folder / f"dovenet-cpu{suffix}")
    assert pretrained_path("dovenet-cpu") == folder / "dovenet-cpu.safetensors"
    with pytest.raises(UserError, match="HARMBENCH_WEIGHTS"):
        pretrained_path("no-such-weights")


def test_card_name_resolves_as_a_model_and_on_the_command_line(server, cache, monkeypatch, tmp_path):
    if not (COMMITTED / "dovenet-cpu.safetensors").is_file():
        pytest.skip("committed dovenet-cpu weights absent")
    import numpy as np
    from PIL import Image

    from harmbench.models.resolve import ModelLoadError, resolve_model

    card = _register(monkeypatch, _checkpoint_card("t-cli", server))
    with pytest.raises(ModelLoadError, match="model card 't-cli'.*harmbench weights fetch t-cli"):
        resolve_model("t-cli")
    wc.fetch(card, progress=False)
    r = resolve_model("t-cli")
    assert r.source == "card:t-cli" and r.weights_sha256 == card.file("weights").sha256
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert (
        main(
            [
                "harmonize",
                str(tmp_path / "c.png"),
                str(tmp_path / "m.png"),
                "-o",
                str(tmp_path / "o.png"),
                "--weights",
                "t-cli",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    direct = tmp_path / "direct.png"
    assert (
        main(
            [
                "harmonize",
                str(tmp_path / "c.png"),
                str(tmp_path / "m.png"),
                "-o",
                str(direct),
                "--weights",
                str(COMMITTED / "dovenet-cpu.json"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), np.asarray(Image.open(direct)))
