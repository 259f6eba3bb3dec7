import json

import numpy as np
import pytest

from harmbench.fileio import atomic_path, atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "x.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert [q.name for q in p.parent.iterdir()] == ["x.bin"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_json_numpy_values_and_strict_mode(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"b": np.float32(1.5), "a": np.arange(3), "s": {3, 1}, "t": (1, 2)})
    assert json.loads(p.read_text()) == {"a": [0, 1, 2], "b": 1.5, "s": [1, 3], "t": [1, 2]}
    assert p.read_text().index('"a"') < p.read_text().index('"b"')
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"x": float("nan")}, strict=True)
    assert not (tmp_path / "n.json").exists()
