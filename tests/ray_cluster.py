"""A real two-node Ray cluster on 127.0.0.1 for tests: ``ray start --head`` plus one ``ray start --address``.

Each node is a ``ray start … --block`` process in its own process group (session), so teardown signals exactly
the processes this harness started (gcs, raylet, agents, workers) and never runs ``ray stop``, which would end
every Ray process on the machine, other users' included. Only the standard library is imported here, so
``conftest.py`` can import it where Ray is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RAY_CLI = str(Path(sys.executable).with_name("ray"))  # the CLI of the Ray this interpreter imports

# Ray puts unix sockets under its --temp-dir, and socket paths are limited to ~107 bytes: keep the root short.
_MAX_TEMP_ROOT = 40

# Counts the cluster's alive nodes from a separate interpreter, so the test process's own Ray state (and
# settings such as the auth mode, read once per process) stays untouched. Retries until the deadline, since
# the GCS may refuse connections for a moment after its port opens.
_WAIT_NODES = r"""
import logging, sys, time
import ray
address, want, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
n = 0
while True:
    try:
        ray.init(address=address, logging_level=logging.WARNING)
        n = len([x for x in ray.nodes() if x["Alive"]])
    except Exception as e:
        print(f"not ready: {e!r}", file=sys.stderr)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if n == want or time.monotonic() > deadline:
        print(n)
        break
    time.sleep(1)
"""


def ray_env() -> dict[str, str]:
    """Environment for ``ray start`` and for driver subprocesses that join the test cluster."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _short_temp_root() -> Path:
    base = tempfile.gettempdir()
    if len(base) > _MAX_TEMP_ROOT and Path("/tmp").is_dir():
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="hbray", dir=base))


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start … --block`` in its own process group, so teardown can end exactly these processes."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            [RAY_CLI, "start", *args, "--block"],
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the node's process group (``ray start --block`` then ends its children), then SIGKILL to the
    same group for whatever is left, even when the leader has already exited."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)  # the group of this `ray start`: gcs, raylet, agents, workers
        except ProcessLookupError:
            break  # nothing of the group is left
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return f"\n--- {path.name} ---\n" + path.read_text(errors="replace")[-n:]
    except OSError:
        return f"\n--- {path.name}: (none) ---"


@contextlib.contextmanager
def two_node_cluster(cpus_per_node: int = 1, timeout: float = 90.0) -> Iterator[str]:
    """Start a head and one worker node on 127.0.0.1 (``cpus_per_node`` CPUs each); yield ``host:port``.

    While it is up, ``RAY_AUTH_MODE=disabled`` is also set in this process, so in-process drivers can join; it
    is restored afterwards. Drivers in subprocesses should use :func:`ray_env`. Teardown disconnects an
    in-process driver left connected, then stops the worker and head process groups and removes the temp dir.
    """
    if not Path(RAY_CLI).exists():
        pytest.skip(f"ray CLI not found next to the interpreter ({RAY_CLI})")
    root = _short_temp_root()
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = ray_env()
    logs = {"head": root / "head.log", "worker": root / "worker.log"}
    old_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    procs: dict[str, subprocess.Popen] = {}
    waiter: subprocess.Popen | None = None

    def check_alive(what: str) -> None:
        for name, p in procs.items():
            if p.poll() is not None:
                pytest.fail(f"ray {name} node exited ({p.returncode}) while {what}" + _tail(logs[name], 3000))

    try:
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}"]
        procs["head"] = _start(
            ["--head", f"--port={port}", *common, "--include-dashboard=false", f"--temp-dir={root / 'h'}"],
            logs["head"],
            env,
        )
        deadline = time.monotonic() + timeout
        while True:
            check_alive("waiting for the head's port")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"ray head did not open port {port}" + _tail(logs["head"]))
                time.sleep(0.5)
        procs["worker"] = _start([f"--address={address}", *common, f"--temp-dir={root / 'w'}"], logs["worker"], env)
        left = max(deadline - time.monotonic(), 10.0)
        logs["waiter"] = root / "wait-nodes.log"
        with (root / "wait-nodes.out").open("wb") as out_fh, logs["waiter"].open("wb") as err_fh:
            waiter = subprocess.Popen(
                [sys.executable, "-c", _WAIT_NODES, address, "2", str(left)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=err_fh,
            )
        hard = time.monotonic() + left + 60  # the waiter's own deadline, plus time to import ray and connect
        while waiter.poll() is None:
            check_alive("waiting for both nodes to join")
            if time.monotonic() > hard:
                waiter.kill()
                break
            time.sleep(0.5)
        waiter.wait()
        out = (root / "wait-nodes.out").read_text(errors="replace").strip()
        if out.splitlines()[-1:] != ["2"]:
            pytest.fail(
                f"two-node cluster did not come up (alive nodes: {out[-20:] or '?'})"
                + _tail(logs["waiter"])
                + _tail(logs["head"])
                + _tail(logs["worker"])
            )
        yield address
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.wait()
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()  # an in-process driver still connected to this cluster
        for p in reversed(list(procs.values())):
            _stop(p)
        if old_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_auth
        shutil.rmtree(root, ignore_errors=True)
