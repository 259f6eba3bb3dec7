"""Leaderboard definitions: ``leaderboards/<name>/leaderboard.toml`` -> :class:`Leaderboard`.

Schema (every field checked; errors name the field and the file)::

    [leaderboard]
    title = "…"                 # display title (default: the name)
    description = "…"
    profile = "harmbench"       # metric profile (harmbench.metrics.PROFILES)
    resize = "fixed256"         # fixed256 | limit1024 | none
    split = "test"              # split evaluated (null/"all": every sample)
    lpips = "auto"              # true | false | "auto" (on when AlexNet weights are found offline)
    lpips_weights = "…"         # optional AlexNet features file
    seed = 0                    # model seed and bootstrap seed
    bootstrap = 1000            # bootstrap resamples for the CIs
    batch_size = 16
    grid_samples = 6            # rows of the qualitative grid (= previews saved per run)
    published = false           # add the published iHarmony4 numbers (quoted, clearly labelled)
    harmony = "bargainnet-cpu"  # optional 'harmony' column: BargainNet's no-reference score of every output,
                                # with this extractor (a committed name, the authors' latest_net_E.pth, a checkpoint)
    runs = "runs"               # where runs (and datasets built from recipes) go
    cpus_per_cell = 1           # Ray resources per cell (GPU cells get one GPU each)

    [[datasets]]                # one or more
    name = "demo"
    recipe = "datasets/demo.toml"   # build it (into `path`, default <runs>/data/<name>) when not built yet
    path = "…"                      # built shard directory, iHarmony4 root or triplet folder
    max_samples = 100               # build option (quick builds)
    limit = 50                      # evaluate only the first K samples

    [[models]]                  # one or more
    name = "reinhard"           # registered model name
    label = "Reinhard"          # display name (default: name)
    checkpoint = "baselines/weights/dovenet.pt"   # a learned model's weights
    weights = ["latest_net_E.pth", "latest_net_G.pth"]  # or "E.pth,G.pth": files for `name` (authors' or harmbench)
    card = "dovenet-official"   # or: the files of this model card in the weights cache (`harmbench weights list`)
    protocol = "official"       # harmbench | official (the model's protocol option; default: the model's own)
    seed = 0                    # this model's seed (default: the leaderboard's)
    options = { preset = "small" }
    optional = true             # skip (with a note) when the checkpoint, a weights file or a card's file is absent

Relative input paths are looked up next to the TOML first, then in the project
root (the folder holding ``leaderboards/``); output paths (``runs``, a
recipe's ``path``) are relative to the TOML's folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from harmbench.errors import ConfigError, UserError
from harmbench.recipes.schema import reject_non_finite

FILE_NAME = "leaderboard.toml"
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
_LB_KEYS = {
    "title",
    "description",
    "profile",
    "resize",
    "split",
    "lpips",
    "lpips_weights",
    "seed",
    "bootstrap",
    "batch_size",
    "grid_samples",
    "published",
    "runs",
    "cpus_per_cell",
    "workers",
    "harmony",
}
_DS_KEYS = {"name", "recipe", "path", "max_samples", "limit", "split"}
_MODEL_KEYS = {"name", "label", "checkpoint", "weights", "card", "protocol", "seed", "options", "optional"}
_PROTOCOLS = ("harmbench", "official")


def slug(text: str) -> str:
    """Folder-safe id: letters, digits, ``_`` and ``-``."""
    s = _SLUG.sub("-", str(text)).strip("-")
    return s or "x"


@dataclass(frozen=True)
class DatasetDef:
    """One dataset of a leaderboard. ``path``: where the data is (or will be built); ``recipe``: how to build it."""

    name: str
    path: Path
    recipe: Path | None = None
    max_samples: int | None = None
    limit: int | None = None
    split: str | None = "test"


@dataclass(frozen=True)
class ModelDef:
    """One method of a leaderboard: a registered ``name`` or a ``checkpoint``, shown as ``label``.

    ``weights``: files for ``name`` (the authors' checkpoints or a harmbench one); ``card``: a model
    card whose files come from the weights cache; ``protocol``: the model's ``protocol`` option
    (None: its default); ``seed``: overrides the leaderboard's.
    """

    name: str
    label: str
    checkpoint: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    optional: bool = False
    weights: tuple[Path, ...] = ()
    protocol: str | None = None
    seed: int | None = None
    card: str | None = None

    @property
    def id(self) -> str:
        return slug(self.label)

    @property
    def spec(self) -> str:
        """What :func:`harmbench.models.resolve.resolve_model` takes."""
        return str(self.checkpoint) if self.checkpoint is not None else self.name

    @property
    def weights_spec(self) -> str | None:
        """``--weights`` for :func:`harmbench.models.resolve.resolve_model` (None without weights)."""
        if self.card is not None:
            return self.card
        return ",".join(str(p) for p in self.weights) if self.weights else None

    def missing_files(self) -> list[Path]:
        """The checkpoint, weights or card files that are not on disk (a card's: where the cache expects them)."""
        if self.card is not None:
            from harmbench.models.weights_cache import missing_files, target_path

            return [target_path(self.card, wf) for wf in missing_files(self.card)]
        files = ([self.checkpoint] if self.checkpoint is not None else []) + list(self.weights)
        return [p for p in files if not p.is_file()]

    def available(self) -> bool:
        return not self.missing_files()

    def missing_reason(self) -> str:
        """Why the model cannot run (``checkpoint not found: …`` / ``weights not found: …``)."""
        if self.card is not None:
            names = ", ".join(p.name for p in self.missing_files())
            return (
                f"model card {self.card!r} not in the weights cache (missing {names}; "
                f"`harmbench weights fetch {self.card}` or `harmbench weights import {self.card} FILE…`)"
            )
        what = "checkpoint" if self.checkpoint is not None else "weights"
        return f"{what} not found: {', '.join(map(str, self.missing_files()))}"


@dataclass(frozen=True)
class Leaderboard:
    """A parsed ``leaderboard.toml``."""

    name: str
    path: Path
    title: str
    description: str
    profile: str
    resize: str
    split: str | None
    lpips: bool | str
    lpips_weights: Path | None
    seed: int
    bootstrap: int
    batch_size: int
    grid_samples: int
    published: bool
    runs_dir: Path
    cpus_per_cell: int
    workers: int | None
    datasets: tuple[DatasetDef, ...]
    models: tuple[ModelDef, ...]
    harmony: str | None = None

    @property
    def dir(self) -> Path:
        return self.path.parent

    def run_dir(self, dataset: DatasetDef, model: ModelDef) -> Path:
        return self.runs_dir / slug(dataset.name) / model.id

    def cells(self) -> list[tuple[DatasetDef, ModelDef]]:
        """Every (dataset, model) pair in definition order."""
        return [(d, m) for d in self.datasets for m in self.models]


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``leaderboards/``: the current directory or harmbench's checkout."""
    if start is not None:
        for p in [start, *start.parents]:
            if p.name == "leaderboards":
                return p.parent
    cwd = Path.cwd()
    if (cwd / "leaderboards").is_dir():
        return cwd
    return Path(__file__).resolve().parents[2]


def find_leaderboard(name: str | os.PathLike) -> Path:
    """``leaderboard.toml`` for a name (``leaderboards/<name>/`` here or in the checkout), a folder or a file."""
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    if p.is_dir() and (p / FILE_NAME).is_file():
        return (p / FILE_NAME).resolve()
    tried = []
    for root in dict.fromkeys([Path.cwd(), project_root()]):
        cand = root / "leaderboards" / str(name) / FILE_NAME
        tried.append(str(cand))
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"leaderboard {str(name)!r} not found (looked for {', '.join(tried)})")


def _input_path(value: str, here: Path, root: Path) -> Path:
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    first = (here / p).resolve()
    if first.exists():
        return first
    return (root / p).resolve()


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}", f"unknown field; known: {', '.join(sorted(allowed))}", path=str(path))


def _get(table: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any, where: str, path: Path) -> Any:
    v = table.get(key, default)
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(v, bool) and bool not in types:  # TOML true/false is not an integer here
        raise ConfigError(
            f"{where}{key}", f"must be {' or '.join(t.__name__ for t in types)}, got {v!r}", path=str(path)
        )
    if v is not None and not isinstance(v, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ConfigError(f"{where}{key}", f"must be {names}, got {type(v).__name__} {v!r}", path=str(path))
    return v


def load_leaderboard(name: str | os.PathLike) -> Leaderboard:
    """Parse and check a leaderboard definition (by name, folder or file)."""
    from harmbench.metrics import PROFILES, RESIZES

    path = find_leaderboard(name)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("toml", str(exc), path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("<file>", f"cannot read ({exc})", path=str(path)) from None
    reject_non_finite(raw, str(path))
    here = path.parent
    root = project_root(here)
    lb = raw.get("leaderboard", {})
    if not isinstance(lb, dict):
        raise ConfigError("leaderboard", "must be a table", path=str(path))
    for k in raw:
        if k not in ("leaderboard", "datasets", "models"):
            raise ConfigError(k, "unknown section; known: leaderboard, datasets, models", path=str(path))
    _check_keys(lb, _LB_KEYS, "leaderboard", path)
    w = "leaderboard."
    profile = str(_get(lb, "profile", str, "harmbench", w, path))
    if profile not in PROFILES:
        raise ConfigError(
            "leaderboard.profile", f"unknown profile {profile!r}; known: {', '.join(PROFILES)}", path=str(path)
        )
    resize = str(_get(lb, "resize", str, "fixed256", w, path))
    if resize not in RESIZES:
        raise ConfigError(
            "leaderboard.resize", f"unknown resize {resize!r}; known: {', '.join(RESIZES)}", path=str(path)
        )
    split = _get(lb, "split", str, "test", w, path)
    split = None if split in (None, "", "all") else split
    lpips = _get(lb, "lpips", (bool, str), "auto", w, path)
    if isinstance(lpips, str) and lpips != "auto":
        raise ConfigError("leaderboard.lpips", f"must be true, false or 'auto', got {lpips!r}", path=str(path))
    lw = _get(lb, "lpips_weights", str, None, w, path)
    ints = {
        k: _get(lb, k, int, d, w, path)
        for k, d in (
            ("seed", 0),
            ("bootstrap", 1000),
            ("batch_size", 16),
            ("grid_samples", 6),
            ("cpus_per_cell", 1),
            ("workers", None),
        )
    }
    for k in ("bootstrap", "batch_size", "cpus_per_cell"):
        if ints[k] < 1:
            raise ConfigError(f"leaderboard.{k}", f"must be at least 1, got {ints[k]}", path=str(path))
    for k in ("grid_samples", "seed", "workers"):
        if ints[k] is not None and ints[k] < 0:
            raise ConfigError(f"leaderboard.{k}", f"must be >= 0, got {ints[k]}", path=str(path))
    if lw is not None and not _input_path(lw, here, root).is_file():
        raise ConfigError("leaderboard.lpips_weights", f"file not found: {_input_path(lw, here, root)}", path=str(path))

    lb_name = here.name if path.name == FILE_NAME else path.stem
    runs_dir = (here / str(_get(lb, "runs", str, "runs", w, path))).resolve()

    datasets: list[DatasetDef] = []
    raw_ds = raw.get("datasets", [])
    if not isinstance(raw_ds, list) or not raw_ds:
        raise ConfigError("datasets", "at least one [[datasets]] table is required", path=str(path))
    for i, d in enumerate(raw_ds):
        wd = f"datasets[{i}]."
        if not isinstance(d, dict):
            raise ConfigError(f"datasets[{i}]", f"must be a table, got {d!r}", path=str(path))
        _check_keys(d, _DS_KEYS, f"datasets[{i}]", path)
        dname = _get(d, "name", str, None, wd, path)
        if not dname:
            raise ConfigError(f"datasets[{i}].name", "is required", path=str(path))
        recipe = _get(d, "recipe", str, None, wd, path)
        dpath = _get(d, "path", str, None, wd, path)
        if recipe is None and dpath is None:
            raise ConfigError(f"datasets[{i}]", "needs a 'path' (built data) or a 'recipe' (to build)", path=str(path))
        recipe_p = _input_path(recipe, here, root) if recipe else None
        if recipe_p is not None and not recipe_p.is_file():
            raise ConfigError(f"datasets[{i}].recipe", f"recipe file not found: {recipe_p}", path=str(path))
        if dpath is not None:
            data_p = _input_path(dpath, here, root) if recipe is None else (here / dpath).resolve()
            if recipe is None and not data_p.exists():
                raise ConfigError(
                    f"datasets[{i}].path", f"data not found: {data_p} (give a 'recipe' to build it)", path=str(path)
                )
        else:
            data_p = runs_dir / "data" / slug(dname)
        dsplit = _get(d, "split", str, split, wd, path)
        counts = {k: _get(d, k, int, None, wd, path) for k in ("max_samples", "limit")}
        for k, v in counts.items():
            if v is not None and v < 1:
                raise ConfigError(f"datasets[{i}].{k}", f"must be at least 1, got {v}", path=str(path))
        datasets.append(
            DatasetDef(
                name=dname,
                path=data_p,
                recipe=recipe_p,
                max_samples=counts["max_samples"],
                limit=counts["limit"],
                split=None if dsplit in ("", "all") else dsplit,
            )
        )
    if len({slug(d.name) for d in datasets}) != len(datasets):
        raise ConfigError("datasets", "dataset names must be unique", path=str(path))

    models: list[ModelDef] = []
    raw_models = raw.get("models", [])
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError("models", "at least one [[models]] table is required", path=str(path))
    for i, m in enumerate(raw_models):
        wm = f"models[{i}]."
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, dict):
            raise ConfigError(f"models[{i}]", f"must be a table or a model name, got {m!r}", path=str(path))
        _check_keys(m, _MODEL_KEYS, f"models[{i}]", path)
        mname = _get(m, "name", str, None, wm, path)
        if not mname:
            raise ConfigError(f"models[{i}].name", "is required", path=str(path))
        ck = _get(m, "checkpoint", str, None, wm, path)
        opts = _get(m, "options", dict, {}, wm, path)
        wts = _get(m, "weights", (str, list), [], wm, path)
        wts = [w.strip() for w in wts.split(",") if w.strip()] if isinstance(wts, str) else wts
        if not all(isinstance(w, str) and w for w in wts):
            raise ConfigError(f"{wm}weights", "must be a file, 'a.pth,b.pth' or a list of files", path=str(path))
        if wts and ck:
            raise ConfigError(f"{wm}weights", "give either checkpoint or weights, not both", path=str(path))
        card = _get(m, "card", str, None, wm, path)
        if card is not None:
            if wts or ck:
                raise ConfigError(f"{wm}card", "give one of checkpoint, weights or card", path=str(path))
            from harmbench.models.cards import get_card

            try:
                found = get_card(card)
            except ConfigError as exc:
                raise ConfigError(f"{wm}card", str(exc), path=str(path)) from None
            if found.model != mname:
                raise ConfigError(
                    f"{wm}card", f"card {card!r} holds weights for {found.model!r}, not {mname!r}", path=str(path)
                )
        proto = _get(m, "protocol", str, None, wm, path)
        if proto is not None and proto not in _PROTOCOLS:
            raise ConfigError(f"{wm}protocol", f"must be one of {', '.join(_PROTOCOLS)}, got {proto!r}", path=str(path))
        mseed = _get(m, "seed", int, None, wm, path)
        if isinstance(mseed, bool):
            raise ConfigError(f"{wm}seed", f"must be int, got {mseed!r}", path=str(path))
        models.append(
            ModelDef(
                name=mname,
                label=str(_get(m, "label", str, mname, wm, path)),
                checkpoint=_input_path(ck, here, root) if ck else None,
                options=dict(opts),
                optional=bool(_get(m, "optional", bool, False, wm, path)),
                weights=tuple(_input_path(w, here, root) for w in wts),
                protocol=proto,
                seed=mseed,
                card=card,
            )
        )
    if len({m.id for m in models}) != len(models):
        raise ConfigError("models", "model labels must be unique (they name the run folders)", path=str(path))

    return Leaderboard(
        name=lb_name,
        path=path,
        title=str(_get(lb, "title", str, lb_name, w, path)),
        description=str(_get(lb, "description", str, "", w, path)),
        profile=profile,
        resize=resize,
        split=split,
        lpips=lpips,
        lpips_weights=_input_path(lw, here, root) if lw else None,
        seed=ints["seed"],
        bootstrap=ints["bootstrap"],
        batch_size=ints["batch_size"],
        grid_samples=ints["grid_samples"],
        published=bool(_get(lb, "published", bool, False, w, path)),
        runs_dir=runs_dir,
        cpus_per_cell=ints["cpus_per_cell"],
        workers=ints["workers"],
        datasets=tuple(datasets),
        models=tuple(models),
        harmony=_harmony_spec(_get(lb, "harmony", str, None, w, path), here, root),
    )


def _harmony_spec(value: str | None, here: Path, root: Path) -> str | None:
    """A committed extractor name stays as is; files (``a.pth`` or ``a.pth,b.pth``) are resolved like other inputs."""
    if not value:
        return None
    parts = [v.strip() for v in value.split(",") if v.strip()]
    if len(parts) == 1 and not any(c in parts[0] for c in "/\\."):
        return parts[0]
    return ",".join(str(_input_path(p, here, root)) for p in parts)


__all__ = [
    "DatasetDef",
    "FILE_NAME",
    "Leaderboard",
    "ModelDef",
    "find_leaderboard",
    "load_leaderboard",
    "project_root",
    "slug",
]
