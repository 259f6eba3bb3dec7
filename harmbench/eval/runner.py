"""``harmbench eval``: run a model over a dataset and score every output (the library behind it).

Pipeline, per sample:

1. DataLoader workers decode the composite, real image and raw mask (uint8) and
   ``profile.prepare`` them: the real image and the composite are resized to the
   profile's evaluation size with its filter, the mask follows its mask rule.
2. The model sees the composite at that size as ``float (N, 3, H, W)`` on 0–1 and
   the mask binarised at 0.5 (``(N, 1, H, W)`` in {0, 1}); samples are batched by
   size (``none``/``limit1024`` give many sizes).
3. Its output (checked: shape, finite, on 0–1) goes to the 0–255 scale, rounded to
   8 bits when the profile scores saved 8-bit results, and
   :func:`harmbench.metrics.compute_metrics` scores it against the real image on the device.

Each row of ``samples.parquet``: ``key``, ``subset``, ``recipe``, ``category``,
``identity`` (composite = real), ``fg_ratio`` (0–1, at evaluation size),
``height``/``width`` (evaluation size), every metric (0–255 scale for (f)MSE, dB
for (f)PSNR), ``input_mse`` (output vs the model's input, 0–255 scale) and
``seconds`` (model time per image: batch time / batch size).

Rows are written in chunks (``parts/``, atomic) so an interrupted run resumes;
see :mod:`harmbench.eval.records` for the run directory. Datasets: built shard
directories (``index.json`` / ``*.tar``), iHarmony4 roots and flat triplet
folders (:data:`DATA_KINDS`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harmbench import __version__
from harmbench.data.loader import HarmonizationShards
from harmbench.data.loader import _field as image_field
from harmbench.data.shards import list_tar_samples
from harmbench.errors import InputError, UserError
from harmbench.eval.records import FORMAT_VERSION, ID_COLUMNS, RunStore, json_safe
from harmbench.eval.score import SizeBatcher, load_sample, progress_bar, resolve_device, with_overrides
from harmbench.fileio import atomic_write_bytes

#: Tolerance on the 0–1 range of model outputs before they count as out of range.
RANGE_TOL = 1e-3
PathLike = str | os.PathLike


class ModelOutputError(UserError):
    """A model returned an output of the wrong type, shape or range, or with NaN; names the model and key."""


class ModelLoadError(UserError):
    """A model name or checkpoint cannot be turned into a model."""


# --------------------------------------------------------------------------- options and result


@dataclass
class EvalOptions:
    """How to evaluate. ``workers=None``: 0 for small runs, else up to 4 DataLoader workers.
    ``threads``: torch CPU threads of the scoring process on CPU (None: :func:`auto_threads`)."""

    profile: str = "harmbench"
    resize: str = "fixed256"
    split: str | None = "test"
    device: str = "auto"
    batch_size: int = 16
    workers: int | None = None
    limit: int | None = None
    lpips: bool = False
    lpips_weights: str | None = None
    seed: int = 0
    threads: int | None = None
    chunk_size: int = 64
    previews: int = 8
    max_batch_pixels: int = 1 << 24
    progress: bool | None = None
    restart: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """A finished run: its directory, per-sample table and ``run.json`` document."""

    run_dir: Path
    samples: Any  # pandas.DataFrame
    run: dict[str, Any]
    new_samples: int = 0
    reused: bool = False


# --------------------------------------------------------------------------- environment


def git_info(path: PathLike | None = None) -> dict[str, Any]:
    """``{"hash", "dirty"}`` of the git checkout holding ``path`` (harmbench's own by default); None values outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        h = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if h.returncode != 0:
            return {"hash": None, "dirty": None}
        st = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=20)
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


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------- models


@dataclass
class ResolvedModel:
    """A ready model: ``harmonizer`` plus what identifies it (``name``, ``weights_sha256``, ``config``)."""

    name: str
    harmonizer: Any
    weights_sha256: str | None
    config: dict[str, Any]
    source: str

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "config": self.config}


def _model_config(h: Any) -> dict[str, Any]:
    if hasattr(h, "config_dict"):
        return dict(h.config_dict())
    cfg: dict[str, Any] = {"model": getattr(h, "name", type(h).__name__)}
    for attr in ("op_name", "seed", "params"):
        if hasattr(h, attr):
            cfg[attr] = getattr(h, attr)
    return json_safe(cfg)


def _state_and_config(obj: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"checkpoint {path}: expected a dict with a model config and a state dict, got {type(obj).__name__}")
    cfg = next((obj[k] for k in ("config", "model_config") if isinstance(obj.get(k), Mapping)), None)
    state = next((obj[k] for k in ("state_dict", "model", "model_state", "weights") if isinstance(obj.get(k), Mapping)), None)
    if cfg is None or "model" not in cfg:
        raise ModelLoadError(f"checkpoint {path}: no model config (a 'config' entry with the model name); cannot tell which model it is")
    if state is None:
        raise ModelLoadError(f"checkpoint {path}: no state dict ('state_dict' / 'model' entry)")
    return dict(cfg), dict(state)


def _sidecar(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """``(sidecar, meta)`` when ``path`` is a harmbench checkpoint (safetensors + JSON sidecar, or its folder)."""
    try:
        from harmbench.models.checkpoints import read_sidecar
    except ImportError:
        return None
    try:
        return read_sidecar(path)
    except (UserError, OSError, ValueError):
        return None


def checkpoint_weights_file(path: PathLike) -> Path:
    """The file holding a checkpoint's tensors (what the weights hash covers)."""
    p = Path(path)
    sc = _sidecar(p)
    if sc is not None and sc[1].get("weights"):
        return sc[0].with_name(sc[1]["weights"])
    return p


def load_checkpoint_model(path: PathLike, device: str = "cpu") -> Any:
    """A learned model from a checkpoint: a harmbench checkpoint (``<name>.safetensors`` + ``<name>.json``,
    read with :func:`harmbench.train.load_checkpoint`) or a torch file
    ``{"config": model.config_dict(), "state_dict": model.state_dict()}``.

    A checkpoint whose tensors do not fit its model raises :class:`ModelLoadError` naming the
    file, the model and the first mismatching tensors.
    """
    path = Path(path)
    sc = _sidecar(path)
    if sc is not None:
        from harmbench.models.checkpoints import load_checkpoint

        name = (sc[1].get("model_config") or {}).get("model", sc[1].get("model", "?"))
        try:
            return load_checkpoint(path, device=device)
        except UserError as exc:
            raise ModelLoadError(f"checkpoint {path} does not fit model {name!r}: {exc}") from exc
    if path.is_dir():
        raise ModelLoadError(f"{path}: no checkpoint found in this folder")
    import torch

    from harmbench.models import get_model

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); expected <name>.safetensors with its "
            "<name>.json sidecar, or a torch file with 'config' and 'state_dict'"
        ) from exc
    cfg, state = _state_and_config(raw, path)
    name = str(cfg.pop("model"))
    try:
        model = get_model(name, **cfg)
    except UserError as exc:
        raise ModelLoadError(f"checkpoint {path}: its config does not build model {name!r}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if missing or extra or bad:
        parts = []
        if bad:
            parts.append("shape mismatch: " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:3]))
        if missing:
            parts.append("missing: " + ", ".join(missing[:3]))
        if extra:
            parts.append("unexpected: " + ", ".join(extra[:3]))
        raise ModelLoadError(f"checkpoint {path} does not fit model {name!r} ({'; '.join(parts)})")
    model.load_state_dict(state)
    return model.to(device).eval()


def resolve_model(spec: Any, device: str = "cpu", seed: int = 0, options: Mapping[str, Any] | None = None) -> ResolvedModel:
    """``spec``: a registered model name, a checkpoint path, or an object with ``harmonize``.

    Names build the model with ``options`` (e.g. ``preset="small"``) and ``seed``;
    existing files are loaded as checkpoints (their sha256 is the weights hash).
    """
    from harmbench.models import available_models, get_model

    opts = dict(options or {})
    if hasattr(spec, "harmonize"):
        name = getattr(spec, "name", "") or type(spec).__name__
        return ResolvedModel(str(name), spec, None, _model_config(spec), "object")
    text = str(spec)
    p = Path(text).expanduser()
    if p.is_file() or (p.is_dir() and _sidecar(p) is not None):
        model = load_checkpoint_model(p, device)
        name = getattr(model, "name", "") or p.stem
        return ResolvedModel(str(name), model, file_sha256(checkpoint_weights_file(p)), _model_config(model), str(p.resolve()))
    if text not in available_models():
        hint = " (no such checkpoint file either)" if any(c in text for c in "/\\.") else ""
        raise ModelLoadError(f"unknown model {text!r}{hint}; known: {', '.join(available_models())}")
    try:
        model = get_model(text, seed=seed, **opts)
    except UserError as exc:
        raise ModelLoadError(f"model {text!r}: {exc}") from exc
    if hasattr(model, "to"):
        model = model.to(device)
    weights = None
    if hasattr(model, "parameters"):
        import torch

        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes() if isinstance(v, torch.Tensor) else b"")
        weights = "init:" + h.hexdigest()
    return ResolvedModel(text, model, weights, _model_config(model), f"registry:{text}")


# --------------------------------------------------------------------------- datasets


def _meta_fields(meta: Mapping[str, Any], default_subset: str) -> dict[str, Any]:
    recipe = meta.get("recipe")
    identity = bool(meta.get("identity") or meta.get("recipe_type") == "identical" or meta.get("method") == "identity")
    return {
        "subset": str(meta.get("subset") or recipe or default_subset),
        "recipe": None if recipe is None else str(recipe),
        "category": None if meta.get("category") is None else str(meta.get("category")),
        "identity": identity,
    }


def _to_item(key: str, ids: Mapping[str, Any], sample: Any) -> dict[str, Any]:
    """A prepared sample -> the arrays and ids the main process batches.

    Plain numpy arrays (composite/target ``uint8 (3, H, W)``, mask ``float32 (1, H, W)``): they
    travel from DataLoader workers as pickled bytes, cheaper than shared-memory tensors for
    images of this size.
    """
    return {
        "key": key,
        **ids,
        "fg_ratio": float(sample.fg_ratio),
        "composite": np.ascontiguousarray(sample.pred, dtype=np.uint8),
        "target": np.ascontiguousarray(sample.target, dtype=np.uint8),
        "mask": np.ascontiguousarray(sample.mask, dtype=np.float32),
        "error": None,
    }


def _error_item(key: str, path: str, reason: str) -> dict[str, Any]:
    return {"key": key, "error": {"key": key, "path": path, "reason": reason}}


def prepare_shard_sample(sample: Mapping[str, Any], profile: Any, resize: str, default_subset: str) -> dict[str, Any]:
    """Decode one raw shard sample (field -> bytes) and prepare it; an error item when unusable."""
    from harmbench.imaging import read_mask, read_rgb

    key = str(sample["__key__"])
    where = f"{sample.get('__url__', '?')}:{key}"

    comp_b, real_b, mask_b = image_field(sample, "composite"), image_field(sample, "real"), sample.get("mask.png")
    if comp_b is None or real_b is None or mask_b is None:
        missing = [n for n, b in (("composite", comp_b), ("real", real_b), ("mask.png", mask_b)) if b is None]
        return _error_item(key, where, f"sample has no {', '.join(missing)}")
    try:
        meta = json.loads(sample["json"]) if "json" in sample else {}
        comp = read_rgb(comp_b, f"{where}.composite")
        real = read_rgb(real_b, f"{where}.real")
        mask = read_mask(mask_b, f"{where}.mask.png")
        if not (comp.shape[:2] == real.shape[:2] == mask.shape[:2]):
            return _error_item(key, where, f"size mismatch: composite {comp.shape[:2]}, real {real.shape[:2]}, mask {mask.shape[:2]}")
        prepared = profile.prepare(comp, real, mask, resize=resize, name=key)
    except (InputError, UserError, ValueError, OSError) as exc:
        return _error_item(key, where, str(exc))
    return _to_item(key, _meta_fields(meta, default_subset), prepared)


class EvalData:
    """A dataset to evaluate on: its keys (in a fixed order), an identity hash and a torch dataset."""

    kind: str = ""

    def __init__(self, path: PathLike, split: str | None):
        self.path = Path(path)
        self.split = split
        self.skipped: list[dict[str, str]] = []

    def keys(self) -> list[str]:
        raise NotImplementedError

    def index_hash(self) -> str:
        raise NotImplementedError

    def torch_dataset(self, wanted: set[str], profile: Any, resize: str) -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split, "index_sha256": self.index_hash()}


class _EvalShards(HarmonizationShards):
    """Shard stream yielding prepared eval items for ``wanted`` keys only (others are not decoded)."""

    def __init__(self, shards: list[str], wanted: set[str], profile: Any, resize: str, default_subset: str):
        super().__init__(shards, split=None)
        self.wanted = wanted
        self.profile = profile
        self.resize_rule = resize
        self.default_subset = default_subset

    def decode(self, sample: dict[str, Any], rng: Any = None) -> dict[str, Any] | None:
        if sample["__key__"] not in self.wanted:
            return None
        return prepare_shard_sample(sample, self.profile, self.resize_rule, self.default_subset)


class ShardData(EvalData):
    """A built dataset: a directory of WebDataset shards (``index.json`` or ``*.tar``), or one ``.tar``."""

    kind = "shards"

    @staticmethod
    def detect(path: Path) -> bool:
        return (path.is_file() and path.suffix == ".tar") or (
            path.is_dir() and ((path / "index.json").exists() or any(path.glob("*.tar")))
        )

    def __init__(self, path: PathLike, split: str | None):
        super().__init__(path, split)
        from harmbench.data.shards import shard_files

        self.shards = shard_files(self.path, split) if self.path.is_dir() else [str(self.path)]
        self._keys: list[str] | None = None

    def keys(self) -> list[str]:
        if self._keys is None:
            keys: list[str] = []
            seen: set[str] = set()
            for shard in self.shards:
                for key, fields in list_tar_samples(shard):
                    if "mask.png" not in fields:
                        raise UserError(
                            f"{shard}: sample {key!r} has no mask (fields: {', '.join(sorted(fields))}); "
                            "harmbench eval needs a composite, a mask and a real image per sample"
                        )
                    if not any(f.startswith("composite.") for f in fields) or not any(f.startswith("real.") for f in fields):
                        raise UserError(f"{shard}: sample {key!r} lacks a composite or real image (fields: {', '.join(sorted(fields))})")
                    if key in seen:
                        raise UserError(f"{shard}: sample key {key!r} occurs twice in the dataset")
                    seen.add(key)
                    keys.append(key)
            self._keys = keys
        return self._keys

    def index_hash(self) -> str:
        h = hashlib.sha256()
        idx = self.path / "index.json" if self.path.is_dir() else None
        if idx is not None and idx.exists():
            doc = json.loads(idx.read_text())
            rows = [r for r in doc.get("shardlist", []) if self.split is None or r.get("split") == self.split]
            h.update(json.dumps({"split": self.split, "shards": rows}, sort_keys=True).encode())
        else:
            for s in self.shards:
                h.update(Path(s).name.encode())
                h.update(file_sha256(s).encode())
        return h.hexdigest()

    def torch_dataset(self, wanted: set[str], profile: Any, resize: str) -> Any:
        return _EvalShards(self.shards, wanted, profile, resize, self.path.name if self.path.is_dir() else self.path.stem)


class _TripletDataset:
    """Map-style dataset over triplet records (``harmbench.eval.score.load_sample``)."""

    def __init__(self, records: Sequence[Any], profile: Any, resize: str):
        self.records = list(records)
        self.profile = profile
        self.resize = resize

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        try:
            sample = load_sample(rec, None, self.profile, self.resize)
        except InputError as exc:
            return _error_item(rec.key, exc.path, exc.reason)
        ids = {"subset": rec.subset, "recipe": None, "category": None, "identity": False}
        return _to_item(rec.key, ids, sample)


class TripletData(EvalData):
    """An iHarmony4 root (or one subset folder) or a flat folder of triplets."""

    kind = "triplets"

    @staticmethod
    def detect(path: Path) -> bool:
        return path.is_dir()

    def __init__(self, path: PathLike, split: str | None):
        super().__init__(path, split)
        from harmbench.sources.iharmony4 import scan_triplets

        scan = scan_triplets(self.path, split=split)
        self.records = list(scan.records)
        self.skipped = [{"key": "", "path": s.path, "reason": s.reason} for s in scan.skipped]
        if not self.records:
            detail = ""
            if scan.skipped:
                first = scan.skipped[0]
                detail = f"; {len(scan.skipped)} input(s) skipped, e.g. {first.path}: {first.reason}"
            raise UserError(f"{self.path}: no usable (composite, mask, real) triplets for split {split!r}{detail}")
        self._by_key = {r.key: r for r in self.records}

    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    def index_hash(self) -> str:
        h = hashlib.sha256()
        for r in self.records:
            for p in (r.composite_path, r.mask_path, r.real_path):
                q = Path(p)
                rel = os.path.relpath(q, self.path)
                h.update(f"{r.key}\x1f{rel}\x1f{q.stat().st_size}\n".encode())
        return h.hexdigest()

    def torch_dataset(self, wanted: set[str], profile: Any, resize: str) -> Any:
        return _TripletDataset([r for r in self.records if r.key in wanted], profile, resize)


#: Dataset kinds in detection order.
DATA_KINDS: dict[str, type[EvalData]] = {"shards": ShardData, "triplets": TripletData}


def open_data(path: PathLike, split: str | None = "test", kind: str | None = None) -> EvalData:
    """The :class:`EvalData` for ``path`` (kind detected unless given)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p}: dataset not found")
    if kind is not None:
        if kind not in DATA_KINDS:
            raise UserError(f"unknown dataset kind {kind!r}; known: {', '.join(DATA_KINDS)}")
        return DATA_KINDS[kind](p, split)
    for cls in DATA_KINDS.values():
        if cls.detect(p):  # type: ignore[attr-defined]
            return cls(p, split)
    raise UserError(f"{p}: neither a built shard directory nor a triplet folder")


# --------------------------------------------------------------------------- output checks


def check_output(out: Any, composite: Any, keys: Sequence[str], model_name: str) -> None:
    """Raise :class:`ModelOutputError` naming ``model_name`` and the sample key when ``out``
    is not a finite ``(N, 3, H, W)`` tensor on 0–1 matching ``composite``."""
    import torch

    shown = ", ".join(repr(k) for k in keys[:4]) + (" …" if len(keys) > 4 else "")
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(f"model {model_name!r} returned {type(out).__name__}, not a tensor, for samples {shown}")
    if tuple(out.shape) != tuple(composite.shape):
        raise ModelOutputError(
            f"model {model_name!r} returned shape {tuple(out.shape)} for samples {shown}; expected {tuple(composite.shape)}"
        )
    flat = out.detach().flatten(1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    # min/max propagate NaN, so finite bounds mean finite values: one pass over the batch and one
    # device sync; the per-sample bounds that name the offending sample only on failure
    lo, hi = torch.stack(torch.aminmax(flat)).double().cpu().tolist()
    if math.isfinite(lo) and math.isfinite(hi) and lo >= -RANGE_TOL and hi <= 1 + RANGE_TOL:
        return
    rows_lo, rows_hi = torch.stack(torch.aminmax(flat, dim=1)).double().cpu()
    finite = torch.isfinite(rows_lo) & torch.isfinite(rows_hi)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0, 0])
        raise ModelOutputError(f"model {model_name!r} returned NaN or infinite values for sample {keys[i]!r}")
    i = int(((rows_lo < -RANGE_TOL) | (rows_hi > 1 + RANGE_TOL)).nonzero()[0, 0])
    raise ModelOutputError(
        f"model {model_name!r} returned values in [{float(rows_lo[i]):.4g}, {float(rows_hi[i]):.4g}] for sample "
        f"{keys[i]!r}; outputs must be RGB on the 0–1 scale"
    )


# --------------------------------------------------------------------------- helpers


def preview_keys(keys: Sequence[str], k: int) -> list[str]:
    """``k`` keys chosen by hash (the same for every model on the same data), sorted."""
    if k <= 0:
        return []
    ranked = sorted(keys, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return sorted(ranked[:k])


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _save_previews(store: RunStore, key: str, comp: Any, pred255: Any, target: Any, mask: Any) -> None:
    def hwc(t: Any) -> np.ndarray:
        return t.detach().round().clamp(0, 255).to("cpu").byte().permute(1, 2, 0).numpy()

    m = (mask.detach()[0] > 0.5).to("cpu").numpy().astype(np.uint8) * 255
    for what, arr in (("composite", hwc(comp.float())), ("output", hwc(pred255)), ("real", hwc(target.float())), ("mask", m)):
        atomic_write_bytes(store.previews_dir / f"{key}.{what}.png", _png(np.ascontiguousarray(arr)))


def auto_workers(n: int, batch_size: int) -> int:
    """DataLoader workers for ``n`` samples: 0 for small runs, else up to 4, leaving one CPU to the scoring process."""
    if n < 2 * batch_size:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def auto_threads(workers: int) -> int:
    """Torch CPU threads of the scoring process: half the CPUs the workers leave free, at least 1
    (oversubscribed intra-op threads slow small-image kernels down many times on busy machines)."""
    return max(1, ((os.cpu_count() or 1) - workers) // 2)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _as_is(item: Any) -> Any:
    return item


def make_loader(dataset: Any, workers: int) -> Any:
    """One prepared item per iteration, decoded by ``workers`` processes (0: in this process)."""
    from torch.utils.data import DataLoader

    kw: dict[str, Any] = {"batch_size": None, "num_workers": int(workers), "collate_fn": _as_is}
    if workers > 0:
        kw["prefetch_factor"] = 4
        kw["persistent_workers"] = False
    return DataLoader(dataset, **kw)


# --------------------------------------------------------------------------- the run


def run_config(model: ResolvedModel, data: EvalData, profile: Any, opts: EvalOptions, n_selected: int) -> dict[str, Any]:
    """``config.json``: the fingerprint (see :data:`harmbench.eval.records.FINGERPRINT_FIELDS`) and the paths."""
    return {
        "format": FORMAT_VERSION,
        "model": model.fingerprint(),
        "data": {**data.describe(), "limit": opts.limit, "n_selected": n_selected},
        "profile": profile.to_dict(),
        "resize": opts.resize,
        "pred_8bit": bool(profile.pred_8bit),
        "lpips": bool(opts.lpips),
        "seed": int(opts.seed),
        "data_path": str(data.path.resolve()),
        "model_source": model.source,
    }


def evaluate(
    model: Any,
    data: PathLike | EvalData,
    out: PathLike,
    options: EvalOptions | None = None,
    *,
    on_batch: Callable[[int], None] | None = None,
    **overrides: Any,
) -> EvalResult:
    """Run ``model`` on ``data`` and score it into the run directory ``out`` (resuming it).

    ``model``: registered name, checkpoint path or an object with ``harmonize``;
    ``data``: shard directory, iHarmony4 root or triplet folder (or an :class:`EvalData`).
    Keyword ``overrides`` set :class:`EvalOptions` fields. ``on_batch(n_done)`` is
    called after each scored batch. Raises :class:`ModelOutputError` /
    :class:`ModelLoadError` / :class:`~harmbench.eval.records.RunMismatchError`;
    finished chunks stay on disk for the next run.
    """
    import torch

    from harmbench.eval.aggregate import summary_dict
    from harmbench.metrics import LPIPS_NAMES, METRIC_NAMES, RESIZES, compute_metrics, get_profile, pixel
    from harmbench.metrics.compute import chunk_size
    from harmbench.metrics.scratch import scratch

    opts = with_overrides(options or EvalOptions(), overrides, "eval")
    t_start = time.perf_counter()
    profile = get_profile(opts.profile)
    if opts.resize not in RESIZES:
        raise UserError(f"unknown resize {opts.resize!r}; known: {', '.join(RESIZES)}")
    if opts.limit is not None and opts.limit < 1:
        raise UserError(f"--limit must be at least 1, got {opts.limit}")
    device = torch.device(resolve_device(opts.device))
    torch.manual_seed(int(opts.seed))
    np.random.seed(int(opts.seed) & 0xFFFFFFFF)

    ds = data if isinstance(data, EvalData) else open_data(data, opts.split)
    all_keys = ds.keys()
    selected = all_keys[: opts.limit] if opts.limit else list(all_keys)
    resolved = resolve_model(model, str(device), opts.seed, opts.model_options)
    config = run_config(resolved, ds, profile, opts, len(selected))
    store = RunStore(out)
    store.open(config, restart=opts.restart)
    pred_8bit = bool(config["pred_8bit"])

    if store.is_finished():
        run_doc = store.read_run()
        return EvalResult(store.root, store.read_samples(), run_doc, 0, reused=True)

    done = store.done_keys()
    todo = [k for k in selected if k not in done]
    names = tuple(METRIC_NAMES)
    lpips_model = None
    lpips_source = None
    if opts.lpips:
        from harmbench.metrics.lpips import load_lpips

        lpips_model = load_lpips(weights=opts.lpips_weights, device=device)
        lpips_source = getattr(lpips_model, "harmbench_weights", None)
        names = names + tuple(LPIPS_NAMES)
    previews = set(preview_keys(selected, opts.previews))
    bs = max(1, int(opts.batch_size))
    workers = auto_workers(len(todo), bs) if opts.workers is None else max(0, int(opts.workers))

    rows: list[dict[str, Any]] = []
    skips: list[dict[str, str]] = []
    counters = {"new": 0, "model_s": 0.0}
    t_loop = time.perf_counter()
    h = resolved.harmonizer

    def flush_rows(force: bool = False) -> None:
        if rows and (force or len(rows) >= opts.chunk_size):
            store.write_part(rows, skips)
            rows.clear()
            skips.clear()
        elif force and skips:
            store.write_part([], skips)
            skips.clear()

    id_cols = ("key", "subset", "recipe", "category", "identity", "fg_ratio")
    value_cols = (*names, "input_mse")

    def run_batch(items: list[dict[str, Any]]) -> None:
        keys = [it["key"] for it in items]
        comp_u8 = torch.from_numpy(np.stack([it["composite"] for it in items])).to(device, non_blocking=True)
        target = torch.from_numpy(np.stack([it["target"] for it in items])).to(device, non_blocking=True)
        mask = torch.from_numpy(np.stack([it["mask"] for it in items])).to(device, non_blocking=True)
        comp = comp_u8.to(torch.float32).div_(255.0)
        mbin = mask if profile.mask_binary else (mask > 0.5).to(torch.float32)  # binary profiles: already {0, 1}
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                outp = h.harmonize(comp, mbin)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model failure names the model and the samples
            shown = ", ".join(repr(k) for k in keys[:4])
            raise ModelOutputError(f"model {resolved.name!r} failed on samples {shown}: {type(exc).__name__}: {exc}") from exc
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        check_output(outp, comp, keys, resolved.name)
        out = outp.detach()
        per_image: list[Any] = []
        step = chunk_size(comp)  # on CPU a few images at a time: their passes stay in cache
        for i in range(0, len(items), step):
            part = slice(i, i + step)
            # clamp(x, 0, 1)·255 == clamp(x·255, 0, 255), computed in place in scratch memory
            pred = scratch("eval.pred", tuple(out[part].shape), torch.float32, device).copy_(out[part])
            pred.mul_(255.0).clamp_(0.0, 255.0)
            if pred_8bit:
                pred.round_()
            with torch.no_grad():
                vals = compute_metrics(pred, target[part], mask[part], profile, lpips_model=lpips_model)
                sq = torch.sub(pred, comp_u8[part], out=scratch("eval.sq", tuple(pred.shape), torch.float32, device))
                vals["input_mse"] = pixel.mse_from_sq(sq.mul_(sq), torch.float64)  # output vs the model's input
            per_image.append(torch.stack([vals[k].detach().double() for k in value_cols], dim=1))
            for j, it in enumerate(items[part]):
                if it["key"] in previews:
                    _save_previews(store, it["key"], comp_u8[i + j], pred[j], target[i + j], mask[i + j])
        values = torch.cat(per_image).cpu().tolist()  # one transfer: (N, metrics + input_mse) Python floats
        counters["model_s"] += dt
        secs = dt / len(items)
        for it, vals_i in zip(items, values):
            row = {c: it[c] for c in id_cols}
            row["height"], row["width"] = int(it["target"].shape[1]), int(it["target"].shape[2])
            row.update(zip(value_cols, vals_i))
            row["seconds"] = secs
            rows.append(row)
        counters["new"] += len(items)
        bar.update(len(items))
        if on_batch is not None:
            on_batch(counters["new"])
        flush_rows()

    old_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(opts.threads)) if opts.threads else min(old_threads, auto_threads(workers)))
    bar = progress_bar(len(selected), opts.progress, "eval", initial=len(selected) - len(todo))
    session = {"started": _now(), "device": str(device), "workers": workers, "batch_size": bs, "todo": len(todo),
               "torch_threads": torch.get_num_threads()}
    try:
        if todo:
            loader = make_loader(ds.torch_dataset(set(todo), profile, opts.resize), workers)
            batches = SizeBatcher(bs, opts.max_batch_pixels)
            for item in loader:
                if item is None:
                    continue
                if item.get("error"):
                    skips.append(item["error"])
                    bar.update(1)
                    continue
                full = batches.add(tuple(item["target"].shape[1:]), item)
                if full:
                    run_batch(full)
            for group in batches.drain():
                run_batch(group)
    finally:
        torch.set_num_threads(old_threads)
        bar.close()
        flush_rows(force=True)
        session["wall_s"] = round(time.perf_counter() - t_start, 4)
        session["loop_s"] = round(time.perf_counter() - t_loop, 4)
        session["samples"] = counters["new"]
        session["model_s"] = round(counters["model_s"], 4)
        store.add_session(session)

    sessions = store.sessions()
    skipped = ds.skipped + store.skipped()
    df_cols = [*ID_COLUMNS, *names, "input_mse", "seconds"]
    run_doc: dict[str, Any] = {
        **config,
        "harmbench_version": __version__,
        "git": git_info(),
        "finished": _now(),
        "environment": environment(device),
        "options": {k: v for k, v in asdict(opts).items() if k not in ("progress", "restart")},
        "lpips_weights": lpips_source,
        "metrics": list(names),
        "skipped": skipped,
    }
    samples = store.merge_parts(columns=df_cols)
    wall = sum(float(s.get("loop_s", 0.0)) for s in sessions)
    run_doc["n_samples"] = int(len(samples))
    run_doc["n_skipped"] = len(skipped)
    run_doc["timing"] = {
        "wall_s": round(sum(float(s.get("wall_s", 0.0)) for s in sessions), 4),
        "loop_s": round(wall, 4),
        "images_per_s": round(len(samples) / wall, 4) if wall > 0 else None,
        "model_s": round(float(samples["seconds"].sum()), 4) if "seconds" in samples else 0.0,
        "sessions": sessions,
    }
    edges = tuple(profile.bucket_edges)
    run_doc["summary"] = summary_dict(samples, bucket_edges=edges, bucket_inclusive=profile.bucket_inclusive) if len(samples) else {}
    store.write_run(run_doc)
    return EvalResult(store.root, samples, json_safe(run_doc), counters["new"], reused=False)


__all__ = [
    "DATA_KINDS",
    "EvalData",
    "EvalOptions",
    "EvalResult",
    "ModelLoadError",
    "ModelOutputError",
    "ShardData",
    "TripletData",
    "check_output",
    "environment",
    "evaluate",
    "git_info",
    "load_checkpoint_model",
    "open_data",
    "preview_keys",
    "resolve_model",
]
