"""Leaderboards: definitions, local runs (missing cells only), exports checked against the samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmbench.bench.eval import write_synthetic_shards
from harmbench.errors import ConfigError, UserError
from harmbench.eval.records import RunMismatchError
from harmbench.leaderboard import export_leaderboard, load_leaderboard, run_leaderboard

REPO = Path(__file__).resolve().parents[1]


def write_lb(folder: Path, data: Path, *, profile: str = "harmbench", extra_models: str = "", grid: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leaderboard.toml").write_text(f"""
[leaderboard]
title = "test board"
profile = "{profile}"
resize = "none"
lpips = false
bootstrap = 300
batch_size = 4
workers = 0
grid_samples = {grid}

[[datasets]]
name = "synth"
path = "{data}"

[[models]]
name = "composite"

[[models]]
name = "reinhard"
label = "Reinhard (bg)"
{extra_models}
""")
    return folder / "leaderboard.toml"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lbdata") / "synth"
    write_synthetic_shards(out, 15, width=64, height=48, identity_every=5, shard_size=8, seed=3)
    return out


@pytest.fixture(scope="module")
def board(tmp_path_factory, data) -> Path:
    """A leaderboard run once (module-wide): composite + reinhard, plus a missing optional checkpoint."""
    lb = write_lb(
        tmp_path_factory.mktemp("lb") / "board",
        data,
        extra_models="""
[[models]]
name = "dovenet"
checkpoint = "no/such/dovenet.safetensors"
optional = true
""",
    )
    res = run_leaderboard(lb, report=lambda m: None)
    assert sorted(res.ran) == ["synth/Reinhard-bg", "synth/composite"]
    assert res.skipped and "checkpoint not found" in res.skipped[0][1]
    return lb


def test_definitions_in_the_repository_parse():
    for name in ("demo", "labelme-outdoor"):
        lb = load_leaderboard(REPO / "leaderboards" / name)
        assert lb.name == name and lb.profile == "harmbench" and lb.split == "test"
        labels = [m.label for m in lb.models]
        for base in ("composite", "reinhard", "histmatch", "xiao", "idt"):
            assert base in labels
        assert all(m.optional for m in lb.models if m.checkpoint is not None)
        assert lb.datasets[0].recipe is not None and lb.datasets[0].recipe.is_file()


def test_definition_errors_name_the_field(tmp_path, data):
    p = write_lb(tmp_path / "b", data)
    p.write_text(p.read_text().replace('resize = "none"', 'resize = "huge"'))
    with pytest.raises(ConfigError, match="leaderboard.resize"):
        load_leaderboard(p)
    p.write_text(p.read_text().replace('resize = "huge"', 'resize = "none"\ncolour = 1'))
    with pytest.raises(ConfigError, match="leaderboard.colour"):
        load_leaderboard(p)
    with pytest.raises(UserError, match="not found"):
        load_leaderboard("no-such-leaderboard")


def test_second_run_reuses_finished_cells(board):
    res = run_leaderboard(board, report=lambda m: None)
    assert res.ran == [] and sorted(res.reused) == ["synth/Reinhard-bg", "synth/composite"]


def test_export_matches_an_independent_recomputation(board, tmp_path):
    out = tmp_path / "export"
    ctx = export_leaderboard(board, "md,csv,tex,html,png,grid", out=out)
    lb = load_leaderboard(board)
    res = pd.read_csv(out / "results.csv")
    assert list(res.columns[:5]) == ["dataset", "method", "subset", "n", "protocol"]
    assert set(res["protocol"]) == {"harmbench"}  # which protocol produced each row
    for m in ("mse", "psnr", "fmse", "fpsnr", "ssim", "lpips"):
        assert {m, f"{m}_lo", f"{m}_hi"} <= set(res.columns)
    for model in lb.models[:2]:
        samples = pd.read_parquet(lb.run_dir(lb.datasets[0], model) / "samples.parquet")
        mine = res[res["method"] == model.label].set_index("subset")
        base = samples[~samples["identity"]]
        assert mine.loc["All", "n"] == len(base)
        for m in ("mse", "psnr", "fmse", "ssim"):
            assert mine.loc["All", m] == pytest.approx(base[m].mean(), rel=1e-5)
            assert mine.loc["All", f"{m}_lo"] <= mine.loc["All", m] <= mine.loc["All", f"{m}_hi"]
        by = samples.groupby("subset")[["mse", "fmse", "psnr"]].mean()
        counts = samples.groupby("subset").size()
        for subset, row in by.iterrows():
            assert mine.loc[subset, "n"] == counts[subset]
            for m in ("mse", "fmse", "psnr"):
                assert mine.loc[subset, m] == pytest.approx(row[m], rel=1e-5)
        bd = pd.read_csv(out / "breakdown.csv")
        bk = bd[(bd["method"] == model.label) & (bd["kind"] == "bucket")].set_index("group")
        edges = {"0-5": (0, 0.05), "5-15": (0.05, 0.15), "15-100": (0.15, 1.01)}
        for g, (lo, hi) in edges.items():
            part = base[(base["fg_ratio"] >= lo) & (base["fg_ratio"] < hi)]
            assert bk.loc[g, "n"] == len(part)
            if len(part):
                assert bk.loc[g, "fmse"] == pytest.approx(part["fmse"].mean(), rel=1e-5)
    ident = pd.read_csv(out / "identity.csv").set_index("method")
    assert ident.loc["composite", "mse"] == 0 and ident.loc["Reinhard (bg)", "n"] == 3
    comp = pd.read_csv(out / "comparisons.csv")
    assert set(comp["baseline"]) == {"composite"} and set(comp["method"]) == {"Reinhard (bg)"}
    md = (out / "results.md").read_text()
    assert "| composite | harmbench |" in md and "Reinhard (bg)" in md and "bootstrap" in md
    assert "checkpoint not found" in md  # the skipped optional model is noted
    assert "Published" not in md
    tex = (out / "results.tex").read_text()
    assert r"\toprule" in tex and r"Reinhard (bg)" in tex
    html = (out / "results.html").read_text()
    assert "<table>" in html and "figures/synth_metrics.png" in html
    for f in (
        "synth_metrics.png",
        "synth_metrics_mse.png",
        "synth_metrics_psnr.png",
        "synth_buckets.png",
        "synth_grid.png",
    ):
        p = out / "figures" / f
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    assert all(p.exists() for p in ctx.written)


def test_export_formats_registry(board, tmp_path):
    with pytest.raises(UserError, match="unknown export format"):
        export_leaderboard(board, "md,pdf", out=tmp_path)
    ctx = export_leaderboard(board, "md", out=tmp_path / "only-md")
    names = sorted(p.name for p in ctx.written)
    assert "results.csv" in names and "results.md" in names and "results.html" not in names


def test_profile_mismatch_with_an_existing_run_is_an_error(board, tmp_path):
    text = board.read_text().replace('profile = "harmbench"', 'profile = "iharm"')
    other = tmp_path / "board.toml"
    other.write_text(text.replace("[leaderboard]", f'[leaderboard]\nruns = "{board.parent / "runs"}"'))
    with pytest.raises(RunMismatchError, match="used profile 'harmbench'.*asks for 'iharm'"):
        run_leaderboard(other, report=lambda m: None)


def test_published_numbers_are_labelled(board, tmp_path):
    text = board.read_text().replace("grid_samples", "published = true\ngrid_samples")
    p = tmp_path / "pub.toml"
    p.write_text(text.replace("[leaderboard]", f'[leaderboard]\nruns = "{board.parent / "runs"}"'))
    ctx = export_leaderboard(p, "md,csv", out=tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "quoted from the papers; NOT computed by harmbench" in md and "172.47" in md
    assert "not comparable" in md
    assert ctx.results["mse"].notna().all()


def test_cli_leaderboard(board, tmp_path, capsys):
    from harmbench.cli import main

    assert main(["leaderboard", "run", str(board), "--no-progress"]) == 0
    assert "0 cell(s) to run" in capsys.readouterr().out
    assert main(["leaderboard", "export", str(board), "--format", "csv", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.csv").exists()
    run = json.loads((board.parent / "runs" / "synth" / "composite" / "run.json").read_text())
    assert run["n_samples"] == 15 and np.isfinite(run["summary"]["metrics"]["mse"])


def test_model_card_entries_run_from_the_cache_or_are_skipped(tmp_path, monkeypatch, data):
    """A ``card = …`` entry runs the card's cached files, and is skipped with a note naming how to get them."""
    from conftest import shared_path

    from harmbench.models import weights_cache
    from harmbench.models.cards import CARDS, ModelCard, WeightFile

    fixture = shared_path("official", "dovenet_G", "state_dict.pt")
    card = ModelCard(
        name="test-dovenet-g",
        model="dovenet",
        source="test",
        files=(WeightFile(role="G", filename="latest_net_G.pth"),),
    )
    monkeypatch.setitem(CARDS, card.name, card)
    monkeypatch.setenv("HARMBENCH_WEIGHTS", str(tmp_path / "cache"))
    extra = """
[[models]]
name = "dovenet"
label = "DoveNet (authors)"
card = "test-dovenet-g"
protocol = "official"
optional = true
"""
    lb_path = write_lb(tmp_path / "board", data, extra_models=extra)
    text = lb_path.read_text().replace('resize = "none"', 'resize = "fixed256"')
    lb_path.write_text(text)
    res = run_leaderboard(load_leaderboard(lb_path), report=lambda *_: None)
    skipped = dict(res.skipped)
    reason = next((v for k, v in skipped.items() if "dovenet" in k.lower()), repr(skipped))
    assert "test-dovenet-g" in reason and "latest_net_G.pth" in reason and "harmbench weights fetch" in reason

    weights_cache.import_files(card, [fixture])
    res = run_leaderboard(load_leaderboard(lb_path), report=lambda *_: None)
    assert any("dovenet" in c.lower() for c in res.ran), (res.ran, res.failed)
    ctx = export_leaderboard(load_leaderboard(lb_path), formats="csv")
    table = pd.read_csv(ctx.out_dir / "results.csv")
    row = table[(table["method"] == "DoveNet (authors)") & (table["subset"] == "All")]
    assert len(row) == 1 and row["protocol"].iloc[0] == "official"

    bad = write_lb(tmp_path / "bad", data, extra_models='\n[[models]]\nname = "bargainnet"\ncard = "test-dovenet-g"\n')
    with pytest.raises(ConfigError, match="card.*holds weights for 'dovenet'"):
        load_leaderboard(bad)


def test_export_is_byte_identical_when_the_runs_are_repeated(data, tmp_path):
    """Exported tables carry no timings or other per-run noise: the same board run twice exports the same bytes."""
    out = []
    for name in ("a", "b"):
        lb = write_lb(tmp_path / name / "board", data)
        run_leaderboard(load_leaderboard(lb), report=lambda *_: None)
        out.append(export_leaderboard(load_leaderboard(lb), "md,csv,tex,html", out=tmp_path / name / "export"))
    names = sorted(p.name for p in out[0].written)
    assert names == sorted(p.name for p in out[1].written) and "results.md" in names
    for name in names:
        assert (tmp_path / "a" / "export" / name).read_bytes() == (tmp_path / "b" / "export" / name).read_bytes(), name
