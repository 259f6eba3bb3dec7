"""Build configuration: a dataset recipe TOML -> validated frozen dataclasses.

Every field is checked (type, range, cross-field rules, that referenced
sources, recipe types and colour-transfer methods exist, that input paths
exist) before any work starts. Errors are :class:`ConfigError` naming the
dotted field (``recipes[1].methods``) and the file. The schema is documented
in ``datasets/README.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomllib

from harmbench.errors import ConfigError
from harmbench.recipes.registry import get_recipe, recipe_names
from harmbench.recipes.schema import _Bad, coerce, from_table, opt, reject_non_finite

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _dot_free_name(value: Any) -> str | None:
    if isinstance(value, str) and not _NAME_RE.match(value):
        return f"must use letters, digits, '_' and '-' only (no dots or spaces), got {value!r}"
    return None


def _split_names(value: Any) -> str | None:
    for v in value or ():
        if msg := _dot_free_name(v):
            return msg
    return None


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DatasetConfig:
    """``[dataset]``: identity of the built dataset."""

    name: str = opt(doc="dataset name (letters, digits, _ and -)", nonempty=True, check=_dot_free_name)
    seed: int = opt(0, doc="global seed; every sample's randomness derives from (seed, key)", ge=0, lt=2**63)
    shard_size: int = opt(1000, doc="samples per shard", ge=1, le=1_000_000)
    description: str = opt("", doc="free text for the dataset card")
    license: str = opt("", doc="licence of the built dataset as a whole (per-sample licences are in the meta)")


@dataclass(frozen=True)
class OutputConfig:
    """``[output]``: how samples are stored."""

    composite_format: Literal["jpg", "png"] = opt("jpg", doc="encoding of composites")
    jpeg_quality: int = opt(95, doc="JPEG quality of encoded images", ge=95, le=100)
    store_reference: bool = opt(False, doc="also store the reference image (hcoco)")
    max_side: int | None = opt(
        None, doc="resize so the longest side is at most this (pixels); none: keep size", ge=16, le=65536
    )


@dataclass(frozen=True)
class FilterConfig:
    """``[filters]`` (and per-recipe overrides): iHarmony4-style sample filters."""

    fg_ratio_min: float = opt(0.01, doc="smallest foreground/image area ratio kept (0-1)", ge=0.0, le=1.0)
    fg_ratio_max: float = opt(0.80, doc="largest foreground/image area ratio kept (0-1)", ge=0.0, le=1.0)
    min_fmse: float = opt(100.0, doc="smallest foreground MSE between composite and real, on 0-255", ge=0.0)
    max_attempts: int = opt(5, doc="draws (method/reference/amounts) tried before a sample is skipped", ge=1, le=100)


@dataclass(frozen=True)
class SplitConfig:
    """``[split]``: train/test split by image."""

    test_fraction: float = opt(
        0.1, doc="fraction of images in the test split (0-1), drawn from (seed, image id)", ge=0.0, le=1.0
    )
    train_list: str | tuple[str, ...] | None = opt(
        None, doc="image ids of the train split: a text file (one a line) or an array"
    )
    test_list: str | tuple[str, ...] | None = opt(
        None, doc="image ids of the test split: a text file (one a line) or an array"
    )
    unlisted: Literal["hash", "train", "test", "skip"] = opt(
        "hash", doc="split of images in neither list: hash (test_fraction), train, test or skip"
    )
    train_ids: frozenset[str] = frozenset()
    test_ids: frozenset[str] = frozenset()

    @property
    def uses_lists(self) -> bool:
        return self.train_list is not None or self.test_list is not None


@dataclass(frozen=True)
class SourceConfig:
    """``[sources.<name>]``: a source instance; ``type`` names the source, the other keys are its options."""

    name: str
    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class RecipeCommon:
    """Fields every ``[[recipes]]`` table accepts (recipe-specific options come on top)."""

    type: str = opt(doc="registered recipe: hcoco, hadobe5k, identical, hue, iharmony4")
    source: str = opt(doc="name of a [sources.<name>] table")
    name: str | None = opt(
        None, doc="key prefix and meta name; default: the type; unique per build", check=_dot_free_name
    )
    per_object: int = opt(1, doc="samples per input object (key suffix _1.._k when > 1)", ge=1, le=100)
    max_samples: int | None = opt(None, doc="keep at most this many planned samples (deterministic subset)", ge=1)
    splits: tuple[str, ...] | None = opt(
        None,
        doc='plan samples only for photos of these splits, e.g. ["train"] (default: every split)',
        nonempty=True,
        unique=True,
        check=_split_names,
    )
    fg_ratio_min: float | None = opt(None, doc="override of filters.fg_ratio_min", ge=0.0, le=1.0)
    fg_ratio_max: float | None = opt(None, doc="override of filters.fg_ratio_max", ge=0.0, le=1.0)
    min_fmse: float | None = opt(None, doc="override of filters.min_fmse", ge=0.0)
    max_attempts: int | None = opt(None, doc="override of filters.max_attempts", ge=1, le=100)


#: Record kind of the known source types (others are checked when the plan loads them).
SOURCE_KINDS = {
    "coco": "object",
    "labelme": "object",
    "fivek": "object",
    "folder": "object",
    "demo": "object",
    "iharmony4": "triplet",
    "triplets": "triplet",
}

_FILTER_FIELDS = {
    "fg_ratio_min": "fg_ratio",
    "fg_ratio_max": "fg_ratio",
    "min_fmse": "min_fmse",
    "max_attempts": "min_fmse",
}


@dataclass(frozen=True)
class RecipeConfig:
    """One resolved ``[[recipes]]`` entry."""

    index: int
    name: str
    type: str
    source: str
    per_object: int
    max_samples: int | None
    filters: FilterConfig
    options: Any
    splits: tuple[str, ...] | None = None

    @property
    def where(self) -> str:
        return f"recipes[{self.index}]"


@dataclass(frozen=True)
class BuildConfig:
    """A validated dataset build configuration.

    Attributes:
        path: the TOML file.
        dataset, output, split, filters: the sections.
        sources: ``name -> SourceConfig`` (paths resolved to absolute).
        recipes: the recipe entries in file order.
        toml_text: the file's text as written (embedded in the dataset card).
        overrides: the command-line overrides applied on top of it.
        data: the effective configuration (after overrides) as plain data.
    """

    path: str
    dataset: DatasetConfig
    output: OutputConfig
    split: SplitConfig
    filters: FilterConfig
    sources: dict[str, SourceConfig]
    recipes: tuple[RecipeConfig, ...]
    toml_text: str
    overrides: dict[str, Any]
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def seed(self) -> int:
        return self.dataset.seed

    @property
    def shard_size(self) -> int:
        return self.dataset.shard_size

    @property
    def composite_format(self) -> str:
        return self.output.composite_format

    @property
    def jpeg_quality(self) -> int:
        return self.output.jpeg_quality

    @property
    def store_reference(self) -> bool:
        return self.output.store_reference

    @property
    def max_side(self) -> int | None:
        return self.output.max_side


# --------------------------------------------------------------------------- overrides

_INDEX_RE = re.compile(r"^([A-Za-z0-9_-]+)\[(\d+)\]$")


def _split_override_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for part in key.split("."):
        m = _INDEX_RE.match(part)
        if m:
            parts += [m.group(1), int(m.group(2))]
        elif part.isdigit():
            parts.append(int(part))
        elif part:
            parts.append(part)
        else:
            raise ConfigError(key, "empty component in override key")
    return parts


def _parse_cli_value(text: str) -> Any:
    """A command-line value: a TOML literal (``3``, ``true``, ``[1, 2]``) or else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def normalize_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Overrides as a dict: a mapping as is, or ``"key=value"`` strings (the command line's ``--set``)."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    out: dict[str, Any] = {}
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(str(item), "override must look like key=value (e.g. sources.labelme.root=/data/labelme)")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def apply_overrides(data: dict, overrides: Mapping[str, Any], path: str | None) -> tuple[dict, set[str]]:
    """Set dotted keys (``sources.labelme.root``, ``recipes[0].per_object``) in a copy of ``data``.

    String values that parse as TOML literals become numbers/booleans/arrays
    unless the value they replace is a string. Returns the new data and the
    set of overridden dotted keys (normalised ``a.b[0].c``).
    """
    data = copy.deepcopy(data)
    touched: set[str] = set()
    for key, value in overrides.items():
        parts = _split_override_key(str(key))
        node: Any = data
        norm = ""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError(norm or str(key), f"override {key!r}: no item [{part}]", path=path)
                norm += f"[{part}]"
            else:
                if not isinstance(node, dict):
                    raise ConfigError(norm or str(key), f"override {key!r}: not a table", path=path)
                norm += f".{part}" if norm else part
            if last:
                current = node[part] if (isinstance(node, list) or part in node) else None
                if isinstance(value, str) and not isinstance(current, str):
                    value = _parse_cli_value(value)
                node[part] = value
            else:
                if isinstance(node, dict) and part not in node:
                    node[part] = {}
                node = node[part]
        touched.add(norm)
    return data, touched


# --------------------------------------------------------------------------- paths

_PATH_KEY_RE = re.compile(
    r"^(root|path|dir|file|annotations|images|masks|split_file)$|_(root|path|dir|file|json|list)$"
)


def is_path_option(key: str) -> bool:
    """Whether a source option holds a filesystem path (resolved relative to the TOML file)."""
    return bool(_PATH_KEY_RE.search(key))


def _repo_root(start: Path) -> Path | None:
    for p in (start, *start.parents):
        if (p / "pyproject.toml").exists() or (p / ".git").exists():
            return p
    return None


def resolve_path(value: str, base: Path, *, from_cli: bool = False) -> Path:
    """Resolve a configured path.

    ``~`` and ``$VARS`` are expanded. A relative path is tried against the
    TOML file's folder, then the repository root above it, then the working
    directory (command-line values: the working directory first); the first
    that exists wins, else the TOML-folder candidate is returned.
    """
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    if p.is_absolute():
        return p
    bases = [base]
    repo = _repo_root(base)
    if repo is not None and repo != base:
        bases.append(repo)
    bases.append(Path.cwd())
    if from_cli:
        bases.insert(0, Path.cwd())
    for b in bases:
        cand = (b / p).resolve()
        if cand.exists():
            return cand
    return (bases[0] / p).resolve()


# --------------------------------------------------------------------------- loading

_TOP_LEVEL = ("dataset", "output", "split", "filters", "sources", "recipes")


def _read_id_list(
    value: str | tuple[str, ...] | None, field: str, base: Path, path: str, from_cli: bool
) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, tuple):
        return frozenset(v.strip() for v in value if v.strip())
    p = resolve_path(value, base, from_cli=from_cli)
    if not p.is_file():
        raise ConfigError(field, f"list file not found: {p}", path=path)
    ids = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    return frozenset(ids)


def _load_sources(table: Any, base: Path, path: str, touched: set[str]) -> dict[str, SourceConfig]:
    from harmbench.sources import get_source

    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError("sources", "must be a table of [sources.<name>] tables", path=path)
    out: dict[str, SourceConfig] = {}
    for name, opts in table.items():
        where = f"sources.{name}"
        err = _dot_free_name(name)
        if err:
            raise ConfigError(where, err, path=path)
        if not isinstance(opts, dict):
            raise ConfigError(where, "must be a table", path=path)
        stype = opts.get("type", name)
        if not isinstance(stype, str):
            raise ConfigError(f"{where}.type", f"must be a string, got {stype!r}", path=path)
        try:
            fn = get_source(stype)
        except KeyError as exc:
            raise ConfigError(f"{where}.type" if "type" in opts else where, str(exc.args[0]), path=path) from None
        options = {k: v for k, v in opts.items() if k != "type"}
        _check_source_signature(fn, options, where, path)
        _check_source_values(fn, options, where, path)
        for k, v in list(options.items()):
            if is_path_option(k) and v is not None:
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"{where}.{k}", f"must be a path (a non-empty string), got {v!r}", path=path)
                p = resolve_path(v, base, from_cli=f"{where}.{k}" in touched)
                if not k.startswith("cache") and not p.exists():
                    raise ConfigError(f"{where}.{k}", f"path not found: {p}", path=path)
                options[k] = str(p)
        out[name] = SourceConfig(name=name, type=stype, options=options)
    return out


@dataclass(frozen=True)
class ObjectFilterOptions:
    """The per-object filters every object source takes (:func:`harmbench.sources.coco.apply_object_filters`)."""

    categories: str | tuple[str, ...] | None = opt(None, doc="keep only these categories")
    exclude_categories: str | tuple[str, ...] | None = opt(None, doc="drop these categories")
    min_area: float | None = opt(None, doc="smallest object area (pixels)", ge=0)
    max_area: float | None = opt(None, doc="largest object area (pixels)", ge=0)
    min_fg_ratio: float | None = opt(None, doc="smallest object/image area ratio (0-1)", ge=0.0, le=1.0)
    max_fg_ratio: float | None = opt(None, doc="largest object/image area ratio (0-1)", ge=0.0, le=1.0)
    max_objects_per_image: int | None = opt(None, doc="keep at most this many objects per image", ge=1)


def _check_source_values(fn: Any, options: dict, where: str, path: str) -> None:
    """Types and ranges of source options: the shared object filters by :class:`ObjectFilterOptions`,
    the others by the type of the source function's default (bool, str, int, float)."""
    from harmbench.sources.coco import FILTER_OPTIONS

    filters = {k: v for k, v in options.items() if k in FILTER_OPTIONS}
    if filters:
        from_table(ObjectFilterOptions, filters, where, path)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: only the defaults' types are checked
        hints = {}
    for k, v in options.items():
        p = params.get(k)
        if p is None or is_path_option(k):
            continue
        if p.default is None and k in hints and v is not None:
            try:
                value = coerce(v, hints[k], f"{where}.{k}")
            except _Bad as exc:
                raise ConfigError(exc.field, exc.message, path=path) from None
            except TypeError:  # an annotation the validator does not know (paths, records)
                continue
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{where}.{k}", f"must be >= 0, got {value}", path=path)
            continue
        if p.default is inspect.Parameter.empty or p.default is None:
            continue
        d = p.default
        if isinstance(d, bool):
            ok, want = isinstance(v, bool), "true or false"
        elif isinstance(d, int | float):
            ok, want = isinstance(v, int | float) and not isinstance(v, bool), "a number"
            if ok and v < 0:
                raise ConfigError(f"{where}.{k}", f"must be >= 0, got {v}", path=path)
        elif isinstance(d, str):
            ok, want = isinstance(v, str), "a string"
        elif isinstance(d, tuple | list):
            ok, want = isinstance(v, list | tuple) and all(isinstance(x, str) for x in v), "an array of strings"
        else:
            continue
        if not ok:
            raise ConfigError(f"{where}.{k}", f"must be {want}, got {v!r}", path=path)


def _check_source_signature(fn: Any, options: dict, where: str, path: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    allowed = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    var_kw = [n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD]
    if var_kw:
        if var_kw[0] != "filters":
            return
        from harmbench.sources.coco import FILTER_OPTIONS  # object sources take the shared filters as **filters

        allowed |= set(FILTER_OPTIONS)
    for k in options:
        if k not in allowed:
            raise ConfigError(
                f"{where}.{k}", f"unknown source option (known: {', '.join(sorted(allowed)) or 'none'})", path=path
            )
    for n, p in params.items():
        if (
            p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is inspect.Parameter.empty
            and n not in options
        ):
            raise ConfigError(f"{where}.{n}", "is required by the source", path=path)


def _load_recipes(
    table: Any, filters: FilterConfig, sources: Mapping[str, SourceConfig], path: str
) -> tuple[RecipeConfig, ...]:
    if not isinstance(table, list) or not table:
        raise ConfigError("recipes", "must be a non-empty array of [[recipes]] tables", path=path)
    out: list[RecipeConfig] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(table):
        where = f"recipes[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(where, "must be a table", path=path)
        rtype = raw.get("type")
        if rtype is None:
            raise ConfigError(f"{where}.type", f"is required (one of {', '.join(recipe_names())})", path=path)
        if not isinstance(rtype, str):
            raise ConfigError(f"{where}.type", f"must be a string, got {rtype!r}", path=path)
        try:
            recipe = get_recipe(rtype)
        except KeyError as exc:
            raise ConfigError(f"{where}.type", str(exc.args[0]), path=path) from None
        own = {f.name for f in dataclasses.fields(recipe.Options)}
        common_names = {f.name for f in dataclasses.fields(RecipeCommon)}
        common = from_table(RecipeCommon, raw, where, path, skip=own - common_names)
        options = from_table(recipe.Options, {k: v for k, v in raw.items() if k in own}, where, path)
        if common.source not in sources:
            known = ", ".join(sorted(sources)) or "none defined"
            raise ConfigError(f"{where}.source", f"no [sources.{common.source}] table (sources: {known})", path=path)
        kind = SOURCE_KINDS.get(sources[common.source].type)
        if kind is not None and kind != recipe.record_kind:
            raise ConfigError(
                f"{where}.source",
                f"recipe {rtype!r} needs {recipe.record_kind} records but source {common.source!r} "
                f"({sources[common.source].type}) yields {kind} records",
                path=path,
            )
        for fname, group in _FILTER_FIELDS.items():
            if getattr(common, fname) is not None and group not in recipe.filters:
                raise ConfigError(f"{where}.{fname}", f"does not apply to recipe {rtype!r}", path=path)
        if recipe.max_per_object is not None and common.per_object > recipe.max_per_object:
            raise ConfigError(
                f"{where}.per_object", f"must be <= {recipe.max_per_object} for recipe {rtype!r}", path=path
            )
        fdict = {
            f: getattr(common, f) if getattr(common, f) is not None else getattr(filters, f) for f in _FILTER_FIELDS
        }
        rfilters = FilterConfig(**fdict)
        if rfilters.fg_ratio_min > rfilters.fg_ratio_max:
            raise ConfigError(
                f"{where}.fg_ratio_min",
                f"{rfilters.fg_ratio_min} exceeds fg_ratio_max {rfilters.fg_ratio_max}",
                path=path,
            )
        name = common.name or rtype
        if name in seen:
            raise ConfigError(
                f"{where}.name",
                f"recipe name {name!r} already used by recipes[{seen[name]}]; set a distinct name",
                path=path,
            )
        seen[name] = i
        rc = RecipeConfig(
            index=i,
            name=name,
            type=rtype,
            source=common.source,
            per_object=common.per_object,
            max_samples=common.max_samples,
            filters=rfilters,
            options=options,
            splits=common.splits,
        )
        recipe.validate(rc, path)
        out.append(rc)
    return tuple(out)


def build_config_from_text(
    text: str, path: str | os.PathLike = "<string>", overrides: Mapping[str, Any] | Sequence[str] | None = None
) -> BuildConfig:
    """Validate TOML ``text`` as if read from ``path`` (relative paths resolve against its folder)."""
    spath = str(path)
    base = Path(spath).resolve().parent if spath != "<string>" else Path.cwd()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<toml>", f"not valid TOML: {exc}", path=spath) from None
    overrides = normalize_overrides(overrides)
    data, touched = apply_overrides(raw, overrides, spath)
    reject_non_finite(data, spath)
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(key, f"unknown section (known: {', '.join(_TOP_LEVEL)})", path=spath)
    if "dataset" not in data:
        raise ConfigError("dataset", "the [dataset] table is required (name = ...)", path=spath)
    dataset = from_table(DatasetConfig, data["dataset"], "dataset", spath)
    output = from_table(OutputConfig, data.get("output", {}), "output", spath)
    filters = from_table(FilterConfig, data.get("filters", {}), "filters", spath)
    if filters.fg_ratio_min > filters.fg_ratio_max:
        raise ConfigError(
            "filters.fg_ratio_min", f"{filters.fg_ratio_min} exceeds fg_ratio_max {filters.fg_ratio_max}", path=spath
        )
    split_tbl = data.get("split", {})
    split = from_table(
        SplitConfig, split_tbl, "split", spath, extra={"train_ids": frozenset(), "test_ids": frozenset()}
    )
    train_ids = _read_id_list(split.train_list, "split.train_list", base, spath, "split.train_list" in touched)
    test_ids = _read_id_list(split.test_list, "split.test_list", base, spath, "split.test_list" in touched)
    both = sorted(train_ids & test_ids)
    if both:
        raise ConfigError(
            "split.test_list", f"{len(both)} image id(s) also in split.train_list, e.g. {both[:3]}", path=spath
        )
    split = dataclasses.replace(split, train_ids=train_ids, test_ids=test_ids)
    sources = _load_sources(data.get("sources"), base, spath, touched)
    recipes = _load_recipes(data.get("recipes"), filters, sources, spath)
    return BuildConfig(
        path=spath,
        dataset=dataset,
        output=output,
        split=split,
        filters=filters,
        sources=sources,
        recipes=recipes,
        toml_text=text,
        overrides=overrides,
        data=data,
    )


def load_build_config(
    path: str | os.PathLike, overrides: Mapping[str, Any] | Sequence[str] | None = None
) -> BuildConfig:
    """Read and validate a dataset recipe TOML.

    Args:
        path: the TOML file.
        overrides: dotted keys -> values applied before validation, e.g.
            ``{"sources.labelme.root": "/data/labelme", "dataset.seed": 3,
            "recipes[0].per_object": "1"}`` (strings are parsed as TOML
            literals where the replaced value is not a string), or the same
            as ``["key=value", ...]`` strings.

    Raises:
        ConfigError: naming the first invalid field and the file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("<file>", "config file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("<file>", f"cannot read config ({exc})", path=str(p)) from None
    return build_config_from_text(text, p, overrides)
