"""Aggregation: image-weighted groups, fg buckets, bootstrap CIs, paired bootstrap, identity error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmbench.eval import aggregate as agg


def _table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "key": [f"k{i:03d}" for i in range(n)],
            "subset": np.where(np.arange(n) % 3 == 0, "a", "b"),
            "recipe": np.where(np.arange(n) % 2 == 0, "r1", "r2"),
            "category": np.where(np.arange(n) % 4 == 0, "cat", "dog"),
            "identity": np.arange(n) % 10 == 9,
            "fg_ratio": rng.uniform(0.0, 0.5, n),
            "mse": rng.gamma(2.0, 50.0, n),
            "psnr": rng.normal(30, 3, n),
            "fmse": rng.gamma(2.0, 500.0, n),
            "input_mse": rng.gamma(2.0, 5.0, n),
        }
    )
    df.loc[df["identity"], "subset"] = "identical"
    return df


def test_breakdown_matches_pandas_groupby():
    df = _table()
    bd = agg.breakdown(df, n_boot=200, seed=1)
    base = df[~df["identity"]]
    all_row = bd[bd["kind"] == "all"].iloc[0]
    assert all_row["group"] == agg.ALL and all_row["n"] == len(base)
    assert all_row["mse"] == pytest.approx(base["mse"].mean(), rel=1e-12)
    for kind in ("subset", "recipe", "category"):
        exp = df.groupby(kind)["psnr"].agg(["mean", "size"])
        got = bd[bd["kind"] == kind].set_index("group")
        assert sorted(got.index) == sorted(exp.index)
        for g, r in exp.iterrows():
            assert got.loc[g, "psnr"] == pytest.approx(r["mean"], rel=1e-12)
            assert got.loc[g, "n"] == r["size"]
    # buckets partition the All rows (half-open)
    bk = bd[bd["kind"] == "bucket"]
    assert list(bk["group"]) == ["0-5", "5-15", "15-100"]
    assert bk["n"].sum() == len(base)
    low = base[base["fg_ratio"] < 0.05]
    assert bk.iloc[0]["fmse"] == pytest.approx(low["fmse"].mean(), rel=1e-12)


def test_breakdown_can_include_identity_and_skips_nan():
    df = _table(30)
    df.loc[3, "fmse"] = np.nan
    bd = agg.breakdown(df, n_boot=0, exclude_identity=False)
    r = bd[bd["kind"] == "all"].iloc[0]
    assert r["n"] == 30 and r["n_undefined"] == 1
    assert r["fmse"] == pytest.approx(df["fmse"].mean(skipna=True))
    assert np.isnan(r["fmse_lo"])  # no bootstrap asked


def test_assign_buckets_edges():
    s = pd.Series([0.0, 0.05, 0.1, 0.15, 1.0, 0.5])
    half = agg.assign_buckets(s, inclusive="half-open")
    assert half.groupby("row")["bucket"].apply(list).to_dict() == {
        0: ["0-5"],
        1: ["5-15"],
        2: ["5-15"],
        3: ["15-100"],
        4: ["15-100"],
        5: ["15-100"],
    }
    both = agg.assign_buckets(s, inclusive="both")
    assert sorted(both[both["row"] == 1]["bucket"]) == ["0-5", "5-15"]  # on an edge: two buckets (SamsungLabs)


def test_bootstrap_ci_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 200, 2000):
        x = rng.normal(10.0, 2.0, n)
        mean, lo, hi = agg.bootstrap_means(x, n_boot=1000, seed=0)
        assert lo <= mean <= hi
        assert mean == pytest.approx(x.mean())
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # about 2 * 1.96 * sd / sqrt(n) for a normal mean
    assert widths[2] == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(2000), rel=0.2)
    # seeded: same interval twice
    assert agg.bootstrap_means(x, n_boot=300, seed=5) == agg.bootstrap_means(x, n_boot=300, seed=5)


def test_bootstrap_edge_cases():
    m, lo, hi = agg.bootstrap_means(np.array([]), n_boot=10)
    assert np.isnan(m) and np.isnan(lo)
    m, lo, hi = agg.bootstrap_means(np.array([4.0]), n_boot=10)
    assert m == lo == hi == 4.0
    vals = np.array([[1.0, np.nan], [3.0, np.nan]])
    m, lo, hi = agg.bootstrap_means(vals, n_boot=50)
    assert m[0] == 2.0 and np.isnan(m[1]) and np.isnan(lo[1])


def test_paired_bootstrap_detects_a_clearly_better_method():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 100.0, 80)
    better = base * 0.7 + rng.normal(0, 5, 80)
    r = agg.paired_bootstrap(better, base, n_boot=5000, seed=0)
    assert r["diff"] < 0 and r["hi"] < 0
    assert r["p"] < 0.01
    same = agg.paired_bootstrap(base + rng.normal(0, 1, 80), base, n_boot=5000, seed=0)
    assert same["p"] > 0.05
    assert same["lo"] < 0 < same["hi"]


def test_compare_runs_pairs_by_key_and_names_the_winner():
    a = _table(50, seed=1)
    b = a.copy()
    b["mse"] = a["mse"] * 2 + 10
    b = b.sample(frac=1.0, random_state=0)  # order must not matter
    c = agg.compare_runs(a, b, ["mse", "psnr"], n_boot=2000)
    row = c.set_index("metric").loc["mse"]
    assert row["better"] == "a" and row["p"] < 0.01 and row["diff"] < 0
    assert c.set_index("metric").loc["psnr", "diff"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="different samples"):
        agg.compare_runs(a, b.iloc[:-3], ["mse"])


def test_identity_error_and_summary_dict():
    df = _table(40)
    ie = agg.identity_error(df, n_boot=200)
    ident = df[df["identity"]]
    assert ie["n"] == len(ident) and ie["mse"] == pytest.approx(ident["input_mse"].mean())
    assert ie["mse_lo"] <= ie["mse"] <= ie["mse_hi"]
    doc = agg.summary_dict(df)
    assert doc["n"] == int((~df["identity"]).sum())
    assert set(doc["subsets"]) == {"a", "b", "identical"}
    assert set(doc["buckets"]) == {"0-5", "5-15", "15-100"}
    assert doc["metrics"]["mse"] == pytest.approx(df.loc[~df["identity"], "mse"].mean())


def test_summary_dict_counts_undefined_values_only_when_present():
    df = _table(20)
    assert all(
        "n_undefined" not in g for g in (agg.summary_dict(df)["metrics"], *agg.summary_dict(df)["subsets"].values())
    )
    df.loc[[0, 1], "psnr"] = np.inf  # e.g. an exact match under a profile without epsilon
    df.loc[1, "fmse"] = np.nan
    doc = agg.summary_dict(df, ["mse", "psnr", "fmse"], exclude_identity=False)
    assert doc["metrics"]["n_undefined"] == 2 and doc["subsets"]["a"]["n_undefined"] == 1  # rows 0 (a) and 1 (b)
    assert doc["metrics"]["psnr"] == pytest.approx(df["psnr"].iloc[2:].mean())
    assert "n_undefined" not in doc["subsets"]["identical"]
