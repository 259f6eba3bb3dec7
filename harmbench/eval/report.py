"""Writing result documents."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(doc: Any, path: str | os.PathLike) -> None:
    """Write ``doc`` as strict JSON (NaN/Infinity refused), atomically, creating parent folders."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
