"""Provenance of an evaluation run: code version, software and hardware, time stamps.

What ``run.json`` records so that a result can be traced to the code and machine that made it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harmbench.models.checkpoints import sha256_file as file_sha256

PathLike = str | os.PathLike


def git_info(path: PathLike | None = None) -> dict[str, Any]:
    """``{"hash", "dirty"}`` of the git checkout holding ``path`` (harmbench's own by default); None values outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        h = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if h.returncode != 0:
            return {"hash": None, "dirty": None}
        st = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return {"hash": h.stdout.strip(), "dirty": bool(st.stdout.strip()) if st.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"hash": None, "dirty": None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: Any) -> dict[str, Any]:
    """Versions and hardware of this process: python, torch, CUDA, cuDNN, device name, host, Ray node."""
    import pandas as pd
    import torch

    dev = str(device)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = _cpu_name()
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "device": dev,
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
    }
    ray = sys.modules.get("ray")  # only when this process uses Ray (importing it costs ~0.2 s)
    try:
        if ray is not None and ray.is_initialized():
            env["ray_node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - informative only
        pass
    return env


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


__all__ = ["environment", "file_sha256", "git_info", "now_utc"]
