"""Build config: TOML -> validated frozen dataclasses; every bad field is a ConfigError naming it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harmbench.errors import ConfigError
from harmbench.recipes import build_config_from_text, load_build_config
from harmbench.sources import register_source
from harmbench.sources.base import ObjectRecord

REPO = Path(__file__).resolve().parents[1]
CALLS: list[dict] = []


@register_source("cfgtest_probe")
def _probe_source(root: str, *, flavour: str = "plain") -> list[ObjectRecord]:
    """Records nothing; logs calls so tests can check that validation happens before any work."""
    CALLS.append({"root": root, "flavour": flavour})
    return []


BASE = """
[dataset]
name = "t"
seed = 3
shard_size = 10

[output]
composite_format = "png"

[split]
test_fraction = 0.25

[sources.probe]
type = "cfgtest_probe"
root = "data"

[[recipes]]
type = "hcoco"
source = "probe"
per_object = 2
methods = ["reinhard", "idt"]

[[recipes]]
type = "hue"
source = "probe"

[[recipes]]
type = "identical"
source = "probe"
"""


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "b.toml").write_text(BASE)
    return tmp_path


def _load(tmp: Path, text: str, overrides=None):
    p = tmp / "c.toml"
    p.write_text(text)
    return load_build_config(p, overrides)


def test_valid_config_loads_with_defaults(cfg_dir: Path):
    CALLS.clear()
    cfg = load_build_config(cfg_dir / "b.toml")
    assert (cfg.name, cfg.seed, cfg.shard_size) == ("t", 3, 10)
    assert (
        cfg.composite_format == "png"
        and cfg.jpeg_quality == 95
        and cfg.store_reference is False
        and cfg.max_side is None
    )
    assert cfg.split.test_fraction == 0.25
    assert cfg.filters.fg_ratio_min == 0.01 and cfg.filters.fg_ratio_max == 0.8 and cfg.filters.max_attempts == 5
    assert [r.name for r in cfg.recipes] == ["hcoco", "hue", "identical"]
    assert cfg.recipes[0].options.methods == ("reinhard", "idt") and cfg.recipes[0].per_object == 2
    assert cfg.recipes[1].options.hue_shift == (0.0, 1.0)
    assert cfg.sources["probe"].options["root"] == str((cfg_dir / "data").resolve())
    assert cfg.toml_text == BASE
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dataset.seed = 4  # type: ignore[misc]
    assert CALLS == []  # loading never calls a source


BAD = [
    # (old, new, field)
    ('name = "t"', 'name = "a.b"', "dataset.name"),
    ("seed = 3", "seed = -1", "dataset.seed"),
    ("seed = 3", 'seed = "3"', "dataset.seed"),
    ("shard_size = 10", "shard_size = 0", "dataset.shard_size"),
    ("shard_size = 10", "shard_size = 10\ncolour = 1", "dataset.colour"),
    ('composite_format = "png"', 'composite_format = "gif"', "output.composite_format"),
    ('composite_format = "png"', "jpeg_quality = 90", "output.jpeg_quality"),
    ('composite_format = "png"', "jpeg_quality = 101", "output.jpeg_quality"),
    ('composite_format = "png"', 'store_reference = "yes"', "output.store_reference"),
    ('composite_format = "png"', "max_side = 4", "output.max_side"),
    ("test_fraction = 0.25", "test_fraction = 1.5", "split.test_fraction"),
    ("test_fraction = 0.25", 'unlisted = "maybe"', "split.unlisted"),
    ("test_fraction = 0.25", 'test_list = "missing.txt"', "split.test_list"),
    ('root = "data"', 'root = "nowhere"', "sources.probe.root"),
    ('type = "cfgtest_probe"', 'type = "nosuchsource"', "sources.probe.type"),
    ('root = "data"', 'root = "data"\nspeed = 3', "sources.probe.speed"),
    ('source = "probe"\nper_object = 2', 'source = "elsewhere"\nper_object = 2', "recipes[0].source"),
    ("per_object = 2", "per_object = 0", "recipes[0].per_object"),
    ("per_object = 2", "per_object = 1.5", "recipes[0].per_object"),
    ("per_object = 2", "per_object = 2\nshiny = true", "recipes[0].shiny"),
    ('type = "hcoco"', 'type = "hcocoa"', "recipes[0].type"),
    ('methods = ["reinhard", "idt"]', 'methods = ["reinhard", "nope"]', "recipes[0].methods[1]"),
    ('methods = ["reinhard", "idt"]', "methods = []", "recipes[0].methods"),
    ('methods = ["reinhard", "idt"]', 'methods = ["idt", "idt"]', "recipes[0].methods"),
    ('methods = ["reinhard", "idt"]', 'reference_fallback = "maybe"', "recipes[0].reference_fallback"),
    ('methods = ["reinhard", "idt"]', "fg_ratio_min = 2.0", "recipes[0].fg_ratio_min"),
    ('methods = ["reinhard", "idt"]', "fg_ratio_min = 0.9\nfg_ratio_max = 0.5", "recipes[0].fg_ratio_min"),
    (
        'type = "hue"\nsource = "probe"',
        'type = "hue"\nsource = "probe"\nhue_shift = [0.8, 0.2]',
        "recipes[1].hue_shift",
    ),
    (
        'type = "hue"\nsource = "probe"',
        'type = "hue"\nsource = "probe"\nhue_shift = [0.0, 2.0]',
        "recipes[1].hue_shift",
    ),
    ('type = "hue"\nsource = "probe"', 'type = "hue"\nsource = "probe"\nsat_scale = [0.5]', "recipes[1].sat_scale"),
    ('type = "hue"\nsource = "probe"', 'type = "hue"\nsource = "probe"\nname = "hcoco"', "recipes[1].name"),
    (
        'type = "identical"\nsource = "probe"',
        'type = "identical"\nsource = "probe"\nper_object = 2',
        "recipes[2].per_object",
    ),
    (
        'type = "identical"\nsource = "probe"',
        'type = "identical"\nsource = "probe"\nmin_fmse = 5.0',
        "recipes[2].min_fmse",
    ),
    ('type = "identical"\nsource = "probe"', "source = 1", "recipes[2].type"),
    ("[split]", "[splits]", "splits"),
]


@pytest.mark.parametrize("old,new,field", BAD, ids=[b[2] + ":" + b[1].splitlines()[-1] for b in BAD])
def test_bad_field_names_the_field_and_file(cfg_dir: Path, old: str, new: str, field: str):
    assert old in BASE
    CALLS.clear()
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, BASE.replace(old, new, 1))
    assert ei.value.field == field, str(ei.value)
    assert ei.value.path == str(cfg_dir / "c.toml")
    assert str(cfg_dir / "c.toml") in str(ei.value) and field in str(ei.value)
    assert CALLS == []  # rejected before any work


def test_missing_sections_and_bad_toml(cfg_dir: Path):
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, BASE.replace('[dataset]\nname = "t"', "[dataset]"))
    assert ei.value.field == "dataset.name"
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, BASE.split("[[recipes]]")[0])
    assert ei.value.field == "recipes"
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, BASE + "\n[dataset\n")
    assert ei.value.field == "<toml>"
    with pytest.raises(ConfigError) as ei:
        load_build_config(cfg_dir / "absent.toml")
    assert ei.value.field == "<file>"


def test_overrides_dict_and_strings(cfg_dir: Path, tmp_path_factory, monkeypatch):
    other = tmp_path_factory.mktemp("elsewhere")
    cfg = load_build_config(
        cfg_dir / "b.toml",
        {"sources.probe.root": str(other), "dataset.seed": "11", "recipes[0].per_object": "3", "output.max_side": 256},
    )
    assert cfg.sources["probe"].options["root"] == str(other)
    assert cfg.seed == 11 and cfg.recipes[0].per_object == 3 and cfg.max_side == 256
    assert cfg.toml_text == BASE  # the file text as written; overrides kept beside it
    assert cfg.overrides["dataset.seed"] == "11"
    # command-line form, relative paths resolve against the working directory
    monkeypatch.chdir(other.parent)
    cfg = load_build_config(cfg_dir / "b.toml", [f"sources.probe.root={other.name}", "recipes.1.per_object=2"])
    assert cfg.sources["probe"].options["root"] == str(other.resolve())
    assert cfg.recipes[1].per_object == 2
    with pytest.raises(ConfigError) as ei:
        load_build_config(cfg_dir / "b.toml", {"dataset.seed": "x1"})
    assert ei.value.field == "dataset.seed"
    with pytest.raises(ConfigError) as ei:
        load_build_config(cfg_dir / "b.toml", {"recipes[7].per_object": 1})
    with pytest.raises(ConfigError):
        load_build_config(cfg_dir / "b.toml", ["no-equals-sign"])


def test_source_paths_resolve_against_file_then_repo(tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "datasets").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    (repo / "data").mkdir()
    (tmp_path / "shared").mkdir()
    text = BASE.replace('root = "data"', 'root = "../shared"')
    cfg = build_config_from_text(text, repo / "datasets" / "x.toml")  # ../shared from the repo root
    assert cfg.sources["probe"].options["root"] == str((tmp_path / "shared").resolve())
    cfg = build_config_from_text(BASE, repo / "datasets" / "x.toml")  # data/ only exists under the repo
    assert cfg.sources["probe"].options["root"] == str((repo / "data").resolve())


def test_split_lists(cfg_dir: Path):
    (cfg_dir / "test.txt").write_text("# test photos\nimg1\nimg2\n")
    cfg = _load(
        cfg_dir,
        BASE.replace("test_fraction = 0.25", 'test_list = "test.txt"\ntrain_list = ["img3"]\nunlisted = "skip"'),
    )
    assert cfg.split.test_ids == {"img1", "img2"} and cfg.split.train_ids == {"img3"}
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, BASE.replace("test_fraction = 0.25", 'test_list = "test.txt"\ntrain_list = ["img2"]'))
    assert ei.value.field == "split.test_list"


def test_recipe_filter_overrides_inherit(cfg_dir: Path):
    text = BASE.replace("[split]", "[filters]\nmin_fmse = 50.0\nmax_attempts = 3\n\n[split]").replace(
        'type = "hue"\nsource = "probe"', 'type = "hue"\nsource = "probe"\nmin_fmse = 10.0'
    )
    cfg = _load(cfg_dir, text)
    assert cfg.recipes[0].filters.min_fmse == 50.0 and cfg.recipes[0].filters.max_attempts == 3
    assert cfg.recipes[1].filters.min_fmse == 10.0 and cfg.recipes[1].filters.max_attempts == 3


def test_shipped_configs_validate(shared):
    root = shared("data", "labelme_outdoor")
    cfg = load_build_config(REPO / "datasets" / "labelme-outdoor.toml", {"sources.labelme.root": str(root)})
    assert {r.type for r in cfg.recipes} == {"hcoco", "hue", "identical"}
    assert 0 < cfg.split.test_fraction < 1


def test_demo_config_validates():
    demo = REPO / "datasets" / "demo.toml"
    try:
        cfg = load_build_config(demo)
    except ConfigError as exc:
        if "demo" in str(exc) and "unknown source" in str(exc):
            pytest.skip("demo source not available")
        raise
    assert {r.type for r in cfg.recipes} >= {"hcoco", "hadobe5k", "identical", "hue"}


def test_readme_documents_every_field():
    from harmbench.recipes import config as c
    from harmbench.recipes.registry import RECIPES, recipe_names
    from harmbench.recipes.schema import field_names

    text = (REPO / "datasets" / "README.md").read_text()
    names = set()
    for cls in (c.DatasetConfig, c.OutputConfig, c.FilterConfig, c.SplitConfig, c.RecipeCommon):
        names |= set(field_names(cls)) - {"train_ids", "test_ids"}
    for r in recipe_names():
        names |= set(field_names(RECIPES[r].Options))
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"datasets/README.md does not document: {missing}"


def test_recipe_source_kind_and_hadobe5k_versions(cfg_dir: Path):
    text = BASE.replace('type = "cfgtest_probe"\nroot = "data"', 'type = "coco"\nroot = "data"')
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, text.replace('type = "identical"', 'type = "iharmony4"'))
    assert ei.value.field == "recipes[2].source"
    with pytest.raises(ConfigError) as ei:
        _load(
            cfg_dir, BASE.replace('type = "identical"', 'type = "hadobe5k"\nversions = ["A", "B"]\nreal_version = "C"')
        )
    assert ei.value.field == "recipes[2].real_version"
    with pytest.raises(ConfigError) as ei:
        _load(cfg_dir, BASE.replace('type = "identical"', 'type = "hadobe5k"\nversions = ["A"]'))
    assert ei.value.field == "recipes[2].versions"
