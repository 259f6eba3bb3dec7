"""Aggregating per-sample metric values: means, groups, fg-ratio buckets, bootstrap CIs, paired tests.

Pure pandas/numpy functions over a per-sample table (one row per image), as
written by ``harmbench eval`` (``samples.parquet``) or ``harmbench score``.
Columns used: ``key``, metric columns (``mse``, ``psnr``, ``fmse``, ``fpsnr``,
``ssim``, ``fssim``, ``lpips``, ``flpips``), grouping columns (``subset``,
``recipe``, ``category``), ``fg_ratio`` (fraction in [0, 1]) and, for the
identity check, ``identity`` (bool) and ``input_mse`` (MSE of the output
against the model's input, 0–255 scale).

Conventions:

* every mean is **image-weighted** (the mean over images, never a mean of
  subset means), as in the iHarmony4 protocol;
* an undefined value (``nan``, e.g. fMSE of an empty foreground) is left out of
  that metric's mean; ``n`` counts the images of the group and
  ``n_undefined`` the images with at least one undefined metric;
* ``All`` leaves out identity samples (composite == real) by default, since
  they test that a method leaves a harmonious image alone rather than how it
  harmonizes; they get their own subset row and :func:`identity_error`;
* confidence intervals are percentile bootstrap intervals over images
  (``n_boot`` resamples, seeded per group so a group's interval does not depend
  on which other groups are computed).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ALL = "All"
#: Every metric a per-sample table may hold, in display order.
METRICS = ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim", "lpips", "flpips", "harmony")
#: True where a lower value is better (``harmony``: BargainNet's no-reference score, opt-in).
LOWER_IS_BETTER = {
    "mse": True,
    "psnr": False,
    "fmse": True,
    "fpsnr": False,
    "ssim": False,
    "fssim": False,
    "lpips": True,
    "flpips": True,
    "input_mse": True,
    "harmony": False,
}
#: Foreground-ratio bucket edges (SamsungLabs ``evaluate_model_fg_ratios.py``): 0–5 %, 5–15 %, 15–100 %.
BUCKET_EDGES = (0.0, 0.05, 0.15, 1.0)
#: Grouping kinds of :func:`breakdown`, in output order.
GROUP_KINDS = ("all", "subset", "recipe", "category", "bucket")
DEFAULT_BOOT = 1000


# --------------------------------------------------------------------------- helpers


def metric_columns(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> list[str]:
    """The metric columns present in ``df`` (``metrics`` or :data:`METRICS`), in that order."""
    wanted = METRICS if metrics is None else tuple(metrics)
    return [m for m in wanted if m in df.columns]


def bucket_name(lo: float, hi: float) -> str:
    """``(0.05, 0.15)`` -> ``"5-15"`` (percent)."""
    return f"{lo * 100:g}-{hi * 100:g}"


def bucket_names(edges: Sequence[float] = BUCKET_EDGES) -> list[str]:
    """Bucket names for ``edges`` in protocol order."""
    return [bucket_name(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def assign_buckets(
    fg_ratio: pd.Series, edges: Sequence[float] = BUCKET_EDGES, inclusive: str = "half-open"
) -> pd.DataFrame:
    """Long table ``(row, bucket)`` placing each ratio (0–1) in its fg-ratio bucket(s).

    ``inclusive="half-open"``: ``[lo, hi)`` with the last bucket closed, so each
    image is in exactly one bucket. ``"both"``: ``[lo, hi]`` as in the SamsungLabs
    script, so a ratio exactly on an edge lands in two buckets. ``row`` holds the
    index labels of ``fg_ratio``; ratios outside every bucket (or nan) are dropped.
    """
    if inclusive not in ("half-open", "both"):
        raise ValueError(f"inclusive must be 'half-open' or 'both', got {inclusive!r}")
    r = pd.to_numeric(fg_ratio, errors="coerce").to_numpy(dtype=np.float64)
    rows, names = [], []
    last = len(edges) - 2
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        if inclusive == "both":
            inside = (r >= lo) & (r <= hi)
        else:
            inside = (r >= lo) & ((r < hi) | ((r == hi) if i == last else False))
        idx = np.flatnonzero(inside)
        rows.append(fg_ratio.index[idx])
        names.append(np.full(len(idx), bucket_name(lo, hi), dtype=object))
    if not rows:
        return pd.DataFrame({"row": [], "bucket": []})
    return pd.DataFrame({"row": np.concatenate([np.asarray(x) for x in rows]), "bucket": np.concatenate(names)})


def _seed_for(seed: int, *labels: Any) -> np.random.SeedSequence:
    tag = zlib.crc32("\x1f".join(str(x) for x in labels).encode())
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag])


def _boot_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resampling counts (each row sums to ``n``)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_means(
    values: np.ndarray,
    n_boot: int = DEFAULT_BOOT,
    seed: int | np.random.SeedSequence = 0,
    alpha: float = 0.05,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means and percentile bootstrap ``1 − alpha`` intervals of each column of ``values``.

    ``values``: ``(n,)`` or ``(n, M)`` floats; nan entries are left out of their
    column (resampled rows that hold only nan give a nan replicate, ignored).
    Returns ``(mean, lo, hi)``, each ``(M,)`` (or scalars for 1-D input). All
    columns share the same resamples. ``n == 0`` gives nan; ``n == 1`` a zero-width interval.
    """
    v = np.asarray(values, dtype=np.float64)
    one_d = v.ndim == 1
    if one_d:
        v = v[:, None]
    n, m = v.shape
    valid = np.isfinite(v)
    filled = np.where(valid, v, 0.0)
    cnt = valid.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, filled.sum(0) / np.maximum(cnt, 1), np.nan)
    lo = np.full(m, np.nan)
    hi = np.full(m, np.nan)
    if n > 0 and n_boot > 0:
        rng = np.random.default_rng(seed)
        reps = np.empty((int(n_boot), m))
        for start in range(0, int(n_boot), chunk):
            c = _boot_counts(n, min(chunk, int(n_boot) - start), rng)
            with np.errstate(invalid="ignore", divide="ignore"):
                reps[start : start + len(c)] = (c @ filled) / (c @ valid.astype(np.float64))
        q = 100.0 * np.array([alpha / 2.0, 1.0 - alpha / 2.0])
        for j in range(m):
            col = reps[:, j][np.isfinite(reps[:, j])]
            if len(col) and cnt[j] > 0:
                lo[j], hi[j] = np.percentile(col, q)
    if one_d:
        return mean[0], lo[0], hi[0]
    return mean, lo, hi


def summarize_group(
    df: pd.DataFrame,
    metrics: Sequence[str],
    *,
    n_boot: int = DEFAULT_BOOT,
    seed: int | np.random.SeedSequence = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """``{"n", "n_undefined", m, m_lo, m_hi, …}`` for one group of rows (image-weighted means)."""
    metrics = list(metrics)
    out: dict[str, Any] = {"n": int(len(df))}
    vals = df[metrics].to_numpy(dtype=np.float64) if metrics else np.empty((len(df), 0))
    out["n_undefined"] = int((~np.isfinite(vals)).any(axis=1).sum()) if metrics else 0
    if not metrics:
        return out
    mean, lo, hi = bootstrap_means(vals, n_boot=n_boot, seed=seed, alpha=alpha)
    for j, m in enumerate(metrics):
        out[m] = float(mean[j])
        out[f"{m}_lo"] = float(lo[j])
        out[f"{m}_hi"] = float(hi[j])
    return out


# --------------------------------------------------------------------------- tables


def overall_rows(df: pd.DataFrame, exclude_identity: bool = True) -> pd.DataFrame:
    """The rows that make up ``All``: every row, less identity samples when asked."""
    if exclude_identity and "identity" in df.columns:
        return df[~df["identity"].fillna(False).astype(bool)]
    return df


def breakdown(
    df: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    kinds: Sequence[str] = GROUP_KINDS,
    bucket_edges: Sequence[float] = BUCKET_EDGES,
    bucket_inclusive: str = "half-open",
    exclude_identity: bool = True,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per group: ``kind`` (all/subset/recipe/category/bucket), ``group``, ``n``,
    ``n_undefined`` and, per metric, the mean with ``_lo``/``_hi`` bootstrap bounds.

    ``all`` is the image-weighted overall (label :data:`ALL`, identity samples left
    out when ``exclude_identity``); subsets/recipes/categories are sorted by name
    and rows with a missing value in that column are left out of it; buckets
    follow ``bucket_edges`` (over the same rows as ``All``), all listed even when empty.
    """
    df = df.reset_index(drop=True)
    mets = metric_columns(df, metrics)
    rows: list[dict[str, Any]] = []

    def add(kind: str, group: str, part: pd.DataFrame) -> None:
        s = summarize_group(part, mets, n_boot=n_boot, seed=_seed_for(seed, kind, group), alpha=alpha)
        rows.append({"kind": kind, "group": group, **s})

    base = overall_rows(df, exclude_identity)
    for kind in kinds:
        if kind == "all":
            add("all", ALL, base)
        elif kind == "bucket":
            if "fg_ratio" not in df.columns:
                continue
            long = assign_buckets(base["fg_ratio"], bucket_edges, bucket_inclusive)
            for name in bucket_names(bucket_edges):
                add("bucket", name, base.loc[long.loc[long["bucket"] == name, "row"].to_numpy()])
        else:
            if kind not in df.columns:
                continue
            col = df[kind]
            for name in sorted(col.dropna().astype(str).unique()):
                add(kind, name, df[col.astype(str) == name])
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=["kind", "group", "n", "n_undefined"])
    return out


def summary_dict(
    df: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    bucket_edges: Sequence[float] = BUCKET_EDGES,
    bucket_inclusive: str = "half-open",
    exclude_identity: bool = True,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """JSON-ready ``{"n", "metrics": {…}, "subsets": {name: {"n", …}}, "buckets": {…}}``.

    The document shape ``harmbench score --json`` uses; with ``n_boot > 0`` each
    metric also gets ``<m>_lo``/``<m>_hi``. Non-finite values become ``None``; a group
    with undefined values gets ``n_undefined`` (left out when 0).
    """
    table = breakdown(
        df,
        metrics,
        kinds=("all", "subset", "bucket"),
        bucket_edges=bucket_edges,
        bucket_inclusive=bucket_inclusive,
        exclude_identity=exclude_identity,
        n_boot=n_boot,
        seed=seed,
    )
    mets = metric_columns(df, metrics)
    keep = ["n", *mets] + ([f"{m}_{b}" for m in mets for b in ("lo", "hi")] if n_boot > 0 else [])

    def clean(r: Mapping[str, Any]) -> dict[str, Any]:
        d = {k: r[k] for k in keep if k in r}
        out = {
            k: (int(v) if k == "n" else (float(v) if v is not None and np.isfinite(v) else None)) for k, v in d.items()
        }
        if r.get("n_undefined"):
            out["n_undefined"] = int(r["n_undefined"])
        return out

    all_row = clean(table[table["kind"] == "all"].iloc[0]) if len(table) else {"n": 0}
    n = all_row.pop("n", 0)
    return {
        "n": n,
        "metrics": all_row,
        "subsets": {r["group"]: clean(r) for _, r in table[table["kind"] == "subset"].iterrows()},
        "buckets": {r["group"]: clean(r) for _, r in table[table["kind"] == "bucket"].iterrows()},
    }


# --------------------------------------------------------------------------- identity and comparisons


def identity_error(
    df: pd.DataFrame, *, n_boot: int = DEFAULT_BOOT, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Mean MSE (0–255 scale) between output and input over identity samples, with its CI.

    ``{"n", "mse", "mse_lo", "mse_hi"}``; ``n = 0`` and nan values when the table has
    no identity sample. A method that leaves harmonious images alone scores 0.
    """
    if "identity" not in df.columns or "input_mse" not in df.columns:
        return {"n": 0, "mse": float("nan"), "mse_lo": float("nan"), "mse_hi": float("nan")}
    part = df[df["identity"].fillna(False).astype(bool)]
    mean, lo, hi = bootstrap_means(
        part["input_mse"].to_numpy(np.float64), n_boot=n_boot, seed=_seed_for(seed, "identity"), alpha=alpha
    )
    return {"n": int(len(part)), "mse": float(mean), "mse_lo": float(lo), "mse_hi": float(hi)}


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """Paired bootstrap of ``mean(a − b)`` over the same samples (pairs with a nan are dropped).

    Returns ``{"n", "diff", "lo", "hi", "p"}``: the observed mean difference, its
    percentile ``1 − alpha`` interval, and the two-sided p-value of "no
    difference" — twice the smaller share of resampled differences on either side
    of 0, with the ``(k + 1) / (n_boot + 1)`` correction (so ``p > 0``), capped at 1.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D arrays of the same length, got {a.shape} and {b.shape}")
    d = a - b
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return {"n": 0, "diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan")}
    rng = np.random.default_rng(_seed_for(seed, "paired"))
    reps = np.empty(int(n_boot))
    for start in range(0, int(n_boot), 256):
        c = _boot_counts(n, min(256, int(n_boot) - start), rng)
        reps[start : start + len(c)] = (c @ d) / n
    lo, hi = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    below = (np.count_nonzero(reps <= 0) + 1) / (n_boot + 1)
    above = (np.count_nonzero(reps >= 0) + 1) / (n_boot + 1)
    return {
        "n": int(n),
        "diff": float(d.mean()),
        "lo": float(lo),
        "hi": float(hi),
        "p": float(min(1.0, 2 * min(below, above))),
    }


def compare_runs(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    exclude_identity: bool = True,
    require_same: bool = True,
) -> pd.DataFrame:
    """Paired comparison of two runs' per-sample tables on the same keys, one row per metric.

    Columns: ``metric``, ``n``, ``a``, ``b`` (means over the paired samples),
    ``diff`` (a − b), ``lo``, ``hi``, ``p`` and ``better`` (``"a"``, ``"b"`` or
    ``""`` when the interval contains 0). ``require_same``: the two key sets must
    be equal (``ValueError`` naming a missing key otherwise); else the common keys are used.
    """
    a = overall_rows(a, exclude_identity).set_index("key")
    b = overall_rows(b, exclude_identity).set_index("key")
    if require_same and set(a.index) != set(b.index):
        only = sorted(set(a.index) ^ set(b.index))
        raise ValueError(f"runs cover different samples ({len(only)} keys differ, e.g. {only[0]!r})")
    keys = sorted(set(a.index) & set(b.index))
    mets = [m for m in metric_columns(a, metrics) if m in b.columns]
    rows = []
    for m in mets:
        va = a.loc[keys, m].to_numpy(np.float64)
        vb = b.loc[keys, m].to_numpy(np.float64)
        r = paired_bootstrap(va, vb, n_boot=n_boot, seed=seed, alpha=alpha)
        ok = np.isfinite(va) & np.isfinite(vb)
        better = ""
        if r["n"] and (r["lo"] > 0 or r["hi"] < 0):
            a_higher = r["diff"] > 0
            better = "b" if a_higher == LOWER_IS_BETTER.get(m, True) else "a"
        rows.append(
            {
                "metric": m,
                "n": r["n"],
                "a": float(va[ok].mean()) if ok.any() else float("nan"),
                "b": float(vb[ok].mean()) if ok.any() else float("nan"),
                "diff": r["diff"],
                "lo": r["lo"],
                "hi": r["hi"],
                "p": r["p"],
                "better": better,
            }
        )
    return pd.DataFrame(rows, columns=["metric", "n", "a", "b", "diff", "lo", "hi", "p", "better"])


__all__ = [
    "ALL",
    "BUCKET_EDGES",
    "GROUP_KINDS",
    "LOWER_IS_BETTER",
    "METRICS",
    "assign_buckets",
    "bootstrap_means",
    "breakdown",
    "bucket_names",
    "compare_runs",
    "identity_error",
    "metric_columns",
    "overall_rows",
    "paired_bootstrap",
    "summarize_group",
    "summary_dict",
]
