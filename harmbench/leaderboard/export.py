"""``harmbench leaderboard export``: tables, charts and a qualitative grid from a leaderboard's runs.

Everything is recomputed from each run's ``samples.parquet`` with
:mod:`harmbench.eval.aggregate` (image-weighted means, percentile bootstrap
CIs). Files (in the leaderboard folder unless ``out`` is given):

* ``results.csv`` — one row per dataset × method × subset (``All`` first):
  ``dataset, method, subset, n`` and ``mse, psnr, fmse, fpsnr, ssim, lpips`` with
  ``<metric>_lo`` / ``<metric>_hi`` (always written);
* ``breakdown.csv`` — every group (all / subset / recipe / category / fg bucket), every metric;
* ``comparisons.csv`` — paired bootstrap of each method against the first one (the composite);
* ``identity.csv`` — output-vs-input MSE on identity samples;
* ``results.md`` / ``results.tex`` / ``results.html`` and ``figures/*.png`` by format.

Formats are a registry (:data:`EXPORTERS`): ``register_exporter(name)`` adds one.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmbench.errors import UserError
from harmbench.eval.aggregate import LOWER_IS_BETTER, breakdown, compare_runs, identity_error
from harmbench.leaderboard.definition import Leaderboard, load_leaderboard
from harmbench.leaderboard.store import Collected, collect
from harmbench.metrics.labels import METRIC_LABELS

#: Metrics of ``results.csv`` (and of the main tables), in order.
TABLE_METRICS = ("mse", "psnr", "fmse", "fpsnr", "ssim", "lpips", "harmony")
LABELS = {**METRIC_LABELS, "harmony": "Harmony"}
UNITS = {"psnr": "dB", "fpsnr": "dB"}
DEFAULT_FORMATS = ("csv", "md", "tex", "html", "png", "grid")


def arrow(metric: str) -> str:
    return "↓" if LOWER_IS_BETTER.get(metric, True) else "↑"


def fmt(metric: str, v: Any) -> str:
    """Display precision: 4 decimals for SSIM/LPIPS, 2 otherwise; '–' for missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4f}" if metric in ("ssim", "fssim", "lpips", "flpips", "harmony") else f"{v:.2f}"


@dataclass
class ExportContext:
    """Everything an exporter needs: the definition, the runs and the computed tables."""

    lb: Leaderboard
    collected: Collected
    out_dir: Path
    breakdown: pd.DataFrame  # dataset, method, kind, group, n, n_undefined, metric, metric_lo, metric_hi …
    results: pd.DataFrame  # the results.csv table
    comparisons: pd.DataFrame
    identity: pd.DataFrame
    methods: list[str]
    metrics: list[str]
    grid_samples: int
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def identity_subsets(self, dataset: str) -> list[str]:
        """Subsets made only of identity samples (shown in the identity check, not beside real subsets)."""
        out: set[str] = set()
        for r in self.collected.by_dataset().get(dataset, []):
            df = r.samples
            if "identity" in df.columns and "subset" in df.columns and len(df):
                ident = df.groupby("subset")["identity"].all()
                out.update(str(k) for k, v in ident.items() if bool(v))
        return sorted(out)

    def datasets(self) -> list[str]:
        return [d.name for d in self.lb.datasets if (self.breakdown["dataset"] == d.name).any()]

    def protocol_text(self) -> str:
        r0 = self.collected.results[0].run
        prof = r0.get("profile", {})
        boot = self.lb.bootstrap
        text = (
            f"Metric profile `{prof.get('name')}` (PSNR peak {prof.get('psnr_peak')}, fMSE `{prof.get('fmse_formula')}`, "
            f"image filter `{prof.get('image_filter')}`, mask rule `{prof.get('mask_rule')}`), resize `{r0.get('resize')}`, "
            f"outputs scored {'as 8-bit images' if r0.get('pred_8bit') else 'as floats'}. "
            f"Means over images with 95 % percentile bootstrap intervals ({boot} resamples, seed {self.lb.seed}). "
            f"`All` leaves out identity samples (composite = real), which are reported in their own check."
        )
        return text


Exporter = Callable[[ExportContext], list[Path]]
EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str) -> Callable[[Exporter], Exporter]:
    """Decorator registering an export format under ``name``."""

    def deco(fn: Exporter) -> Exporter:
        EXPORTERS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- computing


def compute_tables(
    collected: Collected, n_boot: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(breakdown, results, comparisons, identity)`` for every finished run."""
    parts, comps, idents = [], [], []
    for dname, runs in collected.by_dataset().items():
        if not runs:
            continue
        ref = runs[0]
        for r in runs:
            prof = r.run.get("profile", {})
            b = breakdown(
                r.samples,
                bucket_edges=tuple(prof.get("bucket_edges", (0.0, 0.05, 0.15, 1.0))),
                bucket_inclusive=prof.get("bucket_inclusive", "half-open"),
                n_boot=n_boot,
                seed=seed,
            )
            b.insert(0, "protocol", r.run.get("protocol", "harmbench"))
            b.insert(0, "method", r.cell.model.label)
            b.insert(0, "dataset", dname)
            parts.append(b)
            ie = identity_error(r.samples, n_boot=n_boot, seed=seed)
            idents.append({"dataset": dname, "method": r.cell.model.label, **ie})
            if r is not ref:
                try:
                    c = compare_runs(r.samples, ref.samples, n_boot=max(n_boot, 2000), seed=seed)
                except ValueError as exc:
                    collected.missing.append((r.cell.id, f"no paired comparison: {exc}"))
                    continue
                c.insert(0, "baseline", ref.cell.model.label)
                c.insert(0, "method", r.cell.model.label)
                c.insert(0, "dataset", dname)
                comps.append(c)
    bd = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    sub = bd[bd["kind"].isin(["all", "subset"])] if len(bd) else bd
    cols = ["dataset", "method", "subset", "n", "protocol"]
    for m in TABLE_METRICS:
        cols += [m, f"{m}_lo", f"{m}_hi"]
    if len(sub):
        res = sub.rename(columns={"group": "subset"}).copy()
        for c in cols:
            if c not in res.columns:
                res[c] = np.nan
        res = res[cols].reset_index(drop=True)
    else:
        res = pd.DataFrame(columns=cols)
    comp = (
        pd.concat(comps, ignore_index=True)
        if comps
        else pd.DataFrame(
            columns=["dataset", "method", "baseline", "metric", "n", "a", "b", "diff", "lo", "hi", "p", "better"]
        )
    )
    ident = pd.DataFrame(idents, columns=["dataset", "method", "n", "mse", "mse_lo", "mse_hi"])
    return bd, res, comp, ident


def _present_metrics(bd: pd.DataFrame) -> list[str]:
    from harmbench.eval.aggregate import METRICS

    return [m for m in METRICS if m in bd.columns and bd[m].notna().any()]


# --------------------------------------------------------------------------- table model shared by md/tex/html


@dataclass
class Table:
    """A rendered-format-neutral table: header cells, body rows and which cells are best in their column."""

    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""


def _ci(metric: str, row: pd.Series) -> str:
    v, lo, hi = row.get(metric), row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if v is None or not np.isfinite(v):
        return "–"
    if lo is None or not np.isfinite(lo):
        return fmt(metric, v)
    return f"{fmt(metric, v)} [{fmt(metric, lo)}, {fmt(metric, hi)}]"


def _best(values: list[float], metric: str) -> int | None:
    arr = np.array([v if v is not None and np.isfinite(v) else np.nan for v in values], dtype=float)
    if np.all(np.isnan(arr)) or len(arr) < 2:
        return None
    return int(np.nanargmin(arr) if LOWER_IS_BETTER.get(metric, True) else np.nanargmax(arr))


def broken_shards(ctx: ExportContext, dataset: str) -> dict[str, str]:
    """``{shard file name: what is wrong}`` over the runs of ``dataset`` (from their ``run.json``)."""
    out: dict[str, str] = {}
    for r in ctx.collected.by_dataset().get(dataset, []):
        for b in r.run.get("broken_shards") or []:
            member = f"member {b['member']}: " if b.get("member") else ""
            out.setdefault(Path(str(b.get("shard", "?"))).name, f"{member}{b.get('reason', '?')}")
    return dict(sorted(out.items()))


def build_tables(ctx: ExportContext, dataset: str) -> list[Table]:
    """The tables of one dataset: overall, per subset, per fg bucket, identity, comparisons."""
    bd = ctx.breakdown[ctx.breakdown["dataset"] == dataset]
    mets = [m for m in TABLE_METRICS if m in ctx.metrics]
    tables: list[Table] = []
    methods = [m for m in ctx.methods if (bd["method"] == m).any()]

    # overall
    allrows = bd[bd["kind"] == "all"].set_index("method")
    t = Table("Overall (All)", ["Method", "Protocol", "N"] + [f"{LABELS[m]} {arrow(m)}" for m in mets], [])
    for meth in methods:
        r = allrows.loc[meth]
        t.rows.append([meth, str(r.get("protocol", "harmbench")), str(int(r["n"]))] + [_ci(m, r) for m in mets])
    for j, m in enumerate(mets):
        b = _best([allrows.loc[x, m] for x in methods], m)
        if b is not None:
            t.bold.add((b, j + 3))
    t.note = (
        "mean [95 % bootstrap CI]; best mean in bold; protocol: harmbench (deterministic, any size) or "
        "official (the authors' test script)"
    )
    if "harmony" in mets:
        t.note += "; Harmony: BargainNet's no-reference score of the output (higher = more harmonious)"
    broken = broken_shards(ctx, dataset)
    if broken:
        t.note += f"; {len(broken)} broken shard(s) left out, their samples not scored: " + ", ".join(
            f"{name} ({why})" for name, why in broken.items()
        )
    tables.append(t)

    # per subset: MSE / PSNR / fMSE per subset (as the iHarmony4 tables)
    subs = bd[(bd["kind"] == "subset") & ~bd["group"].isin(ctx.identity_subsets(dataset))]
    names = list(dict.fromkeys(subs["group"]))
    if names:
        cols = [m for m in ("mse", "psnr", "fmse") if m in mets]
        header = ["Method"] + [f"{s} (n={int(subs[subs['group'] == s]['n'].iloc[0])})" for s in names]
        t = Table("Per subset: " + " / ".join(f"{LABELS[m]} {arrow(m)}" for m in cols), header, [])
        for meth in methods:
            row = [meth]
            for s in names:
                r = subs[(subs["method"] == meth) & (subs["group"] == s)]
                row.append(" / ".join(fmt(m, r[m].iloc[0]) for m in cols) if len(r) else "–")
            t.rows.append(row)
        tables.append(t)

    # buckets
    bk = bd[bd["kind"] == "bucket"]
    names = list(dict.fromkeys(bk["group"]))
    if names:
        cols = [m for m in ("mse", "fmse") if m in mets]
        header = ["Method"] + [f"fg {s} % (n={int(bk[bk['group'] == s]['n'].iloc[0])})" for s in names]
        t = Table("Foreground-ratio buckets: " + " / ".join(f"{LABELS[m]} {arrow(m)}" for m in cols), header, [])
        for meth in methods:
            row = [meth]
            for s in names:
                r = bk[(bk["method"] == meth) & (bk["group"] == s)]
                row.append(" / ".join(fmt(m, r[m].iloc[0]) for m in cols) if len(r) and r["n"].iloc[0] else "–")
            t.rows.append(row)
        t.note = "fg ratio = foreground pixels / image pixels at evaluation size"
        tables.append(t)

    # identity
    ident = ctx.identity[(ctx.identity["dataset"] == dataset) & (ctx.identity["n"] > 0)]
    if len(ident):
        t = Table(
            f"Identity check (n={int(ident['n'].iloc[0])}): MSE of output vs input ↓", ["Method", "MSE [95 % CI]"], []
        )
        for _, r in ident.iterrows():
            t.rows.append(
                [r["method"], f"{fmt('mse', r['mse'])} [{fmt('mse', r['mse_lo'])}, {fmt('mse', r['mse_hi'])}]"]
            )
        t.note = "identity samples have composite = real: a method should leave them unchanged (0 is perfect)"
        tables.append(t)

    # comparisons
    comp = ctx.comparisons[ctx.comparisons["dataset"] == dataset]
    if len(comp):
        cm = [m for m in ("mse", "fmse", "psnr") if m in set(comp["metric"])]
        base = comp["baseline"].iloc[0]
        t = Table(
            f"Paired comparison with {base} (All, paired bootstrap)",
            ["Method"] + [f"Δ{LABELS[m]} [95 % CI], p" for m in cm],
            [],
        )
        for meth in methods:
            row = [meth]
            sub = comp[comp["method"] == meth]
            if not len(sub):
                continue
            for m in cm:
                r = sub[sub["metric"] == m]
                if not len(r):
                    row.append("–")
                    continue
                r = r.iloc[0]
                row.append(f"{r['diff']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}], p={r['p']:.3g}")
            t.rows.append(row)
        t.note = f"difference method − {base} over the same samples"
        tables.append(t)
    return tables


def runs_table(ctx: ExportContext, dataset: str) -> Table:
    """What produced each row: sample count, device, weights hash, harmbench version.

    Timings and the git state of a run stay in its ``run.json``: they change from one run to the next, and the
    exported files are meant to be reproducible byte for byte from the same runs' results.
    """
    t = Table("Runs", ["Method", "N", "device", "weights sha256", "harmbench"], [])
    for r in ctx.collected.by_dataset().get(dataset, []):
        run = r.run
        env = run.get("environment", {})
        w = (run.get("model") or {}).get("weights_sha256") or "–"
        t.rows.append(
            [
                r.cell.model.label,
                str(run.get("n_samples", len(r.samples))),
                str(env.get("device_name", env.get("device", "?")))[:40],
                (w[:12] if w != "–" else w),
                str(run.get("harmbench_version", "?")),
            ]
        )
    t.note = "timings and the code version of each run: its run.json"
    return t


def published_table(ctx: ExportContext) -> Table | None:
    from harmbench.leaderboard.published import published_rows

    rows = published_rows([m.name for m in ctx.lb.models])
    if not ctx.lb.published or not rows:
        return None
    t = Table(
        "Published results on iHarmony4 (quoted from the papers; NOT computed by harmbench)",
        ["Method (as published)", "MSE ↓", "PSNR ↑", "fMSE ↓", "Source", "Checked"],
        [],
    )
    for r in rows:
        t.rows.append(
            [
                r.method,
                fmt("mse", r.mse),
                fmt("psnr", r.psnr),
                fmt("fmse", r.fmse),
                r.source,
                "read in the source" if r.verified == "V" else "quoted, unverified",
            ]
        )
    t.note = (
        "iHarmony4 test set (7,404 images) at 256×256 with each paper's own metric code and trained weights: "
        "different data and protocol, for orientation only — not comparable row by row with the tables above"
    )
    return t


# --------------------------------------------------------------------------- exporters


@register_exporter("csv")
def export_csv(ctx: ExportContext) -> list[Path]:
    out = []
    for name, df in (
        ("results.csv", ctx.results),
        ("breakdown.csv", ctx.breakdown),
        ("comparisons.csv", ctx.comparisons),
        ("identity.csv", ctx.identity),
    ):
        p = ctx.out_dir / name
        df.to_csv(p, index=False, float_format="%.6g")
        out.append(p)
    return out


def _md_table(t: Table) -> str:
    def cell(i: int, j: int, v: str) -> str:
        v = v.replace("|", "\\|")
        return f"**{v}**" if (i, j) in t.bold else v

    lines = [
        f"### {t.title}",
        "",
        "| " + " | ".join(t.header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(t.header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(cell(i, j, v) for j, v in enumerate(r)) + " |" for i, r in enumerate(t.rows)]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def _dataset_intro(ctx: ExportContext, dataset: str) -> str:
    runs = ctx.collected.by_dataset().get(dataset, [])
    d = runs[0].run.get("data", {}) if runs else {}
    n = runs[0].run.get("n_samples") if runs else "?"
    return f"{n} samples, split `{d.get('split')}`, dataset index sha256 `{str(d.get('index_sha256'))[:16]}…`" + (
        f", first {d.get('limit')} samples" if d.get("limit") else ""
    )


@register_exporter("md")
def export_md(ctx: ExportContext) -> list[Path]:
    lb = ctx.lb
    parts = [f"# {lb.title}", ""]
    if lb.description:
        parts += [lb.description, ""]
    parts += [ctx.protocol_text(), ""]
    for ds in ctx.datasets():
        parts += [f"## {ds}", "", _dataset_intro(ctx, ds), ""]
        figs = ctx.out_dir / "figures"
        for t in build_tables(ctx, ds):
            parts.append(_md_table(t))
        if (figs / f"{ds}_metrics.png").exists():
            parts += [f"![metrics]({os.path.relpath(figs / f'{ds}_metrics.png', ctx.out_dir)})", ""]
        if (figs / f"{ds}_buckets.png").exists():
            parts += [f"![buckets]({os.path.relpath(figs / f'{ds}_buckets.png', ctx.out_dir)})", ""]
        if (figs / f"{ds}_grid.png").exists():
            parts += [f"![qualitative grid]({os.path.relpath(figs / f'{ds}_grid.png', ctx.out_dir)})", ""]
        parts.append(_md_table(runs_table(ctx, ds)))
    pub = published_table(ctx)
    if pub is not None:
        parts += ["## Published numbers (quoted)", "", _md_table(pub)]
    if ctx.collected.missing or ctx.notes:
        parts += ["## Notes", ""]
        parts += [f"- {n}" for n in ctx.notes]
        parts += [f"- `{c}`: {why}" for c, why in ctx.collected.missing]
        parts.append("")
    p = ctx.out_dir / "results.md"
    p.write_text("\n".join(parts), encoding="utf-8")
    return [p]


_TEX_ESC = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "Δ": r"$\Delta$",
    "–": "--",
    "−": "-",
    "×": r"$\times$",
}


def tex_escape(s: str) -> str:
    return "".join(_TEX_ESC.get(c, c) for c in str(s))


def _tex_table(t: Table) -> str:
    cols = "l" + "r" * (len(t.header) - 1)
    body = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{tex_escape(t.title)}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in t.header) + r" \\",
        r"\midrule",
    ]
    for i, r in enumerate(t.rows):
        cells = [(r"\textbf{" + tex_escape(v) + "}") if (i, j) in t.bold else tex_escape(v) for j, v in enumerate(r)]
        body.append(" & ".join(cells) + r" \\")
    body += [r"\bottomrule", r"\end{tabular}"]
    if t.note:
        body.append(rf"\\[2pt]{{\footnotesize {tex_escape(t.note)}}}")
    body.append(r"\end{table}")
    return "\n".join(body) + "\n"


@register_exporter("tex")
def export_tex(ctx: ExportContext) -> list[Path]:
    parts = [
        f"% {tex_escape(ctx.lb.title)} -- generated by harmbench leaderboard export; needs \\usepackage{{booktabs}}",
        "",
    ]
    for ds in ctx.datasets():
        parts.append(f"% dataset {ds}: {_dataset_intro(ctx, ds)}")
        for t in build_tables(ctx, ds):
            t.title = f"{ds}: {t.title}"
            parts.append(_tex_table(t))
    pub = published_table(ctx)
    if pub is not None:
        parts.append(_tex_table(pub))
    p = ctx.out_dir / "results.tex"
    p.write_text("\n".join(parts), encoding="utf-8")
    return [p]


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 .3em}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}td.best{font-weight:bold}
p.note{font-size:.85em;color:#555;margin-top:0}img{max-width:100%;margin:.5em 0}.quoted{background:#fff8e6;padding:.5em 1em}"""


def _html_table(t: Table) -> str:
    out = [
        f"<h3>{html.escape(t.title)}</h3>",
        "<table>",
        "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr>",
    ]
    for i, r in enumerate(t.rows):
        out.append(
            "<tr>"
            + "".join(
                f'<td class="best">{html.escape(v)}</td>' if (i, j) in t.bold else f"<td>{html.escape(v)}</td>"
                for j, v in enumerate(r)
            )
            + "</tr>"
        )
    out.append("</table>")
    if t.note:
        out.append(f'<p class="note">{html.escape(t.note)}</p>')
    return "\n".join(out)


@register_exporter("html")
def export_html(ctx: ExportContext) -> list[Path]:
    lb = ctx.lb
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(lb.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(lb.title)}</h1>",
    ]
    if lb.description:
        parts.append(f"<p>{html.escape(lb.description)}</p>")
    parts.append(f"<p>{html.escape(ctx.protocol_text())}</p>")
    for ds in ctx.datasets():
        parts += [f"<h2>{html.escape(ds)}</h2>", f"<p>{html.escape(_dataset_intro(ctx, ds))}</p>"]
        parts += [_html_table(t) for t in build_tables(ctx, ds)]
        for kind in ("metrics", "buckets", "grid"):
            f = ctx.out_dir / "figures" / f"{ds}_{kind}.png"
            if f.exists():
                parts.append(f'<img src="{html.escape(os.path.relpath(f, ctx.out_dir))}" alt="{kind}">')
        parts.append(_html_table(runs_table(ctx, ds)))
    pub = published_table(ctx)
    if pub is not None:
        parts += ['<div class="quoted">', _html_table(pub), "</div>"]
    if ctx.collected.missing or ctx.notes:
        parts.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in ctx.notes)
            + "".join(f"<li><code>{html.escape(c)}</code>: {html.escape(w)}</li>" for c, w in ctx.collected.missing)
            + "</ul>"
        )
    parts.append("</body></html>")
    p = ctx.out_dir / "results.html"
    p.write_text("\n".join(parts), encoding="utf-8")
    return [p]


@register_exporter("png")
def export_png(ctx: ExportContext) -> list[Path]:
    from harmbench.leaderboard.plots import bucket_chart, metrics_chart

    out = []
    figs = ctx.out_dir / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    for ds in ctx.datasets():
        bd = ctx.breakdown[ctx.breakdown["dataset"] == ds]
        mets = [m for m in TABLE_METRICS if m in ctx.metrics]
        out.append(
            metrics_chart(
                bd,
                ctx.methods,
                mets,
                figs / f"{ds}_metrics.png",
                title=f"{ctx.lb.title} — {ds}",
                exclude=ctx.identity_subsets(ds),
            )
        )
        out.append(
            bucket_chart(
                bd,
                ctx.methods,
                [m for m in ("mse", "fmse") if m in mets],
                figs / f"{ds}_buckets.png",
                title=f"{ctx.lb.title} — {ds}: by foreground ratio",
            )
        )
    return out


@register_exporter("grid")
def export_grid(ctx: ExportContext) -> list[Path]:
    from harmbench.leaderboard.grid import qualitative_grid

    figs = ctx.out_dir / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    out = []
    for ds, runs in ctx.collected.by_dataset().items():
        if not runs:
            continue
        p = qualitative_grid(
            [(r.cell.model.label, r.cell.run_dir) for r in runs],
            figs / f"{ds}_grid.png",
            k=ctx.grid_samples,
            title=f"{ctx.lb.title} — {ds}",
        )
        if p is not None:
            out.append(p)
        else:
            ctx.notes.append(f"{ds}: no previews shared by every run, so no qualitative grid")
    return out


# --------------------------------------------------------------------------- entry point


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """``"md,csv"`` or a list -> known format names (``csv`` always included); UserError for unknown ones."""
    if formats is None:
        names = list(DEFAULT_FORMATS)
    elif isinstance(formats, str):
        names = [f.strip().lower() for f in formats.split(",") if f.strip()]
    else:
        names = [str(f).strip().lower() for f in formats]
    bad = [f for f in names if f not in EXPORTERS]
    if bad:
        raise UserError(f"unknown export format(s) {', '.join(bad)}; known: {', '.join(EXPORTERS)}")
    names = ["csv"] + [f for f in names if f != "csv"]
    # figures first so the documents can link them
    order = {"png": 0, "grid": 1}
    return sorted(dict.fromkeys(names), key=lambda f: order.get(f, 2))


def export_leaderboard(
    name: str | os.PathLike | Leaderboard,
    formats: str | Sequence[str] | None = None,
    *,
    out: str | os.PathLike | None = None,
    n_boot: int | None = None,
    grid_samples: int | None = None,
) -> ExportContext:
    """Write the leaderboard's tables and figures (see the module docstring); returns the context with ``written``."""
    lb = name if isinstance(name, Leaderboard) else load_leaderboard(name)
    fmts = parse_formats(formats)
    collected = collect(lb)
    if not collected.results:
        why = "; ".join(f"{c}: {w}" for c, w in collected.missing[:5])
        raise UserError(
            f"leaderboard {lb.name}: no finished runs to export ({why}); run `harmbench leaderboard run {lb.name}` first"
        )
    boots = int(n_boot if n_boot is not None else lb.bootstrap)
    bd, res, comp, ident = compute_tables(collected, boots, lb.seed)
    out_dir = Path(out) if out is not None else lb.dir
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = ExportContext(
        lb=lb,
        collected=collected,
        out_dir=out_dir,
        breakdown=bd,
        results=res,
        comparisons=comp,
        identity=ident,
        methods=[m.label for m in lb.models if any(r.cell.model.label == m.label for r in collected.results)],
        metrics=_present_metrics(bd),
        grid_samples=int(grid_samples if grid_samples is not None else lb.grid_samples),
    )
    for ds in ctx.datasets():
        for name, why in broken_shards(ctx, ds).items():
            ctx.notes.append(f"{ds}: shard {name} is broken and was left out ({why})")
    for f in fmts:
        ctx.written.extend(EXPORTERS[f](ctx))
    return ctx


__all__ = [
    "DEFAULT_FORMATS",
    "EXPORTERS",
    "ExportContext",
    "TABLE_METRICS",
    "compute_tables",
    "export_leaderboard",
    "parse_formats",
    "register_exporter",
]
