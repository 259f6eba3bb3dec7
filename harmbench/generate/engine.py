"""``build_dataset``: recipe -> plan -> shards (Ray) -> index, stats and card.

Output directory layout::

    build_manifest.json               what this directory is built from (checked on resume)
    <name>-<split>-000000.tar         WebDataset shards
    <name>-<split>-000000.tar.stats.json   per-shard stats, written last (= done marker)
    index.json, index-<split>.json    wids shard indexes
    stats.json                        whole-build statistics
    README.md                         dataset card (Hugging Face YAML front matter)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmbench import __version__
from harmbench.errors import ConfigError, UserError
from harmbench.fileio import atomic_write_bytes, atomic_write_json
from harmbench.generate.card import json_features, render_card
from harmbench.generate.index import dataset_index, split_index
from harmbench.generate.plan import ShardTask, longest_first, make_shards, plan_digest
from harmbench.generate.runner import Synthesize, ray_session, run_shards
from harmbench.generate.stats import aggregate, skip_record
from harmbench.generate.writer import OutputOptions
from harmbench.recipes.base import SampleSpec

MANIFEST = "build_manifest.json"
LOCK = ".harmbench-build.lock"


class BuildMismatchError(UserError):
    """The output directory holds a build of a different recipe or plan."""


@dataclass
class BuildResult:
    """What a build produced."""

    out_dir: Path
    stats: dict[str, Any]
    shards: list[str]
    built: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.out_dir / "index.json"

    @property
    def card_path(self) -> Path:
        return self.out_dir / "README.md"


def config_digest(recipe_text: str, overrides: Sequence[str] | Mapping[str, Any] | None = None) -> str:
    """sha256 of the recipe text and the command-line overrides."""
    if isinstance(overrides, Mapping):
        ov = [f"{k}={overrides[k]}" for k in sorted(overrides)]
    else:
        ov = sorted(overrides or [])
    return hashlib.sha256(json.dumps({"recipe": recipe_text, "overrides": ov}, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    fd = os.open(out / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"{out}: another build is writing to this directory") from None
        yield
    finally:
        os.close(fd)


def _output_files(out: Path, name: str) -> Iterable[Path]:
    yield from out.glob(f"{name}-*.tar")
    yield from out.glob(f"{name}-*.tar.stats.json")
    yield from out.glob(f".{name}-*.tmp-*")
    yield from out.glob("index-*.json")
    for n in ("index.json", "stats.json", "README.md", MANIFEST):
        if (out / n).exists():
            yield out / n


def _check_manifest(out: Path, manifest: dict[str, Any], resume: bool) -> None:
    """Refuse to mix builds: an existing manifest must match unless ``resume`` is off (then old outputs go)."""
    path = out / MANIFEST
    old: dict[str, Any] | None = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
    if not resume:
        names = {manifest["name"]} | ({old.get("name")} if old and old.get("name") else set())
        for n in names:
            for p in list(_output_files(out, n)):
                p.unlink(missing_ok=True)
        return
    if old is None:
        stray = sorted(p.name for p in out.glob(f"{manifest['name']}-*.tar*"))
        if stray:
            raise BuildMismatchError(
                f"{out} holds shards ({stray[0]} …) but no {MANIFEST}; pass --no-resume to rebuild or use another --out"
            )
        return
    for k, what in (
        ("config_digest", "recipe/config"),
        ("plan_digest", "plan"),
        ("options", "output options"),
        ("name", "dataset name"),
        ("generator", "generator version"),
    ):
        if old.get(k) != manifest[k]:
            raise BuildMismatchError(
                f"{out} was built from a different {what} ({k} {str(old.get(k))[:16]}… != {str(manifest[k])[:16]}…); "
                "pass --no-resume to rebuild it or choose another --out"
            )


def _load_done(out: Path, tasks: Sequence[ShardTask]) -> tuple[list[dict[str, Any]], list[ShardTask]]:
    """Split tasks into done (valid stats file + tar of the recorded size) and to-do."""
    done: list[dict[str, Any]] = []
    todo: list[ShardTask] = []
    for t in tasks:
        sp = out / t.stats_name
        tar = out / t.name
        st = None
        if sp.exists():
            try:
                st = json.loads(sp.read_text())
            except (OSError, json.JSONDecodeError):
                st = None
        if st is not None and tar.exists() and tar.stat().st_size == st.get("filesize") and st.get("shard") == t.name:
            done.append(st)
        else:
            sp.unlink(missing_ok=True)
            tar.unlink(missing_ok=True)
            todo.append(t)
    return done, todo


def build_from_plan(
    specs: Sequence[SampleSpec],
    out: str | os.PathLike,
    *,
    name: str,
    synthesize: Synthesize,
    seed: int = 0,
    shard_size: int = 1000,
    options: OutputOptions | None = None,
    recipe_text: str = "",
    digest: str | None = None,
    plan_skipped: Iterable[Any] = (),
    license: str | None = None,
    description: str = "",
    workers: int = 0,
    ray_address: str | None = None,
    resume: bool = True,
    progress: bool = True,
    cost: Callable[[SampleSpec], float] | None = None,
) -> BuildResult:
    """Build shards for planned ``specs`` with ``synthesize`` (importable function) on Ray.

    Args:
        specs: planned samples (any order; sorted by ``(split, key)`` here).
        out: output directory (created).
        name: dataset name, used in shard names.
        synthesize: ``spec -> SampleArrays``, run in Ray workers; ``InputError`` skips a sample.
        seed, recipe_text: recorded in the card.
        digest: config digest (default: from ``recipe_text``); a different one in ``out`` is an error.
        plan_skipped: inputs the plan dropped (``InputError``, ``(path, reason)`` or dicts).
        license, description: the dataset's own licence (else derived from the samples' licences)
            and free text, for the card.
        workers: Ray tasks in flight (and CPUs of a local Ray); 0 = all CPUs of the cluster.
        ray_address: join this cluster (else ``RAY_ADDRESS``, else a local Ray).
        resume: keep shards whose stats file exists; False rebuilds everything.
        progress: tqdm progress bar on stderr.
        cost: estimated seconds to build one spec (e.g. :func:`harmbench.recipes.estimate_cost`);
            shards are then started longest first (:func:`~harmbench.generate.plan.longest_first`),
            else in plan order. The order never changes a shard's bytes.
    """
    t0 = time.perf_counter()
    opts = options or OutputOptions()
    if opts.composite_format not in ("jpg", "png"):
        raise ConfigError("output.composite_format", f"must be 'jpg' or 'png', got {opts.composite_format!r}")
    if not 1 <= int(opts.jpeg_quality) <= 100:
        raise ConfigError("output.jpeg_quality", f"must be in 1..100, got {opts.jpeg_quality}")
    tasks = make_shards(specs, name, shard_size)
    plan_skips = [skip_record(s, stage="plan") for s in plan_skipped]
    digest = digest or config_digest(recipe_text)
    manifest = {
        "name": name,
        "generator": f"harmbench {__version__}",
        "seed": int(seed),
        "shard_size": int(shard_size),
        "options": {
            "composite_format": opts.composite_format,
            "jpeg_quality": int(opts.jpeg_quality),
            "store_reference": bool(opts.store_reference),
        },
        "config_digest": digest,
        "plan_digest": plan_digest(tasks),
        "shards": [t.name for t in tasks],
        "planned_samples": sum(len(t.specs) for t in tasks),
    }
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    with _locked(outp):
        _check_manifest(outp, manifest, resume)
        for p in outp.glob(f".{name}-*.tmp-*"):  # leftovers of a killed run
            p.unlink(missing_ok=True)
        atomic_write_json(outp / MANIFEST, manifest)
        done, todo = _load_done(outp, tasks)
        if cost is not None:
            todo = longest_first(todo, cost)
        built: list[dict[str, Any]] = []
        phase_s = 0.0
        if todo:
            with ray_session(workers, ray_address) as n:
                tp = time.perf_counter()
                built = run_shards(
                    todo,
                    str(outp.resolve()),
                    opts,
                    synthesize,
                    workers=n,
                    progress=progress,
                    done_samples=sum(int(st["planned"]) for st in done),
                    total_samples=manifest["planned_samples"],
                )
                phase_s = time.perf_counter() - tp
        all_stats = sorted(done + built, key=lambda s: (s["split"], s["index"]))
        stats = aggregate(
            all_stats,
            plan_skips,
            wall_time_s=time.perf_counter() - t0,
            built_now=[s["shard"] for s in built],
            shard_phase_s=phase_s,
        )
        stats = {"name": name, "generator": manifest["generator"], "seed": int(seed), "config_digest": digest, **stats}
        splits: dict[str, list[str]] = {}
        for t in tasks:
            splits.setdefault(t.split, []).append(t.name)
        atomic_write_json(
            outp / "index.json", dataset_index(name, all_stats, seed=int(seed), generator=manifest["generator"])
        )
        for sp in splits:
            atomic_write_json(outp / f"index-{sp}.json", split_index(name, sp, all_stats))
        atomic_write_json(outp / "stats.json", stats)
        card = render_card(
            name=name,
            stats=stats,
            fields=opts.fields(),
            splits=splits,
            recipe_text=recipe_text,
            generator_version=__version__,
            seed=int(seed),
            config_digest=digest,
            license=license,
            description=description,
            json_schema=json_features([outp / s["shard"] for s in all_stats if s["count"] > 0]),
        )
        atomic_write_bytes(outp / "README.md", card.encode())
    return BuildResult(
        out_dir=outp,
        stats=stats,
        shards=[t.name for t in tasks],
        built=[s["shard"] for s in built],
        resumed=[s["shard"] for s in done],
    )


def _cfg(cfg: Any, *names: str, default: Any = None) -> Any:
    """First attribute of ``cfg`` (or of ``cfg.output``) among ``names``."""
    for src in (cfg, getattr(cfg, "output", None)):
        if src is None:
            continue
        for n in names:
            if isinstance(src, Mapping) and n in src:
                return src[n]
            if hasattr(src, n):
                return getattr(src, n)
    return default


def build_dataset(
    recipe: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = 0,
    ray_address: str | None = None,
    max_samples: int | None = None,
    resume: bool = True,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> BuildResult:
    """Build the dataset described by a recipe TOML into ``out``.

    Loads the config (``ConfigError`` before any work), plans it on the driver,
    then runs :func:`build_from_plan` with :func:`harmbench.recipes.synthesize`.
    """
    from harmbench import recipes

    cfg = recipes.load_build_config(recipe, list(overrides))
    plan = recipes.plan_dataset(cfg, max_samples)
    text = _cfg(cfg, "toml_text", "raw_toml", default=None)
    if text is None:
        text = Path(recipe).read_text(encoding="utf-8")
    opts = OutputOptions(
        composite_format=str(_cfg(cfg, "composite_format", default="jpg")),
        jpeg_quality=int(_cfg(cfg, "jpeg_quality", default=95)),
        store_reference=bool(_cfg(cfg, "store_reference", default=False)),
    )
    digest = config_digest(text, list(overrides))
    if max_samples is not None:
        digest = hashlib.sha256(f"{digest}:max_samples={int(max_samples)}".encode()).hexdigest()
    return build_from_plan(
        plan.specs,
        out,
        name=str(_cfg(cfg, "name")),
        synthesize=recipes.synthesize,
        seed=int(_cfg(cfg, "seed", default=0)),
        shard_size=int(_cfg(cfg, "shard_size", default=1000)),
        options=opts,
        recipe_text=text,
        digest=digest,
        plan_skipped=getattr(plan, "skipped", ()),
        license=_cfg(getattr(cfg, "dataset", None), "license", default=None) or None,
        description=str(_cfg(getattr(cfg, "dataset", None), "description", default="") or ""),
        workers=workers,
        ray_address=ray_address,
        resume=resume,
        progress=progress,
        cost=recipes.estimate_cost,
    )
