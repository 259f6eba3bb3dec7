"""Leaderboard charts (matplotlib, Agg backend): metric bars with bootstrap CIs, per subset and per fg bucket.

Inputs are rows of :func:`harmbench.eval.aggregate.breakdown` with a ``method``
column; every bar carries its 95 % interval as an error bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harmbench.eval.aggregate import ALL, LOWER_IS_BETTER
from harmbench.metrics.labels import METRIC_LABELS

LABELS = {m: f"{label} (dB)" if m.endswith("psnr") else label for m, label in METRIC_LABELS.items()}
#: Colour-blind-safe palette (Okabe–Ito), cycled.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _direction(metric: str) -> str:
    return "lower is better" if LOWER_IS_BETTER.get(metric, True) else "higher is better"


def _err(sub: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    v = sub[metric].to_numpy(float)
    lo = sub.get(f"{metric}_lo", pd.Series(v)).to_numpy(float)
    hi = sub.get(f"{metric}_hi", pd.Series(v)).to_numpy(float)
    lo = np.where(np.isfinite(lo), lo, v)
    hi = np.where(np.isfinite(hi), hi, v)
    return v, np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])


def _use_log(values: np.ndarray) -> bool:
    v = values[np.isfinite(values) & (values > 0)]
    return len(v) > 1 and v.max() / v.min() > 30


def _grouped_bars(ax, groups: list[str], methods: list[str], get, metric: str, *, log: bool | None = None) -> None:
    n = max(1, len(methods))
    width = 0.8 / n
    x = np.arange(len(groups))
    allv = []
    for i, meth in enumerate(methods):
        vals, errs = get(meth)
        allv.append(vals)
        ax.bar(
            x + (i - (n - 1) / 2) * width,
            np.nan_to_num(vals, nan=0.0),
            width,
            yerr=errs,
            capsize=2,
            color=PALETTE[i % len(PALETTE)],
            label=meth,
            error_kw={"elinewidth": 0.8, "ecolor": "#333"},
        )
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=9)
    ax.set_title(f"{LABELS.get(metric, metric)} ({_direction(metric)})", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if log if log is not None else _use_log(np.concatenate(allv) if allv else np.array([])):
        ax.set_yscale("log")
    elif metric in ("ssim", "fssim"):
        lo = np.nanmin(np.concatenate(allv)) if allv else 0.0
        ax.set_ylim(max(0.0, min(0.9, lo - 0.05)), 1.0)


def metric_chart(
    bd: pd.DataFrame, methods: Sequence[str], metric: str, path: Path, title: str = "", exclude: Sequence[str] = ()
) -> Path:
    """One metric: bars per method for ``All`` and each subset (less ``exclude``), with 95 % CI error bars."""
    plt = _plt()
    rows = bd[bd["kind"].isin(["all", "subset"]) & ~bd["group"].isin(list(exclude))]
    groups = [ALL] + [g for g in dict.fromkeys(rows.loc[rows["kind"] == "subset", "group"]) if g != ALL]
    meths = [m for m in methods if (rows["method"] == m).any()]

    def get(meth: str):
        sub = rows[rows["method"] == meth].set_index("group").reindex(groups)
        return _err(sub.reset_index(), metric)

    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(groups) * max(1, len(meths)) * 0.35 + 2), 4.2), dpi=120)
    _grouped_bars(ax, groups, meths, get, metric)
    ns = rows.drop_duplicates("group").set_index("group")["n"]
    ax.set_xticklabels([f"{g}\nn={int(ns.get(g, 0))}" for g in groups], fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def metrics_chart(
    bd: pd.DataFrame,
    methods: Sequence[str],
    metrics: Sequence[str],
    path: Path,
    title: str = "",
    exclude: Sequence[str] = (),
) -> Path:
    """Overview: one panel per metric, one horizontal bar per method (``All``) with its CI; writes a
    per-metric chart (:func:`metric_chart`) beside it as ``<stem>_<metric>.png``."""
    plt = _plt()
    rows = bd[bd["kind"] == "all"].set_index("method")
    meths = [m for m in methods if m in rows.index]
    mets = [m for m in metrics if m in rows.columns and rows[m].notna().any()]
    ncol = 3 if len(mets) > 4 else max(1, len(mets))
    nrow = math.ceil(len(mets) / ncol) if mets else 1
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.2 * ncol, 0.45 * len(meths) * nrow + 1.2 * nrow + 0.6), dpi=120, squeeze=False
    )
    y = np.arange(len(meths))
    for k, metric in enumerate(mets):
        ax = axes[k // ncol][k % ncol]
        sub = rows.loc[meths].reset_index()
        v, err = _err(sub, metric)
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(meths))]
        ax.barh(
            y,
            np.nan_to_num(v, nan=0.0),
            xerr=err,
            color=colors,
            capsize=3,
            error_kw={"elinewidth": 0.8, "ecolor": "#333"},
        )
        ax.set_yticks(y)
        ax.set_yticklabels(meths if k % ncol == 0 else [""] * len(meths), fontsize=9)
        ax.invert_yaxis()
        ax.set_title(f"{LABELS.get(metric, metric)} ({_direction(metric)})", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        if _use_log(v):
            ax.set_xscale("log")
        elif metric in ("ssim", "fssim"):
            lo = np.nanmin(v - err[0]) if len(v) else 0.0
            ax.set_xlim(max(0.0, min(0.9, lo - 0.03)), 1.0)
        for yi, vi, hi in zip(y, v, v + err[1]):
            if np.isfinite(vi):
                ax.annotate(
                    f"{vi:.4f}" if metric in ("ssim", "fssim", "lpips", "flpips") else f"{vi:.1f}",
                    (hi, yi),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="#222",
                )
        ax.margins(x=0.18)
    for k in range(len(mets), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    n = int(rows["n"].iloc[0]) if len(rows) else 0
    fig.suptitle(f"{title}\nAll (n={n}), mean with 95 % bootstrap CI", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    for metric in mets:
        metric_chart(bd, methods, metric, path.with_name(f"{path.stem}_{metric}.png"), title=title, exclude=exclude)
    return path


def bucket_chart(bd: pd.DataFrame, methods: Sequence[str], metrics: Sequence[str], path: Path, title: str = "") -> Path:
    """One panel per metric: bars per method for each foreground-ratio bucket, with 95 % CIs."""
    plt = _plt()
    rows = bd[bd["kind"] == "bucket"]
    groups = list(dict.fromkeys(rows["group"]))
    meths = [m for m in methods if (rows["method"] == m).any()]
    mets = [m for m in metrics if m in rows.columns] or ["mse"]
    fig, axes = plt.subplots(1, len(mets), figsize=(5.5 * len(mets) + 1.5, 4.2), dpi=120, squeeze=False)
    ns = rows.drop_duplicates("group").set_index("group")["n"] if len(rows) else pd.Series(dtype=int)
    for k, metric in enumerate(mets):
        ax = axes[0][k]

        def get(meth: str, metric: str = metric):
            sub = rows[rows["method"] == meth].set_index("group").reindex(groups)
            return _err(sub.reset_index(), metric)

        _grouped_bars(ax, groups, meths, get, metric)
        ax.set_xticklabels([f"fg {g} %\nn={int(ns.get(g, 0))}" for g in groups], fontsize=9)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


__all__ = ["bucket_chart", "metric_chart", "metrics_chart"]
